"""The journey engine: enrol members, and advance them through their version's steps.

Exactly once.  Every step a member passes is a ``journey_step_executions`` row with a UNIQUE
key (version, member, occurrence, step).  ``advance`` inserts that row *first* (``ON CONFLICT DO
NOTHING``) and performs the step's effect (a notification, a ledger award, a tag, a task) only
when the insert created it, in the same transaction that moves the enrolment on.  So:

* a job that runs twice, or two workers given the same enrolment, perform each step once: the
  second insert finds the row (on PostgreSQL it waits for the first transaction and then finds
  it) and the step's recorded outcome is reused (a condition keeps its branch);
* a worker that dies mid-step rolls back the row with the effect; the sweeper (``due_ids``) gives
  the enrolment to another job after ``JOURNEYS_LEASE_SECONDS``.

The enrolment row is also locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) so concurrent jobs do
not queue behind each other.

Sends go through ``community.services.notify`` → messaging, so preferences, unsubscribes, the
weekly cap and quiet hours are decided by messaging when the email is delivered; what the journey
itself decides is recorded on the execution (``skipped`` with ``holdout``, ``global_holdout``,
``unsubscribed``, ``own_journey``; ``paused`` journeys are not advanced at all).  Points go
through ``points.ledger.award`` with the execution's key as the idempotency key, never to the
journey's authors (no one awards points to themselves).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from community.models import utcnow
from extensions import db

from .models import Enrolment, Journey, JourneyTask, JourneyTemplate, JourneyVersion, StepExecution

log = logging.getLogger(__name__)

FAULT_ENV = "KINSHIP_JOURNEYS_FAULT"
CHUNK = 100
MAX_HOPS = 60  # more than MAX_STEPS: a version is acyclic, so this only guards against bugs
RETRY_AFTER = timedelta(minutes=10)


def insert_ignore(table):
    return (pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert)(table)


def _lease() -> timedelta:
    return timedelta(seconds=current_app.config.get("JOURNEYS_LEASE_SECONDS", 300))


# --------------------------------------------------------------------------- enrolling


def schedule(ids: list[int]) -> None:
    """Advance these enrolments once the surrounding transaction commits."""
    if not ids:
        return
    from jobs import enqueue_after_commit

    from . import jobs

    db.session.execute(update(Enrolment).where(Enrolment.id.in_(ids)).values(enqueued_at=utcnow())
                       .execution_options(synchronize_session=False))
    for start in range(0, len(ids), jobs.BATCH):
        enqueue_after_commit(jobs.advance_enrolments, ids[start:start + jobs.BATCH])


def enrol(journey: Journey, member_id: int, occurrence: str, now: datetime | None = None) -> int | None:
    """Enter one member (the caller checked the audience and the entry rule); None if already in."""
    now = now or utcnow()
    stmt = insert_ignore(Enrolment.__table__).values(
        journey_id=journey.id, version_id=journey.current_version_id, member_id=member_id, occurrence=occurrence,
        state="active", next_run_at=now, entered_at=now,
    ).on_conflict_do_nothing().returning(Enrolment.__table__.c.id)
    return db.session.execute(stmt).scalar()


# --------------------------------------------------------------------------- advancing


def due_ids(limit: int, now: datetime | None = None) -> list[int]:
    """Due enrolments of active journeys that no job was given within the lease (oldest first).

    Uses the partial index on ``next_run_at``; marks them enqueued in the same statement's
    transaction so the next sweep does not hand them out again.
    """
    now = now or utcnow()
    recently = now - _lease()
    ids = list(db.session.scalars(
        select(Enrolment.id).join(Journey, Journey.id == Enrolment.journey_id)
        .where(Enrolment.state == "active", Enrolment.next_run_at <= now, Journey.status == "active",
               or_(Enrolment.enqueued_at.is_(None), Enrolment.enqueued_at < recently))
        .order_by(Enrolment.next_run_at).limit(limit)
    ))
    if ids:
        db.session.execute(update(Enrolment).where(Enrolment.id.in_(ids)).values(enqueued_at=now)
                           .execution_options(synchronize_session=False))
    return ids


class _Context:
    """What a chunk needs, loaded once: journeys, versions, templates."""

    def __init__(self, rows: list[Enrolment]):
        jids = {r.journey_id for r in rows}
        vids = {r.version_id for r in rows}
        self.journeys = {j.id: j for j in db.session.scalars(select(Journey).where(Journey.id.in_(jids)))}
        self.versions = {v.id: v for v in db.session.scalars(select(JourneyVersion).where(JourneyVersion.id.in_(vids)))}
        self.templates: dict[str, JourneyTemplate | None] = {}
        self.members = [r.member_id for r in rows]
        self._reachable: dict[str, set[int]] = {}
        self._holdout: bool | None = None

    def reachable(self, member_id: int, category: str) -> bool:
        """Could a message in ``category`` reach the member on any channel (email or in-app)?"""
        if category not in self._reachable:
            from messaging.preferences import reachable

            self._reachable[category] = reachable(self.members, category)
        return member_id in self._reachable[category]

    def in_holdout(self, member_id: int) -> bool:
        """In the programme-wide control group?  (Whether one runs is asked once per chunk.)"""
        from analytics.experiments import holdout_running, in_holdout

        if self._holdout is None:
            self._holdout = holdout_running()
        return self._holdout and in_holdout(member_id)

    def template(self, key: str) -> JourneyTemplate | None:
        if key not in self.templates:
            self.templates[key] = db.session.scalar(select(JourneyTemplate).where(JourneyTemplate.key == key))
        return self.templates[key]


def advance(ids: list[int], now: datetime | None = None) -> dict:
    """Advance each due enrolment as far as it can go now; returns counts.  Idempotent.

    Works in chunks of ``CHUNK`` enrolments, one transaction each; a chunk that fails is retried
    one enrolment at a time, and an enrolment that fails alone is retried after ``RETRY_AFTER``.
    """
    counts = {"advanced": 0, "skipped": 0, "failed": 0}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        try:
            counts["advanced"] += _advance_chunk(chunk, now)
            db.session.commit()
            continue
        except Exception:
            db.session.rollback()
            log.warning("journey chunk failed; retrying one by one", exc_info=True)
        for one in chunk:
            try:
                counts["advanced"] += _advance_chunk([one], now)
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("journey enrolment %s failed; retried after %s", one, RETRY_AFTER)
                db.session.execute(update(Enrolment).where(Enrolment.id == one).values(
                    next_run_at=(now or utcnow()) + RETRY_AFTER, enqueued_at=None))
                db.session.commit()
                counts["failed"] += 1
    counts["skipped"] = len(ids) - counts["advanced"] - counts["failed"]
    return counts


def _advance_chunk(ids: list[int], now: datetime | None) -> int:
    now = now or utcnow()
    rows = list(db.session.scalars(
        select(Enrolment).where(Enrolment.id.in_(ids), Enrolment.state == "active", Enrolment.next_run_at <= now)
        .order_by(Enrolment.id).with_for_update(skip_locked=True).execution_options(populate_existing=True)
    ))
    if not rows:
        return 0
    ctx = _Context(rows)
    done = 0
    for enrolment in rows:
        journey = ctx.journeys[enrolment.journey_id]
        if journey.status != "active":
            # Paused (or archived) since the job was enqueued: no step, no send.  Resuming
            # makes the sweeper hand it out again.
            enrolment.enqueued_at = None
            continue
        _run(enrolment, journey, ctx.versions[enrolment.version_id], ctx, now)
        done += 1
    db.session.flush()
    _injected_fault()
    return done


def _injected_fault() -> None:
    """``sleep_before_commit:<s>`` (tests only): stall after the steps' effects, before the commit."""
    fault = os.environ.get(FAULT_ENV)
    if fault and current_app.testing and fault.startswith("sleep_before_commit:"):
        import time as _time

        _time.sleep(float(fault.split(":", 1)[1]))


