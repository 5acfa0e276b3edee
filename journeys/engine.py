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

A chunk is advanced set-based (``_advance_chunk``): the enrolments locked and their journeys
read in one statement; the execution rows of a wave of steps in one INSERT (on PostgreSQL
``INSERT … SELECT FROM unnest(arrays)``); the wave's notifications in another and their
deliveries through messaging's bulk path; the remaining outcomes and the enrolments' states in
one ``UPDATE … WHERE id = ANY(…)`` per group of alike rows.  A ``send`` is decided before its
claim (``_decide_sends``: holdout, programme holdout, template, reachability), so its execution
row is inserted complete: on PostgreSQL the claim's INSERT draws the notification's id from the
notifications' sequence and the notification is then written with it; on SQLite the row is
inserted ``done`` and linked to its notification by one ``CASE`` update.

Sends are notifications with their email deliveries (what ``community.services.notify`` writes,
written in bulk), so preferences, unsubscribes, the weekly cap and quiet hours are decided by
messaging when the email is delivered; what the journey
itself decides is recorded on the execution (``skipped`` with ``holdout``, ``global_holdout``,
``unsubscribed``, ``own_journey``; ``paused`` journeys are not advanced at all).  Points go
through ``points.ledger.award`` with the execution's key as the idempotency key, never to the
journey's authors (no one awards points to themselves).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import bindparam, case, or_, select, text, tuple_, update

from community.models import Notification, utcnow
from extensions import db, dialect_insert

from .definition import POINTS_ACTIONS
from .models import Enrolment, Journey, JourneyTask, JourneyTemplate, JourneyVersion, StepExecution

log = logging.getLogger(__name__)

FAULT_ENV = "KINSHIP_JOURNEYS_FAULT"
MAX_HOPS = 60  # more than MAX_STEPS: a version is acyclic, so this only guards against bugs
RETRY_AFTER = timedelta(minutes=10)


def batch_size() -> int:
    """Enrolments per advance job and per transaction (``JOURNEYS_BATCH_SIZE``, 1,000): every
    statement of a chunk (the lock, the reads, the claim, the sends, the enrolments' update) and
    the commit are shared by that many members."""
    return max(1, int(current_app.config.get("JOURNEYS_BATCH_SIZE", 1000)))


def _lease() -> timedelta:
    return timedelta(seconds=current_app.config.get("JOURNEYS_LEASE_SECONDS", 300))


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _id_in(column, ids):
    """``column IN (ids)``; on PostgreSQL ``column = ANY(:ids)``, one array parameter, so the
    statement text is the same short string for every chunk (the driver parses and caches it
    once instead of re-splitting a query with hundreds of placeholders each time)."""
    ids = list(ids)
    if _postgres():
        from sqlalchemy import Integer, any_, literal
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(literal(ids, ARRAY(Integer)))
    return column.in_(ids)


# --------------------------------------------------------------------------- enrolling


def schedule(ids: list[int]) -> None:
    """Advance these enrolments once the surrounding transaction commits."""
    if not ids:
        return
    from jobs import enqueue_after_commit

    from . import jobs

    db.session.execute(update(Enrolment).where(Enrolment.id.in_(ids)).values(enqueued_at=utcnow())
                       .execution_options(synchronize_session=False))
    size = batch_size()
    for start in range(0, len(ids), size):
        enqueue_after_commit(jobs.advance_enrolments, ids[start:start + size])


