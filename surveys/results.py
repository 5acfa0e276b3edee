"""Survey results from tallies maintained as answers arrive, exact at every commit.

The results of a survey are counts and sums per (tier, question, matrix row, choice) over its
``survey_answers`` rows, plus the number of completed responses per tier.  Scanning the answers
on every request costs time in proportion to the responses (0.5-0.9 s for 100,000), so
``survey_result_counts`` keeps those aggregates instead, changed in the same transaction as the
answer rows themselves:

* ``count_response`` adds a completed response's answer rows (``submit_response``);
* ``uncount_response`` takes a response's rows away again (withdrawal, staff deletion), read
  before the response is deleted (the foreign key cascades the answers with it);
* every change is one ``INSERT … ON CONFLICT DO UPDATE`` of signed deltas, its rows in key order
  so concurrent submissions on PostgreSQL queue on the same rows in the same order (no
  deadlocks) and never lose an increment;
* ``rebuild`` recomputes them from the answer rows (the migration's backfill, bulk loads);
  ``tallies(survey_id, scan=True)`` is that from-scratch computation, which the maintained
  counts must always equal (``verify``; tested with randomised submissions and withdrawals).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db

from .models import SurveyAnswer, SurveyResponse, SurveyResultCount

RESPONSES = ""  # the question_id of the per-tier response counts


def _key(value: str | None) -> str:
    return "" if value is None else "=" + value


def _unkey(value: str) -> str | None:
    return None if value == "" else value[1:]


def _apply(survey_id: int, deltas: dict[tuple, list]) -> None:
    """Add signed ``[answers, number_count, number_sum]`` deltas, keyed by (tier, question, row, choice)."""
    if not deltas:
        return
    T = SurveyResultCount
    rows = [
        {"survey_id": survey_id, "tier": tier, "question_id": qid, "row_key": row, "choice": choice,
         "answers": n, "number_count": k, "number_sum": total}
        for (tier, qid, row, choice), (n, k, total) in sorted(deltas.items())
    ]
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(T).values(rows)
    db.session.execute(stmt.on_conflict_do_update(
        index_elements=[T.survey_id, T.tier, T.question_id, T.row_key, T.choice],
        set_={
            "answers": T.answers + stmt.excluded.answers,
            "number_count": T.number_count + stmt.excluded.number_count,
            "number_sum": T.number_sum + stmt.excluded.number_sum,
        },
    ))


def _deltas(response_tier: str | None, rows, sign: int) -> dict[tuple, list]:
    """Signed deltas of one response: its tier's response count and each of its answer rows
    ``(tier, question, row, choice, number)``."""
    deltas: dict[tuple, list] = defaultdict(lambda: [0, 0, 0.0])
    if response_tier is not None:
        deltas[(response_tier, RESPONSES, "", "")][0] += sign
    for tier, qid, row, choice, number in rows:
        d = deltas[(tier, qid, _key(row), _key(choice))]
        d[0] += sign
        if number is not None:
            d[1] += sign
            d[2] += sign * float(number)
    return deltas


def count_response(survey_id: int, tier: str, answer_rows: list[dict]) -> None:
    """Count a response completed just now by a member of ``tier``: ``answer_rows`` are its
    ``SurveyAnswer`` values (all of that tier)."""
    rows = [(tier, r["question_id"], r.get("row_key"), r.get("choice"), r.get("number")) for r in answer_rows]
    _apply(survey_id, _deltas(tier, rows, +1))


def counted_rows(response_id: int) -> tuple[str | None, list[tuple]]:
    """What counting a completed response added, read back from the database: ``(tier,
    answer rows)``, to hand to ``uncount_response`` once the response is deleted."""
    tier = db.session.scalar(select(SurveyResponse.member_tier).where(
        SurveyResponse.id == response_id, SurveyResponse.status == "complete"))
    A = SurveyAnswer
    rows = db.session.execute(
        select(A.tier, A.question_id, A.row_key, A.choice, A.number).where(A.response_id == response_id)
    ).all()
    return tier, [tuple(r) for r in rows]


def uncount_response(survey_id: int, counted: tuple[str | None, list[tuple]]) -> None:
    tier, rows = counted
    _apply(survey_id, _deltas(tier, rows, -1))


def tallies(survey_id: int, scan: bool = False) -> tuple[list[tuple], dict[str, int]]:
    """``(grouped, per_tier)``: rows ``(tier, question, row, choice, count, sum or None)`` and the
    completed responses per tier.  ``scan=True`` computes both from the answer rows."""
    if scan:
        A = SurveyAnswer
        grouped = [tuple(r) for r in db.session.execute(
            select(A.tier, A.question_id, A.row_key, A.choice, func.count(), func.sum(A.number))
            .where(A.survey_id == survey_id)
            .group_by(A.tier, A.question_id, A.row_key, A.choice)
        )]
        per_tier = dict(db.session.execute(
            select(SurveyResponse.member_tier, func.count())
            .where(SurveyResponse.survey_id == survey_id, SurveyResponse.status == "complete")
            .group_by(SurveyResponse.member_tier)
        ).all())
        return grouped, per_tier
    T = SurveyResultCount
    grouped, per_tier = [], {}
    for tier, qid, row, choice, n, k, total in db.session.execute(
        select(T.tier, T.question_id, T.row_key, T.choice, T.answers, T.number_count, T.number_sum)
        .where(T.survey_id == survey_id, T.answers > 0)
    ):
        if qid == RESPONSES:
            per_tier[tier] = n
        else:
            grouped.append((tier, qid, _unkey(row), _unkey(choice), n, total if k else None))
    return grouped, per_tier


def rebuild(survey_id: int | None = None) -> None:
    """Recompute the tallies of one survey (or all) from the answer rows."""
    T, A, R = SurveyResultCount, SurveyAnswer, SurveyResponse
    where_t = [T.survey_id == survey_id] if survey_id is not None else []
    db.session.execute(delete(T).where(*where_t))

    def key(column):
        return func.coalesce(literal("=") + column, "")

    db.session.execute(insert(T).from_select(
        ["survey_id", "tier", "question_id", "row_key", "choice", "answers", "number_count", "number_sum"],
        select(A.survey_id, A.tier, A.question_id, key(A.row_key), key(A.choice), func.count(),
               func.count(A.number), func.coalesce(func.sum(A.number), 0.0))
        .where(*([A.survey_id == survey_id] if survey_id is not None else []))
        .group_by(A.survey_id, A.tier, A.question_id, A.row_key, A.choice),
    ))
    db.session.execute(insert(T).from_select(
        ["survey_id", "tier", "question_id", "row_key", "choice", "answers", "number_count", "number_sum"],
        select(R.survey_id, R.member_tier, literal(RESPONSES), literal(""), literal(""), func.count(),
               literal(0), literal(0.0))
        .where(R.status == "complete", R.member_tier.is_not(None),
               *([R.survey_id == survey_id] if survey_id is not None else []))
        .group_by(R.survey_id, R.member_tier),
    ))


def verify(survey_id: int) -> list[str]:
    """Differences between the maintained tallies and a scan of the answers (empty: exact)."""
    kept, kept_tiers = tallies(survey_id)
    scanned, scanned_tiers = tallies(survey_id, scan=True)
    problems = []
    if sorted(kept, key=repr) != sorted(scanned, key=repr):
        problems.append(f"answer tallies differ: kept {sorted(set(kept) ^ set(scanned), key=repr)[:10]}")
    if kept_tiers != {t: n for t, n in scanned_tiers.items() if t is not None}:
        problems.append(f"responses per tier differ: kept {kept_tiers}, scanned {scanned_tiers}")
    return problems