def _finish(enrolment: Enrolment, state: str, now: datetime) -> None:
    enrolment.state, enrolment.finished_at, enrolment.next_run_at = state, now, None


def _claim_step(enrolment: Enrolment, step_id: str, now: datetime) -> tuple[int | None, str | None]:
    """Insert the step's execution row; (its id, None) if new, (None, recorded reason) if it ran."""
    table = StepExecution.__table__
    new_id = db.session.execute(
        insert_ignore(table).values(
            journey_id=enrolment.journey_id, version_id=enrolment.version_id, member_id=enrolment.member_id,
            occurrence=enrolment.occurrence, step_id=step_id, enrolment_id=enrolment.id, outcome="done",
            created_at=now,
        ).on_conflict_do_nothing().returning(table.c.id)
    ).scalar()
    if new_id is not None:
        return new_id, None
    reason = db.session.scalar(select(table.c.reason).where(
        table.c.version_id == enrolment.version_id, table.c.member_id == enrolment.member_id,
        table.c.occurrence == enrolment.occurrence, table.c.step_id == step_id))
    return None, reason


def _record(execution_id: int, outcome: str, reason: str | None = None, **values) -> None:
    if outcome == "done" and reason is None and not values:
        return  # the row was inserted as done
    db.session.execute(update(StepExecution).where(StepExecution.id == execution_id)
                       .values(outcome=outcome, reason=reason, **values))


