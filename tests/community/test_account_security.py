"""Issue #13, account security: passwords, look-alike accounts, display names, tokens, suspension
and the birthday, each reproduction of the report over HTTP."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from community.models import ApiToken, AuditLog, User, utcnow
from extensions import db
from tests.conftest import TEST_PASSWORD

STRONG = "violet tractor umbrella 42"


def register(client, email, password=STRONG, display_name="Someone", **extra):
    return client.post("/api/v1/auth/register",
                       json={"email": email, "password": password, "display_name": display_name, **extra})


def err(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()["error"]


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def new_token(client, name="ci"):
    resp = client.post("/api/v1/me/tokens", json={"name": name, "password": TEST_PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["token"]


# --------------------------------------------------------------------------- passwords


@pytest.mark.parametrize("password", ["password12", "1234567890", "qwertyuiop", "carol@example.com",
                                      "aaaaaaaaaaaa", "carolcarol1"])
def test_guessable_passwords_and_the_email_are_refused(client, password):
    body = err(register(client, "carol@example.com", password=password, display_name="Carol"), 422)
    assert body["fields"]["password"]


def test_password_change_refuses_the_current_password_and_weak_ones(make_member, login):
    client = login(make_member())
    same = client.post("/api/v1/me/password", json={"current_password": TEST_PASSWORD,
                                                     "new_password": TEST_PASSWORD})
    assert "new_password" in err(same, 422)["fields"]
    weak = client.post("/api/v1/me/password", json={"current_password": TEST_PASSWORD,
                                                     "new_password": "qwertyuiop"})
    assert "new_password" in err(weak, 422)["fields"]


# --------------------------------------------------------------------------- look-alike accounts


@pytest.mark.parametrize("lookalike", [
    "\u0430lice@example.com",      # Cyrillic а
    "\uff41lice@example.com",      # full-width ａ
    "al\u200bice@example.com",     # zero-width space
    "alice@example.com.",          # trailing dot
    "ALICE@EXAMPLE.COM",
    " alice@example.com ",
])
def test_look_alike_emails_cannot_register_a_second_account(client, app, lookalike):
    assert register(client, "alice@example.com", display_name="Alice").status_code == 201
    resp = app.test_client().post("/api/v1/auth/register", json={
        "email": lookalike, "password": STRONG, "display_name": "Alice two"})
    assert resp.status_code in (409, 422), resp.get_json()
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 1


def test_display_names_lose_control_and_bidi_characters(client):
    # NUL is refused outright by the API contract (422, PostgreSQL cannot store it); other
    # control and bidi characters are dropped.
    assert err(register(client, "dan@example.com", display_name="Dan\x00"), 422)["fields"] == {
        "_body": ["NUL characters are not allowed."]}
    resp = register(client, "dan@example.com", display_name="Dan\u202egnp.exe\x07\u200b")
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["member"]["display_name"] == "Dangnp.exe"
    client.csrf_token = resp.get_json()["csrf_token"]
    patched = client.patch("/api/v1/me", json={"display_name": "\u2066Dan\u2069 the\tman"})
    assert patched.get_json()["display_name"] == "Dan the man"
    assert err(client.patch("/api/v1/me", json={"display_name": "\u202e\u200b"}), 422)


def test_staff_display_names_cannot_be_imitated(client, make_member, login):
    make_member(roles=("moderator",), display_name="Mod Alice")
    for fake in ("Mod Alice", "mod alice", "M0d Al1ce", "Мod Аlice", "Mod  Alice\u200b", "mod_alice"):
        resp = register(client, f"fake{abs(hash(fake))}@example.com", display_name=fake)
        assert err(resp, 409)["code"] == "display_name_reserved", fake
    member = make_member(display_name="Bob")
    assert err(login(member).patch("/api/v1/me", json={"display_name": "MOD ALICE"}), 409)
    assert register(client, "real@example.com", display_name="Alice Mod").status_code == 201


# --------------------------------------------------------------------------- tokens


def test_creating_a_token_needs_the_current_password(make_member, login):
    client = login(make_member())
    assert "password" in err(client.post("/api/v1/me/tokens", json={"name": "ci"}), 422)["fields"]
    wrong = client.post("/api/v1/me/tokens", json={"name": "ci", "password": "not my password"})
    assert "password" in err(wrong, 422)["fields"]
    assert db.session.scalar(select(db.func.count()).select_from(ApiToken)) == 0
    assert new_token(client).startswith("kin_")


def test_a_password_change_revokes_every_token(make_member, login, app):
    client = login(make_member())
    secret = new_token(client)
    assert app.test_client().get("/api/v1/me", headers=bearer(secret)).status_code == 200
    resp = client.post("/api/v1/me/password", json={"current_password": TEST_PASSWORD, "new_password": STRONG})
    assert resp.status_code == 200, resp.get_json()
    assert err(app.test_client().get("/api/v1/me", headers=bearer(secret)), 401)["code"] == "invalid_token"
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "community.password.change"))
    assert audit.details["tokens_revoked"] == 1


# --------------------------------------------------------------------------- suspension


def test_suspended_means_read_only_for_sessions_and_tokens(make_member, login, app):
    """Defined: a suspended member can log in and read, and every write answers 403
    ``account_suspended`` — with a session or a token — until the suspension ends."""
    moderator = make_member(roles=("moderator",))
    member = make_member()
    member_client = login(member)
    secret = new_token(member_client)
    resp = login(moderator).post(f"/api/v1/moderation/members/{member.id}/sanctions",
                                 json={"action": "suspend", "reason": "spam", "duration_hours": 24})
    assert resp.status_code == 201, resp.get_json()

    # The old session still reads, and is told clearly why it cannot write.
    assert member_client.get("/api/v1/me").status_code == 200
    body = err(member_client.patch("/api/v1/me", json={"bio": "x"}), 403)
    assert body["code"] == "account_suspended" and body["fields"]["suspended_until"]
    # A fresh login works, but cannot mint a token either.
    fresh = login(member)
    assert err(fresh.post("/api/v1/me/tokens", json={"name": "x", "password": TEST_PASSWORD}),
               403)["code"] == "account_suspended"
    assert err(fresh.post("/api/v1/me/visits", json={}), 403)["code"] == "account_suspended"
    # The suspension revoked the token it had.
    assert err(app.test_client().get("/api/v1/me", headers=bearer(secret)), 401)["code"] == "invalid_token"
    assert fresh.post("/api/v1/auth/logout").status_code == 204


def test_a_suspended_token_holder_is_read_only_too(make_member, login, app):
    from community.services import create_token

    member = make_member()
    _, secret = create_token(member, "legacy")
    member.suspended_until = utcnow() + timedelta(days=1)
    db.session.commit()
    tc = app.test_client()
    assert tc.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert err(tc.post("/api/v1/me/visits", json={}, headers=bearer(secret)), 403)["code"] == "account_suspended"


# --------------------------------------------------------------------------- birthday


def test_birthday_is_set_once_plausible_and_corrected_by_staff_with_audit(make_member, login):
    member = make_member()
    client = login(member)
    today = utcnow().date()
    for bad in ("0001-01-01", "2999-01-01", today.isoformat()):
        assert "birthday" in err(client.patch("/api/v1/me", json={"birthday": bad}), 422)["fields"], bad
    assert client.patch("/api/v1/me", json={"birthday": "1990-05-17"}).status_code == 200
    again = client.patch("/api/v1/me", json={"birthday": today.replace(year=1990).isoformat()})
    assert err(again, 409)["code"] == "birthday_already_set"
    assert client.patch("/api/v1/me", json={"birthday": "1990-05-17"}).status_code == 200  # unchanged: fine

    admin = login(make_member(roles=("admin",)))
    fixed = admin.put(f"/api/v1/admin/users/{member.id}/birthday",
                      json={"birthday": "1990-06-17", "reason": "typo, ID checked"})
    assert fixed.status_code == 200, fixed.get_json()
    assert fixed.get_json()["birthday"] == "1990-06-17"
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "community.birthday.correct"))
    assert entry.details == {"before": "1990-05-17", "after": "1990-06-17"} and entry.target_id == member.id
    db.session.expire_all()
    assert db.session.get(User, member.id).birthday == date(1990, 6, 17)