def enrol(journey: Journey, member_id: int, occurrence: str, now: datetime | None = None) -> int | None:
    """Enter one member (the caller checked the audience and the entry rule); None if already in."""
    now = now or utcnow()
    stmt = dialect_insert(Enrolment.__table__).values(
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


class _Row:
    """An enrolment being advanced: a plain copy of its row, written back with the chunk's others
    in one statement (no per-row ORM flushes)."""

    __slots__ = ("id", "journey_id", "version_id", "member_id", "occurrence", "state", "arm", "current_step",
                 "wait_until", "next_run_at", "enqueued_at", "entered_at", "finished_at")

    def __init__(self, row):
        for name in self.__slots__:
            setattr(self, name, getattr(row, name))


_MUTABLE = ("state", "arm", "current_step", "wait_until", "next_run_at", "enqueued_at", "finished_at")


class _JourneyInfo:
    """What the engine reads of a journey, with the chunk's lock (one statement for both)."""

    __slots__ = ("id", "status", "name", "experiment_id", "created_by_id")

    def __init__(self, **values):
        for name, value in values.items():
            setattr(self, name, value)


class _Context:
    """What a chunk needs, loaded once: journeys, versions, templates, and per-member facts asked
    for the whole chunk at once (reachability per category, the programme holdout, time zones)."""

    def __init__(self, rows: list[_Row], journeys: dict[int, _JourneyInfo]):
        vids = {r.version_id for r in rows}
        self.journeys = journeys
        self.versions = {v.id: v for v in db.session.scalars(select(JourneyVersion).where(JourneyVersion.id.in_(vids)))}
        self.templates: dict[str, JourneyTemplate | None] = {}
        self.members = [r.member_id for r in rows]
        self._reachable: dict[str, set[int]] = {}
        self._holdout: set[int] | None = None
        self._zones: dict[int, str] | None = None

    def reachable(self, member_id: int, category: str) -> bool:
        """Could a message in ``category`` reach the member on any channel (email or in-app)?"""
        if category not in self._reachable:
            from messaging.preferences import reachable

            self._reachable[category] = reachable(self.members, category)
        return member_id in self._reachable[category]

    def in_holdout(self, member_id: int) -> bool:
        """In the programme-wide control group?  (One query for the chunk, none when none runs.)"""
        if self._holdout is None:
            from analytics.experiments import holdout_members

            self._holdout = holdout_members(self.members)
        return member_id in self._holdout

    def time_zone(self, member_id: int) -> str:
        """The member's messaging time zone (read for the whole chunk the first time one is asked;
        a member without a preferences row has messaging's default, as ``peek_preferences`` says)."""
        from messaging.preferences import DEFAULT_TIME_ZONE

        if self._zones is None:
            from messaging.models import MemberPreferences

            p = MemberPreferences.__table__.c
            self._zones = dict(db.session.execute(
                select(p.member_id, p.time_zone).where(_id_in(p.member_id, set(self.members)))).all())
        return self._zones.get(member_id, DEFAULT_TIME_ZONE)

    def template(self, key: str) -> JourneyTemplate | None:
        if key not in self.templates:
            self.templates[key] = db.session.scalar(select(JourneyTemplate).where(JourneyTemplate.key == key))
        return self.templates[key]


# The reserved-id notifications of one message (PostgreSQL): ids drawn by the claim, one member each.
_NOTIFY_RESERVED = text(
    "INSERT INTO notifications (id, member_id, kind, payload, created_at) "
    "SELECT t.id, t.member_id, :kind, CAST(:payload AS json), :created_at "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:members AS integer[])) AS t(id, member_id)")


