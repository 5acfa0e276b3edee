"""Issue #13, separation of duties: staff acting for themselves, per role, over HTTP.

Each refusal is 403 with a clear code and leaves an audit row (``<action>.refused``) although
the request itself rolled back.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from community.models import AuditLog, utcnow
from extensions import db
from points import ledger
from points.models import PendingAward
from tests.surveys.helpers import make_session


def err(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()["error"]


def refused(action: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == f"{action}.refused"))


# --------------------------------------------------------------------------- redemptions


@pytest.fixture
def own_fulfilled_coupon(make_member):
    """A redemption staff member's own fulfilled coupon redemption (the reported exploit)."""
    from rewards import services
    from rewards.models import Reward

    staff = make_member(roles=("redemption_staff",))
    ledger.award(staff.id, 300, key="sod:staff-points", reason="test")
    reward = Reward(name="Coupon", kind="coupon", cost=100, stock=0)
    db.session.add(reward)
    db.session.commit()
    services.add_codes(make_member(roles=("marketer",)), reward.id, ["CODE-1", "CODE-2"])
    db.session.commit()
    redemption, _ = services.request_redemption(staff, reward.id, "own-1")
    db.session.commit()
    services.process(redemption.id)
    db.session.commit()
    return staff, redemption.id


@pytest.mark.parametrize("role", ["redemption_staff", "admin"])
def test_staff_cannot_refund_their_own_redemption(role, make_member, login, own_fulfilled_coupon):
    staff, rid = own_fulfilled_coupon
    if role == "admin":
        from community.models import UserRole

        db.session.add(UserRole(user_id=staff.id, role="admin"))
        db.session.commit()
    client = login(staff)
    body = err(client.post(f"/api/v1/admin/redemptions/{rid}/refund", json={"reason": "mine"}), 403)
    assert body["code"] == "self_dealing"
    assert ledger.get_balance(staff.id).available == 200  # the points did not come back
    assert refused("rewards.redemption.refund") == 1
    # Another staff member may.
    other = login(make_member(roles=("redemption_staff",)))
    assert other.post(f"/api/v1/admin/redemptions/{rid}/refund", json={"reason": "ok"}).status_code == 200


# --------------------------------------------------------------------------- attendance, caps, four-eyes


def _attended_session(marketer, member, points=100):
    from surveys import focus_groups

    session = make_session(marketer.id, attendance_points=points)
    focus_groups.sign_up(member, session.id)
    session.starts_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    return session


def test_a_marketer_cannot_mark_their_own_attendance(make_member, login):
    marketer = make_member(roles=("marketer",))
    session = _attended_session(marketer, marketer)
    client = login(marketer)
    resp = client.post(f"/api/v1/admin/focus-groups/{session.id}/attendance", json={"attended": [marketer.id]})
    assert err(resp, 403)["code"] == "self_dealing"
    assert ledger.get_balance(marketer.id).available == 0
    assert refused("surveys.focus_group.attendance") == 1


def test_staff_configured_awards_are_capped(make_member, login, app):
    client = login(make_member(roles=("marketer",)))
    start = utcnow() + timedelta(days=3)
    resp = client.post("/api/v1/admin/focus-groups", json={
        "title": "Mint", "starts_at": start.isoformat() + "Z",
        "ends_at": (start + timedelta(hours=1)).isoformat() + "Z", "location": "HQ", "attendance_points": 100_000})
    assert "attendance_points" in err(resp, 422)["fields"]
    assert "points_per_unit" in err(client.put("/api/v1/admin/points/rules/purchase",
                                               json={"points_per_unit": 10000}), 422)["fields"]
    assert "points" in err(client.put("/api/v1/admin/points/rules/post", json={"points": 100_000}), 422)["fields"]
    assert client.put("/api/v1/admin/points/rules/purchase", json={"points_per_unit": 2}).status_code == 200
    assert app.config["MAX_ATTENDANCE_POINTS"] == 1000 and app.config["MAX_POINTS_PER_UNIT"] == 10


def test_large_attendance_awards_wait_for_a_second_staff_member(make_member, login):
    marketer, other_marketer, member = make_member(roles=("marketer",)), make_member(roles=("marketer",)), make_member()
    session = _attended_session(marketer, member, points=800)  # above AWARD_APPROVAL_THRESHOLD (500)
    mc = login(marketer)
    assert mc.post(f"/api/v1/admin/focus-groups/{session.id}/attendance",
                   json={"attended": [member.id]}).status_code == 200
    assert ledger.get_balance(member.id).available == 0
    queue = mc.get("/api/v1/admin/points/pending-awards").get_json()["items"]
    assert [(p["member_id"], p["points"], p["status"]) for p in queue] == [(member.id, 800, "pending")]
    pid = queue[0]["id"]
    # The requester cannot approve their own request; a member cannot see the queue.
    assert err(mc.post(f"/api/v1/admin/points/pending-awards/{pid}/approve", json={"reason": "ok"}),
               403)["code"] == "self_dealing"
    assert refused("points.award.approve") == 1
    assert login(member).get("/api/v1/admin/points/pending-awards").status_code == 403
    # Another marketer approves: the award is posted exactly once.
    oc = login(other_marketer)
    ok = oc.post(f"/api/v1/admin/points/pending-awards/{pid}/approve", json={"reason": "attended, on the list"})
    assert ok.status_code == 200 and ok.get_json()["status"] == "approved"
    assert ledger.get_balance(member.id).available == 800
    again = oc.post(f"/api/v1/admin/points/pending-awards/{pid}/approve", json={"reason": "twice"})
    assert err(again, 409)["code"] == "not_pending"
    assert ledger.get_balance(member.id).available == 800


