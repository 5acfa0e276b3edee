"""The ``points_multiplier`` action end to end: a journey grants a member double points for a
window through the points domain's earning rules; the member earns double inside it and normally
after; the author gets nothing; bad input is a 422 naming the field; four eyes to activate."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from extensions import db
from points.models import JournalEntry, MemberMultiplier
from points.services import record_interaction

from .conftest import enrolments, executions

STEPS = [{"id": "double", "type": "action", "action": "points_multiplier", "multiplier": 2, "hours": 2,
          "kinds": ["purchase"]}]
DEFN = {"trigger": {"type": "event", "event": "purchase.recorded"}, "audience": {"type": "everyone"},
        "entry": {"rule": "once"}, "steps": STEPS}


def _earned(key: str) -> int:
    from points.models import Interaction

    return db.session.scalar(select(Interaction.points).where(Interaction.key == key))


def test_a_member_earns_double_inside_the_window_and_normally_after(app, login, make_member, run_jobs):
    author_user, checker_user = make_member(roles=("marketer",)), make_member(roles=("marketer",))
    author, checker = login(author_user), login(checker_user)

    # Save-time validation names the field.
    for bad, field in (({"multiplier": 1}, "multiplier"), ({"multiplier": 2.0001}, "multiplier"),
                       ({"multiplier": "2"}, "multiplier"), ({"multiplier": True}, "multiplier"),
                       ({"multiplier": 11}, "multiplier"), ({"hours": 0}, "hours"), ({"hours": 721}, "hours"),
                       ({"kinds": ["nope"]}, "kinds"), ({"kinds": []}, "kinds"),
                       ({"until": "midnight"}, "until"), ({"until": "end_of_local_day"}, "until"),  # with hours
                       ({"hours": None}, "hours")):
        step = {k: v for k, v in {**STEPS[0], **bad}.items() if v is not None}
        resp = author.post("/api/v1/journeys", json={"name": "bad", "definition": {**DEFN, "steps": [step]}})
        assert resp.status_code == 422, (bad, resp.get_json())
        assert f"definition.steps.0.{field}" in resp.get_json()["error"]["fields"], resp.get_json()

    resp = author.post("/api/v1/journeys", json={"name": "Double points", "definition": DEFN})
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    # Four eyes, as for award_points: not the author.
    resp = author.post(f"/api/v1/journeys/{jid}/status", json={"status": "active"})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "four_eyes"
    assert checker.post(f"/api/v1/journeys/{jid}/status", json={"status": "active"}).status_code == 200

    member = make_member()
    record_interaction(member.id, "purchase", key="mult-enter", value=10)  # enters the journey
    record_interaction(author_user.id, "purchase", key="mult-author", value=10)
    db.session.commit()
    assert _earned("mult-enter") == 10  # earned before the step ran
    run_jobs(["journeys"])
    by_member = {x.member_id: (x.outcome, x.reason) for x in executions(jid)}
    assert by_member == {member.id: ("done", "multiplier"), author_user.id: ("skipped", "own_journey")}
    (grant,) = db.session.scalars(select(MemberMultiplier)).all()
    assert grant.member_id == member.id and grant.multiplier == 2 and grant.source_type == "journey"
    assert grant.ends_at - grant.starts_at == timedelta(hours=2)
    starts, ends = grant.starts_at, grant.ends_at

    # Inside the window: purchases count double, other kinds (not in ``kinds``) do not.
    record_interaction(member.id, "purchase", key="mult-inside", value=20)
    record_interaction(member.id, "profile_completed", key="mult-profile")
    record_interaction(author_user.id, "purchase", key="mult-author-2", value=20)
    db.session.commit()
    assert _earned("mult-inside") == 40
    assert _earned("mult-profile") == 20
    assert _earned("mult-author-2") == 20

    # Replaying the step (a repeated job, the enrolment handed out again) grants nothing new.
    from journeys import engine

    ids = [e.id for e in enrolments(jid)]
    db.session.execute(update(__import__("journeys.models", fromlist=["x"]).Enrolment.__table__)
                       .values(state="active", current_step=None, next_run_at=starts, enqueued_at=None))
    db.session.commit()
    engine.advance(ids)
    assert db.session.scalar(select(func.count()).select_from(MemberMultiplier)) == 1

    # Two hours later the window is over: normal points again (the window is moved into the past
    # rather than the clock forward; a purchase dated inside it still earns double).
    inside_at = starts - timedelta(hours=1, minutes=30)
    db.session.execute(update(MemberMultiplier).values(starts_at=starts - timedelta(hours=2),
                                                       ends_at=ends - timedelta(hours=2)))
    db.session.commit()
    record_interaction(member.id, "purchase", key="mult-after", value=20)
    record_interaction(member.id, "purchase", key="mult-dated-inside", value=20, occurred_at=inside_at)
    db.session.commit()
    assert _earned("mult-after") == 20
    assert _earned("mult-dated-inside") == 40
    # Every point went through the append-only ledger, one award per interaction, none to the author
    # from the journey itself.
    awards = db.session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.member_id == member.id, JournalEntry.kind == "award"))
    assert awards == 5
    assert db.session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.source_type == "journey")) == 0


def test_the_highest_of_campaign_and_member_multiplier_applies(app, make_member):
    """Multipliers do not stack: a 1.5 campaign and a member's 2 give 2, not 3."""
    from datetime import datetime

    from points.models import Campaign
    from points.services import grant_multiplier

    member = make_member()
    db.session.add(Campaign(name="Autumn", multiplier=1.5, starts_at=datetime(2000, 1, 1),
                            ends_at=datetime(2100, 1, 1)))
    now = __import__("community.models", fromlist=["x"]).utcnow()
    first = grant_multiplier(member.id, 2, now - timedelta(minutes=1), now + timedelta(hours=1), key="m1",
                             source_type="test")
    assert grant_multiplier(member.id, 3, now, now + timedelta(hours=1), key="m1", source_type="test") == first
    db.session.commit()
    record_interaction(member.id, "purchase", key="mult-both", value=10)
    db.session.commit()
    assert _earned("mult-both") == 20


