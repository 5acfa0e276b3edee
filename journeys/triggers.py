"""What makes members enter journeys: events (in the publishing transaction) and schedules.

Events come through the seams the domains already have, so no domain calls journeys:

* ``messaging.webhooks.events.publish`` (local subscribers, see ``subscribe_local``):
  ``member.registered``, ``tier.changed``, ``redemption.state_changed`` (→ ``redemption.fulfilled``),
  ``survey.response_completed`` (→ ``survey.completed``), ``focus_group.signup_changed`` with status
  ``attended`` (→ ``focus_group.attended``), ``referral.converted`` (the referrer enters);
* the ``interaction_recorded`` signal of points for ``purchase.recorded``;
* the ``notification_created`` signal for ``points.expiring`` (the expiry warning job's notice).

An event enrols the member in every active journey it triggers (audience and entry rule
checked, ``ON CONFLICT DO NOTHING`` on the enrolment key) in the same transaction, and the
advance job is enqueued after the commit; it also marks conversions for journeys whose goal it is.
Which journeys listen to what is cached per process for ``JOURNEYS_CACHE_SECONDS`` (2 s) and
dropped at once when a journey changes in this process.

Schedules (``scan_schedules``, every 15 minutes, each journey once a day) enrol set-based with
one ``INSERT … SELECT`` per journey on indexed predicates: birthday, sign-up and contract
month/day (expression indexes), ``users.renewal_on`` (equality), ``member_scores.last_activity_at`` (a
one-day range), a weekday / day of month for calendars.  The enrolments are due at once; the
sweeper hands them to advance jobs in batches.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, extract, func, literal, or_, select, update

from community.models import User, utcnow
from extensions import db, dialect_insert

from . import engine
from .models import Enrolment, Journey, JourneyVersion

_lock = threading.Lock()
WEBHOOK_EVENTS = {
    "member.registered": "member.registered",
    "tier.changed": "tier.changed",
    "redemption.state_changed": "redemption.fulfilled",
    "survey.response_completed": "survey.completed",
    "focus_group.signup_changed": "focus_group.attended",
    "referral.converted": "referral.converted",
}


# --------------------------------------------------------------------------- the cache


def invalidate(app=None) -> None:
    (app or current_app).extensions.pop("journeys_listening", None)


def _listening() -> dict:
    """{"triggers": {event: [(journey_id, version_id, audience, entry)]}, "goals": {event: [(journey_id, days)]}}."""
    app = current_app
    cached = app.extensions.get("journeys_listening")
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    rows = db.session.execute(
        select(Journey.id, Journey.status, JourneyVersion.id, JourneyVersion.trigger, JourneyVersion.audience,
               JourneyVersion.entry, JourneyVersion.goal)
        .join(JourneyVersion, JourneyVersion.id == Journey.current_version_id)
        .where(Journey.status.in_(("active", "paused")))
    ).all()
    triggers: dict[str, list] = {}
    goals: dict[str, list] = {}
    for jid, status, vid, trig, audience, entry, goal in rows:
        if status == "active" and trig.get("type") == "event":
            triggers.setdefault(trig["event"], []).append((jid, vid, audience, entry))
        if goal:
            goals.setdefault(goal["event"], []).append((jid, goal["within_days"]))
    value = {"triggers": triggers, "goals": goals}
    ttl = float(app.config.get("JOURNEYS_CACHE_SECONDS", 2))
    if ttl > 0:
        with _lock:
            app.extensions["journeys_listening"] = (now + ttl, value)
    return value


def wants(journey_event: str) -> bool:
    listening = _listening()
    return journey_event in listening["triggers"] or journey_event in listening["goals"]


# --------------------------------------------------------------------------- events


def in_audience(audience: dict, member_id: int) -> bool:
    row = db.session.execute(select(User.tier, User.is_active_account).where(User.id == member_id)).first()
    if row is None or not row.is_active_account:
        return False
    if audience["type"] == "tier":
        return row.tier in audience["tiers"]
    if audience["type"] == "segment":
        from analytics.segments import is_member_in

        return is_member_in(audience["segment_id"], member_id)
    return True


def occurrence_for(journey_id: int, entry: dict, member_id: int, key: str, now: datetime) -> str | None:
    """The enrolment's occurrence under the entry rule, or None if the rule refuses entry now."""
    rule = entry["rule"]
    if rule == "once":
        return "once"
    if rule == "reentry_after":
        recent = db.session.scalar(select(Enrolment.id).where(
            Enrolment.journey_id == journey_id, Enrolment.member_id == member_id,
            Enrolment.entered_at > now - timedelta(days=entry["days"])).limit(1))
        if recent is not None:
            return None
    return key[:64]


