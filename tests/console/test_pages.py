"""Console behaviour without a browser: security headers, CSRF, who sees what, escaping,
idempotent and bulk writes, uploads, validation errors as flash messages, pagination."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from extensions import db
from tests.console.test_browser import _awaiting_redemption


def _csrf(client) -> str:
    return client.csrf_token


def _form(client, url, data, **kw):
    return client.post(url, data={"csrf_token": client.csrf_token, **data}, **kw)


@pytest.fixture
def admin_client(make_member, login):
    admin = make_member(roles=("admin",))
    client = login(admin)
    client.user = admin
    return client


def test_console_responses_carry_a_strict_csp(admin_client):
    resp = admin_client.get("/console/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_data(as_text=True)
    assert "<script>" not in body and " on" + "click=" not in body and "style=" not in body


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(admin_client, make_member):
    member = make_member()
    admin_client.csrf_token = None  # the test client would otherwise send the header
    resp = admin_client.post(f"/console/members/{member.id}/roles", data={"role": "moderator"})
    assert resp.status_code == 403
    db.session.refresh(member)
    assert "moderator" not in member.roles


def test_members_get_404_staff_without_the_permission_403_anonymous_the_sign_in(make_member, login, app):
    member = login(make_member())
    assert member.get("/console/").status_code == 404
    assert member.get("/console/surveys").status_code == 404
    moderator = login(make_member(roles=("moderator",)))
    resp = moderator.get("/console/surveys")
    assert resp.status_code == 403 and "permission" in resp.get_data(as_text=True)
    nav = moderator.get("/console/").get_data(as_text=True)
    assert "/console/moderation/flags" in nav and "/console/surveys" not in nav  # the menu follows permissions
    anonymous = app.test_client().get("/console/surveys?page=2")
    assert anonymous.status_code == 302
    assert "/console/login?next=/console/surveys?page%3D2" in anonymous.headers["Location"]


def test_sign_in_ignores_a_foreign_next_and_a_member_is_told_there_is_no_console(make_member, app):
    from tests.conftest import TEST_PASSWORD

    staff = make_member(roles=("marketer",))
    client = app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/console/login", data={"csrf_token": token, "email": staff.email, "password": TEST_PASSWORD,
                                               "next": "https://evil.example/steal"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/"
    wrong = app.test_client()
    wrong.get("/console/login")
    resp = wrong.post("/console/login", data={"email": staff.email, "password": "nope"})
    assert resp.status_code == 401 and "Wrong email or password" in resp.get_data(as_text=True)


def test_member_supplied_text_is_escaped(admin_client, make_member):
    make_member(display_name="<script>alert('x')</script>", bio="<img src=x onerror=alert(1)>")
    body = admin_client.get("/console/members").get_data(as_text=True)
    assert "<script>alert" not in body and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in body


def test_a_point_adjustment_posted_twice_with_its_form_key_is_one_entry(admin_client, make_member):
    from points import ledger
    from points.models import JournalEntry

    member = make_member()
    page = admin_client.get(f"/console/members/{member.id}").get_data(as_text=True)
    key = re.search(r'name="request_id" value="([0-9a-f]+)"', page).group(1)
    for _ in range(2):
        resp = _form(admin_client, f"/console/members/{member.id}/adjustments",
                     {"delta": "25", "reason": "goodwill", "request_id": key})
        assert resp.status_code == 303
    assert ledger.get_balance(member.id).available == 25
    entries = select(func.count()).select_from(JournalEntry).where(JournalEntry.reason == "goodwill")
    assert db.session.scalar(entries) == 1


def test_an_invalid_form_is_a_flash_message_and_no_change(admin_client, make_member):
    member = make_member()
    resp = _form(admin_client, f"/console/members/{member.id}/adjustments", {"delta": "lots", "reason": ""},
                 follow_redirects=True)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "flash-error" in body and "delta" in body


def test_bulk_approve_reports_what_moved_and_what_did_not(admin_client, make_member):
    from rewards import services
    from rewards.models import Redemption

    first, second = _awaiting_redemption(make_member), _awaiting_redemption(make_member)
    services.approve(admin_client.user, second.id)
    db.session.commit()
    resp = admin_client.post("/console/redemptions/bulk", data={
        "csrf_token": admin_client.csrf_token, "action": "approve", "ids": [str(first.id), str(second.id)]},
        follow_redirects=True)
    body = resp.get_data(as_text=True)
    assert f"#{first.id}" in body and "Not changed" in body
    db.session.expire_all()
    assert db.session.get(Redemption, first.id).state == "approved"


def test_bulk_reject_needs_a_reason(admin_client, make_member):
    from rewards.models import Redemption

    r = _awaiting_redemption(make_member)
    resp = admin_client.post("/console/redemptions/bulk", data={
        "csrf_token": admin_client.csrf_token, "action": "reject", "ids": [str(r.id)]}, follow_redirects=True)
    assert "reason" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Redemption, r.id).state == "awaiting_fulfilment"


def test_coupon_codes_upload_from_a_file_raises_the_stock(admin_client):
    import io

    from rewards.models import Reward

    reward = Reward(name="Coffee", kind="coupon", cost=5, stock=0)
    db.session.add(reward)
    db.session.commit()
    resp = admin_client.post(f"/console/rewards/{reward.id}/codes", data={
        "csrf_token": admin_client.csrf_token, "file": (io.BytesIO(b"code\nA1\nB2\nA1\n"), "codes.csv")},
        content_type="multipart/form-data")
    assert resp.status_code == 303
    db.session.refresh(reward)
    assert reward.stock == 2


def test_publishing_an_invalid_survey_is_refused_with_the_reason(admin_client):
    from surveys.models import Survey

    _form(admin_client, "/console/surveys", {"title": "Empty"})
    survey = db.session.scalar(select(Survey).where(Survey.title == "Empty"))
    resp = _form(admin_client, f"/console/surveys/{survey.id}/publish", {}, follow_redirects=True)
    assert "needs at least one question" in resp.get_data(as_text=True)
    db.session.refresh(survey)
    assert survey.status == "draft"


def test_skip_logic_must_name_an_existing_question(admin_client):
    from surveys.models import Survey

    _form(admin_client, "/console/surveys", {"title": "Skip"})
    survey = db.session.scalar(select(Survey).where(Survey.title == "Skip"))
    url = f"/console/surveys/{survey.id}/questions"
    _form(admin_client, url, {"id": "q1", "type": "rating", "text": "Rate us", "page": "0"})
    _form(admin_client, url, {"id": "q2", "type": "long_text", "text": "Why so low?", "page": "0",
                              "show_if_question": "q1", "show_if_values": "1\n2"})
    db.session.refresh(survey)
    questions = survey.definition["pages"][0]["questions"]
    assert questions[1]["show_if"] == {"question": "q1", "in": [1, 2]}  # numbers for a rating
    resp = _form(admin_client, f"/console/surveys/{survey.id}/publish", {}, follow_redirects=True)
    assert "Survey published." in resp.get_data(as_text=True)


def test_lists_paginate(admin_client, make_member):
    for _ in range(30):
        make_member()
    body = admin_client.get("/console/members?per_page=10&page=2").get_data(as_text=True)
    assert "Page 2 of 4" in body and 'rel="prev"' in body and 'rel="next"' in body


def test_focus_group_roster_attendance_and_calendar(admin_client, make_member):
    from datetime import timedelta

    from community.models import utcnow
    from surveys import focus_groups
    from surveys.models import FocusGroupSignup
    from tests.surveys.helpers import make_session

    session = make_session(capacity=1)
    first, second = make_member(), make_member()
    focus_groups.sign_up(first, session.id)
    focus_groups.sign_up(second, session.id)
    db.session.commit()
    body = admin_client.get(f"/console/focus-groups/{session.id}").get_data(as_text=True)
    assert "waitlisted" in body and "<td>1</td>" in body  # the waiting member is first in line
    session.starts_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    resp = _form(admin_client, f"/console/focus-groups/{session.id}/attendance", {f"member-{first.id}": "attended"})
    assert resp.status_code == 303
    status = select(FocusGroupSignup.status).where(FocusGroupSignup.member_id == first.id)
    assert db.session.scalar(status) == "attended"
    ics = admin_client.get(f"/console/focus-groups/{session.id}/calendar.ics")
    assert ics.mimetype == "text/calendar" and "BEGIN:VEVENT" in ics.get_data(as_text=True)


def test_landing_page(client):
    resp = client.get("/")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "/console/" in body and "/api/docs" in body


def test_a_forms_back_field_cannot_redirect_off_the_console(admin_client, make_member):
    from tests.console.test_browser import _flagged_post

    flag, _post = _flagged_post(make_member)
    resp = _form(admin_client, f"/console/moderation/flags/{flag.id}",
                 {"decision": "disagree", "back": "https://evil.example/"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/console/moderation/flags"
    resp = _form(admin_client, "/console/language", {"lang": "zh_CN", "back": "//evil.example/x"})
    assert resp.headers["Location"] == "/console/"


def test_every_page_renders_on_the_demo_data(app):
    """``make run``'s data: each role's demo account sees its pages (and only those)."""
    from demo import load_demo
    from surveys.models import Survey

    load_demo()
    db.session.commit()
    survey_id = db.session.scalar(select(Survey.id))
    pages = {
        "mod@example.com": ["/console/", "/console/moderation/flags", "/console/moderation/audit"],
        "redeem@example.com": ["/console/", "/console/redemptions", "/console/redemptions/stock"],
        "marketing@example.com": ["/console/", "/console/surveys", f"/console/surveys/{survey_id}",
                                  f"/console/surveys/{survey_id}/results", "/console/focus-groups", "/console/rules",
                                  "/console/campaigns", "/console/rewards", "/console/referrals", "/console/tiers"],
        "admin@example.com": ["/console/", "/console/members", "/console/audit", "/console/jobs"],
    }
    for email, urls in pages.items():
        client = app.test_client()
        resp = client.post("/api/v1/auth/login", json={"email": email, "password": "demo-password-1"})
        assert resp.status_code == 200, resp.get_json()
        for url in urls:
            assert client.get(url).status_code == 200, (email, url)
        if email != "admin@example.com":
            assert client.get("/console/members").status_code == 403
