"""Login, logout, password change, session revocation, CSRF and the login rate limit."""

from __future__ import annotations

from datetime import timedelta

from community.models import User
from extensions import db
from tests.conftest import TEST_PASSWORD

NEW_PASSWORD = "a brand new passphrase"


def login_json(client, email, password=TEST_PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def replay(app, cookie_value: str):
    """A fresh client carrying nothing but a copied session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie_value)
    return other


def test_login_returns_member_and_csrf_token(client, make_member):
    user = make_member(email="login@example.com")
    resp = login_json(client, " LOGIN@example.com")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["member"]["id"] == user.id
    assert body["csrf_token"]
    assert client.get("/api/v1/me").status_code == 200


def test_wrong_password_and_unknown_email_are_the_same_401(client, make_member):
    make_member(email="known@example.com")
    wrong = login_json(client, "known@example.com", "not the password")
    unknown = login_json(client, "nobody@example.com", "not the password")
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "invalid_credentials"
    assert wrong.get_json()["error"]["message"] == unknown.get_json()["error"]["message"]
    assert client.get("/api/v1/me").status_code == 401


def test_disabled_account_cannot_log_in(client, make_member):
    make_member(email="gone@example.com", is_active_account=False)
    resp = login_json(client, "gone@example.com")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "account_disabled"


def test_login_rate_limit_is_429_with_retry_after(make_app, make_member):
    make_member(email="target@example.com")
    limited = make_app(LOGIN_RATE_LIMIT=(3, 60))
    client = limited.test_client()
    for _ in range(3):
        assert login_json(client, "target@example.com", "wrong password!").status_code == 401
    resp = login_json(client, "target@example.com")  # even the right password: the budget is spent
    assert resp.status_code == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 0 < retry_after <= 60
    err = resp.get_json()["error"]
    assert err["code"] == "too_many_requests"
    assert err["fields"]["retry_after"] == retry_after
    # The limit is per account: another account from the same address still gets through.
    assert login_json(client, "other@example.com", "wrong password!").status_code == 401


def test_logout_invalidates_a_replayed_cookie(app, make_member, login):
    client = login(make_member())
    cookie = session_cookie(client)
    assert replay(app, cookie).get("/api/v1/me").status_code == 200  # the copy works while live

    assert client.post("/api/v1/auth/logout").status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    resp = replay(app, cookie).get("/api/v1/me")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_logout_everywhere_ends_every_session_and_optionally_the_tokens(app, make_member, login):
    from community.models import AuditLog
    from community.services import create_token

    user = make_member()
    first, second = login(user), login(user)
    first_cookie, second_cookie = session_cookie(first), session_cookie(second)
    _, secret = create_token(user, "integration")
    other = make_member()
    other_client = login(other)
    db.session.commit()
    bearer = {"Authorization": f"Bearer {secret}"}

    resp = first.post("/api/v1/auth/logout-everywhere", json={})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"sessions_ended": 2, "tokens_revoked": 0}
    assert "no-store" in resp.headers["Cache-Control"]
    for client in (first, second, replay(app, first_cookie), replay(app, second_cookie)):
        assert client.get("/api/v1/me").status_code == 401
    assert other_client.get("/api/v1/me").status_code == 200  # nobody else's session
    tc = app.test_client()
    assert tc.get("/api/v1/me", headers=bearer).status_code == 200  # tokens stay unless asked

    # From the token itself, with revoke_tokens: the token stops working too.
    third = login(user)
    resp = tc.post("/api/v1/auth/logout-everywhere", json={"revoke_tokens": True}, headers=bearer)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"sessions_ended": 1, "tokens_revoked": 1}
    assert tc.get("/api/v1/me", headers=bearer).get_json()["error"]["code"] == "invalid_token"
    assert third.get("/api/v1/me").status_code == 401
    actions = db.session.scalars(
        db.select(AuditLog.details).where(AuditLog.action == "community.sessions.end_all", AuditLog.actor_id == user.id)
        .order_by(AuditLog.id)
    ).all()
    assert [d["tokens_revoked"] for d in actions] == [0, 1]


def test_logout_everywhere_needs_a_login_csrf_and_a_valid_body(app, make_member, login):
    anonymous = app.test_client().post("/api/v1/auth/logout-everywhere", json={})
    assert anonymous.status_code == 401
    client = login(make_member())
    bad = client.post("/api/v1/auth/logout-everywhere", json={"revoke_tokens": "perhaps"})
    assert bad.status_code == 422
    assert "revoke_tokens" in bad.get_json()["error"]["fields"]
    no_csrf = replay(app, session_cookie(client)).post("/api/v1/auth/logout-everywhere", json={})
    assert no_csrf.status_code == 403
    assert client.get("/api/v1/me").status_code == 200  # nothing ended by the refused calls


def test_password_change_ends_every_other_session(app, make_member, login):
    user = make_member()
    first, second = login(user), login(user)
    old_first_cookie, second_cookie = session_cookie(first), session_cookie(second)

    resp = first.post("/api/v1/me/password", json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})
    assert resp.status_code == 200
    first.csrf_token = resp.get_json()["csrf_token"]

    assert first.get("/api/v1/me").status_code == 200  # the changing session continues, re-issued
    assert first.patch("/api/v1/me", json={"bio": "still here"}).status_code == 200
    assert second.get("/api/v1/me").status_code == 401
    assert replay(app, second_cookie).get("/api/v1/me").status_code == 401
    assert replay(app, old_first_cookie).get("/api/v1/me").status_code == 401

    assert login_json(app.test_client(), user.email).status_code == 401
    assert login_json(app.test_client(), user.email, NEW_PASSWORD).status_code == 200
    assert db.session.get(User, user.id).password_hash.startswith("scrypt:")


def test_password_change_needs_the_current_password_and_a_strong_new_one(make_member, login):
    client = login(make_member())
    wrong = client.post(
        "/api/v1/me/password", json={"current_password": "nope nope nope", "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 422
    assert "current_password" in wrong.get_json()["error"]["fields"]
    weak = client.post("/api/v1/me/password", json={"current_password": TEST_PASSWORD, "new_password": "short"})
    assert weak.status_code == 422
    assert "new_password" in weak.get_json()["error"]["fields"]
    assert client.get("/api/v1/me").status_code == 200  # nothing changed, session intact


def test_cookie_writes_need_the_csrf_header(make_member, login):
    client = login(make_member())
    token, client.csrf_token = client.csrf_token, None

    missing = client.patch("/api/v1/me", json={"bio": "csrf"})
    wrong = client.patch("/api/v1/me", json={"bio": "csrf"}, headers={"X-CSRF-Token": "not-the-token"})
    for resp in (missing, wrong):
        assert resp.status_code == 403
        assert resp.get_json()["error"]["code"] == "csrf_failed"
    assert client.get("/api/v1/me").get_json()["bio"] == ""

    ok = client.patch("/api/v1/me", json={"bio": "csrf"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.get_json()["bio"] == "csrf"


def test_csrf_endpoint_returns_the_session_token(make_member, login):
    client = login(make_member())
    resp = client.get("/api/v1/auth/csrf")
    assert resp.status_code == 200
    assert resp.get_json()["csrf_token"] == client.csrf_token


def test_profile_edit_allows_only_profile_fields(make_member, login):
    user = make_member()
    client = login(user)
    resp = client.patch("/api/v1/me", json={"display_name": " Renamed ", "bio": "Hi", "birthday": "1990-02-03"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["display_name"], body["bio"], body["birthday"]) == ("Renamed", "Hi", "1990-02-03")

    for forbidden in ({"roles": ["admin"]}, {"tier": "advocate"}, {"email": "x@example.com"}, {"id": 99}):
        resp = client.patch("/api/v1/me", json=forbidden)
        assert resp.status_code == 422, forbidden
        assert set(forbidden) <= set(resp.get_json()["error"]["fields"])
    assert client.patch("/api/v1/me", json={"display_name": "  "}).status_code == 422
    assert client.patch("/api/v1/me", json={"birthday": "not a date"}).status_code == 422
    fresh = db.session.get(User, user.id)
    assert fresh.roles == {"member"} and fresh.tier == "aware" and fresh.display_name == "Renamed"


def test_server_side_session_lives_as_long_as_the_cookie(app, make_member, login):
    from community.auth import purge_expired_sessions
    from community.models import UserSession, utcnow

    user = make_member()
    client = login(user)
    [row] = db.session.scalars(db.select(UserSession).where(UserSession.user_id == user.id)).all()
    lifetime = app.permanent_session_lifetime
    assert lifetime - timedelta(seconds=60) < row.expires_at - utcnow() <= lifetime
    assert len(row.sid_hash) == 64 and row.sid_hash not in session_cookie(client)  # only its hash is stored
    # Past its expiry the cookie is refused (before any purge), and the purge removes the row.
    assert client.get("/api/v1/me").status_code == 200
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/api/v1/me").status_code == 401
    assert purge_expired_sessions() == 1
    assert db.session.scalar(db.select(db.func.count()).select_from(UserSession)) == 0


def test_a_cookie_request_is_one_query_and_no_redis(app, make_member, login, monkeypatch):
    from sqlalchemy import event

    from extensions import get_redis

    client = login(make_member())
    statements, commands = [], []
    with app.app_context():
        engine = db.engine
    redis = get_redis()
    original = redis.execute_command
    monkeypatch.setattr(redis, "execute_command", lambda *a, **k: commands.append(a[0]) or original(*a, **k))
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert client.get("/api/v1/me").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1, statements
    assert "user_sessions" in statements[0]
    assert commands == []
