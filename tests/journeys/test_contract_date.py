"""The member's contract date (``users.contract_on``): staff set it (with ``renewal_on``), and the
``contract_on`` date trigger enters members on its yearly anniversary, by an indexed query."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, text

from community.models import AuditLog, User
from extensions import db
from journeys import services, triggers

from .conftest import enrolments

SEND = [{"id": "hi", "type": "action", "action": "send", "template": "hi"}]


def _scan(j, today: date) -> set[int]:
    triggers.enrol_scheduled(j, services.current_version(j), today, datetime.combine(today, datetime.min.time()))
    db.session.commit()
    return {e.member_id for e in enrolments(j.id)}


def test_the_anniversary_of_the_contract_enters_with_its_offset(app, make_member, template, journey):
    template("hi")
    today = date(2027, 6, 15)
    on_day = journey(SEND, trigger={"type": "date", "field": "contract_on"})
    before = journey(SEND, trigger={"type": "date", "field": "contract_on", "offset_days": -30})
    one_year = make_member(contract_on=date(2026, 6, 15))
    ten_years = make_member(contract_on=date(2017, 6, 15))
    starts_today = make_member(contract_on=date(2027, 6, 15))  # its start, not an anniversary
    starts_later = make_member(contract_on=date(2028, 6, 15))  # a contract not begun yet
    other_day = make_member(contract_on=date(2026, 6, 16))
    in_30_days = make_member(contract_on=date(2025, 7, 15))
    renewal_only = make_member(renewal_on=today)  # renewal_on is a field of its own
    nothing = make_member()
    assert _scan(on_day, today) == {one_year.id, ten_years.id}
    assert _scan(before, today) == {in_30_days.id}
    for m in (starts_today, starts_later, other_day, renewal_only, nothing):
        assert m.id not in {e.member_id for e in enrolments(on_day.id)}
    # The occurrence is the day, so next year's anniversary enters the member again.
    assert {e.occurrence for e in enrolments(on_day.id)} == {"date:2027-06-15"}
    assert _scan(on_day, date(2028, 6, 15)) == {one_year.id, ten_years.id, starts_today.id}


def test_a_29_february_contract_has_its_anniversary_on_28_february(app, make_member, template, journey):
    template("hi")
    j = journey(SEND, trigger={"type": "date", "field": "contract_on"})
    leap = make_member(contract_on=date(2024, 2, 29))
    feb28 = make_member(contract_on=date(2024, 2, 28))
    assert _scan(j, date(2027, 2, 28)) == {leap.id, feb28.id}
    k = journey(SEND, trigger={"type": "date", "field": "contract_on"})
    assert _scan(k, date(2028, 2, 28)) == {feb28.id}  # a leap year: 29 February comes next
    assert _scan(k, date(2028, 2, 29)) == {feb28.id, leap.id}


def test_the_scan_uses_the_contract_month_day_index(app):
    """The schedule's predicate is written as the expression index is, so the planner can use it."""
    from sqlalchemy import literal_column

    condition = triggers.schedule_condition({"type": "date", "field": "contract_on"}, date(2027, 6, 15))
    query = select(literal_column("users.id")).select_from(User.__table__).where(condition)
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {sql}")))
        else:
            plan = "\n".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "ix_users_contract_md" in plan, plan


def test_staff_set_the_renewal_and_contract_dates_audited(app, login, make_member):
    member = make_member(renewal_on=date(2027, 1, 1))
    admin = login(make_member(roles=("admin",)))
    url = f"/api/v1/admin/users/{member.id}/dates"
    resp = admin.patch(url, json={"contract_on": "2024-03-01", "reason": "contract signed"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["contract_on"] == "2024-03-01" and body["renewal_on"] == "2027-01-01"  # untouched
    resp = admin.patch(url, json={"renewal_on": "2028-01-01", "contract_on": None, "reason": "renewed, new plan"})
    assert resp.get_json()["renewal_on"] == "2028-01-01" and resp.get_json()["contract_on"] is None
    db.session.expire_all()
    user = db.session.get(User, member.id)
    assert (user.renewal_on, user.contract_on) == (date(2028, 1, 1), None)
    logs = list(db.session.scalars(select(AuditLog).where(AuditLog.action == "community.member_dates.set")
                                   .order_by(AuditLog.id)))
    assert [log.details for log in logs] == [
        {"before": {"contract_on": None}, "after": {"contract_on": "2024-03-01"}},
        {"before": {"renewal_on": "2027-01-01", "contract_on": "2024-03-01"},
         "after": {"renewal_on": "2028-01-01", "contract_on": None}},
    ]
    assert admin.get(f"/api/v1/admin/users/{member.id}").get_json()["renewal_on"] == "2028-01-01"
    # Bad input: 422 naming the field.
    for bad, field in (({"contract_on": "2024-03-01"}, "reason"),
                       ({"reason": "x"}, "_schema"),
                       ({"renewal_on": "soon", "reason": "x"}, "renewal_on"),
                       ({"contract_on": "2024-03-01", "reason": "x", "tier": "loyal"}, "tier")):
        resp = admin.patch(url, json=bad)
        assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"], (bad, resp.get_json())
    assert admin.patch("/api/v1/admin/users/999999/dates", json={"contract_on": None, "reason": "x"}
                       ).status_code == 404
    marketer = login(make_member(roles=("marketer",)))
    assert marketer.patch(url, json={"contract_on": "2024-03-01", "reason": "x"}).status_code == 403


def test_a_contract_date_journey_is_refused_with_a_bad_field(app, template):
    import pytest

    from errors import ValidationError
    from journeys import definition

    with pytest.raises(ValidationError) as info:
        definition.validate({"trigger": {"type": "date", "field": "contract_date"}, "audience": {"type": "everyone"},
                             "entry": {"rule": "once"}, "steps": [{"id": "a", "type": "exit"}]})
    assert "contract_on" in info.value.fields["definition.trigger.field"][0]
    definition.validate({"trigger": {"type": "date", "field": "contract_on", "offset_days": -30},
                         "audience": {"type": "everyone"}, "entry": {"rule": "per_occurrence"},
                         "steps": [{"id": "a", "type": "exit"}]})
