"""Account emails through the real SMTP server: verification, email change, password reset."""

from __future__ import annotations

import re

from sqlalchemy import select

from community.models import ApiToken, User
from extensions import db
from messaging.models import AccountToken

PASSWORD = "a long enough password"


def _token(received) -> str:
    return re.search(r"token=([A-Za-z0-9_\-]+)", received.text).group(1)


def _register(client, email="new@example.com"):
    resp = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "New"})
    assert resp.status_code == 201, resp.get_json()
    client.csrf_token = resp.get_json()["csrf_token"]
    return client


def test_sign_up_sends_a_verification_link_and_unverified_members_cannot_redeem(mail_app, smtp, client, run_jobs):
    _register(client)
    run_jobs(["messaging"])
    [got] = smtp.to("new@example.com")
    assert got.message["Subject"] == "Confirm your email address"
    assert got.message["List-Unsubscribe"] is None  # transactional
    assert "/account/verify-email?token=" in got.text

    assert client.get("/api/v1/me/notification-preferences").get_json()["email_verified"] is False
    resp = client.post("/api/v1/redemptions", json={"reward_id": 1}, headers={"Idempotency-Key": "k1"})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "email_unverified"

    token = _token(got)
    resp = client.post("/api/v1/auth/verify-email", json={"token": token})
    assert resp.status_code == 200 and resp.get_json() == {"email": "new@example.com", "email_verified": True}
    assert client.get("/api/v1/me/notification-preferences").get_json()["email_verified"] is True
    resp = client.post("/api/v1/redemptions", json={"reward_id": 1}, headers={"Idempotency-Key": "k2"})
    assert resp.status_code == 404  # past the verification check: no such reward

    again = client.post("/api/v1/auth/verify-email", json={"token": token})
    assert again.status_code == 422 and again.get_json()["error"]["code"] == "invalid_token"  # single use


def test_the_verification_page_posts_back(mail_app, smtp, client, run_jobs, app):
    _register(client)
    run_jobs(["messaging"])
    token = _token(smtp.to("new@example.com")[0])
    page = app.test_client().get(f"/account/verify-email?token={token}")
    assert page.status_code == 200 and b'name="token"' in page.data
    # Posted by a browser that is logged in (cookie, no CSRF header): the token is the credential.
    done = client.open("/account/verify-email", method="POST", data={"token": token},
                       headers={"X-CSRF-Token": ""})
    assert done.status_code == 302
    assert client.get("/api/v1/me/notification-preferences").get_json()["email_verified"] is True


def test_expired_and_forged_verification_tokens(mail_app, smtp, client, run_jobs, app):
    app.config["MESSAGING_VERIFY_TOKEN_HOURS"] = -1
    _register(client)
    run_jobs(["messaging"])
    token = _token(smtp.to("new@example.com")[0])
    for bad in (token, token[:-2] + "zz", "short", "x" * 300):
        resp = client.post("/api/v1/auth/verify-email", json={"token": bad})
        assert resp.status_code == 422, bad
    assert client.get("/api/v1/me/notification-preferences").get_json()["email_verified"] is False


def test_resend_verification(mail_app, smtp, client, run_jobs, make_member, login):
    _register(client)
    assert client.post("/api/v1/me/verification-email").get_json() == {"status": "sent"}
    run_jobs(["messaging"])
    assert len(smtp.to("new@example.com")) == 2
    veteran = login(make_member())  # existed before verification: counts as verified
    assert veteran.post("/api/v1/me/verification-email").get_json() == {"status": "already_verified"}


