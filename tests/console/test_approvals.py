"""Four-eyes approval in the console: a large manual credit or attendance award waits in "Award
approvals" until a second staff member decides it, with the service's rules (not your own
request, manual credits need an admin, one decision)."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from extensions import db


def _form(client, url, data, **kw):
    return client.post(url, data={"csrf_token": client.csrf_token, **data}, **kw)


def _flashes(body: str) -> str:
    return " ".join(re.findall(r'<p class="flash[^"]*">(.*?)</p>', body, re.S))


def test_a_large_credit_waits_for_a_second_admin_who_approves_it_once(app, make_member, login):
    from points import ledger
    from points.models import JournalEntry, PendingAward

    first, second = make_member(roles=("admin",)), make_member(roles=("admin",))
    member = make_member()
    a, b = login(first), login(second)
    resp = _form(a, f"/console/members/{member.id}/adjustments",
                 {"delta": "1000", "reason": "make good", "request_id": "f" * 32}, follow_redirects=True)
    assert resp.status_code == 200
    assert "needs a second admin" in _flashes(resp.get_data(as_text=True))
    pending = db.session.scalar(select(PendingAward))
    assert (pending.kind, pending.points, pending.status, pending.requested_by_id) == (
        "adjustment", 1000, "pending", first.id)
    assert ledger.get_balance(member.id).available == 0

    # The requester sees it but may not decide it; the home page counts it.
    mine = a.get("/console/approvals").get_data(as_text=True)
    row = re.search(rf'<tr id="award-{pending.id}">(.*?)</tr>', mine, re.S).group(1)
    assert "You requested it" in row and "<form" not in row and "make good" in row
    assert "Awards waiting for a second approval" in a.get("/console/").get_data(as_text=True)
    resp = _form(a, f"/console/approvals/{pending.id}/approve", {"reason": "self"})
    assert resp.status_code == 403 and "A second staff member must decide" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(PendingAward, pending.id).status == "pending"

    # A second admin approves: the credit is posted, once.
    theirs = b.get("/console/approvals").get_data(as_text=True)
    assert f'action="/console/approvals/{pending.id}/approve"' in theirs
    resp = _form(b, f"/console/approvals/{pending.id}/approve", {"reason": "checked"}, follow_redirects=True)
    assert "1000 points posted" in _flashes(resp.get_data(as_text=True))
    resp = _form(b, f"/console/approvals/{pending.id}/approve", {"reason": "again"}, follow_redirects=True)
    assert "flash-error" in resp.get_data(as_text=True)  # already decided (409)
    db.session.expire_all()
    assert ledger.get_balance(member.id).available == 1000
    assert db.session.scalar(select(func.count()).select_from(JournalEntry)
                             .where(JournalEntry.reason == "make good")) == 1
    decided = b.get("/console/approvals?status=approved").get_data(as_text=True)
    assert f'id="award-{pending.id}"' in decided and "checked" in decided


def test_a_rejected_award_posts_nothing_and_a_reason_is_required(app, make_member, login):
    from points import approvals, ledger
    from points.models import PendingAward

    requester, marketer = make_member(roles=("marketer",)), make_member(roles=("marketer",))
    member = make_member()
    pending = approvals.request_award(
        kind="interaction", key=f"t-pending:{member.id}", member_id=member.id, points=800, reason="attended",
        requested_by_id=requester.id,
        request={"kind": "focus_group_attended", "key": f"t-fg:{member.id}", "value": 800})
    db.session.commit()
    client = login(marketer)
    page = client.get("/console/approvals").get_data(as_text=True)
    assert f'action="/console/approvals/{pending.id}/approve"' in page  # attendance: a marketer decides
    resp = _form(client, f"/console/approvals/{pending.id}/reject", {"reason": ""}, follow_redirects=True)
    assert "flash-error" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(PendingAward, pending.id).status == "pending"
    resp = _form(client, f"/console/approvals/{pending.id}/reject", {"reason": "not there"}, follow_redirects=True)
    assert "nothing posted" in _flashes(resp.get_data(as_text=True))
    db.session.expire_all()
    assert db.session.get(PendingAward, pending.id).status == "rejected"
    assert ledger.get_balance(member.id).available == 0


def test_a_marketer_cannot_decide_a_manual_credit(app, make_member, login):
    from points.models import PendingAward

    admin, marketer, member = make_member(roles=("admin",)), make_member(roles=("marketer",)), make_member()
    _form(login(admin), f"/console/members/{member.id}/adjustments",
          {"delta": "900", "reason": "big", "request_id": "e" * 32})
    pending = db.session.scalar(select(PendingAward))
    client = login(marketer)
    row = re.search(rf'<tr id="award-{pending.id}">(.*?)</tr>',
                    client.get("/console/approvals").get_data(as_text=True), re.S).group(1)
    assert "A manual credit needs an admin." in row and "<form" not in row
    resp = _form(client, f"/console/approvals/{pending.id}/approve", {"reason": "ok"})
    assert resp.status_code == 403 and "permission to decide this award" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(PendingAward, pending.id).status == "pending"


def test_marking_attendance_with_large_points_says_they_wait_and_a_second_marketer_posts_them(
        app, make_member, login):
    from datetime import timedelta

    from community.models import utcnow
    from points import ledger
    from points.models import PendingAward
    from surveys import focus_groups
    from tests.surveys.helpers import make_session

    host, other, member = make_member(roles=("marketer",)), make_member(roles=("marketer",)), make_member()
    session = make_session(attendance_points=800)
    focus_groups.sign_up(member, session.id)
    session.starts_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    resp = _form(login(host), f"/console/focus-groups/{session.id}/attendance", {f"member-{member.id}": "attended"},
                 follow_redirects=True)
    assert "800 points each wait for a second staff member" in _flashes(resp.get_data(as_text=True))
    pending = db.session.scalar(select(PendingAward))
    assert (pending.kind, pending.member_id, pending.points) == ("interaction", member.id, 800)
    assert ledger.get_balance(member.id).available == 0
    resp = _form(login(other), f"/console/approvals/{pending.id}/approve", {"reason": "was there"},
                 follow_redirects=True)
    assert "800 points posted" in _flashes(resp.get_data(as_text=True))
    db.session.expire_all()
    assert ledger.get_balance(member.id).available == 800