class _Effects:
    """The effects of one wave of steps, written set-based: the notifications in one INSERT (their
    email deliveries in one more, through messaging), tags one statement per tag; the executions'
    outcomes and the enrolments' new states once per chunk (``write``)."""

    def __init__(self):
        self.outcomes: list[dict] = []
        self.notes: list[tuple[int, int, str, dict]] = []  # (execution id, member, kind, payload)
        # Sends whose execution row was inserted already 'sent' with a reserved notification id
        # (PostgreSQL): (notification id, member, kind, payload), no outcome left to write.
        self.reserved: list[tuple[int, int, str, dict]] = []
        self.tags: dict[str, list[tuple[int, int]]] = {}

    def record(self, execution_id: int, outcome: str, reason: str | None = None, *,
               notification_id: int | None = None, entry_id: int | None = None) -> None:
        if outcome == "done" and reason is None and notification_id is None and entry_id is None:
            return  # the row was inserted as done
        self.outcomes.append({"x_id": execution_id, "x_outcome": outcome, "x_reason": reason,
                              "x_notification": notification_id, "x_entry": entry_id})

    def notify(self, execution_id: int, member_id: int, kind: str, payload: dict) -> None:
        self.notes.append((execution_id, member_id, kind, payload))

    def tag(self, execution_id: int, member_id: int, tag: str) -> None:
        self.tags.setdefault(tag, []).append((execution_id, member_id))

    def flush_wave(self) -> None:
        """Write what later steps may depend on: the notifications (and deliveries), the tags."""
        if self.reserved:
            from messaging.services import queue_for_notifications

            # The ids were drawn from the table's own sequence by the claim's INSERT
            # (``_claim_steps``), so the rows are inserted with them and nothing is linked afterwards.
            # RETURNING makes SQLAlchemy send one multi-row INSERT (as for the unreserved path and
            # the bulk baseline) instead of one INSERT per row.
            # One ``INSERT … SELECT FROM unnest(ids, members)`` per distinct message (a wave's sends
            # of one step share their kind and payload object, ``_decide_sends``): the payload
            # is serialised and sent once, not once per member, and the statement text is the
            # same short string whatever the chunk's size (no multi-row VALUES to re-parse).
            groups: dict[tuple[str, int], tuple[dict, list[int], list[int]]] = {}
            for nid, m, k, p in self.reserved:
                group = groups.setdefault((k, id(p)), (p, [], []))
                group[1].append(nid)
                group[2].append(m)
            stamp = utcnow()
            serialise = db.session.get_bind().dialect._json_serializer or json.dumps
            for (kind, _), (payload, nids, members) in groups.items():
                db.session.execute(_NOTIFY_RESERVED, {
                    "ids": nids, "members": members, "kind": kind, "payload": serialise(payload),
                    "created_at": stamp})
            queue_for_notifications([nid for nid, *_ in self.reserved])
            self.reserved = []
        if self.notes:
            from messaging.services import queue_for_notifications

            n = Notification.__table__
            ids = db.session.scalars(
                n.insert().returning(n.c.id, sort_by_parameter_order=True),
                # Stamped with the wall clock (a delivery is not due before its notification's time),
                # whatever ``now`` the engine was given.
                [{"member_id": m, "kind": k, "payload": p, "created_at": utcnow()} for _, m, k, p in self.notes],
            ).all()
            # The deliveries (one INSERT … SELECT) and their deliver jobs after the commit, as for
            # any notification: messaging decides preferences, caps and quiet hours when it sends.
            queue_for_notifications(list(ids))
            for (execution_id, *_), nid in zip(self.notes, ids, strict=True):
                self.record(execution_id, "sent", notification_id=nid)
            self.notes = []
        if self.tags:
            from analytics.segments import tag_members

            for tag, items in self.tags.items():
                tag_members(None, tag, sorted({m for _, m in items}))
                for execution_id, _ in items:
                    self.record(execution_id, "done", "tagged")
            self.tags = {}

    def write(self, rows: list[_Row]) -> None:
        """The executions' outcomes and the enrolments' states, set-based on both backends.

        Rows that end up alike (the same outcome and reason; the same new state, step and times)
        are written by one ``UPDATE … WHERE id IN (…)`` per group; the notifications a wave sent
        are linked by one ``UPDATE … SET notification_id = CASE id WHEN … END``.  Only the odd
        row that shares its values with no other (a ledger entry, a wait ending at a member's
        own local time) goes through an ``executemany``.
        """
        x = StepExecution.__table__
        if self.outcomes:
            groups: dict[tuple, list[int]] = {}
            linked: dict[str, dict[int, int]] = {}  # outcome -> {execution id: notification id}
            single = []
            for o in self.outcomes:
                if o["x_notification"] is not None and o["x_entry"] is None and o["x_reason"] is None:
                    linked.setdefault(o["x_outcome"], {})[o["x_id"]] = o["x_notification"]
                elif o["x_notification"] is None and o["x_entry"] is None:
                    groups.setdefault((o["x_outcome"], o["x_reason"]), []).append(o["x_id"])
                else:
                    single.append(o)
            for outcome, pairs in linked.items():
                db.session.execute(update(x).where(_id_in(x.c.id, pairs)).values(
                    outcome=outcome, notification_id=case(pairs, value=x.c.id)))
            for (outcome, reason), ids in groups.items():
                db.session.execute(update(x).where(_id_in(x.c.id, ids)).values(outcome=outcome, reason=reason))
            if single:
                db.session.execute(
                    update(x).where(x.c.id == bindparam("x_id")).values(
                        outcome=bindparam("x_outcome"), reason=bindparam("x_reason"),
                        notification_id=bindparam("x_notification"), entry_id=bindparam("x_entry")),
                    single)
            self.outcomes = []
        e = Enrolment.__table__
        alike: dict[tuple, list[int]] = {}
        for r in rows:
            alike.setdefault(tuple(getattr(r, c) for c in _MUTABLE), []).append(r.id)
        lone = []
        for values, ids in alike.items():
            if len(ids) == 1:
                lone.append({"e_id": ids[0], **{f"e_{c}": v for c, v in zip(_MUTABLE, values, strict=True)}})
            else:
                db.session.execute(update(e).where(_id_in(e.c.id, ids))
                                   .values(dict(zip(_MUTABLE, values, strict=True))))
        if lone:
            db.session.execute(
                update(e).where(e.c.id == bindparam("e_id")).values({c: bindparam(f"e_{c}") for c in _MUTABLE}),
                lone)


