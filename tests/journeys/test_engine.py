"""The engine: triggers enrol, steps run exactly once, pause stops sends, holdout receives nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from community.models import Notification, utcnow
from extensions import db
from journeys import engine, services, triggers
from journeys.models import Enrolment
from points.models import JournalEntry
from points.services import record_interaction
from tests.conftest import in_threads

from .conftest import enrolments, executions

_keys = itertools.count()


def purchase(member, value=10):
    record_interaction(member.id, "purchase", key=f"test-purchase-{next(_keys)}", value=value)
    db.session.commit()


def advance_due(now=None):
    """What the jobs would do: advance every active enrolment (advance itself only takes due ones)."""
    ids = list(db.session.scalars(select(Enrolment.id).where(Enrolment.state == "active")))
    db.session.commit()
    return engine.advance(ids, now=now)


SEND_WAIT_TASK = [
    {"id": "thanks", "type": "action", "action": "send", "template": "thanks", "next": "wait"},
    {"id": "wait", "type": "wait", "delay_minutes": 7 * 24 * 60, "next": "again"},
    {"id": "again", "type": "condition", "condition": "purchased_since_entry", "then": "bye", "else": "call"},
    {"id": "call", "type": "action", "action": "task", "title": "Call this customer", "next": "bye"},
    {"id": "bye", "type": "exit"},
]


def test_a_purchase_enrols_sends_waits_and_branches(app, make_member, template, journey, run_jobs):
    template("thanks")
    j = journey(SEND_WAIT_TASK, goal={"event": "purchase.recorded", "within_days": 30})
    member = make_member()
    purchase(member)
    (e,) = enrolments(j.id)
    assert e.state == "active" and e.occurrence.startswith("purchase:")
    run_jobs(["journeys"])  # the advance job enqueued after the commit, through Redis
    (e,) = enrolments(j.id)
    assert e.current_step == "wait" and e.wait_until is not None
    assert [(x.step_id, x.outcome) for x in executions(j.id)] == [("thanks", "sent")]
    note = db.session.scalar(select(Notification).where(Notification.member_id == member.id))
    assert note.kind == "journeys.community.thanks" and note.payload["subject"]["zh-CN"] == "主题 thanks"
    # Nothing is due before the week is over; afterwards the condition is false → a staff task.
    assert advance_due()["advanced"] == 0
    advance_due(now=utcnow() + timedelta(days=8))
    outcomes = [(x.step_id, x.reason) for x in executions(j.id)]
    assert ("again", "condition_false") in outcomes and ("call", "task_created") in outcomes
    (e,) = enrolments(j.id)
    assert e.state == "exited"
    stats = __import__("journeys.stats", fromlist=["x"]).journey_stats(j)
    assert stats["entered"] == 1 and {s["step_id"]: s["sent"] for s in stats["steps"]}["thanks"] == 1


def test_pause_stops_sends_at_execution_time(app, make_member, template, journey):
    template("thanks")
    j = journey(SEND_WAIT_TASK)
    member = make_member()
    purchase(member)
    ids = engine.due_ids(100)
    db.session.commit()
    services.set_status(None, j.id, "pause")  # paused after the job was handed out
    db.session.commit()
    assert engine.advance(ids)["advanced"] == 0
    assert executions(j.id) == []
    assert engine.due_ids(100) == []  # the sweeper leaves paused journeys alone
    db.session.rollback()
    services.set_status(None, j.id, "activate")
    db.session.commit()
    db.session.execute(Enrolment.__table__.update().values(enqueued_at=None))
    db.session.commit()
    advance_due()
    assert [x.step_id for x in executions(j.id)] == ["thanks"]


def test_holdout_enters_but_receives_nothing(app, make_member, template, journey):
    template("thanks")
    members = [make_member() for _ in range(40)]
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks"}], holdout_share=0.5)
    assert j.experiment_id is not None
    for m in members:
        purchase(m)
    advance_due()
    rows = enrolments(j.id)
    assert len(rows) == 40
    held = {e.member_id for e in rows if e.arm == "holdout"}
    assert 5 < len(held) < 35
    sent_to = set(db.session.scalars(select(Notification.member_id).where(Notification.kind.like("journeys.%"))))
    assert sent_to.isdisjoint(held) and len(sent_to) == 40 - len(held)
    reasons = {x.reason for x in executions(j.id) if x.outcome == "skipped"}
    assert reasons == {"holdout"}


def test_unsubscribed_member_is_skipped_with_the_reason(app, make_member, template, journey):
    from messaging.preferences import set_channel

    template("thanks", category="marketing")
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks"}])
    member = make_member()
    set_channel(member.id, "marketing", "in_app", False)  # email is opt-in: now nothing reaches them
    db.session.commit()
    purchase(member)
    advance_due()
    assert [(x.outcome, x.reason) for x in executions(j.id)] == [("skipped", "unsubscribed")]


def test_points_are_awarded_once_and_never_to_the_author(app, make_member, journey):
    author, checker = make_member(roles=("marketer",)), make_member(roles=("marketer",))
    steps = [{"id": "gift", "type": "action", "action": "award_points", "points": 50}]
    # Four eyes: the author may not activate a journey that awards points.
    import pytest

    from errors import Forbidden

    with pytest.raises(Forbidden):
        journey(steps, author=author, activator=author)
    db.session.rollback()
    j = journey(steps, author=author, activator=checker)
    member = make_member()
    purchase(author)
    purchase(member)
    advance_due()
    advance_due()
    by_member = {x.member_id: (x.outcome, x.reason) for x in executions(j.id)}
    assert by_member[author.id] == ("skipped", "own_journey")
    assert by_member[member.id] == ("done", "awarded")
    awards = db.session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.member_id == member.id, JournalEntry.source_type == "journey"))
    assert awards == 1


def test_concurrent_advances_execute_each_step_once(app, make_member, template, journey):
    template("thanks")
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks", "next": "tag"},
                 {"id": "tag", "type": "action", "action": "tag", "tag": "journeyed"}])
    members = [make_member() for _ in range(12)]
    for m in members:
        purchase(m)
    ids = [e.id for e in enrolments(j.id)]

    def run(_i):
        with app.app_context():
            return engine.advance(ids)

    results = in_threads(4, run)
    assert not [r for r in results if isinstance(r, Exception)], results
    rows = executions(j.id)
    assert len(rows) == 24 and len({(x.member_id, x.step_id) for x in rows}) == 24
    notes = db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.kind == "journeys.community.thanks"))
    assert notes == 12


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.sampled_from(["advance", "advance_dup", "reset_lease", "later"]),
                               st.integers(min_value=1, max_value=5)), min_size=1, max_size=8))
def test_each_step_executes_exactly_once_under_repeated_jobs(app, make_member, template, journey, plan):
    """Whatever mix of repeated, duplicated and lease-expired jobs runs, each step runs at most once,
    and once the wait is over, every step exactly once."""
    from journeys.models import JourneyTemplate

    if db.session.scalar(select(JourneyTemplate.id).where(JourneyTemplate.key == "thanks")) is None:
        template("thanks")
    j = journey([{"id": "a", "type": "action", "action": "send", "template": "thanks", "next": "w"},
                 {"id": "w", "type": "wait", "delay_minutes": 60, "next": "b"},
                 {"id": "b", "type": "action", "action": "award_points", "points": 5}])
    members = [make_member() for _ in range(3)]
    for m in members:
        purchase(m)
    ids = [e.id for e in enrolments(j.id)]
    now = utcnow()
    for op, n in plan:
        if op == "advance":
            engine.advance(ids[:n], now=now)
        elif op == "advance_dup":
            engine.advance(ids + ids, now=now)
        elif op == "reset_lease":
            db.session.execute(Enrolment.__table__.update().where(Enrolment.id.in_(ids)).values(enqueued_at=None))
            db.session.commit()
        else:
            now += timedelta(minutes=30 * n)
        rows = executions(j.id)
        assert len(rows) == len({(x.member_id, x.step_id) for x in rows})
    engine.advance(ids, now=now + timedelta(hours=2))
    engine.advance(ids, now=now + timedelta(days=1))
    rows = executions(j.id)
    assert sorted((x.member_id, x.step_id) for x in rows) == sorted((m.id, s) for m in members for s in "awb")
    sends = db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.member_id.in_([m.id for m in members]), Notification.kind.like("journeys.%")))
    assert sends == 3


def test_birthday_and_renewal_schedules_enrol_today_only(app, make_member, template, journey):
    today = utcnow().date()
    template("hb")
    birthday = journey([{"id": "hb", "type": "action", "action": "send", "template": "hb"}],
                       trigger={"type": "date", "field": "birthday"}, entry={"rule": "per_occurrence"})
    renewal = journey([{"id": "hb", "type": "action", "action": "send", "template": "hb"}],
                      trigger={"type": "date", "field": "renewal_on", "offset_days": -90})
    yes = make_member(birthday=today.replace(year=1990), renewal_on=today + timedelta(days=90))
    no = make_member(birthday=(today + timedelta(days=1)).replace(year=1990), renewal_on=today + timedelta(days=91))
    result = triggers.scan_schedules()
    assert result == {str(birthday.id): 1, str(renewal.id): 1}
    assert [e.member_id for e in enrolments(birthday.id)] == [yes.id]
    assert [e.member_id for e in enrolments(renewal.id)] == [yes.id]
    assert no.id not in {e.member_id for e in enrolments(birthday.id)}
    assert triggers.scan_schedules() == {}  # once a day


def test_a_mixed_chunk_is_written_set_based_with_each_row_its_own_values(app, make_member, template, journey):
    """One chunk with sends, unsubscribes and local-time waits ending at different instants: the
    grouped UPDATEs give every execution its own outcome and notification, every enrolment its
    own state and wake-up time."""
    from messaging.preferences import member_preferences, set_channel

    template("thanks", category="marketing")
    j = journey([
        {"id": "thanks", "type": "action", "action": "send", "template": "thanks", "next": "nine"},
        {"id": "nine", "type": "wait", "until_local_time": "09:00", "next": "bye"},
        {"id": "bye", "type": "exit"},
    ])
    members = [make_member() for _ in range(12)]
    zones = ["UTC", "Asia/Shanghai", "America/New_York", "Europe/Berlin"]
    zone = {m.id: zones[i % 4] if i < 11 else "Asia/Kolkata" for i, m in enumerate(members)}  # one alone
    for i, m in enumerate(members):
        member_preferences(m.id).time_zone = zone[m.id]
        if i % 3 == 0:
            set_channel(m.id, "marketing", "in_app", False)
    db.session.commit()
    for m in members:
        purchase(m)
    db.session.execute(Enrolment.__table__.update().values(enqueued_at=None))  # as one sweep hands them out
    db.session.commit()
    assert advance_due()["advanced"] == 12
    by_member = {x.member_id: x for x in executions(j.id)}
    assert len(by_member) == 12
    notes = {n.member_id: n.id for n in db.session.scalars(
        select(Notification).where(Notification.kind == "journeys.marketing.thanks"))}
    for i, m in enumerate(members):
        x = by_member[m.id]
        if i % 3 == 0:
            assert (x.outcome, x.reason, x.notification_id) == ("skipped", "unsubscribed", None)
        else:
            assert (x.outcome, x.reason, x.notification_id) == ("sent", None, notes[m.id])
    rows = {e.member_id: e for e in enrolments(j.id)}
    for m in members:
        e = rows[m.id]
        assert e.state == "active" and e.current_step == "nine" and e.next_run_at == e.wait_until
        assert e.wait_until == min(rows[o.id].wait_until for o in members if zone[o.id] == zone[m.id])
    assert len({e.wait_until for e in rows.values()}) == 5  # one wake-up per zone
    later = max(e.wait_until for e in rows.values()) + timedelta(minutes=1)
    assert advance_due(now=later)["advanced"] == 12
    assert {e.state for e in enrolments(j.id)} == {"exited"}
    assert len(executions(j.id)) == 36


def test_a_replayed_send_keeps_its_notification_and_writes_no_other(app, make_member, template, journey):
    """The send's execution row is inserted complete (on PostgreSQL with the notification id its
    INSERT drew from the notifications' sequence): replaying the chunk (the enrolments handed out
    again at the start) finds the rows, writes no notification and keeps the first ones' links;
    a member new to the chunk is sent to normally beside them."""
    template("thanks")
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks"}])
    first, later = [make_member() for _ in range(3)], make_member()
    for m in first:
        purchase(m)
    assert advance_due()["advanced"] == 3
    linked = {x.member_id: x.notification_id for x in executions(j.id)}
    notes = {n.id: n.member_id for n in db.session.scalars(
        select(Notification).where(Notification.kind == "journeys.community.thanks"))}
    assert sorted(linked) == sorted(m.id for m in first) and {notes[nid] for nid in linked.values()} == set(linked)
    assert all(notes[nid] == mid for mid, nid in linked.items())

    db.session.execute(Enrolment.__table__.update().values(state="active", current_step=None, next_run_at=utcnow(),
                                                           finished_at=None, enqueued_at=None))
    db.session.commit()
    purchase(later)
    db.session.execute(Enrolment.__table__.update().values(enqueued_at=None))
    db.session.commit()
    assert advance_due()["advanced"] == 4
    rows = {x.member_id: x for x in executions(j.id)}
    assert {m: (x.outcome, x.notification_id) for m, x in rows.items() if m != later.id} == {
        m: ("sent", nid) for m, nid in linked.items()}
    notes = {n.member_id: n.id for n in db.session.scalars(
        select(Notification).where(Notification.kind == "journeys.community.thanks"))}
    assert len(notes) == 4 and rows[later.id].notification_id == notes[later.id]
    assert all(e.state == "done" for e in enrolments(j.id))


def test_a_chunk_of_three_journeys_sends_each_member_its_own_message_in_batches(app, make_member, template, journey):
    """Sends are written one INSERT per distinct message (PostgreSQL: ids drawn by the claim,
    payload sent once per journey and step): members of three journeys (two with the same
    template) in the same chunks get each journey's own message, once, linked from their own
    execution row, whatever the batch size (``JOURNEYS_BATCH_SIZE`` 3 here: 21 enrolments in
    seven transactions, then 7 in three)."""
    template("thanks")
    template("welcome", category="marketing")
    thanks = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks"}])
    again = journey([{"id": "again", "type": "action", "action": "send", "template": "thanks"}])  # same kind
    welcome = journey([{"id": "hello", "type": "wait", "delay_minutes": 1, "next": "welcome"},
                       {"id": "welcome", "type": "action", "action": "send", "template": "welcome"}])
    members = [make_member() for _ in range(7)]
    for m in members:
        purchase(m)
    db.session.execute(Enrolment.__table__.update().values(enqueued_at=None))
    db.session.commit()
    app.config["JOURNEYS_BATCH_SIZE"] = 3
    try:
        assert engine.batch_size() == 3
        assert advance_due()["advanced"] == 21  # thanks sent twice; the welcome journey's members start waiting
        assert advance_due(now=utcnow() + timedelta(minutes=2))["advanced"] == 7  # the wait over, then the send
    finally:
        app.config["JOURNEYS_BATCH_SIZE"] = 1000
    notes = {n.id: n for n in db.session.scalars(select(Notification).where(Notification.kind.like("journeys.%")))}
    assert len(notes) == 21
    for j, step, kind, subject in ((thanks, "thanks", "journeys.community.thanks", "Subject thanks"),
                                   (again, "again", "journeys.community.thanks", "Subject thanks"),
                                   (welcome, "welcome", "journeys.marketing.welcome", "Subject welcome")):
        sends = [x for x in executions(j.id) if x.step_id == step]
        assert sorted(x.member_id for x in sends) == sorted(m.id for m in members)
        for x in sends:
            n = notes[x.notification_id]
            assert (x.outcome, n.member_id, n.kind) == ("sent", x.member_id, kind)
            assert n.payload["journey_id"] == j.id and n.payload["step_id"] == step
            assert n.payload["subject"]["en"] == subject
    assert {x.outcome for x in executions(welcome.id) if x.step_id == "hello"} == {"done"}
    assert len(executions(welcome.id)) == 14
    assert {e.state for e in enrolments(thanks.id) + enrolments(again.id) + enrolments(welcome.id)} == {"done"}