def test_the_recipient_cannot_approve_an_award_to_themselves(make_member, login):
    marketer, other_marketer = make_member(roles=("marketer",)), make_member(roles=("marketer",))
    session = _attended_session(marketer, other_marketer, points=800)
    login(marketer).post(f"/api/v1/admin/focus-groups/{session.id}/attendance", json={"attended": [other_marketer.id]})
    pid = db.session.scalar(select(PendingAward.id))
    resp = login(other_marketer).post(f"/api/v1/admin/points/pending-awards/{pid}/approve", json={"reason": "me"})
    assert err(resp, 403)["code"] == "self_dealing"
    assert ledger.get_balance(other_marketer.id).available == 0


def test_admins_cannot_adjust_their_own_points_and_large_credits_need_another_admin(make_member, login):
    admin, other_admin, marketer, member = (make_member(roles=("admin",)), make_member(roles=("admin",)),
                                            make_member(roles=("marketer",)), make_member())
    ac = login(admin)
    own = ac.post("/api/v1/admin/points/adjustments", json={"member_id": admin.id, "delta": 50, "reason": "me"})
    assert err(own, 403)["code"] == "self_dealing"
    assert refused("points.member.adjust") == 1
    small = ac.post("/api/v1/admin/points/adjustments", json={"member_id": member.id, "delta": 50, "reason": "ok"})
    assert small.status_code == 201
    big = ac.post("/api/v1/admin/points/adjustments",
                  json={"member_id": member.id, "delta": 5000, "reason": "goodwill"})
    assert big.status_code == 202 and big.get_json()["status"] == "pending"
    pid = big.get_json()["id"]
    assert ledger.get_balance(member.id).available == 50
    assert err(ac.post(f"/api/v1/admin/points/pending-awards/{pid}/approve", json={"reason": "x"}), 403)
    # A marketer may review attendance awards, but not manual credits.
    assert err(login(marketer).post(f"/api/v1/admin/points/pending-awards/{pid}/approve",
                                    json={"reason": "x"}), 403)["code"] == "forbidden"
    ok = login(other_admin).post(f"/api/v1/admin/points/pending-awards/{pid}/approve", json={"reason": "checked"})
    assert ok.status_code == 200
    assert ledger.get_balance(member.id).available == 5050
    # Reversing one's own entries is refused too.
    entry_id = db.session.scalar(select(db.func.max(AuditLog.id)))  # any id; own entries below
    ledger.award(admin.id, 10, key="sod:admin-own", reason="t")
    db.session.commit()
    from points.models import JournalEntry

    own_entry = db.session.scalar(select(JournalEntry.id).where(JournalEntry.key == "sod:admin-own"))
    assert entry_id is not None
    assert err(ac.post(f"/api/v1/admin/points/entries/{own_entry}/reversal", json={"reason": "x"}),
               403)["code"] == "self_dealing"


def test_staff_cannot_review_their_own_referral(make_member, login):
    from points.models import Referral

    marketer, friend = make_member(roles=("marketer",)), make_member()
    referral = Referral(referrer_id=marketer.id, referee_id=friend.id, status="converted", reward_status="held",
                        flag_reason="same address", signed_up_at=utcnow(), converted_at=utcnow())
    db.session.add(referral)
    db.session.commit()
    resp = login(marketer).post(f"/api/v1/admin/points/referrals/{referral.id}/approve", json={"reason": "legit"})
    assert err(resp, 403)["code"] == "self_dealing"
    assert refused("points.referral.approve") == 1
    assert login(make_member(roles=("marketer",))).post(
        f"/api/v1/admin/points/referrals/{referral.id}/approve", json={"reason": "checked"}).status_code == 200


# --------------------------------------------------------------------------- sanctions


@pytest.mark.parametrize("target_role", ["marketer", "redemption_staff", "moderator", "admin"])
def test_moderators_cannot_sanction_any_staff_role_admins_can(target_role, make_member, login):
    target = make_member(roles=(target_role,))
    body = {"action": "silence", "reason": "test", "duration_hours": 1}
    resp = login(make_member(roles=("moderator",))).post(f"/api/v1/moderation/members/{target.id}/sanctions",
                                                         json=body)
    assert err(resp, 403)["code"] == "staff_sanction_forbidden"
    assert refused("forums.member.sanction") == 1
    admin = login(make_member(roles=("admin",)))
    assert admin.post(f"/api/v1/moderation/members/{target.id}/sanctions", json=body).status_code == 201


def test_nobody_sanctions_themselves(make_member, login):
    admin = make_member(roles=("admin",))
    resp = login(admin).post(f"/api/v1/moderation/members/{admin.id}/sanctions",
                             json={"action": "warn", "reason": "me"})
    assert err(resp, 403)["code"] == "self_sanction"
    assert refused("forums.member.sanction") == 1