def _run(enrolment: Enrolment, journey: Journey, version: JourneyVersion, ctx: _Context, now: datetime) -> None:
    if enrolment.current_step is None:
        enrolment.current_step = version.steps[0]["id"]
    for _ in range(MAX_HOPS):
        step = version.step(enrolment.current_step)
        if step is None:
            _finish(enrolment, "done", now)
            return
        kind = step["type"]
        nxt = step.get("next")
        if kind == "wait":
            if enrolment.wait_until is None:
                enrolment.wait_until = wait_until(step, enrolment.member_id, now)
            if enrolment.wait_until > now:
                enrolment.next_run_at = enrolment.wait_until
                enrolment.enqueued_at = None
                return
            _claim_step(enrolment, step["id"], now)
            enrolment.wait_until = None
        elif kind == "exit":
            _claim_step(enrolment, step["id"], now)
            _finish(enrolment, "exited", now)
            return
        elif kind == "condition":
            exec_id, recorded = _claim_step(enrolment, step["id"], now)
            if exec_id is not None:
                holds = condition_holds(step, enrolment)
                recorded = "condition_true" if holds else "condition_false"
                _record(exec_id, "done", recorded)
            nxt = step.get("then") if recorded == "condition_true" else step.get("else")
        else:  # action
            exec_id, _ = _claim_step(enrolment, step["id"], now)
            if exec_id is not None:
                if enrolment.arm is None:
                    enrolment.arm = _arm(journey, enrolment.member_id)
                if enrolment.arm == "holdout":
                    _record(exec_id, "skipped", "holdout")
                else:
                    perform(step, enrolment, journey, version, exec_id, ctx)
        if not nxt:
            _finish(enrolment, "done", now)
            return
        enrolment.current_step = nxt
    raise RuntimeError(f"journey version {version.id} did not settle in {MAX_HOPS} steps")