def on_event(journey_event: str, member_id: int, key: str, at: datetime | None = None) -> list[int]:
    """Enrol ``member_id`` in every active journey ``journey_event`` triggers; mark goal conversions."""
    listening = _listening()
    now = utcnow()
    new: list[int] = []
    for jid, vid, audience, entry in listening["triggers"].get(journey_event, ()):
        journey = db.session.get(Journey, jid)
        if journey is None or journey.status != "active" or journey.current_version_id != vid:
            continue
        if not in_audience(audience, member_id):
            continue
        occurrence = occurrence_for(jid, entry, member_id, key, now)
        if occurrence is None:
            continue
        enrolment_id = engine.enrol(journey, member_id, occurrence, now)
        if enrolment_id is not None:
            new.append(enrolment_id)
    for jid, days in listening["goals"].get(journey_event, ()):
        db.session.execute(
            update(Enrolment).where(Enrolment.journey_id == jid, Enrolment.member_id == member_id,
                                    Enrolment.converted_at.is_(None), Enrolment.entered_at <= now,
                                    Enrolment.entered_at >= now - timedelta(days=days))
            .values(converted_at=at or now).execution_options(synchronize_session=False))
    engine.schedule(new)
    return new


def _from_webhook(event_type: str, items: list[dict]) -> None:
    journey_event = WEBHOOK_EVENTS[event_type]
    for data in items:
        if event_type == "member.registered":
            on_event(journey_event, data["member_id"], "registered")
        elif event_type == "tier.changed":
            on_event(journey_event, data["member_id"], f"tier_change:{data.get('change_id')}")
        elif event_type == "redemption.state_changed":
            if data.get("state") == "fulfilled":
                on_event(journey_event, data["member_id"], f"redemption:{data.get('redemption_id')}")
        elif event_type == "survey.response_completed":
            on_event(journey_event, data["member_id"], f"survey_response:{data.get('response_id')}")
        elif event_type == "focus_group.signup_changed":
            if data.get("status") == "attended":
                on_event(journey_event, data["member_id"], f"signup:{data.get('signup_id')}")
        elif event_type == "referral.converted":
            on_event(journey_event, data["referrer_id"], f"referral:{data.get('referral_id')}")


def _on_interaction(interaction, **_):
    if interaction.kind == "purchase" and wants("purchase.recorded"):
        on_event("purchase.recorded", interaction.member_id, f"purchase:{interaction.id}", interaction.occurred_at)


def _on_notification(note, **_):
    if note.kind == "points.expiring" and wants("points.expiring"):
        on_event("points.expiring", note.member_id, f"expiring:{note.id}")


def connect() -> None:
    from community.services import notification_created
    from messaging.webhooks import events
    from points.services import interaction_recorded

    for event_type, journey_event in WEBHOOK_EVENTS.items():
        events.subscribe_local(event_type, _from_webhook, wants=lambda _t, je=journey_event: wants(je))
    interaction_recorded.connect(_on_interaction)
    notification_created.connect(_on_notification)


# --------------------------------------------------------------------------- schedules


