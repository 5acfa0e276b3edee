"""Staff: catalogue CRUD, code uploads, the redemption queue and the fulfilment state machine."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import select

from community.models import AuditLog, Notification, utcnow
from extensions import db
from points import ledger
from rewards.models import Redemption, RedemptionTransition, Reward, RewardCode
from rewards.services import TRANSITIONS

from .helpers import assert_books_balanced


def _redeem(client, reward_id, key):
    return client.post("/api/v1/redemptions", json={"reward_id": reward_id}, headers={"Idempotency-Key": key})


# --------------------------------------------------------------------------- catalogue


def test_member_catalogue_respects_window_activity_and_tier(make_member, login, make_reward):
    now = utcnow()
    visible = [
        make_reward(name="open", cost=10),
        make_reward(name="windowed", cost=20, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=1)),
        make_reward(name="for engaged", cost=30, min_tier="engaged"),
    ]
    make_reward(name="inactive", is_active=False)
    make_reward(name="future", starts_at=now + timedelta(hours=1))
    make_reward(name="ended", ends_at=now - timedelta(seconds=1))
    loyal_only = make_reward(name="for loyal", min_tier="loyal")

    client = login(make_member(tier="engaged"))
    page = client.get("/api/v1/rewards").get_json()
    assert [r["name"] for r in page["items"]] == ["open", "windowed", "for engaged"]
    assert page["meta"]["total"] == 3
    assert "is_active" not in page["items"][0]
    assert client.get(f"/api/v1/rewards/{visible[0].id}").status_code == 200
    assert client.get(f"/api/v1/rewards/{loyal_only.id}").status_code == 404
    assert client.get("/api/v1/rewards/999999").status_code == 404
    assert client.get("/api/v1/rewards", query_string={"per_page": 0}).status_code == 422

    aware = login(make_member()).get("/api/v1/rewards").get_json()
    assert [r["name"] for r in aware["items"]] == ["open", "windowed"]


def test_staff_create_update_delete_reward(make_member, login, make_reward, give_points):
    marketer = make_member(roles=("marketer",))
    client = login(marketer)
    resp = client.post("/api/v1/admin/rewards", json={
        "name": "Mug", "cost": 250, "kind": "physical", "stock": 10, "per_member_limit": 1, "min_tier": "satisfied",
        "starts_at": "2026-01-01T08:00:00+08:00", "image_url": "https://example.com/mug.png",
    })
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["starts_at"].startswith("2026-01-01T00:00:00Z")  # stored as naive UTC
    assert body["is_active"] is True and body["created_by_id"] == marketer.id
    rid = body["id"]

    patched = client.patch(f"/api/v1/admin/rewards/{rid}", json={"cost": 300, "is_active": False})
    assert patched.status_code == 200 and patched.get_json()["cost"] == 300
    assert client.get("/api/v1/admin/rewards", query_string={"active": "false"}).get_json()["meta"]["total"] == 1
    assert client.get(f"/api/v1/admin/rewards/{rid}").get_json()["is_active"] is False
    actions = set(db.session.scalars(select(AuditLog.action).where(AuditLog.target_id == rid)))
    assert {"rewards.reward.create", "rewards.reward.update"} <= actions

    assert client.delete(f"/api/v1/admin/rewards/{rid}").status_code == 204
    assert db.session.get(Reward, rid) is None

    used = make_reward(kind="digital")
    member = make_member()
    give_points(member, 500)
    assert _redeem(login(member), used.id, "k").status_code == 202
    in_use = client.delete(f"/api/v1/admin/rewards/{used.id}")
    assert in_use.status_code == 409 and in_use.get_json()["error"]["code"] == "reward_in_use"


@pytest.mark.parametrize("body, field", [
    ({"cost": 10, "kind": "digital"}, "name"),
    ({"name": "x", "cost": 0, "kind": "digital"}, "cost"),
    ({"name": "x", "cost": "10", "kind": "digital"}, "cost"),
    ({"name": "x", "cost": 10, "kind": "car"}, "kind"),
    ({"name": "x", "cost": 10, "kind": "digital", "stock": -1}, "stock"),
    ({"name": "x", "cost": 10, "kind": "digital", "min_tier": "platinum"}, "min_tier"),
    ({"name": "x", "cost": 10, "kind": "digital", "image_url": "javascript:alert(1)"}, "image_url"),
    ({"name": "x", "cost": 10, "kind": "digital", "id": 5}, "id"),
    ({"name": "x", "cost": 10, "kind": "coupon", "stock": 5}, "stock"),
    ({"name": "x", "cost": 10, "kind": "digital", "starts_at": "2026-02-01T00:00:00Z",
      "ends_at": "2026-01-01T00:00:00Z"}, "ends_at"),
])
def test_create_reward_rejects_bad_input(make_member, login, body, field):
    resp = login(make_member(roles=("marketer",))).post("/api/v1/admin/rewards", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]
    assert db.session.scalar(select(Reward.id)) is None


def test_update_reward_rejects_bad_input(make_member, login, make_reward):
    client = login(make_member(roles=("marketer",)))
    coupon = make_reward(kind="coupon")
    assert client.patch("/api/v1/admin/rewards/999999", json={"cost": 5}).status_code == 404
    assert client.patch(f"/api/v1/admin/rewards/{coupon.id}", json={"kind": "digital"}).status_code == 422
    assert client.patch(f"/api/v1/admin/rewards/{coupon.id}", json={"stock": 50}).status_code == 422
    assert client.patch(f"/api/v1/admin/rewards/{coupon.id}", json={"cost": -5}).status_code == 422
    assert client.patch(f"/api/v1/admin/rewards/{coupon.id}", json={"ends_at": "2000-01-01T00:00:00Z",
                                                                     "starts_at": "2001-01-01T00:00:00Z"}
                        ).status_code == 422
    assert client.get("/api/v1/admin/rewards/999999").status_code == 404
    assert client.delete("/api/v1/admin/rewards/999999").status_code == 404
    assert client.get("/api/v1/admin/rewards", query_string={"kind": "car"}).status_code == 422


def test_code_upload(make_member, login, make_reward):
    client = login(make_member(roles=("marketer",)))
    coupon = make_reward(kind="coupon")

    resp = client.post(f"/api/v1/admin/rewards/{coupon.id}/codes",
                       data={"file": (io.BytesIO(b"code\nAAA-1\nAAA-2\n\nAAA-2\n"), "codes.csv")},
                       content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"added": 2, "duplicates": 1, "codes_total": 2, "codes_assigned": 0, "stock": 2}

    again = client.post(f"/api/v1/admin/rewards/{coupon.id}/codes", data="AAA-2\nAAA-3,extra column\n",
                        content_type="text/csv")
    assert again.get_json()["added"] == 1 and again.get_json()["stock"] == 3
    assert sorted(db.session.scalars(select(RewardCode.code))) == ["AAA-1", "AAA-2", "AAA-3"]

    bad = [
        (coupon.id, {"data": "", "content_type": "text/csv"}, 422),
        (coupon.id, {"data": "code\n", "content_type": "text/csv"}, 422),
        (coupon.id, {"data": "X" * 201, "content_type": "text/csv"}, 422),
        (coupon.id, {"data": b"\xff\xfe\x00", "content_type": "text/csv"}, 422),
        (coupon.id, {"json": {"codes": ["A"]}}, 415),  # JSON is not one of the upload's media types
        (999_999, {"data": "A", "content_type": "text/csv"}, 404),
        (make_reward(kind="physical", stock=1).id, {"data": "A", "content_type": "text/csv"}, 409),
    ]
    for reward_id, kwargs, status in bad:
        resp = client.post(f"/api/v1/admin/rewards/{reward_id}/codes", **kwargs)
        assert resp.status_code == status, (kwargs, resp.get_json())
        assert set(resp.get_json()["error"]) == {"code", "message", "fields"}
    assert db.session.get(Reward, coupon.id).stock == 3


# --------------------------------------------------------------------------- fulfilment


def test_transition_table_is_explicit_and_closed():
    from rewards.models import STATES

    assert set(TRANSITIONS) == set(STATES)
    assert all(targets <= set(STATES) for targets in TRANSITIONS.values())
    terminal = {s for s, targets in TRANSITIONS.items() if not targets}
    assert terminal == {"cancelled", "rejected", "refunded"}
    assert {s for s, targets in TRANSITIONS.items() if "refunded" in targets} == {
        "approved", "shipped", "fulfilled", "completed"}


def test_physical_gift_flow(make_member, login, give_points, make_reward, run_jobs):
    member = make_member()
    give_points(member, 1000)
    reward = make_reward(kind="physical", stock=2, cost=400, name="Tote bag")
    staff = make_member(roles=("redemption_staff",))
    desk = login(staff)
    rid = _redeem(login(member), reward.id, "gift").get_json()["id"]

    # Staff cannot approve before the job has looked at it.
    early = desk.post(f"/api/v1/admin/redemptions/{rid}/approve")
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "illegal_transition"
    run_jobs(["redemptions"])
    queue = desk.get("/api/v1/admin/redemptions", query_string={"state": "awaiting_fulfilment"}).get_json()
    assert [r["id"] for r in queue["items"]] == [rid]
    assert "code" not in queue["items"][0] and queue["items"][0]["member_id"] == member.id
    assert ledger.get_balance(member.id).held == 400

    assert desk.post(f"/api/v1/admin/redemptions/{rid}/ship", json={"tracking_reference": "X"}).status_code == 409
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/complete").status_code == 409
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/approve").status_code == 200
    assert ledger.get_balance(member.id) == ledger.Balance(available=600, held=0, lifetime_earned=1000)
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/approve").status_code == 409
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/reject", json={"reason": "late"}).status_code == 409

    assert desk.post(f"/api/v1/admin/redemptions/{rid}/ship", json={}).status_code == 422
    shipped = desk.post(f"/api/v1/admin/redemptions/{rid}/ship", json={"tracking_reference": "TRK-1"})
    assert shipped.status_code == 200 and shipped.get_json()["tracking_reference"] == "TRK-1"
    done = desk.post(f"/api/v1/admin/redemptions/{rid}/complete")
    assert done.status_code == 200 and done.get_json()["state"] == "completed"

    detail = desk.get(f"/api/v1/admin/redemptions/{rid}").get_json()
    assert [(t["from_state"], t["to_state"], t["actor_id"]) for t in detail["transitions"]] == [
        (None, "pending", member.id),
        ("pending", "awaiting_fulfilment", None),
        ("awaiting_fulfilment", "approved", staff.id),
        ("approved", "shipped", staff.id),
        ("shipped", "completed", staff.id),
    ]
    kinds = list(db.session.scalars(
        select(Notification.kind).where(Notification.member_id == member.id).order_by(Notification.id)))
    assert kinds == [f"rewards.redemption_{s}" for s in ("pending", "awaiting_fulfilment", "approved", "shipped",
                                                           "completed")]
    assert_books_balanced()


def test_experience_is_never_shipped(make_member, login, give_points, make_reward, run_jobs):
    member = make_member()
    give_points(member, 100)
    reward = make_reward(kind="experience", stock=30, cost=100)
    desk = login(make_member(roles=("redemption_staff",)))
    rid = _redeem(login(member), reward.id, "event").get_json()["id"]
    run_jobs(["redemptions"])
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/approve").status_code == 200
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/ship", json={"tracking_reference": "T"}).status_code == 409
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/complete").status_code == 200


def test_reject_releases_points_and_restores_stock(make_member, login, give_points, make_reward, run_jobs):
    member = make_member()
    give_points(member, 500)
    reward = make_reward(kind="physical", stock=1, cost=500)
    staff = make_member(roles=("redemption_staff",))
    desk = login(staff)
    rid = _redeem(login(member), reward.id, "r").get_json()["id"]
    run_jobs(["redemptions"])

    assert desk.post(f"/api/v1/admin/redemptions/{rid}/reject", json={}).status_code == 422
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/reject", json={"reason": ""}).status_code == 422
    resp = desk.post(f"/api/v1/admin/redemptions/{rid}/reject", json={"reason": "Out of this colour"})
    assert resp.status_code == 200
    assert resp.get_json()["state"] == "rejected" and resp.get_json()["reject_reason"] == "Out of this colour"
    assert ledger.get_balance(member.id) == ledger.Balance(available=500, held=0, lifetime_earned=500)
    assert db.session.get(Reward, reward.id).stock == 1
    note = db.session.scalar(select(Notification).where(Notification.dedupe_key == f"redemption:{rid}:rejected"))
    assert note.payload["reason"] == "Out of this colour"
    last = db.session.scalar(select(RedemptionTransition).where(RedemptionTransition.redemption_id == rid)
                             .order_by(RedemptionTransition.id.desc()).limit(1))
    assert (last.to_state, last.actor_id, last.reason) == ("rejected", staff.id, "Out of this colour")
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/reject", json={"reason": "again"}).status_code == 409
    assert_books_balanced()


def test_staff_endpoints_reject_unknown_ids(make_member, login):
    desk = login(make_member(roles=("redemption_staff",)))
    for path, body in [("", None), ("/approve", None), ("/ship", {"tracking_reference": "T"}), ("/complete", None),
                       ("/reject", {"reason": "r"}), ("/refund", {"reason": "r"})]:
        method = desk.get if path == "" else desk.post
        resp = method(f"/api/v1/admin/redemptions/999999{path}", json=body)
        assert resp.status_code == 404, path
        assert resp.get_json()["error"]["code"] == "not_found"


def test_staff_queue_filters(make_member, login, give_points, make_reward, run_jobs):
    alice, bob = make_member(), make_member()
    give_points(alice, 1000)
    give_points(bob, 1000)
    coupon = make_reward(kind="coupon", codes=5, cost=10)
    gift = make_reward(kind="physical", stock=5, cost=10)
    a1 = _redeem(login(alice), coupon.id, "a1").get_json()["id"]
    b1 = _redeem(login(bob), gift.id, "b1").get_json()["id"]
    run_jobs(["redemptions"])
    desk = login(make_member(roles=("redemption_staff",)))

    def ids(**query):
        resp = desk.get("/api/v1/admin/redemptions", query_string=query)
        assert resp.status_code == 200, resp.get_json()
        return [r["id"] for r in resp.get_json()["items"]]

    assert ids() == [a1, b1]
    assert ids(state="fulfilled") == [a1]
    assert ids(kind="physical") == [b1]
    assert ids(member_id=alice.id) == [a1]
    assert ids(reward_id=gift.id, state="awaiting_fulfilment") == [b1]
    assert desk.get("/api/v1/admin/redemptions", query_string={"state": "lost"}).status_code == 422
    assert desk.get("/api/v1/admin/redemptions", query_string={"member_id": "x"}).status_code == 422
    detail = desk.get(f"/api/v1/admin/redemptions/{a1}").get_json()
    assert "code" not in detail and detail["job"]["status"] == "succeeded" and "last_error" in detail["job"]


def test_staff_reject_racing_the_job_wins_once(make_member, login, give_points, make_reward, run_jobs):
    """A pending coupon rejected by staff is never fulfilled by the job that runs afterwards."""
    member = make_member()
    give_points(member, 100)
    reward = make_reward(kind="coupon", codes=1, cost=100)
    rid = _redeem(login(member), reward.id, "race").get_json()["id"]
    desk = login(make_member(roles=("redemption_staff",)))
    assert desk.post(f"/api/v1/admin/redemptions/{rid}/reject", json={"reason": "fraud check"}).status_code == 200
    run_jobs(["redemptions"])
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == "rejected"
    assert db.session.scalar(select(RewardCode.redemption_id)) is None
    assert db.session.get(Reward, reward.id).stock == 1
    assert_books_balanced()
