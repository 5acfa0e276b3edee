from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from errors import Conflict, ValidationError
from extensions import db
from points import ledger, services
from points.models import EarningRule, Interaction
from tests.points.helpers import assert_ledger_consistent


def test_record_interaction_awards_and_is_idempotent(make_member):
    m = make_member()
    seen = []

    def receiver(sender, **kw):
        seen.append(sender.key)

    services.interaction_recorded.connect(receiver)
    try:
        i1 = services.record_interaction(m.id, "post", key="post:1", source_type="post", source_id=1)
        i2 = services.record_interaction(m.id, "post", key="post:1", source_type="post", source_id=1)
    finally:
        services.interaction_recorded.disconnect(receiver)
    db.session.commit()
    assert i1.id == i2.id and i1.entry_id is not None and i1.points == 10
    assert seen == ["post:1"]
    assert ledger.get_balance(m.id).available == 10
    with pytest.raises(Conflict):
        services.record_interaction(m.id, "reply", key="post:1", source_type="post", source_id=1)


def test_interaction_without_points_is_still_recorded(make_member):
    m = make_member()
    i = services.record_interaction(m.id, "refund", key="refund:1")
    assert i.entry_id is None and i.points == 0
    assert db.session.scalar(select(Interaction.kind)) == "refund"


def test_unknown_kind_rejected(make_member):
    m = make_member()
    with pytest.raises(ValidationError):
        services.record_interaction(m.id, "teleport", key="x")


def test_rule_row_overrides_default_and_daily_cap(make_member):
    m = make_member()
    db.session.add(EarningRule(kind="reply", points=7, daily_cap=10))
    db.session.commit()
    at = datetime(2026, 5, 4, 10, 0)
    pts = [services.record_interaction(m.id, "reply", key=f"r{i}", occurred_at=at).points for i in range(3)]
    assert pts == [7, 3, 0]
    nxt = services.record_interaction(m.id, "reply", key="r9", occurred_at=datetime(2026, 5, 5, 0, 0))
    assert nxt.points == 7
    assert ledger.get_balance(m.id).available == 17
    db.session.commit()
    assert_ledger_consistent()


def test_tier_multiplier(make_member):
    m = make_member(tier="advocate")
    i = services.record_interaction(m.id, "post", key="p", source_type="post", source_id=5)
    assert i.points == 15


def test_reverse_source(make_member):
    m = make_member()
    services.record_interaction(m.id, "post", key="post:3", source_type="post", source_id=3)
    first = services.reverse_source("post", 3, reason="removed by moderator")
    again = services.reverse_source("post", 3, reason="removed by moderator")
    assert [e.id for e in first] == [e.id for e in again] and len(first) == 1
    assert ledger.get_balance(m.id).available == 0
    db.session.commit()
    assert_ledger_consistent()


def test_weekly_and_monthly_caps(make_member):
    m = make_member()
    db.session.add(EarningRule(kind="survey_completed", points=50, weekly_cap=80, monthly_cap=120))
    db.session.commit()
    monday = datetime(2026, 6, 1, 9)  # a Monday
    got = [
        services.record_interaction(m.id, "survey_completed", key=f"s{i}", occurred_at=monday + timedelta(days=d))
        .points
        for i, d in enumerate((0, 2, 7, 8, 14))
    ]
    assert got == [50, 30, 40, 0, 0]  # week cap 80, then the month's 120 runs out
    july = services.record_interaction(m.id, "survey_completed", key="s9", occurred_at=datetime(2026, 7, 1))
    assert july.points == 50


def test_purchase_value_and_inactive_rule(make_member):
    m = make_member(tier="loyal")
    assert services.record_interaction(m.id, "purchase", key="p1", value="19.99").points == 24  # 19.99 x 1.25
    db.session.add(EarningRule(kind="purchase", points=0, points_per_unit=1, active=False))
    db.session.commit()
    assert services.record_interaction(m.id, "purchase", key="p2", value="100").points == 0
    with pytest.raises(ValidationError):
        services.record_interaction(m.id, "purchase", key="p3", value="lots")
    with pytest.raises(Conflict):
        services.record_interaction(m.id, "purchase", key="p1", value="20.00")


def test_concurrent_capped_interactions_respect_the_cap(app, make_member):
    from tests.conftest import in_threads

    m = make_member()
    member_id = m.id
    db.session.add(EarningRule(kind="reaction_received", points=1, daily_cap=5))
    db.session.commit()

    def react(i):
        with app.app_context():
            try:
                services.record_interaction(member_id, "reaction_received", key=f"reaction:{i}")
                db.session.commit()
            finally:
                db.session.remove()

    assert all(r is None for r in in_threads(20, react))
    db.session.rollback()
    assert ledger.get_balance(member_id).available == 5
    assert db.session.scalar(select(func.count()).select_from(Interaction)) == 20
