"""Server-side answer validation per question type, and skip logic (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from errors import ValidationError
from surveys import definition as defs
from tests.surveys.helpers import answers, definition


def fields_of(fn, *args, **kwargs) -> dict:
    with pytest.raises(ValidationError) as info:
        fn(*args, **kwargs)
    return info.value.fields


def test_good_answers_pass_and_empty_values_are_dropped():
    cleaned = defs.clean_answers(definition(), answers(nick=""), complete=True)
    assert "nick" not in cleaned
    assert cleaned["grid"] == {"fast": "agree", "friendly": "neutral"}


@pytest.mark.parametrize(
    ("qid", "bad", "message"),
    [
        ("channel", "fax", "Choose one of the options."),
        ("channel", ["web"], "Choose one of the options."),
        ("features", "points", "Send a list of options."),
        ("features", ["points", "spam"], "Choose only from the options."),
        ("features", ["points", "points"], "Choose each option at most once."),
        ("features", ["points", "forums", "rewards"], "Choose at most 2 options."),
        ("nick", "x" * 11, "Use at most 10 characters."),
        ("nick", 42, "Send text."),
        ("rating", 6, "Give a whole number from 1 to 5."),
        ("rating", 0, "Give a whole number from 1 to 5."),
        ("rating", 3.5, "Give a whole number from 1 to 5."),
        ("rating", True, "Give a whole number from 1 to 5."),
        ("nps", 11, "Give a whole number from 0 to 10."),
        ("nps", "9", "Give a whole number from 0 to 10."),
        ("grid", ["agree"], "Send an object mapping each row to a scale label."),
        ("grid", {"fast": "agree", "cheap": "agree"}, "Unknown rows: cheap."),
        ("grid", {"fast": "love it", "friendly": "agree"}, "Answer each row with a label of the scale."),
    ],
)
def test_each_type_rejects_malformed_answers(qid, bad, message):
    for complete in (True, False):
        fields = fields_of(defs.clean_answers, definition(), answers(**{qid: bad}), complete=complete)
        assert fields == {qid: [message]}


def test_long_text_default_limit():
    defn = definition()
    fields = fields_of(defs.clean_answers, defn, answers(nps=3, why_low="x" * 5001), complete=True)
    assert fields == {"why_low": ["Use at most 5000 characters."]}


def test_unknown_question_is_rejected():
    assert fields_of(defs.clean_answers, definition(), answers(bogus="x"), complete=False) == {
        "bogus": ["This survey has no such question."]
    }


def test_required_questions_on_submit_only():
    partial = {"nps": 8}
    assert defs.clean_answers(definition(), partial, complete=False) == partial
    fields = fields_of(defs.clean_answers, definition(), partial, complete=True)
    assert fields == {q: ["This question is required."] for q in ("channel", "rating", "grid")}


def test_matrix_requires_every_row():
    fields = fields_of(defs.clean_answers, definition(), answers(grid={"fast": "agree"}), complete=True)
    assert fields == {"grid": ["Answer every row."]}


def test_skip_logic_shows_follow_up_only_for_low_scores():
    defn = definition()
    # A promoter: the follow-up is hidden, so it is not required and must not be answered.
    assert "why_low" not in defs.clean_answers(defn, answers(nps=10), complete=True)
    fields = fields_of(defs.clean_answers, defn, answers(nps=10, why_low="nothing"), complete=True)
    assert fields == {"why_low": ["This question was not shown for your earlier answers; leave it unanswered."]}
    # A detractor: the follow-up is shown and required.
    assert fields_of(defs.clean_answers, defn, answers(nps=2), complete=True) == {
        "why_low": ["This question is required."]
    }
    assert defs.clean_answers(defn, answers(nps=2, why_low="slow"), complete=True)["why_low"] == "slow"


def test_hidden_question_hides_its_dependants():
    defn = definition()
    defn["pages"][1]["questions"].append(
        {"id": "detail", "type": "short_text", "text": "More?", "required": True,
         "show_if": {"question": "features", "in": ["rewards"]}}
    )
    defn["pages"][0]["questions"][3]["show_if"] = {"question": "channel", "in": ["shop"]}
    # channel=web hides features, so detail (depending on features) is hidden too.
    assert defs.clean_answers(defn, answers(features=None), complete=True)
    shown = defs.visible_questions(defn, answers(channel="shop", features=["rewards"]))
    assert shown[-1]["id"] == "detail"


@given(st.integers(min_value=0, max_value=10))
def test_nps_follow_up_visibility_matches_score(score):
    shown = {q["id"] for q in defs.visible_questions(definition(), {"nps": score})}
    assert ("why_low" in shown) == (score <= 6)


def test_check_definition_reports_per_question_problems():
    defn = definition()
    questions = defn["pages"][0]["questions"]
    questions[2]["options"] = ["only"]
    questions[1]["show_if"] = {"question": "channel", "in": ["shop"]}  # refers to a later question
    questions.append({"id": "nps", "type": "rating", "text": "dup"})
    fields = fields_of(defs.check_definition, defn)
    assert fields["channel"] == ["A choice question needs at least two options."]
    assert fields["why_low"] == ["show_if must refer to an earlier question."]
    assert fields["nps"] == ["Question ids must be unique."]


def test_check_definition_needs_questions_and_valid_conditions():
    assert "definition" in fields_of(defs.check_definition, {"pages": []})
    defn = definition()
    defn["pages"][0]["questions"][1]["show_if"] = {"question": "nps", "in": [11]}
    assert fields_of(defs.check_definition, defn) == {
        "why_low": ["show_if values must be possible answers of that question."]
    }
    defs.check_definition(definition())


def test_answer_rows_shape():
    rows = list(defs.answer_rows(definition(), answers()))
    assert {"question_id": "nps", "choice": "9", "number": 9.0} in rows
    assert {"question_id": "grid", "row_key": "fast", "choice": "agree", "number": 3.0} in rows
    # Multiple choice: a respondent marker row, then one row per option ticked.
    assert [r.get("choice") for r in rows if r["question_id"] == "features"] == [None, "points", "forums"]
