"""Staff refunds: the state machine, the points coming back, stock, the log, concurrency."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from community.models import AuditLog, Notification, utcnow
from extensions import db
from points import ledger
from points.models import JournalEntry, PointLot
from rewards import services
from rewards.models import Redemption, RedemptionTransition, Reward, RewardCode
from tests.conftest import in_threads
from tests.points.helpers import assert_ledger_consistent

from .helpers import assert_books_balanced, assert_no_code_twice

COST = 100
# The moves that bring a fresh request to each state, and the reward kind that can get there.
PATHS = {
    "pending": ("physical", []),
    "awaiting_fulfilment": ("physical", ["process"]),
    "approved": ("physical", ["process", "approve"]),
    "shipped": ("physical", ["process", "approve", "ship"]),
    "completed": ("experience", ["process", "approve", "complete"]),
    "fulfilled": ("coupon", ["process"]),
    "cancelled": ("physical", ["cancel"]),
    "rejected": ("physical", ["process", "reject"]),
    "refunded": ("digital", ["process", "refund"]),
}
REFUNDABLE = ("approved", "shipped", "fulfilled", "completed")


@pytest.fixture
def staff(make_member):
    return make_member(roles=("redemption_staff",))


@pytest.fixture
def redemption_in(make_member, give_points, make_reward, staff):
    """``redemption_in(state, kind=None)`` -> (member, reward, redemption id), moved there by the
    services (committed); the member has 500 points, the reward costs 100 with stock 5."""

    def make(state: str, kind: str | None = None):
        default_kind, moves = PATHS[state]
        kind = kind or default_kind
        member = make_member()
        give_points(member, 500)
        reward = make_reward(kind=kind, cost=COST, **({"codes": 5} if kind == "coupon" else {"stock": 5}))
        redemption, _ = services.request_redemption(member, reward.id, f"to-{state}")
        db.session.commit()
        rid = redemption.id
        for move in moves:
            if move == "process":
                services.process(rid)
            elif move == "cancel":
                services.cancel(member, rid)
            elif move in ("reject", "refund"):
                getattr(services, move)(staff, rid, "setup")
            elif move == "ship":
                services.ship(staff, rid, "TRK-1")
            else:
                getattr(services, move)(staff, rid)
            db.session.commit()
        assert db.session.get(Redemption, rid).state == state
        return member, reward, rid

    return make


def _refund(client, rid, reason="Damaged in transit"):
    return client.post(f"/api/v1/admin/redemptions/{rid}/refund", json={"reason": reason})


def _stock(reward_id):
    db.session.rollback()
    return db.session.get(Reward, reward_id).stock


@pytest.mark.parametrize("state, kind, restocked", [
    ("approved", "physical", True),  # not shipped yet: the item is still on the shelf
    ("approved", "experience", True),  # the seat is freed
    ("shipped", "physical", False),
    ("completed", "physical", False),
    ("completed", "experience", False),
    ("fulfilled", "coupon", False),  # the code was revealed: never reused
    ("fulfilled", "digital", False),
])
def test_refund_returns_the_points(state, kind, restocked, redemption_in, staff, login):
    member, reward, rid = redemption_in(state, kind)
    stock_before = _stock(reward.id)
    code_before = db.session.get(Redemption, rid).code

    resp = _refund(login(staff), rid)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["state"] == "refunded" and body["refund_reason"] == "Damaged in transit"
    assert "code" not in body

    assert ledger.get_balance(member.id) == ledger.Balance(available=500, held=0, lifetime_earned=500)
    refund = db.session.scalar(select(JournalEntry).where(JournalEntry.key == f"redemption:{rid}:refund"))
    settle = db.session.scalar(select(JournalEntry).where(JournalEntry.key == f"redemption:{rid}:settle"))
    assert (refund.kind, refund.related_id, refund.amount, refund.actor_id) == ("reversal", settle.id, COST, staff.id)
    assert _stock(reward.id) == stock_before + (1 if restocked else 0)
    if kind == "coupon":
        # The code stays with the refunded redemption, so the pool never hands it out again.
        assert code_before is not None
        assert db.session.scalar(select(RewardCode.redemption_id).where(RewardCode.code == code_before)) == rid

    last = db.session.scalar(select(RedemptionTransition).where(RedemptionTransition.redemption_id == rid)
                             .order_by(RedemptionTransition.id.desc()).limit(1))
    assert (last.from_state, last.to_state, last.actor_id, last.reason) == (
        state, "refunded", staff.id, "Damaged in transit")
    note = db.session.scalar(select(Notification).where(Notification.dedupe_key == f"redemption:{rid}:refunded"))
    assert note.member_id == member.id and note.kind == "rewards.redemption_refunded"
    assert note.payload["reason"] == "Damaged in transit" and note.payload["points_refunded"] == COST
    assert "code" not in note.payload
    log = db.session.scalar(select(AuditLog).where(AuditLog.action == "rewards.redemption.refund"))
    assert (log.actor_id, log.target_type, log.target_id, log.reason) == (
        staff.id, "redemption", rid, "Damaged in transit")
    assert log.details["restocked"] is restocked and log.details["from_state"] == state

    own = login(member).get(f"/api/v1/redemptions/{rid}").get_json()
    assert own["state"] == "refunded" and own["refund_reason"] == "Damaged in transit"
    assert_books_balanced()
    assert_ledger_consistent()
    assert_no_code_twice()


@pytest.mark.parametrize("state", sorted(set(PATHS) - set(REFUNDABLE)))
def test_refund_from_other_states_is_409(state, redemption_in, staff, login):
    member, reward, rid = redemption_in(state)
    balance, stock = ledger.get_balance(member.id), _stock(reward.id)
    moves = db.session.scalar(select(func.count()).where(RedemptionTransition.redemption_id == rid))

    resp = _refund(login(staff), rid)
    assert resp.status_code == 409, resp.get_json()
    assert resp.get_json()["error"]["code"] == "illegal_transition"
    assert resp.get_json()["error"]["fields"] == {"state": [state]}
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == state
    assert ledger.get_balance(member.id) == balance and _stock(reward.id) == stock
    assert db.session.scalar(select(func.count()).where(RedemptionTransition.redemption_id == rid)) == moves
    assert_books_balanced()


def test_refund_input_errors_are_4xx_in_the_envelope(redemption_in, staff, login):
    _, _, rid = redemption_in("completed")
    desk = login(staff)
    for body, status, field in [
        ({}, 422, "reason"),
        ({"reason": ""}, 422, "reason"),
        ({"reason": "   "}, 422, "reason"),
        ({"reason": "x" * 501}, 422, "reason"),
        ({"reason": 5}, 422, "reason"),
        ({"reason": "ok", "points": 1}, 422, "points"),
    ]:
        resp = desk.post(f"/api/v1/admin/redemptions/{rid}/refund", json=body)
        assert resp.status_code == status, (body, resp.get_json())
        error = resp.get_json()["error"]
        assert set(error) == {"code", "message", "fields"} and field in error["fields"], body
    bad_json = desk.post(f"/api/v1/admin/redemptions/{rid}/refund", data="{", content_type="application/json")
    assert bad_json.status_code == 400 and set(bad_json.get_json()["error"]) == {"code", "message", "fields"}
    assert _refund(desk, 999_999).status_code == 404
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == "completed"


def test_refund_is_idempotent(redemption_in, staff, login):
    """A second refund is refused by the state machine; the ledger's key makes a replay of the
    reversal itself a no-op; the member is told once."""
    member, _, rid = redemption_in("fulfilled", "digital")
    desk = login(staff)
    assert _refund(desk, rid).status_code == 200
    again = _refund(desk, rid, "twice")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "illegal_transition"

    db.session.rollback()
    settle_id = db.session.scalar(select(JournalEntry.id).where(JournalEntry.key == f"redemption:{rid}:settle"))
    first = db.session.scalar(select(JournalEntry).where(JournalEntry.key == f"redemption:{rid}:refund"))
    replay = ledger.reverse(settle_id, key=f"redemption:{rid}:refund", reason="replay", actor_id=staff.id)
    db.session.commit()
    assert replay.id == first.id
    assert ledger.get_balance(member.id) == ledger.Balance(available=500, held=0, lifetime_earned=500)
    assert db.session.scalar(select(func.count()).where(JournalEntry.related_id == settle_id)) == 1
    assert db.session.scalar(select(func.count()).where(Notification.kind == "rewards.redemption_refunded")) == 1
    assert db.session.scalar(select(func.count()).where(AuditLog.action == "rewards.redemption.refund")) == 1
    assert db.session.get(Redemption, rid).refund_reason == "Damaged in transit"
    assert_ledger_consistent()


def test_refund_after_a_staff_reversal_of_the_settlement_is_a_clean_409(redemption_in, staff, login, make_member):
    """Points already given back through the ledger's own reversal cannot be refunded twice."""
    member, _, rid = redemption_in("completed")
    settle_id = db.session.scalar(select(JournalEntry.id).where(JournalEntry.key == f"redemption:{rid}:settle"))
    resp = login(make_member(roles=("admin",))).post(
        f"/api/v1/admin/points/entries/{settle_id}/reversal", json={"reason": "goodwill"})
    assert resp.status_code == 201, resp.get_json()

    refused = _refund(login(staff), rid)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "already_reversed"
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == "completed"  # the whole request rolled back
    assert ledger.get_balance(member.id).available == 500
    assert_ledger_consistent()