def _md(column, day: date):
    """Month and day of ``column`` equal ``day``'s (Feb 29 dates count on Feb 28 in other years),
    written exactly as the expression indexes are."""
    same = and_(extract("month", column) == day.month, extract("day", column) == day.day)
    if day.month == 2 and day.day == 28 and not _leap(day.year):
        return or_(same, and_(extract("month", column) == 2, extract("day", column) == 29))
    return same


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def schedule_condition(trigger: dict, today: date):
    """The SQL condition selecting today's members for a schedule trigger (None: not today)."""
    kind = trigger["type"]
    users = User.__table__.c
    if kind == "date":
        target = today - timedelta(days=trigger.get("offset_days") or 0)
        if trigger["field"] == "birthday":
            return _md(users.birthday, target)
        if trigger["field"] == "signup_anniversary":
            return and_(_md(users.created_at, target), users.created_at < datetime(target.year, 1, 1))
        if trigger["field"] == "contract_on":
            # The contract's yearly anniversary (not the day it starts, nor a contract starting later).
            return and_(_md(users.contract_on, target), users.contract_on < date(target.year, 1, 1))
        return users.renewal_on == target
    if kind == "inactivity":
        from analytics.models import MemberScore

        day = datetime.combine(today - timedelta(days=trigger["days"]), datetime.min.time())
        scores = MemberScore.__table__.c
        return users.id.in_(select(scores.member_id).where(scores.last_activity_at >= day,
                                                           scores.last_activity_at < day + timedelta(days=1)))
    if kind == "calendar":
        every = trigger["every"]
        if every == "week":
            due = today.weekday() == trigger["weekday"]
        elif every == "quarter":  # January, April, July, October (or their 2nd / 3rd month)
            due = today.day == trigger["day"] and (today.month - 1) % 3 == (trigger.get("month_of_quarter") or 1) - 1
        elif every == "year":
            due = today.month == trigger["month"] and today.day == trigger["day"]
        else:
            due = today.day == trigger["day"]
        return literal(True) if due else None
    return None


def audience_condition(audience: dict):
    users = User.__table__.c
    if audience["type"] == "tier":
        return users.tier.in_(audience["tiers"])
    if audience["type"] == "segment":
        from analytics.segments import members_of

        return users.id.in_(members_of(audience["segment_id"]))
    return literal(True)


def enrol_scheduled(journey: Journey, version: JourneyVersion, today: date, now: datetime | None = None) -> int:
    """Enrol today's members of a schedule journey in one INSERT … SELECT; returns how many."""
    now = now or utcnow()
    when = schedule_condition(version.trigger, today)
    if when is None:
        return 0
    users = User.__table__.c
    rule = version.entry["rule"]
    occurrence = "once" if rule == "once" else f"{version.trigger['type']}:{today.isoformat()}"
    conditions = [users.is_active_account.is_(True), when, audience_condition(version.audience)]
    if rule == "reentry_after":
        e = Enrolment.__table__.c
        conditions.append(~select(e.id).where(
            e.journey_id == journey.id, e.member_id == users.id,
            e.entered_at > now - timedelta(days=version.entry["days"])).exists())
    source = select(literal(journey.id), literal(version.id), users.id, literal(occurrence), literal("active"),
                    literal(now), literal(now)).where(*conditions)
    table = Enrolment.__table__
    stmt = dialect_insert(table).from_select(
        ["journey_id", "version_id", "member_id", "occurrence", "state", "next_run_at", "entered_at"], source,
    ).on_conflict_do_nothing()
    result = db.session.execute(stmt)
    count = result.rowcount
    if count is None or count < 0:  # a driver that does not report it for INSERT ... SELECT
        count = db.session.scalar(select(func.count()).select_from(Enrolment).where(
            Enrolment.journey_id == journey.id, Enrolment.entered_at == now))
    return count


def scan_schedules(today: date | None = None, now: datetime | None = None) -> dict:
    """Enrol for every active schedule journey not yet scanned today (one transaction each)."""
    now = now or utcnow()
    today = today or now.date()
    ids = db.session.scalars(select(Journey.id).where(
        Journey.status == "active", or_(Journey.scanned_on.is_(None), Journey.scanned_on < today))).all()
    result = {}
    for jid in ids:
        journey = db.session.scalar(select(Journey).where(Journey.id == jid).with_for_update())
        if journey.status != "active" or (journey.scanned_on is not None and journey.scanned_on >= today):
            db.session.rollback()
            continue
        version = db.session.get(JourneyVersion, journey.current_version_id)
        if version.trigger["type"] != "event":
            result[str(jid)] = enrol_scheduled(journey, version, today, now)
        journey.scanned_on = today
        db.session.commit()
    return result