def advance(ids: list[int], now: datetime | None = None) -> dict:
    """Advance each due enrolment as far as it can go now; returns counts.  Idempotent.

    Works in chunks of ``batch_size()`` enrolments, one transaction each; a chunk that fails is retried
    one enrolment at a time, and an enrolment that fails alone is retried after ``RETRY_AFTER``.
    """
    counts = {"advanced": 0, "skipped": 0, "failed": 0}
    size = batch_size()
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
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
    """Lock the chunk's due rows, then move them all forward in *waves*: each wave claims the
    step every moving enrolment is at (one multi-row INSERT of execution rows), performs the
    effects of the rows it created (set-based where it can), and moves them on."""
    now = now or utcnow()
    e = Enrolment.__table__
    j = Journey.__table__
    # The enrolments (locked) with their journey's status and what the steps need of it, read in
    # the one statement: a journey paused before this statement is seen paused.
    rows, journeys = [], {}
    for r in db.session.execute(
        select(*(e.c[name] for name in _Row.__slots__), j.c.status.label("j_status"), j.c.name.label("j_name"),
               j.c.experiment_id.label("j_experiment_id"), j.c.created_by_id.label("j_created_by_id"))
        .join(j, j.c.id == e.c.journey_id)
        .where(_id_in(e.c.id, ids), e.c.state == "active", e.c.next_run_at <= now)
        .order_by(e.c.id).with_for_update(of=e, skip_locked=True)
    ):
        rows.append(_Row(r))
        if r.journey_id not in journeys:
            journeys[r.journey_id] = _JourneyInfo(id=r.journey_id, status=r.j_status, name=r.j_name,
                                                  experiment_id=r.j_experiment_id, created_by_id=r.j_created_by_id)
    if not rows:
        return 0
    ctx = _Context(rows, journeys)
    effects = _Effects()
    moving = []
    for enrolment in rows:
        if ctx.journeys[enrolment.journey_id].status != "active":
            # Paused (or archived) since the job was enqueued: no step, no send.  Resuming
            # makes the sweeper hand it out again.
            enrolment.enqueued_at = None
            continue
        if enrolment.current_step is None:
            enrolment.current_step = ctx.versions[enrolment.version_id].steps[0]["id"]
        moving.append(enrolment)
    done = len(moving)
    for _ in range(MAX_HOPS):
        if not moving:
            break
        moving = _wave(moving, ctx, effects, now)
        effects.flush_wave()
    else:
        raise RuntimeError(f"journey enrolments {[r.id for r in moving]} did not settle in {MAX_HOPS} steps")
    effects.write(rows)
    db.session.flush()
    _injected_fault()
    return done