def _arm(journey: Journey, member_id: int) -> str:
    if journey.experiment_id is None:
        return "test"
    from analytics.experiments import arm_of

    return "holdout" if arm_of(journey.experiment_id, member_id) == "control" else "test"


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def wait_until(step: dict, member_id: int, now: datetime) -> datetime:
    """When a wait step started ``now`` ends (naive UTC).

    ``delay_minutes`` first, then, with ``until_local_time``, the next time the member's clock
    (their messaging time zone) shows that time.
    """
    at = now + timedelta(minutes=step.get("delay_minutes") or 0)
    local_time = step.get("until_local_time")
    if not local_time:
        return at
    from messaging.preferences import peek_preferences

    zone = _zone(peek_preferences(member_id)[1])
    local = at.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    hour, minute = (int(p) for p in local_time.split(":"))
    target = datetime.combine(local.date(), time(hour, minute), tzinfo=zone)
    if target < local:
        target = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), tzinfo=zone)
    return target.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def condition_holds(step: dict, enrolment: Enrolment) -> bool:
    cond = step["condition"]
    if cond == "in_segment":
        from analytics.segments import is_member_in

        return is_member_in(step["segment_id"], enrolment.member_id)
    if cond == "purchased_since_entry":
        from points.models import Interaction

        return db.session.scalar(select(Interaction.id).where(
            Interaction.member_id == enrolment.member_id, Interaction.kind == "purchase",
            Interaction.occurred_at >= enrolment.entered_at).limit(1)) is not None
    if cond == "answered_survey":
        from surveys.models import SurveyResponse

        return db.session.scalar(select(SurveyResponse.id).where(
            SurveyResponse.member_id == enrolment.member_id, SurveyResponse.survey_id == step["survey_id"],
            SurveyResponse.status == "completed").limit(1)) is not None
    raise ValueError(f"unknown condition {cond!r}")


# --------------------------------------------------------------------------- actions


def _notify(member_id: int, kind: str, payload: dict) -> int:
    """One notification (messaging gives it its email delivery); the step's execution row, in
    the same transaction, is what makes it once: no dedupe key is needed."""
    from community.services import notify

    return notify(member_id, kind, payload).id


def perform(step: dict, enrolment: Enrolment, journey: Journey, version: JourneyVersion, exec_id: int,
            ctx: _Context) -> None:
    """Carry out an action step whose execution row ``exec_id`` this transaction just created."""
    member_id = enrolment.member_id
    action = step["action"]
    base = {"journey_id": journey.id, "step_id": step["id"]}
    if action in ("send", "award_points") and ctx.in_holdout(member_id):
        _record(exec_id, "skipped", "global_holdout")  # the programme-wide control group
        return
    if action == "send":
        tpl = ctx.template(step["template"])
        if tpl is None:
            _record(exec_id, "failed", "unknown_template")
            return
        if not ctx.reachable(member_id, tpl.category):
            _record(exec_id, "skipped", "unsubscribed")
            return
        nid = _notify(member_id, f"journeys.{tpl.category}.{tpl.key}",
                      {**base, "subject": tpl.subject, "text": tpl.body})
        _record(exec_id, "sent", None, notification_id=nid)
    elif action in ("invite_survey", "invite_focus_group"):
        if not ctx.reachable(member_id, "research"):
            _record(exec_id, "skipped", "unsubscribed")
            return
        if action == "invite_survey":
            from surveys.services import get_survey

            survey = get_survey(step["survey_id"])
            payload = {**base, "survey_id": survey.id, "title": survey.title}
            kind = "research.journey_survey"
        else:
            from surveys.focus_groups import get_session

            session = get_session(step["session_id"])
            payload = {**base, "session_id": session.id, "title": session.title}
            kind = "research.journey_focus_group"
        _record(exec_id, "sent", None, notification_id=_notify(member_id, kind, payload))
    elif action == "award_points":
        # Separation of duties: whoever wrote the journey (any version) gets nothing from it.
        authors = {journey.created_by_id, version.created_by_id}
        if member_id in authors:
            _record(exec_id, "skipped", "own_journey")
            return
        from points import ledger

        entry = ledger.award(
            member_id, int(step["points"]),
            key=f"journey:{version.id}:{member_id}:{enrolment.occurrence}:{step['id']}",
            reason=f"Journey: {journey.name}"[:200], source_type="journey", source_id=enrolment.id,
        )
        _record(exec_id, "done", "awarded", entry_id=entry.id)
    elif action == "tag":
        from analytics.segments import tag_members

        tag_members(None, step["tag"], [member_id])
        _record(exec_id, "done", "tagged")
    elif action == "task":
        task = JourneyTask(journey_id=journey.id, enrolment_id=enrolment.id, member_id=member_id,
                           title=step["title"], note=step.get("note", ""))
        db.session.add(task)
        db.session.flush()
        _record(exec_id, "done", "task_created")
    else:
        raise ValueError(f"unknown action {action!r}")