def test_refunded_lots_that_expired_meanwhile_stay_expired(redemption_in, staff, login):
    """The ledger's policy, as for a release: points whose lot expired since the request are
    booked to ``expired``, not handed back."""
    member, _, rid = redemption_in("fulfilled", "digital")
    db.session.execute(db.update(PointLot).where(PointLot.member_id == member.id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    for lot_id in db.session.scalars(select(PointLot.id).where(PointLot.member_id == member.id)):
        ledger.expire_lot(lot_id)
    db.session.commit()
    assert ledger.get_balance(member.id).available == 0  # the 400 left expired

    resp = _refund(login(staff), rid)
    assert resp.status_code == 200, resp.get_json()
    assert ledger.get_balance(member.id) == ledger.Balance(available=0, held=0, lifetime_earned=500)
    note = db.session.scalar(select(Notification).where(Notification.dedupe_key == f"redemption:{rid}:refunded"))
    assert note.payload["points_refunded"] == 0
    assert_books_balanced()
    assert_ledger_consistent()


def test_a_refunded_redemption_frees_the_per_member_limit(make_member, login, give_points, make_reward, staff,
                                                           run_jobs):
    member = make_member()
    give_points(member, 500)
    reward = make_reward(kind="digital", cost=COST, per_member_limit=1)
    client = login(member)
    first = client.post("/api/v1/redemptions", json={"reward_id": reward.id}, headers={"Idempotency-Key": "a"})
    run_jobs(["redemptions"])
    blocked = client.post("/api/v1/redemptions", json={"reward_id": reward.id}, headers={"Idempotency-Key": "b"})
    assert blocked.status_code == 409 and blocked.get_json()["error"]["code"] == "limit_reached"
    assert _refund(login(staff), first.get_json()["id"]).status_code == 200
    again = client.post("/api/v1/redemptions", json={"reward_id": reward.id}, headers={"Idempotency-Key": "c"})
    assert again.status_code == 202, again.get_json()


def test_staff_queue_lists_refunded(redemption_in, staff, login):
    _, _, rid = redemption_in("refunded")
    desk = login(staff)
    page = desk.get("/api/v1/admin/redemptions", query_string={"state": "refunded"}).get_json()
    assert [r["id"] for r in page["items"]] == [rid]
    detail = desk.get(f"/api/v1/admin/redemptions/{rid}").get_json()
    assert detail["transitions"][-1]["to_state"] == "refunded" and detail["refund_reason"] == "setup"


def test_two_staff_refunding_at_once_refund_once(app, redemption_in, make_member, bearer):
    """Real threads, one request each, on the configured database: exactly one refund."""
    member, reward, rid = redemption_in("completed")
    desks = [bearer(make_member(roles=("redemption_staff",))) for _ in range(2)]
    desks += [bearer(make_member(roles=("admin",))) for _ in range(4)]
    stock = _stock(reward.id)

    def refund(i):
        with app.app_context():
            resp = app.test_client().post(f"/api/v1/admin/redemptions/{rid}/refund",
                                          json={"reason": f"desk {i}"}, headers=desks[i])
            return resp.status_code, resp.get_json()

    results = in_threads(len(desks), refund)

    statuses = Counter(r[0] if isinstance(r, tuple) else repr(r) for r in results)
    assert statuses == {200: 1, 409: len(desks) - 1}, results
    assert {r[1]["error"]["code"] for r in results if r[0] == 409} == {"illegal_transition"}
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == "refunded"
    assert ledger.get_balance(member.id) == ledger.Balance(available=500, held=0, lifetime_earned=500)
    assert db.session.scalar(select(func.count()).where(JournalEntry.kind == "reversal")) == 1
    assert db.session.scalar(select(func.count()).where(RedemptionTransition.to_state == "refunded")) == 1
    assert db.session.scalar(select(func.count()).where(Notification.kind == "rewards.redemption_refunded")) == 1
    assert db.session.scalar(select(func.count()).where(AuditLog.action == "rewards.redemption.refund")) == 1
    assert _stock(reward.id) == stock
    assert_books_balanced()
    assert_ledger_consistent()


def test_refund_racing_shipping(app, redemption_in, staff, make_member, bearer):
    """Approved gift: a refund and a shipment at once.  Whatever the order, the redemption ends in
    one consistent place, and the unit goes back to stock only if it was refunded before shipping."""
    member, reward, rid = redemption_in("approved")
    headers = [bearer(staff), bearer(make_member(roles=("redemption_staff",)))]
    stock = _stock(reward.id)

    def act(i):
        with app.app_context():
            client = app.test_client()
            if i == 0:
                return client.post(f"/api/v1/admin/redemptions/{rid}/refund", json={"reason": "r"},
                                   headers=headers[0]).status_code
            return client.post(f"/api/v1/admin/redemptions/{rid}/ship", json={"tracking_reference": "T"},
                               headers=headers[1]).status_code

    outcome = tuple(in_threads(2, act))
    db.session.rollback()
    moves = [(t.from_state, t.to_state) for t in db.session.scalars(
        select(RedemptionTransition).where(RedemptionTransition.redemption_id == rid)
        .order_by(RedemptionTransition.id))][3:]  # after pending, awaiting_fulfilment, approved
    expected = {
        (200, 409): [("approved", "refunded")],  # refunded first: shipping it is refused
        (200, 200): [("approved", "shipped"), ("shipped", "refunded")],  # shipped, then refunded
        (409, 200): [("approved", "shipped")],  # both saw approved, the shipment won (PostgreSQL)
    }
    assert moves == expected[outcome], (outcome, moves)
    refunded = moves[-1][1] == "refunded"
    assert db.session.get(Redemption, rid).state == moves[-1][1]
    assert _stock(reward.id) == stock + (1 if moves == [("approved", "refunded")] else 0)
    assert ledger.get_balance(member.id).available == (500 if refunded else 400)
    assert_books_balanced()