def _wave(moving: list[_Row], ctx: _Context, effects: _Effects, now: datetime) -> list[_Row]:
    """One step for each enrolment in ``moving``; returns those that move on to another step."""
    claims: list[tuple[_Row, dict]] = []
    for enrolment in moving:
        version = ctx.versions[enrolment.version_id]
        # Waits that are over need no decision: they are claimed together with the step after
        # them (a wait then a send is one INSERT of execution rows, not two).
        for _ in range(MAX_HOPS):
            step = version.step(enrolment.current_step)
            if step is None:
                _finish(enrolment, "done", now)
                break
            if step["type"] != "wait":
                claims.append((enrolment, step))
                break
            if enrolment.wait_until is None:
                enrolment.wait_until = wait_until(step, enrolment.member_id, now, ctx.time_zone(enrolment.member_id)
                                                  if step.get("until_local_time") else None,
                                                  occurrence=enrolment.occurrence)
            if enrolment.wait_until > now:
                enrolment.next_run_at = enrolment.wait_until
                enrolment.enqueued_at = None
                break
            claims.append((enrolment, step))
            enrolment.wait_until = None
            if not step.get("next"):
                _finish(enrolment, "done", now)
                break
            enrolment.current_step = step["next"]
        else:
            raise RuntimeError(f"journey version {version.id} did not settle in {MAX_HOPS} steps")
    if not claims:
        return []
    decided = _decide_sends(claims, ctx)
    claimed = _claim_steps(claims, now, decided)
    onward = []
    for (enrolment, step), (exec_id, recorded), decision in zip(claims, claimed, decided, strict=True):
        journey = ctx.journeys[enrolment.journey_id]
        version = ctx.versions[enrolment.version_id]
        kind = step["type"]
        nxt = step.get("next")
        if kind == "wait":
            continue  # moved on above
        if kind == "exit":
            _finish(enrolment, "exited", now)
            continue
        if kind == "condition":
            if exec_id is not None:
                recorded = "condition_true" if condition_holds(step, enrolment) else "condition_false"
                effects.record(exec_id, "done", recorded)
            nxt = step.get("then") if recorded == "condition_true" else step.get("else")
        elif decision is not None:  # a send, decided before the claim (``_decide_sends``)
            if exec_id is not None and decision.get("note") is not None:
                kind_, payload = decision["note"]
                if decision.get("notification_id") is not None:  # inserted 'sent' with its id
                    effects.reserved.append((decision["notification_id"], enrolment.member_id, kind_, payload))
                else:
                    effects.notify(exec_id, enrolment.member_id, kind_, payload)
        elif exec_id is not None:  # an action this transaction claimed
            if enrolment.arm is None:
                enrolment.arm = _arm(journey, enrolment.member_id)
            if enrolment.arm == "holdout":
                effects.record(exec_id, "skipped", "holdout")
            else:
                perform(step, enrolment, journey, version, exec_id, ctx, effects, now)
        if not nxt:
            _finish(enrolment, "done", now)
            continue
        enrolment.current_step = nxt
        onward.append(enrolment)
    return onward


def _injected_fault() -> None:
    """``sleep_before_commit:<s>`` (tests only): stall after the steps' effects, before the commit."""
    fault = os.environ.get(FAULT_ENV)
    if fault and current_app.testing and fault.startswith("sleep_before_commit:"):
        import time as _time

        _time.sleep(float(fault.split(":", 1)[1]))


def _finish(enrolment: _Row, state: str, now: datetime) -> None:
    enrolment.state, enrolment.finished_at, enrolment.next_run_at = state, now, None


def _decide_sends(claims: list[tuple[_Row, dict]], ctx: _Context) -> list[dict | None]:
    """Per claim, for ``send`` actions, what the step will record, decided before its row is
    inserted so the row is inserted complete (no outcome UPDATE afterwards): the arm's holdout,
    the programme holdout, an unknown template, an unreachable member (the same checks, in the
    same order, as ``perform``), else ``sent`` with the notification to write.  A send with
    ``variants`` first picks the member's variant (``variant_of``; none for the holdout arm),
    whose template it sends and whose id its row records.  On PostgreSQL the
    claim's INSERT draws the notification's id from its sequence (``_claim_steps``); an id drawn
    for a row that finds the step already run is not returned, and simply never used.

    Nothing is written here: a replayed step (its row exists) keeps what it recorded the first
    time, and the notification is only inserted for a row this transaction created.
    """
    out: list[dict | None] = []
    reserve: list[dict] = []
    notes: dict[tuple[int, str, str], tuple[str, dict]] = {}  # one message object per journey and step
    for enrolment, step in claims:
        if step["type"] != "action" or step.get("action") != "send":
            out.append(None)
            continue
        member_id = enrolment.member_id
        journey = ctx.journeys[enrolment.journey_id]
        if enrolment.arm is None:
            enrolment.arm = _arm(journey, member_id)  # deterministic: the experiment's hash of the member
        # An A/B send: the member's variant (a hash, stable across versions) names the message;
        # the journey's holdout arm gets no variant, as it gets no message.
        variant = (variant_of(journey.id, step["id"], member_id, step["variants"])
                   if step.get("variants") and enrolment.arm != "holdout" else None)
        key = (variant or step).get("template")  # none for the holdout arm of an A/B send
        tpl = ctx.template(key) if key else None
        if enrolment.arm == "holdout":
            decision = {"outcome": "skipped", "reason": "holdout"}
        elif ctx.in_holdout(member_id):
            decision = {"outcome": "skipped", "reason": "global_holdout"}
        elif tpl is None:
            decision = {"outcome": "failed", "reason": "unknown_template"}
        elif not ctx.reachable(member_id, tpl.category):
            decision = {"outcome": "skipped", "reason": "unsubscribed"}
        else:
            vid = variant["id"] if variant else None
            note = notes.get((journey.id, step["id"], tpl.key, vid))
            if note is None:
                note = notes[(journey.id, step["id"], tpl.key, vid)] = (
                    f"journeys.{tpl.category}.{tpl.key}",
                    {"journey_id": journey.id, "step_id": step["id"], "subject": tpl.subject, "text": tpl.body,
                     **({"variant": vid} if vid else {})})
            decision = {"outcome": "sent", "reason": None, "note": note}
            reserve.append(decision)
        decision["variant"] = variant["id"] if variant else None
        out.append(decision)
    if _postgres():
        for decision in reserve:
            decision["reserve"] = True  # the claim's INSERT draws its notification id (nextval)
    else:  # no sequence to reserve from (SQLite): inserted 'done', linked after the INSERT
        for decision in reserve:
            decision["outcome"] = "done"
    return out


