"""Survey definitions: checking what marketing builds, and checking members' answers against it.

A definition is ``{"pages": [{"title": str, "questions": [question, ...]}, ...]}``; a question is
``{"id", "type", "text", "required", ...}`` plus, by type:

* ``single_choice`` / ``multiple_choice``: ``options`` (strings); multiple choice may set
  ``min_choices`` / ``max_choices``;
* ``short_text`` / ``long_text``: optional ``max_length`` (defaults 200 / 5000);
* ``rating``: an integer 1-5; ``nps``: an integer 0-10;
* ``matrix``: ``rows`` (statements) and ``scale`` (Likert labels); the answer maps each row to a
  scale label.

Skip logic: ``show_if: {"question": "<earlier id>", "in": [values]}`` shows a question only when
the earlier question was shown and its answer (any selected option, for multiple choice) is one
of ``values``.  A hidden question must not be answered and is never required.

Pure functions of plain data: the same code validates on save, on submit, and in tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from errors import ValidationError

from .models import QUESTION_TYPES

TEXT_LIMITS = {"short_text": 200, "long_text": 5000}
NUMERIC_RANGES = {"rating": (1, 5), "nps": (0, 10)}
CHOICE_TYPES = ("single_choice", "multiple_choice")
# Types whose answer can drive skip logic.
CONDITION_TYPES = ("single_choice", "multiple_choice", "rating", "nps")


def iter_questions(definition: dict) -> Iterator[dict]:
    for page in definition.get("pages", []):
        yield from page.get("questions", [])


def nps_question_id(definition: dict) -> str | None:
    """The first NPS question, whose answer is the response's NPS score."""
    for question in iter_questions(definition):
        if question["type"] == "nps":
            return question["id"]
    return None


def check_definition(definition: dict) -> None:
    """Raise ValidationError (fields keyed by question id) if ``definition`` is not publishable."""
    errors: dict[str, list[str]] = {}
    seen: dict[str, dict] = {}
    pages = definition.get("pages") or []
    if not pages or not any(page.get("questions") for page in pages):
        raise ValidationError("A survey needs at least one question.", fields={"definition": ["No questions."]})
    for question in iter_questions(definition):
        qid = question["id"]
        problems = errors.setdefault(qid, [])
        if qid in seen:
            problems.append("Question ids must be unique.")
        qtype = question["type"]
        if qtype not in QUESTION_TYPES:
            problems.append(f"Unknown question type {qtype!r}.")
        options = question.get("options") or []
        if qtype in CHOICE_TYPES:
            if len(options) < 2:
                problems.append("A choice question needs at least two options.")
            if len(set(options)) != len(options):
                problems.append("Options must be distinct.")
        elif options:
            problems.append("Only choice questions have options.")
        if qtype == "multiple_choice":
            low, high = question.get("min_choices"), question.get("max_choices")
            if low is not None and high is not None and low > high:
                problems.append("min_choices cannot exceed max_choices.")
            if high is not None and high > len(options):
                problems.append("max_choices cannot exceed the number of options.")
        if qtype == "matrix":
            rows, scale = question.get("rows") or [], question.get("scale") or []
            if not rows or len(scale) < 2:
                problems.append("A matrix needs rows and a scale of at least two labels.")
            if len(set(rows)) != len(rows) or len(set(scale)) != len(scale):
                problems.append("Matrix rows and scale labels must be distinct.")
        elif question.get("rows") or question.get("scale"):
            problems.append("Only matrix questions have rows and a scale.")
        condition = question.get("show_if")
        if condition:
            problems.extend(_check_condition(condition, seen))
        seen[qid] = question
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        raise ValidationError("The survey definition is invalid.", fields=errors)


def _check_condition(condition: dict, earlier: dict[str, dict]) -> list[str]:
    target = earlier.get(condition.get("question"))
    if target is None:
        return ["show_if must refer to an earlier question."]
    if target["type"] not in CONDITION_TYPES:
        return ["show_if must refer to a choice, rating or NPS question."]
    values = condition.get("in") or []
    if not values:
        return ["show_if needs at least one value."]
    allowed = _allowed_values(target)
    if any(v not in allowed for v in values):
        return ["show_if values must be possible answers of that question."]
    return []


def check_eligibility_rule(rule: dict, definition: dict) -> None:
    """A focus group's screener rule has the shape of a ``show_if`` on the screener's questions."""
    questions = {q["id"]: q for q in iter_questions(definition)}
    problems = _check_condition(rule, questions)
    if problems:
        raise ValidationError("The eligibility rule is invalid.", fields={"eligibility_rule": problems})


def _allowed_values(question: dict) -> list:
    if question["type"] in CHOICE_TYPES:
        return list(question["options"])
    low, high = NUMERIC_RANGES[question["type"]]
    return list(range(low, high + 1))


