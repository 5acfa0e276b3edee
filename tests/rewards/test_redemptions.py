"""The member's redemption flow: request, background processing, replay, eligibility, cancel."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from community.models import Notification, utcnow
from extensions import db
from points import ledger
from rewards.models import Redemption, RedemptionJob, RedemptionTransition, Reward

from .helpers import assert_books_balanced, assert_no_code_twice


def _redeem(client, reward_id, key="k1", **kwargs):
    headers = {"Idempotency-Key": key} if key is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return client.post("/api/v1/redemptions", json={"reward_id": reward_id}, headers=headers, **kwargs)


def test_coupon_redemption_is_fulfilled_with_a_code(make_member, login, give_points, make_reward, run_jobs):
    alice = make_member()
    give_points(alice, 500)
    reward = make_reward(kind="coupon", codes=3, cost=120, name="Coffee")
    client = login(alice)

    resp = _redeem(client, reward.id)
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["state"] == "pending" and body["code"] is None and body["cost"] == 120
    assert body["job"]["status"] == "queued"
    assert ledger.get_balance(alice.id) == ledger.Balance(available=380, held=120, lifetime_earned=500)
    assert db.session.get(Reward, reward.id).stock == 2

    run_jobs(["redemptions"])

    got = client.get(f"/api/v1/redemptions/{body['id']}").get_json()
    assert got["state"] == "fulfilled"
    assert got["code"].startswith(f"CODE-{reward.id}-")
    assert got["job"]["status"] == "succeeded" and got["job"]["attempts"] == 1
    assert ledger.get_balance(alice.id) == ledger.Balance(available=380, held=0, lifetime_earned=500)
    note = db.session.scalar(
        select(Notification).where(Notification.dedupe_key == f"redemption:{body['id']}:fulfilled")
    )
    assert note.member_id == alice.id and note.payload["code"] == got["code"]
    moves = [(t.from_state, t.to_state, t.actor_id) for t in db.session.scalars(
        select(RedemptionTransition).where(RedemptionTransition.redemption_id == body["id"]).order_by(
            RedemptionTransition.id))]
    assert moves == [(None, "pending", alice.id), ("pending", "fulfilled", None)]
    assert_books_balanced()
    assert_no_code_twice()


def test_digital_and_donation_fulfil_without_staff(make_member, login, give_points, make_reward, run_jobs):
    member = make_member()
    give_points(member, 300)
    client = login(member)
    ids = []
    for i, kind in enumerate(("digital", "donation")):
        reward = make_reward(kind=kind, cost=100)
        ids.append(_redeem(client, reward.id, key=f"k{i}").get_json()["id"])
    run_jobs(["redemptions"])
    states = {client.get(f"/api/v1/redemptions/{rid}").get_json()["state"] for rid in ids}
    assert states == {"fulfilled"}
    assert ledger.get_balance(member.id).available == 100
    assert_books_balanced()


def test_replay_returns_the_same_redemption_and_changes_nothing(make_member, login, give_points, make_reward):
    member = make_member()
    give_points(member, 500)
    reward = make_reward(kind="physical", stock=5, cost=100)
    other = make_reward(kind="physical", stock=5, cost=100)
    client = login(member)

    first = _redeem(client, reward.id, key="same")
    again = _redeem(client, reward.id, key="same")
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    assert db.session.scalar(select(func.count()).select_from(Redemption)) == 1
    assert ledger.get_balance(member.id).held == 100
    assert db.session.get(Reward, reward.id).stock == 4

    clash = _redeem(client, other.id, key="same")
    assert clash.status_code == 409
    assert clash.get_json()["error"]["code"] == "idempotency_conflict"

    # Keys are per member: another member may use the same one.
    stranger = make_member()
    give_points(stranger, 100)
    assert _redeem(login(stranger), reward.id, key="same").status_code == 202


def test_request_validation_errors(make_member, login, give_points, make_reward):
    member = make_member()
    give_points(member, 100)
    reward = make_reward(cost=50)
    client = login(member)

    missing_key = _redeem(client, reward.id, key=None)
    assert missing_key.status_code == 422
    assert "Idempotency-Key" in missing_key.get_json()["error"]["fields"]
    assert _redeem(client, reward.id, key="x" * 101).status_code == 422
    no_body = client.post("/api/v1/redemptions", json={}, headers={"Idempotency-Key": "a"})
    assert no_body.status_code == 422 and "reward_id" in no_body.get_json()["error"]["fields"]
    extra = client.post("/api/v1/redemptions", json={"reward_id": reward.id, "state": "fulfilled"},
                        headers={"Idempotency-Key": "b"})
    assert extra.status_code == 422 and "state" in extra.get_json()["error"]["fields"]
    assert client.post("/api/v1/redemptions", json={"reward_id": "1; drop"}, headers={"Idempotency-Key": "c"}
                       ).status_code == 422
    unknown = _redeem(client, 999_999, key="d")
    assert unknown.status_code == 404 and set(unknown.get_json()["error"]) == {"code", "message", "fields"}
    assert db.session.scalar(select(func.count()).select_from(Redemption)) == 0


def test_insufficient_points_writes_nothing(make_member, login, give_points, make_reward):
    member = make_member()
    give_points(member, 99)
    reward = make_reward(kind="physical", stock=3, cost=100)
    resp = _redeem(login(member), reward.id)
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "insufficient_points"
    assert db.session.scalar(select(func.count()).select_from(Redemption)) == 0
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
    assert db.session.get(Reward, reward.id).stock == 3
    assert ledger.get_balance(member.id).available == 99


def test_eligibility_rules(make_member, login, give_points, make_reward):
    member = make_member(tier="engaged")
    give_points(member, 10_000)
    client = login(member)
    now = utcnow()

    loyal_only = make_reward(min_tier="loyal")
    resp = _redeem(client, loyal_only.id, key="tier")
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "tier_required"
    assert _redeem(client, make_reward(min_tier="engaged").id, key="tier-ok").status_code == 202

    assert _redeem(client, make_reward(is_active=False).id, key="inactive").status_code == 404
    assert _redeem(client, make_reward(starts_at=now + timedelta(days=1)).id, key="future").status_code == 404
    assert _redeem(client, make_reward(ends_at=now - timedelta(days=1)).id, key="past").status_code == 404

    limited = make_reward(per_member_limit=2)
    assert _redeem(client, limited.id, key="l1").status_code == 202
    assert _redeem(client, limited.id, key="l2").status_code == 202
    third = _redeem(client, limited.id, key="l3")
    assert third.status_code == 409 and third.get_json()["error"]["code"] == "limit_reached"

    sold_out = make_reward(kind="physical", stock=1)
    assert _redeem(client, sold_out.id, key="s1").status_code == 202
    out = _redeem(client, sold_out.id, key="s2")
    assert out.status_code == 409 and out.get_json()["error"]["code"] == "out_of_stock"

    suspended = make_member(suspended_until=now + timedelta(days=1))
    give_points(suspended, 1000)
    resp = _redeem(login(suspended), make_reward().id, key="susp")
    # A suspended account is read-only everywhere (#13): the general code answers first.
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "account_suspended"


def test_cancel_while_pending_releases_points_and_stock(make_member, login, give_points, make_reward, run_jobs):
    member = make_member()
    give_points(member, 300)
    reward = make_reward(kind="coupon", codes=2, cost=100)
    client = login(member)
    rid = _redeem(client, reward.id).get_json()["id"]

    resp = client.post(f"/api/v1/redemptions/{rid}/cancel")
    assert resp.status_code == 200 and resp.get_json()["state"] == "cancelled"
    assert ledger.get_balance(member.id) == ledger.Balance(available=300, held=0, lifetime_earned=300)
    assert db.session.get(Reward, reward.id).stock == 2
    assert client.post(f"/api/v1/redemptions/{rid}/cancel").status_code == 409

    run_jobs(["redemptions"])  # the queued job finds it cancelled and leaves it alone
    assert db.session.get(Redemption, rid).state == "cancelled"
    assert db.session.get(Redemption, rid).code is None

    done = _redeem(client, reward.id, key="k2").get_json()["id"]
    run_jobs(["redemptions"])
    late = client.post(f"/api/v1/redemptions/{done}/cancel")
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "illegal_transition"
    assert client.post("/api/v1/redemptions/999999/cancel").status_code == 404
    assert_books_balanced()


def test_members_see_only_their_own(make_member, login, give_points, make_reward, run_jobs):
    owner, other = make_member(), make_member()
    give_points(owner, 200)
    reward = make_reward(kind="coupon", codes=1)
    owner_client, other_client = login(owner), login(other)
    rid = _redeem(owner_client, reward.id).get_json()["id"]
    run_jobs(["redemptions"])

    assert other_client.get(f"/api/v1/redemptions/{rid}").status_code == 404
    assert other_client.post(f"/api/v1/redemptions/{rid}/cancel").status_code == 404
    assert other_client.get("/api/v1/redemptions").get_json()["meta"]["total"] == 0
    mine = owner_client.get("/api/v1/redemptions").get_json()
    assert [r["id"] for r in mine["items"]] == [rid] and mine["items"][0]["code"]
    assert owner_client.get("/api/v1/redemptions", query_string={"state": "pending"}).get_json()["items"] == []
    assert owner_client.get("/api/v1/redemptions", query_string={"state": "bogus"}).status_code == 422
    assert owner_client.get("/api/v1/redemptions/999999").status_code == 404


def test_processing_twice_changes_nothing(app, make_member, login, give_points, make_reward, run_jobs):
    from rewards.jobs import process_redemption

    member = make_member()
    give_points(member, 100)
    reward = make_reward(kind="coupon", codes=2, cost=100)
    rid = _redeem(login(member), reward.id).get_json()["id"]
    db.session.commit()
    assert process_redemption(rid) == "fulfilled"
    assert process_redemption(rid) == "fulfilled"
    run_jobs(["redemptions"])  # and the queued wake-up: the drain claims only never-attempted ones
    db.session.rollback()
    assert db.session.get(RedemptionJob, rid).attempts == 2
    assert db.session.get(Reward, reward.id).stock == 1
    assert_books_balanced()
    assert_no_code_twice()