# The claim's per-claim columns (arrays, PostgreSQL); the rest of the row is its enrolment's.
_CLAIM_ARRAYS = (("enrolment_id", "integer"), ("step_id", "varchar"), ("outcome", "varchar"), ("reason", "varchar"),
                 ("variant", "varchar"))
_CLAIM = text(
    "INSERT INTO journey_step_executions (journey_id, version_id, member_id, occurrence, step_id, enrolment_id, "
    "outcome, reason, variant, notification_id, created_at) "
    "SELECT e.journey_id, e.version_id, e.member_id, e.occurrence, t.step_id, t.enrolment_id, t.outcome, t.reason, "
    "t.variant, "
    "CASE WHEN t.outcome = 'sent' THEN nextval(pg_get_serial_sequence('notifications', 'id')) END, :created_at "
    "FROM unnest(" + ", ".join(f"CAST(:{col} AS {kind}[])" for col, kind in _CLAIM_ARRAYS) + ") "
    "AS t(" + ", ".join(col for col, _ in _CLAIM_ARRAYS) + ") "
    "JOIN journey_enrolments e ON e.id = t.enrolment_id "
    "ON CONFLICT DO NOTHING RETURNING id, enrolment_id, step_id, notification_id")


def _claim_steps(claims: list[tuple[_Row, dict]], now: datetime,
                 decided: list[dict | None] | None = None) -> list[tuple[int | None, str | None]]:
    """Insert the execution rows of a wave in one statement; per claim (its id, None) if this
    transaction created it, (None, the recorded reason) if the step ran before.  A claim with a
    decision (``_decide_sends``) is inserted with its outcome, reason and notification id."""
    table = StepExecution.__table__
    c = table.c
    decided = decided or [None] * len(claims)
    values = [{"journey_id": e.journey_id, "version_id": e.version_id, "member_id": e.member_id,
               "occurrence": e.occurrence, "step_id": step["id"], "enrolment_id": e.id,
               "outcome": d["outcome"] if d else "done", "reason": d["reason"] if d else None,
               "variant": d.get("variant") if d else None,
               "reserve": bool(d and d.get("reserve")), "created_at": now}
              for (e, step), d in zip(claims, decided, strict=True)]
    if _postgres():
        # One INSERT … SELECT FROM unnest(arrays): a short statement with one array per column
        # that differs per claim (a multi-row VALUES of 400 rows has 4,000 placeholders, which the
        # driver re-parses on every call); the copies of the enrolment's journey, version, member
        # and occurrence are read from its row (locked by this transaction: the values ``claims``
        # holds) in the same statement, so they are not sent, one array element per claim each.
        # A send decided before its claim (``_decide_sends``: outcome 'sent', only ever with
        # ``reserve`` on PostgreSQL) draws its notification's id from the notifications' own
        # sequence in this same statement, so its row is complete as inserted.
        if any(v["reserve"] != (v["outcome"] == "sent") for v in values):
            raise RuntimeError("a 'sent' claim without a reserved notification id (or the reverse)")
        params = {col: [v[col] for v in values] for col, _ in _CLAIM_ARRAYS}
        params["created_at"] = now
        rows = db.session.execute(_CLAIM, params).all()
        by_claim = {(r.enrolment_id, r.step_id): r for r in rows}
        for v, d in zip(values, decided, strict=True):
            if d is not None and d.get("reserve"):
                r = by_claim.get((v["enrolment_id"], v["step_id"]))
                d["notification_id"] = r.notification_id if r is not None else None
        created = {(v["version_id"], v["member_id"], v["occurrence"], v["step_id"]): by_claim[k].id
                   for v in values if (k := (v["enrolment_id"], v["step_id"])) in by_claim}
    else:
        # An executemany that SQLAlchemy sends as multi-row INSERTs ("insertmanyvalues"), compiled once.
        rows = db.session.execute(dialect_insert(table).on_conflict_do_nothing()
                                  .returning(c.id, c.version_id, c.member_id, c.occurrence, c.step_id),
                                  [{k: v for k, v in row.items() if k != "reserve"} for row in values])
        created = {(r.version_id, r.member_id, r.occurrence, r.step_id): r.id for r in rows}
    keys = [(v["version_id"], v["member_id"], v["occurrence"], v["step_id"]) for v in values]
    replayed = [k for k in keys if k not in created]
    reasons: dict[tuple, str | None] = {}
    if replayed:
        reasons = {(r.version_id, r.member_id, r.occurrence, r.step_id): r.reason for r in db.session.execute(
            select(c.version_id, c.member_id, c.occurrence, c.step_id, c.reason)
            .where(tuple_(c.version_id, c.member_id, c.occurrence, c.step_id).in_(replayed)))}
    return [(created[k], None) if k in created else (None, reasons.get(k)) for k in keys]