def condition_met(condition: dict, answers: dict) -> bool:
    """Whether the answers satisfy a ``show_if`` (or eligibility) condition."""
    answer = answers.get(condition["question"])
    if answer is None:
        return False
    values = condition["in"]
    if isinstance(answer, list):
        return any(a in values for a in answer)
    return answer in values


def visible_questions(definition: dict, answers: dict) -> list[dict]:
    """The questions shown for these answers, in order (a question hidden hides its dependants)."""
    shown: list[dict] = []
    shown_answers: dict = {}
    for question in iter_questions(definition):
        condition = question.get("show_if")
        if condition and not condition_met(condition, shown_answers):
            continue
        shown.append(question)
        if question["id"] in answers:
            shown_answers[question["id"]] = answers[question["id"]]
    return shown


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_answer(question: dict, value: Any) -> str | None:
    """The error message for one answer, or None when it is well-formed."""
    qtype = question["type"]
    if qtype == "single_choice":
        if not isinstance(value, str) or value not in question["options"]:
            return "Choose one of the options."
    elif qtype == "multiple_choice":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "Send a list of options."
        if any(v not in question["options"] for v in value):
            return "Choose only from the options."
        if len(set(value)) != len(value):
            return "Choose each option at most once."
        low, high = question.get("min_choices"), question.get("max_choices")
        if low is not None and len(value) < low:
            return f"Choose at least {low} options."
        if high is not None and len(value) > high:
            return f"Choose at most {high} options."
    elif qtype in TEXT_LIMITS:
        if not isinstance(value, str):
            return "Send text."
        limit = question.get("max_length") or TEXT_LIMITS[qtype]
        if len(value) > limit:
            return f"Use at most {limit} characters."
    elif qtype in NUMERIC_RANGES:
        low, high = NUMERIC_RANGES[qtype]
        if not _is_int(value) or not low <= value <= high:
            return f"Give a whole number from {low} to {high}."
    elif qtype == "matrix":
        if not isinstance(value, dict):
            return "Send an object mapping each row to a scale label."
        unknown = [k for k in value if k not in question["rows"]]
        if unknown:
            return f"Unknown rows: {', '.join(sorted(unknown))}."
        if any(v not in question["scale"] for v in value.values()):
            return "Answer each row with a label of the scale."
    return None


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def clean_answers(definition: dict, answers: dict, *, complete: bool) -> dict:
    """Check ``answers`` against a version's definition and return them without empty values.

    Partial saves (``complete=False``) check only unknown questions and the shape of each
    answer; submission also enforces skip logic and required questions.  Every problem is
    reported at once, keyed by question id, in the 422's ``fields``.
    """
    questions = {q["id"]: q for q in iter_questions(definition)}
    errors: dict[str, list[str]] = {}
    cleaned: dict = {}
    for qid, value in answers.items():
        question = questions.get(qid)
        if question is None:
            errors[qid] = ["This survey has no such question."]
            continue
        if _is_empty(value):
            continue  # an untouched question: same as not answering
        message = _check_answer(question, value)
        if message:
            errors[qid] = [message]
        else:
            cleaned[qid] = value
    if complete and not errors:
        shown = visible_questions(definition, cleaned)
        shown_ids = {q["id"] for q in shown}
        for qid in cleaned:
            if qid not in shown_ids:
                errors[qid] = ["This question was not shown for your earlier answers; leave it unanswered."]
        for question in shown:
            if not question.get("required"):
                continue
            value = cleaned.get(question["id"])
            if value is None:
                errors[question["id"]] = ["This question is required."]
            elif question["type"] == "matrix" and set(value) != set(question["rows"]):
                errors[question["id"]] = ["Answer every row."]
    if errors:
        message = "Some answers need attention." if complete else "Some answers are invalid."
        raise ValidationError(message, fields=errors)
    return cleaned


def answer_rows(definition: dict, answers: dict) -> Iterator[dict]:
    """The ``SurveyAnswer`` values of a completed response (see the model)."""
    questions = {q["id"]: q for q in iter_questions(definition)}
    for qid, value in answers.items():
        question = questions[qid]
        qtype = question["type"]
        if qtype == "single_choice":
            yield {"question_id": qid, "choice": value}
        elif qtype == "multiple_choice":
            # One marker row per respondent (choice NULL): the base of the percentages, counted
            # by the same GROUP BY as the options instead of a slower COUNT(DISTINCT).
            yield {"question_id": qid}
            for option in value:
                yield {"question_id": qid, "choice": option}
        elif qtype in TEXT_LIMITS:
            yield {"question_id": qid, "text": value}
        elif qtype in NUMERIC_RANGES:
            yield {"question_id": qid, "choice": str(value), "number": float(value)}
        elif qtype == "matrix":
            for row, label in value.items():
                yield {
                    "question_id": qid,
                    "row_key": row,
                    "choice": label,
                    "number": float(question["scale"].index(label) + 1),
                }
