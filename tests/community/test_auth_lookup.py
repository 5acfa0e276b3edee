"""Authentication costs one indexed lookup and writes nothing per request, and nothing about it
is cached: revoking a token, deactivating a member, a forum suspension and a password change act
on the very next request, in another app instance and in a real gunicorn process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, update

from community.models import ApiToken, User, utcnow
from extensions import db, get_redis
from tests.conftest import TEST_PASSWORD, unused_port

ROOT = Path(__file__).resolve().parents[2]


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def make_token(client) -> dict:
    resp = client.post("/api/v1/me/tokens", json={"name": "integration", "password": TEST_PASSWORD})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


class Statements:
    """Every SQL statement an app's engine runs while active (transaction control left out)."""

    def __init__(self, app):
        self.app, self.seen = app, []

    def _on(self, conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE", "PRAGMA", "ROLLBACK")):
            self.seen.append(statement.lstrip().split()[0].upper())

    def __enter__(self):
        with self.app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        with self.app.app_context():
            event.remove(db.engine, "before_cursor_execute", self._on)


def test_a_token_request_is_one_query_and_no_write(app, make_member, login):
    secret = make_token(login(make_member()))["token"]
    client = app.test_client()
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200  # first use: recorded
    redis = get_redis(app)
    keys_before = redis.dbsize()
    with Statements(app) as sql:
        for _ in range(3):
            assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 200
    assert sql.seen == ["SELECT"] * 3  # token + member + roles in one statement; GET /me needs no other
    assert redis.dbsize() == keys_before  # no "last used" key or any other Redis write


def test_last_used_is_refreshed_at_most_once_a_minute(app, make_member, login):
    created = make_token(login(make_member()))
    client = app.test_client()
    assert client.get("/api/v1/me", headers=bearer(created["token"])).status_code == 200
    first = db.session.get(ApiToken, created["id"]).last_used_at
    assert first is not None
    assert client.get("/api/v1/me", headers=bearer(created["token"])).status_code == 200
    db.session.rollback()
    assert db.session.get(ApiToken, created["id"]).last_used_at == first  # within the minute: untouched

    old = utcnow() - timedelta(minutes=5)
    db.session.execute(update(ApiToken).where(ApiToken.id == created["id"]).values(last_used_at=old))
    db.session.commit()
    assert client.get("/api/v1/me", headers=bearer(created["token"])).status_code == 200
    db.session.rollback()
    assert db.session.get(ApiToken, created["id"]).last_used_at > old


def test_a_cookie_request_is_one_query(app, make_member, login):
    client = login(make_member())
    assert client.get("/api/v1/me").status_code == 200
    with Statements(app) as sql:
        assert client.get("/api/v1/me").status_code == 200
    assert sql.seen == ["SELECT"]  # the member and roles; the session id is one Redis GET


def test_revocation_deactivation_and_suspension_act_at_once_in_another_instance(app, make_app, make_member, login):
    member = make_member()
    owner = login(member)
    elsewhere = make_app().test_client()  # another app instance: its own engine, pool and state
    token = make_token(owner)
    spare = make_token(owner)
    assert elsewhere.get("/api/v1/me", headers=bearer(token["token"])).status_code == 200

    assert owner.delete(f"/api/v1/me/tokens/{token['id']}").status_code in (200, 204)
    resp = elsewhere.get("/api/v1/me", headers=bearer(token["token"]))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_token"

    until = utcnow() + timedelta(days=1)
    db.session.execute(update(User).where(User.id == member.id).values(suspended_until=until))
    db.session.commit()
    seen = elsewhere.get("/api/v1/me", headers=bearer(spare["token"])).get_json()["suspended_until"]
    assert seen is not None and seen.startswith(until.isoformat()[:16])  # no stale copy of the member

    db.session.execute(update(User).where(User.id == member.id).values(is_active_account=False))
    db.session.commit()
    assert elsewhere.get("/api/v1/me", headers=bearer(spare["token"])).status_code == 401


def test_a_password_change_ends_a_session_held_by_another_instance(app, make_app, make_member, login):
    member = make_member()
    other_app = make_app()
    here = login(member)
    there = login(member, other_app.test_client())
    assert there.get("/api/v1/me").status_code == 200
    resp = here.post("/api/v1/me/password",
                     json={"current_password": TEST_PASSWORD, "new_password": "a brand new password"})
    assert resp.status_code == 200, resp.get_json()
    assert there.get("/api/v1/me").status_code == 401
    assert here.get("/api/v1/me").status_code == 200  # the session that changed it was renewed


@pytest.fixture
def gunicorn(app):
    """``app:app`` served by a real gunicorn (2 sync workers) on this test's database and Redis."""
    port = unused_port()
    env = {**os.environ, "KINSHIP_ENV": "test", "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "REDIS_URL": app.extensions["redis_url"], "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "app:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=5).read()  # noqa: S310 - local http
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _status(url: str, secret: str) -> int:
    req = urllib.request.Request(url, headers=bearer(secret))  # noqa: S310 - local http
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_revoked_token_is_refused_at_once_by_every_gunicorn_worker(app, gunicorn, make_member, login):
    owner = login(make_member())
    token = make_token(owner)
    # Several requests, so both workers have served (and could have remembered) the token.
    assert {_status(f"{gunicorn}/api/v1/me", token["token"]) for _ in range(8)} == {200}
    assert owner.delete(f"/api/v1/me/tokens/{token['id']}").status_code in (200, 204)
    assert {_status(f"{gunicorn}/api/v1/me", token["token"]) for _ in range(8)} == {401}