def variant_of(journey_id: int, step_id: str, member_id: int, variants: list[dict]) -> dict:
    """The variant of an A/B send a member gets: deterministic and weighted.

    A SHA-256 of (journey, step, member), not of the version, so a member keeps their variant
    when the journey is edited (as long as the variants and weights stay), scaled to
    0 .. sum of weights - 1 and placed on the variants' cumulative weights."""
    import hashlib

    digest = hashlib.sha256(f"journey-variant:{journey_id}:{step_id}:{member_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") * sum(v["weight"] for v in variants) >> 64  # 0 .. total-1
    for variant in variants:
        point -= variant["weight"]
        if point < 0:
            return variant
    return variants[-1]


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


def wait_until(step: dict, member_id: int, now: datetime, time_zone: str | None = None,
               occurrence: str = "") -> datetime:
    """When a wait step started ``now`` ends (naive UTC).

    ``delay_minutes`` first, then, with ``until_local_time``, the next time the member's clock
    (their messaging time zone: ``time_zone`` if the caller read it, else looked up) shows that time.
    With ``on_entry_day``, that time on the day of ``occurrence`` instead (a schedule's
    ``date:YYYY-MM-DD``; else the member's local day at ``now``), or ``now`` if it has passed:
    the schedule scans by the UTC date, so a member west of UTC is entered the evening before
    their day and waits for its morning, and one far east is entered after it and is not moved
    to the next day.
    """
    at = now + timedelta(minutes=step.get("delay_minutes") or 0)
    local_time = step.get("until_local_time")
    if not local_time:
        return at
    if time_zone is None:
        from messaging.preferences import peek_preferences

        time_zone = peek_preferences(member_id)[1]
    zone = _zone(time_zone)
    local = at.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    hour, minute = (int(p) for p in local_time.split(":"))
    if step.get("on_entry_day"):
        day = _occurrence_day(occurrence, local.date())
        target = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
        return max(target, now)
    target = datetime.combine(local.date(), time(hour, minute), tzinfo=zone)
    if target < local:
        target = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), tzinfo=zone)
    return target.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def _occurrence_day(occurrence: str, default: date) -> date:
    """The day a schedule entered the member for (occurrence ``date:YYYY-MM-DD``), else ``default``."""
    kind, _, value = occurrence.partition(":")
    if kind == "date":
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value)
    return default


