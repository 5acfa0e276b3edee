"""Save-time validation: bad definitions are refused with the field named (422)."""

from __future__ import annotations

import pytest

from errors import ValidationError
from journeys import definition


def _defn(steps, **extra):
    return {"trigger": {"type": "event", "event": "member.registered"}, "audience": {"type": "everyone"},
            "entry": {"rule": "once"}, "steps": steps, **extra}


def _fields(defn) -> dict:
    with pytest.raises(ValidationError) as info:
        definition.validate(defn)
    return info.value.fields


def test_a_cycle_is_refused(app, template):
    template("hi")
    fields = _fields(_defn([
        {"id": "a", "type": "action", "action": "send", "template": "hi", "next": "b"},
        {"id": "b", "type": "wait", "delay_minutes": 60, "next": "a"},
    ]))
    assert any(k.startswith("definition.steps.") and "cycle" in v[0] for k, v in fields.items())


def test_unreachable_unknown_and_out_of_range_are_named(app, template):
    template("hi")
    assert "definition.steps.1" in _fields(_defn([{"id": "a", "type": "exit"}, {"id": "b", "type": "exit"}]))
    assert "definition.steps.0.template" in _fields(_defn([{"id": "a", "type": "action", "action": "send",
                                                            "template": "nope"}]))
    assert "definition.steps.0.next" in _fields(_defn([{"id": "a", "type": "wait", "delay_minutes": 5,
                                                        "next": "zz"}]))
    assert "definition.steps.0.delay_minutes" in _fields(_defn([{"id": "a", "type": "wait",
                                                                 "delay_minutes": 10**7}]))
    assert "definition.steps.0.segment_id" in _fields(_defn([{"id": "a", "type": "condition",
                                                              "condition": "in_segment", "segment_id": 999999}]))
    assert "definition.steps.0.survey_id" in _fields(_defn([{"id": "a", "type": "action", "action": "invite_survey",
                                                             "survey_id": 999999}]))
    assert "definition.steps.0.points" in _fields(_defn([{"id": "a", "type": "action", "action": "award_points",
                                                          "points": 10**6}]))
    assert "definition.trigger.offset_days" in _fields({**_defn([{"id": "a", "type": "exit"}]),
                                                        "trigger": {"type": "date", "field": "birthday",
                                                                    "offset_days": 999}})
    assert "definition.steps.1.id" in _fields(_defn([{"id": "a", "type": "exit"}, {"id": "a", "type": "exit"}]))


def test_on_entry_day_needs_a_local_time_and_no_delay(app):
    for bad in ({"until_local_time": "09:00", "on_entry_day": "yes"},
                {"on_entry_day": True, "delay_minutes": 60},
                {"until_local_time": "09:00", "on_entry_day": True, "delay_minutes": 60}):
        assert "definition.steps.0.on_entry_day" in _fields(_defn([{"id": "a", "type": "wait", **bad}])), bad
    definition.validate(_defn([{"id": "a", "type": "wait", "until_local_time": "09:00", "on_entry_day": True}]))


def test_api_answers_422_with_the_field(app, login, make_member, template):
    template("hi")
    client = login(make_member(roles=("marketer",)))
    resp = client.post("/api/v1/journeys", json={"name": "bad", "definition": _defn([
        {"id": "a", "type": "action", "action": "send", "template": "missing"}])})
    assert resp.status_code == 422
    assert "definition.steps.0.template" in resp.get_json()["error"]["fields"]


def test_demo_journeys_are_valid_and_load_once(app):
    from sqlalchemy import func, select

    from demo import load_demo
    from extensions import db
    from journeys.models import Journey, JourneyTemplate

    load_demo()
    load_demo()
    names = set(db.session.scalars(select(Journey.name)))
    assert {"Welcome", "After purchase", "Birthday", "Win-back", "Renewal countdown", "Contract anniversary",
            "Satisfaction survey"} <= names
    assert db.session.scalar(select(func.count()).select_from(JourneyTemplate)) == 13
    statuses = dict(db.session.execute(select(Journey.name, Journey.status)).all())
    assert statuses["Welcome"] == "active" and statuses["Birthday"] == "draft"  # four eyes for points
    birthday = db.session.scalar(select(Journey).where(Journey.name == "Birthday"))
    steps = {s["id"]: s for s in __import__("journeys.services", fromlist=["x"]).current_version(birthday).steps}
    assert steps["double"]["action"] == "points_multiplier" and steps["double"]["multiplier"] == 2
    assert steps["double"]["until"] == "end_of_local_day" and "hours" not in steps["double"]


def test_quarterly_and_yearly_calendars_fire_on_their_days_and_bad_ones_are_named(app, template):
    """The "four ones" cadence's quarterly visit and yearly event as calendar triggers."""
    from datetime import date, timedelta

    from journeys.triggers import schedule_condition

    template("hi")
    steps = [{"id": "a", "type": "action", "action": "send", "template": "hi"}]
    quarter = {"type": "calendar", "every": "quarter", "day": 5}
    second = {"type": "calendar", "every": "quarter", "day": 5, "month_of_quarter": 2}
    year = {"type": "calendar", "every": "year", "month": 11, "day": 20}
    for trig in (quarter, second, year):
        definition.validate({**_defn(steps), "trigger": trig})
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert [d for d in days if schedule_condition(quarter, d) is not None] == [
        date(2026, m, 5) for m in (1, 4, 7, 10)]
    assert [d for d in days if schedule_condition(second, d) is not None] == [
        date(2026, m, 5) for m in (2, 5, 8, 11)]
    assert [d for d in days if schedule_condition(year, d) is not None] == [date(2026, 11, 20)]
    for bad, field in (({"every": "quarter", "day": 29}, "day"), ({"every": "quarter", "day": 1, "month_of_quarter": 4},
                                                                   "month_of_quarter"),
                       ({"every": "year", "day": 1}, "month"), ({"every": "year", "month": 13, "day": 1}, "month"),
                       ({"every": "fortnight"}, "every")):
        fields = _fields({**_defn(steps), "trigger": {"type": "calendar", **bad}})
        assert f"definition.trigger.{field}" in fields, (bad, fields)
