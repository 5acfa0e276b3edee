"""Survey business logic: building and publishing surveys, answering them, results and export.

No request objects here; functions only flush and the caller commits once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from community.models import TIERS, User, utcnow
from community.services import audit
from errors import Conflict, NotFound, ValidationError
from extensions import db
from messaging.webhooks import events as webhooks

from . import definition as defs
from . import results
from .models import Survey, SurveyAnswer, SurveyResponse, SurveyVersion, SurveyWithdrawal

EDITABLE_FIELDS = (
    "title", "description", "definition", "audience_tiers", "audience_roles", "opens_at", "closes_at",
    "max_responses", "audience_segment_id",
)


def naive_utc(value: datetime | None) -> datetime | None:
    """Timestamps are stored as naive UTC; clients may send any offset."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


# --------------------------------------------------------------------------- building (staff)


def get_survey(survey_id: int) -> Survey:
    survey = db.session.get(Survey, survey_id)
    if survey is None:
        raise NotFound("No such survey.")
    return survey


def _check_times(opens_at: datetime | None, closes_at: datetime | None) -> None:
    if opens_at and closes_at and closes_at <= opens_at:
        raise ValidationError(
            "The survey must close after it opens.", fields={"closes_at": ["Must be after opens_at."]}
        )


def create_survey(actor_id: int, data: dict) -> Survey:
    """A new draft.  Its definition may be incomplete until it is published."""
    survey = Survey(created_by_id=actor_id, status="draft", definition={"pages": []})
    _apply(survey, data)
    db.session.add(survey)
    db.session.flush()
    audit(actor_id, "surveys.survey.create", "survey", survey.id)
    return survey


def _apply(survey: Survey, data: dict) -> None:
    if data.get("audience_segment_id") is not None:
        from analytics.segments import require_segment

        require_segment(data["audience_segment_id"])
    for name in EDITABLE_FIELDS:
        if name in data:
            value = data[name]
            setattr(survey, name, naive_utc(value) if isinstance(value, datetime) else value)
    _check_times(survey.opens_at, survey.closes_at)


def update_survey(actor_id: int, survey_id: int, data: dict) -> Survey:
    """Edit a survey.  Editing the questions of a published survey freezes a new version at once;
    responses already given keep the version they answered."""
    survey = get_survey(survey_id)
    if survey.status == "closed":
        raise Conflict("A closed survey cannot be edited.")
    if survey.status == "published" and "definition" in data:
        defs.check_definition(data["definition"])
    if "max_responses" in data and data["max_responses"] is not None and data["max_responses"] < survey.completed_count:
        raise ValidationError(
            "The quota cannot be below the responses already received.",
            fields={"max_responses": [f"At least {survey.completed_count}."]},
        )
    _apply(survey, data)
    if survey.status == "published" and "definition" in data:
        _freeze_version(survey)
    db.session.flush()
    audit(actor_id, "surveys.survey.update", "survey", survey.id, details={"fields": sorted(data)})
    return survey


def _freeze_version(survey: Survey) -> SurveyVersion:
    """Snapshot the working copy, unless it equals the current version already."""
    current = current_version(survey)
    if current is not None and current.definition == survey.definition:
        return current
    version = SurveyVersion(survey_id=survey.id, number=survey.current_version + 1, definition=survey.definition)
    db.session.add(version)
    survey.current_version = version.number
    db.session.flush()
    return version


def current_version(survey: Survey) -> SurveyVersion | None:
    if not survey.current_version:
        return None
    return db.session.scalar(
        select(SurveyVersion).where(
            SurveyVersion.survey_id == survey.id, SurveyVersion.number == survey.current_version
        )
    )


def publish_survey(actor_id: int, survey_id: int) -> Survey:
    survey = get_survey(survey_id)
    if survey.status != "draft":
        raise Conflict(f"Only a draft can be published; this survey is {survey.status}.")
    defs.check_definition(survey.definition)
    _freeze_version(survey)
    survey.status = "published"
    survey.published_at = utcnow()
    db.session.flush()
    audit(actor_id, "surveys.survey.publish", "survey", survey.id, details={"version": survey.current_version})
    return survey


def close_survey(actor_id: int, survey_id: int) -> Survey:
    survey = get_survey(survey_id)
    if survey.status != "published":
        raise Conflict(f"Only a published survey can be closed; this survey is {survey.status}.")
    survey.status = "closed"
    survey.closed_at = utcnow()
    db.session.flush()
    audit(actor_id, "surveys.survey.close", "survey", survey.id)
    return survey


# --------------------------------------------------------------------------- answering (members)