def test_email_change_takes_effect_only_when_the_new_address_confirms(mail_app, smtp, make_member, login, run_jobs):
    member = make_member()
    other = make_member()
    client = login(member)
    from tests.conftest import TEST_PASSWORD

    resp = client.post("/api/v1/me/email", json={"new_email": "Fresh@Example.com", "password": TEST_PASSWORD})
    assert resp.status_code == 202
    wrong = client.post("/api/v1/me/email", json={"new_email": "x@example.com", "password": "not my password"})
    assert wrong.status_code == 422
    taken = client.post("/api/v1/me/email", json={"new_email": other.email, "password": TEST_PASSWORD})
    assert taken.status_code == 202  # same answer; nothing is sent to a registered address
    bad = client.post("/api/v1/me/email", json={"new_email": "not an address", "password": TEST_PASSWORD})
    assert bad.status_code == 422
    run_jobs(["messaging"])
    assert smtp.to(other.email) == []
    [got] = smtp.to("fresh@example.com")
    assert got.message["Subject"] == "Confirm your new email address"
    db.session.rollback()
    assert db.session.get(User, member.id).email != "fresh@example.com"

    resp = client.post("/api/v1/auth/verify-email", json={"token": _token(got)})
    assert resp.status_code == 200 and resp.get_json()["email"] == "fresh@example.com"
    db.session.rollback()
    assert db.session.get(User, member.id).email == "fresh@example.com"


def test_password_reset_reveals_nothing_and_revokes_everything(mail_app, smtp, make_member, login, run_jobs, app):
    from community.services import create_token

    member = make_member()
    session_client = login(member)
    _, secret = create_token(member, "ci")
    db.session.commit()
    anon = app.test_client()

    known = anon.post("/api/v1/auth/password-reset", json={"email": member.email.upper()})
    unknown = anon.post("/api/v1/auth/password-reset", json={"email": "nobody@example.com"})
    malformed = anon.post("/api/v1/auth/password-reset", json={"email": "not an email"})
    assert known.status_code == unknown.status_code == malformed.status_code == 202
    assert known.get_json() == unknown.get_json() == malformed.get_json()
    run_jobs(["messaging"])
    assert [r.rcpt_tos for r in smtp.received] == [[member.email]]
    [got] = smtp.received
    assert got.message["Subject"] == "Reset your password" and "30 minutes" in got.text
    token = _token(got)

    weak = anon.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"})
    assert weak.status_code == 422  # and the token is still good (nothing half-written)
    ok = anon.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "brand new password!"})
    assert ok.status_code == 204
    assert session_client.get("/api/v1/me").status_code == 401  # the old session ended
    assert anon.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    db.session.rollback()
    assert db.session.scalar(select(ApiToken.revoked_at)) is not None
    login_resp = anon.post("/api/v1/auth/login", json={"email": member.email, "password": "brand new password!"})
    assert login_resp.status_code == 200
    reuse = app.test_client().post("/api/v1/auth/password-reset/confirm",
                                   json={"token": token, "new_password": "another one!!"})
    assert reuse.status_code == 422 and reuse.get_json()["error"]["code"] == "invalid_token"


def test_an_expired_reset_token_is_refused(mail_app, smtp, make_member, run_jobs, app):
    app.config["MESSAGING_RESET_TOKEN_MINUTES"] = -1
    member = make_member()
    client = app.test_client()
    client.post("/api/v1/auth/password-reset", json={"email": member.email})
    run_jobs(["messaging"])
    token = _token(smtp.received[0])
    resp = client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "brand new pw!!"})
    assert resp.status_code == 422
    assert db.session.scalar(select(AccountToken.used_at)) is None


def test_password_reset_is_rate_limited(mail_app, smtp, make_member, run_jobs, app):
    app.config["PASSWORD_RESET_RATE_LIMIT"] = (2, 3600)
    member = make_member()
    client = app.test_client()
    codes = [client.post("/api/v1/auth/password-reset", json={"email": member.email}).status_code for _ in range(4)]
    assert codes == [202, 202, 429, 429]
    # Unknown addresses are limited the same way (the limit says nothing about existence).
    codes = [client.post("/api/v1/auth/password-reset", json={"email": "ghost@example.com"}).status_code
             for _ in range(3)]
    assert codes == [202, 202, 429]
    run_jobs(["messaging"])
    assert len(smtp.received) == 2