def test_caps_still_cut_multiplied_points_and_other_members_earn_normally(app, make_member):
    """A post earns 10 (daily cap 50); doubled it earns 20, and the cap still stops it at 50."""
    from points.services import grant_multiplier

    member, other = make_member(), make_member()
    now = __import__("community.models", fromlist=["x"]).utcnow()
    grant_multiplier(member.id, 2, now - timedelta(minutes=1), now + timedelta(hours=1), key="cap-m",
                     source_type="test", kinds=["post"])
    db.session.commit()
    for i in range(3):
        record_interaction(member.id, "post", key=f"cap-post-{i}")
        record_interaction(other.id, "post", key=f"cap-other-{i}")
        db.session.commit()
    assert [_earned(f"cap-post-{i}") for i in range(3)] == [20, 20, 10]
    assert [_earned(f"cap-other-{i}") for i in range(3)] == [10, 10, 10]


def test_birthday_double_points_last_the_members_own_local_birthday(app, make_member):
    """The demo's birthday journey as shipped (``until: end_of_local_day``): the schedule scans
    the UTC date at 00:30 UTC on 15 June; a member in Shanghai (UTC+8, already 08:30 on their
    birthday) earns double until their local midnight (16:00 UTC), one in Los Angeles (UTC-7, still
    17:30 on the 14th) from their local midnight (07:00 UTC) for the whole of their birthday, one
    without preferences on messaging's default time zone (UTC).  Each purchase goes through the
    real earning rules and the ledger, one minute either side of each midnight."""
    from datetime import date, datetime

    from journeys import demo, engine, services, triggers
    from journeys.models import Enrolment
    from messaging.preferences import DEFAULT_TIME_ZONE, member_preferences

    assert DEFAULT_TIME_ZONE == "UTC"
    author, checker = make_member(roles=("marketer",)), make_member(roles=("marketer",))
    for key, category, subject_en, subject_zh, body_en, body_zh in demo.TEMPLATES:
        if key == "birthday":
            services.create_template(None, {"key": key, "category": category,
                                            "subject": {"en": subject_en, "zh-CN": subject_zh},
                                            "body": {"en": body_en, "zh-CN": body_zh}})
    _, description, definition, _ = next(item for item in demo.journeys(None) if item[0] == "Birthday")
    j = services.create(author.id, {"name": "Birthday (local)", "description": description, "definition": definition})
    db.session.commit()
    services.set_status(checker.id, j.id, "activate")
    db.session.commit()

    shanghai, los_angeles, default = (make_member(birthday=date(1990, 6, 15)) for _ in range(3))
    make_member(birthday=date(1990, 6, 16))  # not today
    for member, zone in ((shanghai, "Asia/Shanghai"), (los_angeles, "America/Los_Angeles")):
        member_preferences(member.id).time_zone = zone
    db.session.commit()

    scan_at = datetime(2026, 6, 15, 0, 30)
    triggers.scan_schedules(today=date(2026, 6, 15), now=scan_at)
    ids = list(db.session.scalars(select(Enrolment.id).where(Enrolment.journey_id == j.id)))
    assert len(ids) == 3
    engine.advance(ids, now=scan_at)
    outcomes = {(x.member_id, x.step_id): (x.outcome, x.reason) for x in executions(j.id)}
    for member in (shanghai, los_angeles, default):
        assert outcomes[(member.id, "double")] == ("done", "multiplier")
        assert outcomes[(member.id, "gift")] == ("done", "awarded")
    windows = {g.member_id: (g.starts_at, g.ends_at) for g in db.session.scalars(select(MemberMultiplier))}
    assert windows == {
        shanghai.id: (scan_at, datetime(2026, 6, 15, 16, 0)),  # midnight in Shanghai
        los_angeles.id: (datetime(2026, 6, 15, 7, 0), datetime(2026, 6, 16, 7, 0)),  # PDT midnight to midnight
        default.id: (scan_at, datetime(2026, 6, 16, 0, 0)),
    }

    # The greeting waits for 09:00 on the birthday on each member's clock (``on_entry_day``):
    # 01:00 UTC in Shanghai, 16:00 UTC in Los Angeles (not 09:00 on the 14th), 09:00 UTC by default.
    assert not [x for x in executions(j.id) if x.step_id in ("morning", "greet")]
    wake = {e.member_id: e.next_run_at for e in db.session.scalars(select(Enrolment).where(Enrolment.id.in_(ids)))}
    assert wake == {shanghai.id: datetime(2026, 6, 15, 1, 0), los_angeles.id: datetime(2026, 6, 15, 16, 0),
                    default.id: datetime(2026, 6, 15, 9, 0)}
    engine.advance(ids, now=datetime(2026, 6, 15, 9, 0))
    greeted = {x.member_id: x.outcome for x in executions(j.id) if x.step_id == "greet"}
    assert greeted == {shanghai.id: "sent", default.id: "sent"}
    engine.advance(ids, now=datetime(2026, 6, 15, 16, 0))
    greeted = {x.member_id: x.outcome for x in executions(j.id) if x.step_id == "greet"}
    assert greeted == {shanghai.id: "sent", default.id: "sent", los_angeles.id: "sent"}

    minute = timedelta(minutes=1)
    cases = [  # (member, occurred at (UTC), points for a purchase of 20)
        (shanghai, datetime(2026, 6, 15, 16, 0) - minute, 40),  # 23:59 on the 15th in Shanghai
        (shanghai, datetime(2026, 6, 15, 16, 0), 20),  # 00:00 on the 16th
        (los_angeles, datetime(2026, 6, 15, 7, 0) - minute, 20),  # 23:59 on the 14th in Los Angeles
        (los_angeles, datetime(2026, 6, 15, 7, 0), 40),  # 00:00 on the 15th
        (los_angeles, datetime(2026, 6, 16, 7, 0) - minute, 40),  # 23:59 on the 15th
        (los_angeles, datetime(2026, 6, 16, 7, 0), 20),  # 00:00 on the 16th
        (default, datetime(2026, 6, 16, 0, 0) - minute, 40),
        (default, datetime(2026, 6, 16, 0, 0), 20),
    ]
    for i, (member, at, _) in enumerate(cases):
        record_interaction(member.id, "purchase", key=f"local-day-{i}", value=20, occurred_at=at)
        db.session.commit()
    assert [_earned(f"local-day-{i}") for i in range(len(cases))] == [points for *_, points in cases]
    # Each earning is one award in the ledger, of what the rules gave.
    from points.models import Interaction

    for i, (member, _, points) in enumerate(cases):
        interaction = db.session.scalar(select(Interaction).where(Interaction.key == f"local-day-{i}"))
        entry = db.session.scalar(select(JournalEntry).where(JournalEntry.key == f"earn:local-day-{i}"))
        assert entry.member_id == member.id and entry.kind == "award" and entry.amount == points == interaction.points

    # Replaying the chunk grants no second window.
    db.session.execute(update(Enrolment.__table__).values(state="active", current_step=None, next_run_at=scan_at))
    db.session.commit()
    engine.advance(ids, now=scan_at)
    assert db.session.scalar(select(func.count()).select_from(MemberMultiplier)) == 3