def local_day_window(now: datetime, time_zone: str | None, occurrence: str) -> tuple[datetime, datetime] | None:
    """The rest of a member's local day, as a naive-UTC ``[starts, ends)``; None if it is over.

    The day is the occurrence's date when the member entered on a schedule (``date:YYYY-MM-DD``:
    the birthday, the anniversary, the renewal day), else the member's local date at ``now``.
    The schedule scans by the UTC date, so a member west of UTC may be entered while it is still
    the evening before on their own clock: their window then starts at their local midnight
    (a future start) and lasts the whole day; a member east of UTC gets the rest of it from
    ``now``.  A date whose local day is already over (a long wait before the step) gives None.
    """
    utc = ZoneInfo("UTC")
    zone = _zone(time_zone)
    day = _occurrence_day(occurrence, now.replace(tzinfo=utc).astimezone(zone).date())
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(utc).replace(tzinfo=None)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(utc).replace(tzinfo=None)
    if end <= now:
        return None
    return max(start, now), end


def condition_holds(step: dict, enrolment) -> bool:
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


def step_key(version_id: int, enrolment, step_id: str) -> str:
    """The idempotency key of a step's effect outside journeys (the ledger, a multiplier)."""
    return f"journey:{version_id}:{enrolment.member_id}:{enrolment.occurrence}:{step_id}"


def perform(step: dict, enrolment, journey: Journey, version: JourneyVersion, exec_id: int,
            ctx: _Context, effects: _Effects, now: datetime) -> None:
    """Carry out an action step whose execution row ``exec_id`` this transaction just created.

    Notifications and tags are collected in ``effects`` and written for the whole wave; points
    and multipliers are written here (each with its own idempotency key).
    """
    member_id = enrolment.member_id
    action = step["action"]
    base = {"journey_id": journey.id, "step_id": step["id"]}
    if action in POINTS_ACTIONS and ctx.in_holdout(member_id):
        effects.record(exec_id, "skipped", "global_holdout")  # the programme-wide control group
        return
    if action in POINTS_ACTIONS and member_id in {journey.created_by_id, version.created_by_id}:
        # Separation of duties: whoever wrote the journey (any version) gets nothing from it.
        effects.record(exec_id, "skipped", "own_journey")
        return
    if action == "send":
        raise AssertionError("sends are decided before their claim (_decide_sends)")
    if action in ("invite_survey", "invite_focus_group"):
        if not ctx.reachable(member_id, "research"):
            effects.record(exec_id, "skipped", "unsubscribed")
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
        effects.notify(exec_id, member_id, kind, payload)
    elif action == "award_points":
        from points import ledger

        entry = ledger.award(
            member_id, int(step["points"]), key=step_key(version.id, enrolment, step["id"]),
            reason=f"Journey: {journey.name}"[:200], source_type="journey", source_id=enrolment.id,
        )
        effects.record(exec_id, "done", "awarded", entry_id=entry.id)
    elif action == "points_multiplier":
        # A campaign of one: what the member earns in the window is multiplied by the earning
        # rules (points.rules.campaign_multiplier), each earning through the ledger as usual.
        from points.services import grant_multiplier

        if step.get("until") == "end_of_local_day":
            window = local_day_window(now, ctx.time_zone(member_id), enrolment.occurrence)
            if window is None:
                effects.record(exec_id, "skipped", "day_over")  # the member's local day is already over
                return
            starts, ends = window
        else:
            starts, ends = now, now + timedelta(hours=int(step["hours"]))
        grant_multiplier(member_id, Decimal(str(step["multiplier"])), starts, ends,
                         key=step_key(version.id, enrolment, step["id"]), kinds=step.get("kinds"),
                         source_type="journey", source_id=enrolment.id)
        effects.record(exec_id, "done", "multiplier")
    elif action == "tag":
        effects.tag(exec_id, member_id, step["tag"])
    elif action == "task":
        db.session.add(JourneyTask(journey_id=journey.id, enrolment_id=enrolment.id, member_id=member_id,
                                   title=step["title"], note=step.get("note", "")))
        effects.record(exec_id, "done", "task_created")
    else:
        raise ValueError(f"unknown action {action!r}")