def is_open(survey: Survey, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return (
        survey.status == "published"
        and (survey.opens_at is None or survey.opens_at <= now)
        and (survey.closes_at is None or now < survey.closes_at)
    )


def in_audience(survey: Survey, user: User) -> bool:
    if survey.audience_tiers and user.tier not in survey.audience_tiers:
        return False
    if survey.audience_segment_id is not None:
        from analytics.segments import is_member_in

        if not is_member_in(survey.audience_segment_id, user.id):
            return False
    return not (survey.audience_roles and not set(survey.audience_roles) & user.roles)


def open_surveys_for(user: User) -> list[tuple[Survey, SurveyResponse | None]]:
    """Surveys open now whose audience includes ``user``, with the member's response if any."""
    now = utcnow()
    surveys = db.session.scalars(
        select(Survey)
        .where(
            Survey.status == "published",
            (Survey.opens_at.is_(None)) | (Survey.opens_at <= now),
            (Survey.closes_at.is_(None)) | (Survey.closes_at > now),
        )
        .order_by(Survey.id.desc())
        .limit(200)
    )
    visible = [s for s in surveys if in_audience(s, user)]
    responses = {
        r.survey_id: r
        for r in db.session.scalars(
            select(SurveyResponse).where(
                SurveyResponse.member_id == user.id, SurveyResponse.survey_id.in_([s.id for s in visible])
            )
        )
    }
    return [(s, responses.get(s.id)) for s in visible]


def my_response(user: User, survey_id: int) -> SurveyResponse | None:
    return db.session.scalar(
        select(SurveyResponse).where(SurveyResponse.survey_id == survey_id, SurveyResponse.member_id == user.id)
    )


def survey_for_member(user: User, survey_id: int) -> tuple[Survey, SurveyVersion, SurveyResponse | None]:
    """The survey as this member answers it: the version of their response if they started one,
    else the current version.  Surveys outside the member's audience do not exist for them."""
    survey = db.session.get(Survey, survey_id)
    if survey is None or survey.status == "draft" or not in_audience(survey, user):
        raise NotFound("No such survey.")
    response = my_response(user, survey_id)
    version = response.version if response is not None else current_version(survey)
    return survey, version, response


def _answerable(user: User, survey_id: int) -> tuple[Survey, SurveyVersion, SurveyResponse | None]:
    survey, version, response = survey_for_member(user, survey_id)
    if not is_open(survey):
        raise Conflict("This survey is not open for responses.", code="survey_not_open")
    return survey, version, response


def save_partial(user: User, survey_id: int, client_id: str, answers: dict) -> SurveyResponse:
    """Save answers so far (well-formed, not necessarily complete); the member resumes later."""
    survey, version, response = _answerable(user, survey_id)
    if response is not None and response.status == "complete":
        raise Conflict("You have already completed this survey.", code="already_completed")
    cleaned = defs.clean_answers(version.definition, answers, complete=False)
    if response is None:
        response = SurveyResponse(
            survey_id=survey.id, version_id=version.id, member_id=user.id, client_id=client_id,
            status="partial", answers=cleaned,
        )
        try:
            # Added inside the savepoint so a lost race leaves nothing pending in the session.
            with db.session.begin_nested():
                db.session.add(response)
                db.session.flush()
        except IntegrityError:
            # Another request of this member created it first (two tabs): save into that one.
            response = my_response(user, survey_id)
            if response is None or response.status == "complete":
                raise Conflict("You have already completed this survey.", code="already_completed") from None
    response.answers = cleaned
    response.client_id = client_id
    db.session.flush()
    return response


def submit_response(user: User, survey_id: int, client_id: str, answers: dict) -> tuple[SurveyResponse, bool]:
    """Complete the member's response; returns ``(response, created)``.

    A retry with the same ``client_id`` after success returns the stored response and changes
    nothing.  The quota is taken with a guarded UPDATE on ``completed_count``, so concurrent
    submissions can never push it past ``max_responses``.
    """
    survey, version, response = survey_for_member(user, survey_id)
    if response is not None and response.status == "complete":
        if response.client_id == client_id:
            return response, False
        raise Conflict("You have already completed this survey.", code="already_completed")
    if not is_open(survey):
        raise Conflict("This survey is not open for responses.", code="survey_not_open")
    cleaned = defs.clean_answers(version.definition, answers, complete=True)

    now = utcnow()
    if response is None:
        response = SurveyResponse(
            survey_id=survey.id, version_id=version.id, member_id=user.id, client_id=client_id, status="partial",
            answers={},
        )
        try:
            # Added inside the savepoint so a lost race leaves nothing pending in the session.
            with db.session.begin_nested():
                db.session.add(response)
                db.session.flush()
        except IntegrityError:
            existing = my_response(user, survey_id)
            if existing is not None and existing.status == "complete" and existing.client_id == client_id:
                return existing, False
            raise Conflict("Your response is being saved by another request; try again.") from None
    # Claim the partial -> complete transition; a concurrent submit of the same member loses here.
    claimed = db.session.execute(
        update(SurveyResponse)
        .where(SurveyResponse.id == response.id, SurveyResponse.status == "partial")
        .values(status="complete", completed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise Conflict("You have already completed this survey.", code="already_completed")
    taken = db.session.execute(
        update(Survey)
        .where(
            Survey.id == survey.id,
            (Survey.max_responses.is_(None)) | (Survey.completed_count < Survey.max_responses),
        )
        .values(completed_count=Survey.completed_count + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        raise Conflict("This survey has received all the responses it needs.", code="survey_full")

    db.session.refresh(response)
    nps_id = defs.nps_question_id(version.definition)
    response.answers = cleaned
    response.client_id = client_id
    response.member_tier = user.tier
    response.nps_score = cleaned.get(nps_id) if nps_id else None
    answer_rows = list(defs.answer_rows(version.definition, cleaned))
    db.session.add_all(
        SurveyAnswer(survey_id=survey.id, response_id=response.id, tier=user.tier, **row) for row in answer_rows
    )
    results.count_response(survey.id, user.tier, answer_rows)
    db.session.flush()
    _award_completion(response)
    webhooks.publish("survey.response_completed", {"survey_id": survey.id, "response_id": response.id,
                     "member_id": user.id, "completed_at": now, "nps_score": response.nps_score})
    return response, True


def _award_completion(response: SurveyResponse) -> None:
    """Completion earns points once: the ledger key is the response's."""
    from points.services import record_interaction

    record_interaction(
        response.member_id,
        "survey_completed",
        key=f"survey_response:{response.id}",
        source_type="survey_response",
        source_id=response.id,
        value=response.nps_score,
        occurred_at=response.completed_at,
    )


def withdraw_response(user: User, survey_id: int) -> SurveyWithdrawal:
    """The member withdraws their completed response while the survey is open, in one transaction:

    * the response and its answer rows are deleted, so results and the CSV export no longer
      count it and the member may answer again (one-response-per-member holds as before);
    * its quota place is freed (guarded decrement of ``completed_count``);
    * its completion award is reversed with ``points.ledger.reverse`` under the key
      ``survey:<id>:response:<rid>:withdraw``, in full by the ledger's clawback policy: points
      already spent become ``owed`` (redemptions wait, new points repay it), so withdrawing and
      answering again never yields free points; ``lifetime_earned`` drops by the full award;
    * a ``SurveyWithdrawal`` row records it.  Once per member and survey: the answer given
      after a withdrawal is final (409 ``already_withdrawn``).

    The ``survey_completed`` interaction stays in the member's history (interactions are
    append-only) and keeps counting for tiers; answering again records a second one, which is
    why a member may withdraw only once per survey.

    No audit entry and no notification: member actions that move their own points (redemption
    requests and cancellations, focus-group cancellations) record neither; the ledger entry
    (actor: the member) and the withdrawal row are the record.

    Concurrency: the guarded ``DELETE … WHERE status = 'complete'`` is the claim.  Of two
    concurrent withdrawals exactly one deletes the row (PostgreSQL: the other waits on the row
    lock and then finds nothing; SQLite: writes are serialised), the other gets 409 and reverses
    nothing.
    """
    survey, _version, response = survey_for_member(user, survey_id)
    if not is_open(survey):
        raise Conflict("This survey is closed; responses can no longer be withdrawn.", code="survey_not_open")
    withdrawn = db.session.scalar(
        select(SurveyWithdrawal.id).where(SurveyWithdrawal.survey_id == survey.id,
                                          SurveyWithdrawal.member_id == user.id)
    )
    if withdrawn is not None:
        raise Conflict("You have already withdrawn a response to this survey.", code="already_withdrawn")
    if response is None:
        raise NotFound("You have not answered this survey.")
    if response.status != "complete":
        raise Conflict("Only a submitted response can be withdrawn.", code="not_completed")

    response_id, completed_at = response.id, response.completed_at
    counted = results.counted_rows(response_id)  # before the delete: it cascades to the answers
    claimed = db.session.execute(
        delete(SurveyResponse)
        .where(SurveyResponse.id == response_id, SurveyResponse.status == "complete")
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        raise Conflict("You have already withdrawn a response to this survey.", code="already_withdrawn")
    db.session.expunge(response)
    # The foreign key cascades too; explicit so it holds whatever the connection's settings.
    db.session.execute(delete(SurveyAnswer).where(SurveyAnswer.response_id == response_id))
    results.uncount_response(survey.id, counted)
    db.session.execute(
        update(Survey)
        .where(Survey.id == survey.id, Survey.completed_count > 0)
        .values(completed_count=Survey.completed_count - 1)
        .execution_options(synchronize_session=False)
    )
    points = _reverse_completion_award(survey.id, response_id, user.id)
    withdrawal = SurveyWithdrawal(
        survey_id=survey.id, member_id=user.id, response_id=response_id, completed_at=completed_at,
        points_reversed=points,
    )
    db.session.add(withdrawal)
    db.session.flush()
    db.session.expire(survey, ["completed_count"])
    return withdrawal


def _reverse_completion_award(survey_id: int, response_id: int, member_id: int) -> int:
    """Reverse the response's completion award (``_award_completion``: source ``survey_response``);
    returns the points reversed.  An award staff already reversed is left alone."""
    from points import ledger
    from points.models import JournalEntry

    awards = db.session.scalars(
        select(JournalEntry)
        .where(JournalEntry.kind == "award", JournalEntry.source_type == "survey_response",
               JournalEntry.source_id == response_id)
        .order_by(JournalEntry.id)
    ).all()
    key = f"survey:{survey_id}:response:{response_id}:withdraw"
    reversed_points = 0
    for n, award in enumerate(awards):
        if db.session.scalar(select(JournalEntry.id).where(JournalEntry.related_id == award.id)) is not None:
            continue
        ledger.reverse(award.id, key=key if n == 0 else f"{key}:{award.id}", reason="Survey response withdrawn",
                       actor_id=member_id)
        reversed_points += award.amount
    return reversed_points


def delete_response(actor_id: int, survey_id: int, response_id: int, reason: str) -> None:
    """Remove a response (e.g. fraud, a member's request): frees its quota place, reverses its points."""
    response = db.session.get(SurveyResponse, response_id)
    if response is None or response.survey_id != survey_id:
        raise NotFound("No such response.")
    if response.status == "complete":
        from points.services import reverse_source

        reverse_source("survey_response", response.id, reason=reason or "survey response deleted", actor_id=actor_id)
        db.session.execute(
            update(Survey)
            .where(Survey.id == survey_id, Survey.completed_count > 0)
            .values(completed_count=Survey.completed_count - 1)
            .execution_options(synchronize_session=False)
        )
    results.uncount_response(survey_id, results.counted_rows(response.id))
    db.session.execute(delete(SurveyAnswer).where(SurveyAnswer.response_id == response.id))
    db.session.delete(response)
    audit(actor_id, "surveys.response.delete", "survey_response", response_id, reason=reason,
          details={"survey_id": survey_id, "member_id": response.member_id})
    db.session.flush()


# --------------------------------------------------------------------------- results and export


def _all_questions(survey: Survey) -> list[dict]:
    """Questions of every version, newest wording first (ids are stable across versions)."""
    versions = db.session.scalars(
        select(SurveyVersion).where(SurveyVersion.survey_id == survey.id).order_by(SurveyVersion.number.desc())
    )
    seen: dict[str, dict] = {}
    for version in versions:
        for question in defs.iter_questions(version.definition):
            seen.setdefault(question["id"], question)
    return list(seen.values())


def _pct(count: int, base: int) -> float:
    return round(100.0 * count / base, 1) if base else 0.0


def _option(value: str, by_choice: dict, answered: int) -> dict:
    count = by_choice.get(value, 0)
    return {"value": value, "count": count, "percent": _pct(count, answered)}


def nps_summary(counts: dict[int, int]) -> dict:
    """NPS from counts per score (0-10); skipped answers are simply absent."""
    answered = sum(counts.values())
    promoters = sum(n for score, n in counts.items() if score >= 9)
    detractors = sum(n for score, n in counts.items() if score <= 6)
    passives = answered - promoters - detractors
    return {
        "answered": answered,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "score": round(100.0 * (promoters - detractors) / answered, 1) if answered else None,
    }


def compute_results(survey_id: int, scan: bool = False) -> dict:
    """Per-question counts and percentages, averages, NPS and a breakdown by tier.

    Read from the tallies kept as answers arrive (``surveys.results``): one small query
    whatever the number of responses; Python folds its rows (one per tier x question x option).
    ``scan=True`` computes the same from the answer rows (what the tallies must equal).
    """
    survey = get_survey(survey_id)
    questions = _all_questions(survey)
    grouped, per_tier = results.tallies(survey.id, scan=scan)

    # (question, row) -> choice -> count; (question, row) -> [count, sum]; per tier likewise.
    counts: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    sums: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    tier_sums: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    for tier, qid, row, choice, n, total in grouped:
        counts[(qid, row)][choice] += n
        if total is not None:
            sums[(qid, row)][0] += n
            sums[(qid, row)][1] += float(total)
            tier_sums[(tier, qid)][0] += n
            tier_sums[(tier, qid)][1] += float(total)

    out_questions = []
    for q in questions:
        qid, qtype = q["id"], q["type"]
        item: dict = {"id": qid, "type": qtype, "text": q.get("text", "")}
        if qtype == "matrix":
            rows = []
            for row in q["rows"]:
                by_choice = counts.get((qid, row), {})
                answered = sum(by_choice.values())
                n, total = sums.get((qid, row), (0, 0.0))
                rows.append({
                    "row": row,
                    "answered": answered,
                    "average": round(total / n, 2) if n else None,
                    "options": [_option(label, by_choice, answered) for label in q["scale"]],
                })
            item["answered"] = max((r["answered"] for r in rows), default=0)
            item["rows"] = rows
        else:
            by_choice = counts.get((qid, None), {})
            if qtype in defs.TEXT_LIMITS:
                item["answered"] = by_choice.get(None, 0)
            else:
                # Multiple choice: the respondents (marker rows), not the options ticked.
                answered = by_choice.get(None, 0) if qtype == "multiple_choice" else sum(by_choice.values())
                values = (
                    q["options"] if qtype in defs.CHOICE_TYPES
                    else [str(v) for v in range(defs.NUMERIC_RANGES[qtype][0], defs.NUMERIC_RANGES[qtype][1] + 1)]
                )
                item["answered"] = answered
                item["options"] = [_option(v, by_choice, answered) for v in values]
            if qtype in defs.NUMERIC_RANGES:
                n, total = sums.get((qid, None), (0, 0.0))
                item["average"] = round(total / n, 2) if n else None
            if qtype == "nps":
                item["nps"] = nps_summary({int(c): k for c, k in by_choice.items()})
        out_questions.append(item)

    numeric = [q["id"] for q in questions if q["type"] in defs.NUMERIC_RANGES]
    nps_ids = [q["id"] for q in questions if q["type"] == "nps"]
    tiers = []
    for tier in TIERS:
        averages = {}
        for qid in numeric:
            n, total = tier_sums.get((tier, qid), (0, 0.0))
            averages[qid] = round(total / n, 2) if n else None
        entry = {"tier": tier, "responses": per_tier.get(tier, 0), "averages": averages}
        if nps_ids:
            scores: dict[int, int] = defaultdict(int)
            for t, qid, _row, choice, n, _total in grouped:
                if t == tier and qid == nps_ids[0]:
                    scores[int(choice)] += n
            entry["nps"] = nps_summary(scores)
        tiers.append(entry)

    return {
        "survey_id": survey.id,
        "responses": sum(per_tier.values()),
        "questions": out_questions,
        "tiers": tiers,
    }


def export_columns(survey_id: int) -> tuple[list[str], list[tuple[str, str | None]]]:
    """CSV header and, per answer column, its (question id, matrix row or None)."""
    survey = get_survey(survey_id)
    columns: list[tuple[str, str | None]] = []
    for q in _all_questions(survey):
        if q["type"] == "matrix":
            columns.extend((q["id"], row) for row in q["rows"])
        else:
            columns.append((q["id"], None))
    header = ["response_id", "member_id", "tier", "version", "completed_at"]
    header += [qid if row is None else f"{qid}: {row}" for qid, row in columns]
    return header, columns


def export_rows(survey_id: int, columns: list[tuple[str, str | None]], batch: int = 1000) -> Iterator[list]:
    """Completed responses one CSV row at a time; ``yield_per`` keeps only a batch in memory."""
    R, V = SurveyResponse, SurveyVersion
    query = (
        select(R.id, R.member_id, R.member_tier, V.number, R.completed_at, R.answers)
        .join(V, V.id == R.version_id)
        .where(R.survey_id == survey_id, R.status == "complete")
        .order_by(R.id)
        .execution_options(yield_per=batch)
    )
    for rid, member_id, tier, number, completed_at, answers in db.session.execute(query):
        row = [rid, member_id, tier, number, completed_at.isoformat() if completed_at else ""]
        for qid, matrix_row in columns:
            value = answers.get(qid)
            if matrix_row is not None:
                value = value.get(matrix_row) if isinstance(value, dict) else None
            elif isinstance(value, list):
                value = "; ".join(value)
            row.append(value)
        yield row