def test_a_wait_until_a_local_time_on_the_entry_day():
    """``on_entry_day``: that time on the schedule's day on the member's clock, or at once if it has
    passed (never the next day); without it, the next time the clock shows it."""
    from datetime import datetime

    from journeys.engine import wait_until

    step = {"type": "wait", "until_local_time": "09:00", "on_entry_day": True}
    scan = datetime(2026, 6, 15, 0, 30)  # 17:30 on the 14th in Los Angeles, 09:30 on the 15th in Tokyo
    assert wait_until(step, 0, scan, "America/Los_Angeles", "date:2026-06-15") == datetime(2026, 6, 15, 16, 0)
    assert wait_until(step, 0, scan, "Asia/Tokyo", "date:2026-06-15") == scan
    assert wait_until(step, 0, scan, "UTC", "date:2026-06-15") == datetime(2026, 6, 15, 9, 0)
    # Outside a schedule: the member's local day at the step.
    assert wait_until(step, 0, scan, "America/Los_Angeles", "once") == scan  # 17:30 is past 09:00 on the 14th
    plain = {"type": "wait", "until_local_time": "09:00"}
    assert wait_until(plain, 0, scan, "Asia/Tokyo", "date:2026-06-15") == datetime(2026, 6, 16, 0, 0)


def test_the_local_day_window_for_events_and_for_a_day_already_over():
    """Outside a schedule the window is the rest of the member's local day at the step; a
    schedule date whose local day is already over gives no window (the engine records ``day_over``)."""
    from datetime import datetime

    from journeys.engine import local_day_window

    # 20:00 UTC is 04:00 the next day in Shanghai: until its midnight, 16:00 UTC the next day.
    now = datetime(2026, 6, 15, 20, 0)
    assert local_day_window(now, "Asia/Shanghai", "purchase:abc") == (now, datetime(2026, 6, 16, 16, 0))
    assert local_day_window(now, "America/Los_Angeles", "once") == (now, datetime(2026, 6, 16, 7, 0))
    assert local_day_window(now, "UTC", "once") == (now, datetime(2026, 6, 16, 0, 0))
    assert local_day_window(now, "Asia/Shanghai", "date:2026-06-15") is None
    assert local_day_window(now, "America/Los_Angeles", "date:2026-06-15") == (now, datetime(2026, 6, 16, 7, 0))
    # Winter: Los Angeles is UTC-8.
    assert local_day_window(datetime(2026, 12, 1, 9, 0), "America/Los_Angeles", "date:2026-12-01") == (
        datetime(2026, 12, 1, 9, 0), datetime(2026, 12, 2, 8, 0))
