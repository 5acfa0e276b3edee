"""Issue #13, member exploits: a reversal never leaves free points (the clawback policy), refunds
reverse in proportion (purchase and referral alike), birthdays, and a hypothesis test of the
whole policy.

The policy (``points.ledger`` docstring): a reversal takes the points back in full — from the
award's own lot, then the member's other points; what was already spent becomes ``owed``, which
blocks redemptions and is repaid from new points first.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from community.models import User, utcnow
from community.services import create_token
from extensions import db
from points import ledger, services
from points.models import Campaign, Referral
from tests.points.helpers import assert_ledger_consistent
from tests.surveys.helpers import answers, client_id, make_survey

SURVEY_POINTS = 50


def err(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()["error"]


def spend(member_id, amount, ref):
    ledger.hold(member_id, amount, key=f"hold:{ref}", reason="spent", source_type="test", source_id=ref)
    ledger.settle_hold(key=f"settle:{ref}", source_type="test", source_id=ref)
    db.session.commit()


# --------------------------------------------------------------------------- surveys


def test_withdrawing_a_spent_survey_reward_leaves_points_owed_not_free(make_member, login):
    member = make_member()
    client = login(member)
    survey = make_survey()
    submit = client.post(f"/api/v1/surveys/{survey.id}/response", json={"client_id": client_id(),
                                                                          "answers": answers()})
    assert submit.status_code == 201
    spend(member.id, SURVEY_POINTS, 1)  # the reported exploit: spend the 50 first
    withdrawn = client.delete(f"/api/v1/surveys/{survey.id}/response")
    assert withdrawn.status_code == 200 and withdrawn.get_json()["points_reversed"] == SURVEY_POINTS
    mine = client.get("/api/v1/me/points").get_json()
    assert (mine["available"], mine["owed"], mine["lifetime_earned"]) == (0, SURVEY_POINTS, 0)
    # Owing blocks redemptions (409 points_owed) …
    with pytest.raises(ledger.PointsOwed):
        ledger.hold(member.id, 1, key="blocked", reason="x", source_type="test", source_id=2)
    db.session.rollback()
    # … and answering again repays the debt first: no free 50.
    again = client.post(f"/api/v1/surveys/{survey.id}/response", json={"client_id": client_id(),
                                                                         "answers": answers()})
    assert again.status_code == 201, again.get_json()
    mine = client.get("/api/v1/me/points").get_json()
    assert (mine["available"], mine["owed"]) == (0, 0)
    assert_ledger_consistent()


def test_a_reversal_takes_the_spent_part_from_the_members_other_points(make_member):
    member = make_member()
    award = ledger.award(member.id, 50, key="a1", reason="survey")
    ledger.award(member.id, 30, key="a2", reason="other")
    db.session.commit()
    spend(member.id, 50, 1)  # oldest-expiring first: all of a1
    ledger.reverse(award.id, key="r1", reason="withdrawn")
    db.session.commit()
    balance = ledger.get_balance(member.id)
    assert (balance.available, balance.owed, balance.lifetime_earned) == (0, 20, 30)
    assert_ledger_consistent()


# --------------------------------------------------------------------------- refunds and referrals


@pytest.fixture
def shop(app, make_member):
    admin = make_member(roles=("admin",))
    _, secret = create_token(admin, "shop")
    db.session.commit()
    client = app.test_client()

    def send(**event):
        resp = client.post("/api/v1/points/events", json=event, headers={"Authorization": f"Bearer {secret}"})
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    return send


def _referred_pair(app, make_member):
    referrer = make_member()
    resp = app.test_client().post("/api/v1/auth/register", json={
        "email": "referee@example.com", "password": "a long password 1", "display_name": "Referee",
        "referral_code": referrer.referral_code})
    assert resp.status_code == 201, resp.get_json()
    return referrer, db.session.scalar(select(User).where(User.email == "referee@example.com"))


def test_a_full_refund_claws_back_both_referral_rewards(app, make_member, shop):
    referrer, referee = _referred_pair(app, make_member)
    shop(event_id="o1", type="purchase", member_id=referee.id, amount=100)
    assert ledger.get_balance(referrer.id).available == 200
    assert ledger.get_balance(referee.id).available == 300  # 100 purchase + 200 referral
    result = shop(event_id="r1", type="refund", member_id=referee.id, refund_of="o1")
    assert result["reversed_points"] == 300  # the purchase and the referee's referral bonus
    db.session.rollback()
    assert ledger.get_balance(referrer.id).available == 0
    assert ledger.get_balance(referee.id).available == 0
    assert shop(event_id="r1", type="refund", member_id=referee.id, refund_of="o1")["status"] == "duplicate"
    assert ledger.get_balance(referrer.id).available == 0
    assert_ledger_consistent()


def test_partial_refunds_reverse_in_proportion_purchase_and_referral_alike(app, make_member, shop):
    referrer, referee = _referred_pair(app, make_member)
    shop(event_id="o1", type="purchase", member_id=referee.id, amount=100)
    first = shop(event_id="r1", type="refund", member_id=referee.id, refund_of="o1", amount=25)
    db.session.rollback()
    assert first["reversed_points"] == 25 + 50
    assert ledger.get_balance(referee.id).available == 300 - 75
    assert ledger.get_balance(referrer.id).available == 150
    # A second refund completes the first: cumulative, never more than the whole.
    shop(event_id="r2", type="refund", member_id=referee.id, refund_of="o1", amount=75)
    db.session.rollback()
    assert ledger.get_balance(referee.id).available == 0
    assert ledger.get_balance(referrer.id).available == 0
    shop(event_id="r3", type="refund", member_id=referee.id, refund_of="o1", amount=10)
    db.session.rollback()
    assert ledger.get_balance(referee.id).available == 0
    assert_ledger_consistent()


def test_a_held_referral_is_rejected_when_its_purchase_is_refunded_in_full(app, make_member, shop):
    referrer, referee = _referred_pair(app, make_member)
    referral = db.session.scalar(select(Referral))
    referral.flag_reason = "review"
    db.session.commit()
    shop(event_id="o1", type="purchase", member_id=referee.id, amount=10)
    shop(event_id="r1", type="refund", member_id=referee.id, refund_of="o1")
    db.session.rollback()
    assert db.session.get(Referral, referral.id).reward_status == "rejected"


# --------------------------------------------------------------------------- birthdays


def test_a_birthday_campaign_ignores_a_birthday_set_just_now(make_member, login):
    today = utcnow().date()
    db.session.add(Campaign(name="Birthday x2", multiplier=Decimal(2), starts_at=utcnow() - timedelta(days=1),
                            ends_at=utcnow() + timedelta(days=1), birthday_only=True))
    db.session.commit()
    fresh, old = make_member(), make_member()
    birthday = date(1990, today.month, today.day) if (today.month, today.day) != (2, 29) else date(1992, 2, 29)
    assert login(fresh).patch("/api/v1/me", json={"birthday": birthday.isoformat()}).status_code == 200
    old.birthday, old.birthday_set_at = birthday, utcnow() - timedelta(days=40)
    db.session.commit()
    assert services.record_interaction(fresh.id, "post", key="p1").points == 10
    assert services.record_interaction(old.id, "post", key="p2").points == 20


# --------------------------------------------------------------------------- the invariant


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(1, 80)),
        st.tuples(st.just("spend"), st.integers(1, 120)),
        st.tuples(st.just("reverse"), st.integers(0, 30)),
        st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100)),
    ),
    min_size=1, max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_earn_spend_reverse_refund_never_leave_free_points(make_member, ops):
    """Whatever the order of earning, spending, reversing (survey withdrawal, post deletion) and
    (partial) refunds, what the member holds plus what they spent never exceeds what the rules
    still allow them: the awards minus everything taken back.  ``owed`` makes up the difference."""
    member = make_member()
    m = member.id  # hypothesis reuses the fixtures: keys are per member
    awards: list[int] = []
    purchase_values: dict[int, Decimal] = {}
    spent = 0
    for i, op in enumerate(ops):
        kind = op[0]
        try:
            with db.session.begin_nested():
                if kind == "earn":
                    awards.append(ledger.award(member.id, op[1], key=f"h:{m}:{i}", reason="earn").id)
                    purchase_values[awards[-1]] = Decimal(op[1])
                elif kind == "spend":
                    ledger.hold(member.id, op[1], key=f"hold:{m}:{i}", reason="x", source_type="t",
                                source_id=m * 1000 + i)
                    ledger.settle_hold(key=f"settle:{m}:{i}", source_type="t", source_id=m * 1000 + i)
                    spent += op[1]
                elif kind == "reverse" and awards:
                    ledger.reverse(awards[op[1] % len(awards)], key=f"rev:{m}:{i}", reason="withdrawn")
                elif kind == "refund" and awards:
                    aid = awards[op[1] % len(awards)]
                    ledger.claw_back(aid, max(1, op[2] * int(purchase_values[aid]) // 100), key=f"cb:{m}:{i}",
                                     reason="partial refund")
        except (ledger.InsufficientPoints, ledger.PointsOwed):
            pass
        except Exception as exc:  # an already-reversed entry is a clean 409
            assert getattr(exc, "code", "") in ("already_reversed",), exc
    db.session.commit()
    balance = ledger.get_balance(member.id)
    allowed = sum(
        db.session.get(ledger.JournalEntry, a).amount - ledger.reversed_total(a) for a in awards
    )
    assert balance.available + balance.held + spent - balance.owed == allowed
    assert balance.available + spent <= allowed + balance.owed
    assert balance.owed == 0 or balance.available == 0  # debt is repaid before points are kept
    assert balance.lifetime_earned == allowed
    assert_ledger_consistent()
