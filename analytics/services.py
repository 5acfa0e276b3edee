"""Analytics runs (recompute on demand and daily), review snapshots and the strategic flag.

Functions only flush; the request handler or job commits once.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from community.models import User, utcnow
from community.services import audit
from errors import Conflict, NotFound
from extensions import db
from jobs import enqueue_after_commit

from . import experiments, kpis, scores, segments
from .models import AnalyticsRun, MemberFlag, MemberScore, ReviewSnapshot, RfmClassChange

log = logging.getLogger(__name__)

RUN_KINDS = ("scores", "segments", "kpis", "assign")
# A queued or running run older than this is considered dead (its worker was killed).
STALE_AFTER = timedelta(hours=2)


def start_run(kind: str, actor_id: int | None = None) -> tuple[AnalyticsRun, bool]:
    """Queue a run of ``kind`` unless one is already queued or running; ``(run, created)``."""
    pending = db.session.scalar(
        select(AnalyticsRun).where(AnalyticsRun.kind == kind, AnalyticsRun.status.in_(("queued", "running")),
                                   AnalyticsRun.created_at > utcnow() - STALE_AFTER)
        .order_by(AnalyticsRun.id.desc()).limit(1))
    if pending is not None:
        return pending, False
    run = AnalyticsRun(kind=kind, status="queued", requested_by_id=actor_id, created_at=utcnow(), stats={})
    db.session.add(run)
    db.session.flush()
    from .jobs import run_analytics

    enqueue_after_commit(run_analytics, run.id)
    return run, True


def execute_run(run_id: int) -> AnalyticsRun | None:
    """Do the work of a run (the job calls this and commits).  Scores chain into segments, and
    segments into experiment assignment, so a daily refresh leaves all three current."""
    run = db.session.get(AnalyticsRun, run_id, with_for_update=True)
    if run is None or run.status == "done":
        return run
    run.status = "running"
    run.started_at = utcnow()
    if run.kind == "scores":
        stats = scores.recompute(run.id)
        start_run("segments", run.requested_by_id)
    elif run.kind == "segments":
        stats = {"segments": segments.materialise_all(), "assigned": experiments.assign_all_running(),
                 "values_queued": experiments.queue_refresh_running()}
    elif run.kind == "assign":
        stats = {"assigned": experiments.assign_all_running()}
    else:
        stats = kpis.build_pending()
    run.stats = stats
    run.status = "done"
    run.finished_at = utcnow()
    db.session.flush()
    return run


def fail_run(run_id: int, error: str) -> None:
    run = db.session.get(AnalyticsRun, run_id)
    if run is not None:
        run.status = "failed"
        run.error = error[:2000]
        run.finished_at = utcnow()


def get_run(run_id: int) -> AnalyticsRun:
    run = db.session.get(AnalyticsRun, run_id)
    if run is None:
        raise NotFound("No such run.")
    return run


# --------------------------------------------------------------------------- members


def member_profile(member_id: int) -> dict:
    if db.session.get(User, member_id) is None:
        raise NotFound("No such member.")
    score = db.session.get(MemberScore, member_id)
    flag = db.session.get(MemberFlag, member_id)
    history = db.session.scalars(select(RfmClassChange).where(RfmClassChange.member_id == member_id)
                                 .order_by(RfmClassChange.changed_at.desc(), RfmClassChange.id.desc()).limit(50))
    out = {"member_id": member_id, "score": None, "strategic": bool(flag and flag.strategic),
           "strategic_note": flag.note if flag else "", "tags": segments.member_tags(member_id),
           "class_history": [{"from_class": h.from_class, "to_class": h.to_class, "changed_at": h.changed_at}
                             for h in history]}
    if score is not None:
        out["score"] = {
            "computed_at": score.computed_at, "rfm": {
                "recency_days": score.recency_days, "frequency": score.frequency, "monetary": score.monetary,
                "r": score.r_score, "f": score.f_score, "m": score.m_score, "class": score.rfm_class},
            "value": {"score": score.value_score, "historical": score.historical, "potential": score.potential,
                      "strategic": score.strategic},
            "health": {"index": score.health, "contributions": {
                "recency": score.health_recency, "frequency_trend": score.health_frequency_trend,
                "community": score.health_community, "survey": score.health_survey, "nps": score.health_nps,
                "flags": score.health_flags}},
            "last_activity_at": score.last_activity_at, "latest_nps": score.latest_nps,
            "open_flags": score.open_flags,
        }
    return out


def set_strategic(actor_id: int, member_id: int, strategic: bool, note: str) -> dict:
    if db.session.get(User, member_id) is None:
        raise NotFound("No such member.")
    flag = db.session.get(MemberFlag, member_id, with_for_update=True)
    if flag is None:
        flag = MemberFlag(member_id=member_id)
        db.session.add(flag)
    flag.strategic, flag.note, flag.set_by_id, flag.set_at = strategic, note, actor_id, utcnow()
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise Conflict("The flag was changed concurrently; try again.", code="concurrent_update") from exc
    audit(actor_id, "analytics.member.set_strategic", "member", member_id, reason=note,
          details={"strategic": strategic})
    return member_profile(member_id)


# --------------------------------------------------------------------------- reviews


def create_review(actor_id: int, period: str, start: date, note: str = "") -> ReviewSnapshot:
    """Store the review of one period: later data corrections never rewrite what was reported."""
    start = kpis.period_start(start, period)
    end = kpis.period_end(start, period) - timedelta(days=1)
    if db.session.scalar(select(ReviewSnapshot.id).where(ReviewSnapshot.period == period,
                                                          ReviewSnapshot.period_start == start)) is not None:
        raise Conflict("This period's review is already stored.", code="review_exists",
                       fields={"start": [start.isoformat()]})
    review = ReviewSnapshot(period=period, period_start=start, period_end=end,
                            data=kpis.period_summary(start, period), note=note, created_by_id=actor_id,
                            created_at=utcnow())
    db.session.add(review)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise Conflict("This period's review is already stored.", code="review_exists") from exc
    audit(actor_id, "analytics.review.create", "review", review.id,
          details={"period": period, "start": start.isoformat()})
    return review


def get_review(review_id: int) -> ReviewSnapshot:
    review = db.session.get(ReviewSnapshot, review_id)
    if review is None:
        raise NotFound("No such review.")
    return review
