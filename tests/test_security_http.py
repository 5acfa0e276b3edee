"""Issue #13, headers, proxies, links and configuration: each reproduction of the report, over HTTP."""

from __future__ import annotations

import logging
import threading
import urllib.request

import pytest

import config
from extensions import db
from tests.conftest import TEST_PASSWORD, make_config, unused_port


def _dispose(app):
    with app.app_context():
        db.engine.dispose()


# --------------------------------------------------------------------------- headers


def test_token_creation_and_me_are_not_stored_by_caches(make_member, login):
    client = login(make_member())
    for resp in (
        client.get("/api/v1/me"),
        client.post("/api/v1/me/tokens", json={"name": "ci", "password": TEST_PASSWORD}),
    ):
        assert resp.status_code in (200, 201), resp.get_json()
        assert resp.headers["Cache-Control"] == "no-store"
    login_resp = client.post("/api/v1/auth/login", json={"email": "x@example.com", "password": "y" * 12})
    assert login_resp.headers["Cache-Control"] == "no-store"


def test_every_response_says_nosniff_and_html_gets_a_tight_csp(client):
    for path in ("/healthz", "/api/v1/openapi.json", "/api/v1/me", "/join?ref=ABC", "/api/docs"):
        assert client.get(path).headers["X-Content-Type-Options"] == "nosniff", path
    join = client.get("/join?ref=<script>")
    assert join.status_code == 200 and join.mimetype == "text/html"
    csp = join.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert b"<script>" not in join.data  # the code is escaped
    # JSON answers carry no CSP (nothing to run); the docs page gets its own, still no remote origins.
    assert "Content-Security-Policy" not in client.get("/healthz").headers
    docs = client.get("/api/docs").headers["Content-Security-Policy"]
    assert "default-src 'none'" in docs and "http" not in docs


def test_the_server_header_names_no_version(app):
    """serve.py's werkzeug server: ``Server: Kinship``, not ``Werkzeug/x Python/y``."""
    from werkzeug.serving import make_server

    from security.http import RequestHandler

    port = unused_port()
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=RequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:  # noqa: S310
            headers = resp.headers.get_all("Server")
    finally:
        server.shutdown()
        thread.join()
    assert headers == ["Kinship"]


# --------------------------------------------------------------------------- links and proxies


def test_referral_link_and_calendar_uid_ignore_the_host_header(make_member, app):
    from community.services import create_token
    from tests.surveys.helpers import make_session

    member = make_member()
    _, secret = create_token(member, "t")
    db.session.commit()
    client = app.test_client()  # a bearer token: the cookie jar would not follow the forged host
    evil = {"Host": "evil.example", "Authorization": f"Bearer {secret}"}
    link = client.get("/api/v1/me/referrals", headers=evil).get_json()["referral_link"]
    assert link == f"http://kinship.test/join?ref={member.referral_code}"
    session = make_session()
    ics = client.get(f"/api/v1/focus-groups/{session.id}/calendar.ics", headers=evil).get_data(as_text=True)
    assert f"UID:focus-group-session-{session.id}@kinship.test" in ics and "evil" not in ics


def test_the_referral_link_follows_the_configured_join_url(make_app, make_member, login):
    other = make_app(REFERRAL_JOIN_URL="https://shop.example/signup?src=kinship")
    member = make_member()
    with other.app_context():
        client = login(member, other.test_client())
        link = client.get("/api/v1/me/referrals").get_json()["referral_link"]
    assert link == f"https://shop.example/signup?src=kinship&ref={member.referral_code}"
    # The default target is real: our /join page.
    assert other.test_client().get(f"/join?ref={member.referral_code}").status_code == 200


def test_client_address_is_the_socket_unless_proxies_are_trusted(make_app):
    seen = {}

    def probe(app):
        @app.get("/_probe_ip")
        def _probe():
            from flask import request

            seen["ip"] = request.remote_addr
            return "ok"

    direct = make_app()
    probe(direct)
    direct.test_client().get("/_probe_ip", headers={"X-Forwarded-For": "6.6.6.6"},
                             environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert seen["ip"] == "10.0.0.1"  # a client cannot forge its address

    proxied = make_app(TRUSTED_PROXY_HOPS=1)
    probe(proxied)
    proxied.test_client().get("/_probe_ip", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"},
                              environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert seen["ip"] == "203.0.113.7"  # the one hop we trust appended the real client


def test_sign_up_limit_keys_on_the_client_behind_a_proxy(make_app):
    proxied = make_app(TRUSTED_PROXY_HOPS=1, REGISTER_RATE_LIMIT=(1, 3600))

    def register(n, ip):
        return proxied.test_client().post(
            "/api/v1/auth/register", headers={"X-Forwarded-For": ip}, environ_base={"REMOTE_ADDR": "10.0.0.1"},
            json={"email": f"proxy{n}@example.com", "password": TEST_PASSWORD, "display_name": f"P {n}"},
        )

    assert register(1, "203.0.113.1").status_code == 201
    assert register(2, "203.0.113.2").status_code == 201  # another client behind the same proxy
    assert register(3, "203.0.113.1").status_code == 429


# --------------------------------------------------------------------------- configuration


def test_outside_development_the_built_in_secret_is_refused():
    from app import create_app

    for base, name in ((config.ProductionConfig, "production"), (config.TestConfig, "test")):
        cfg = type("C", (base,), {**vars(make_config()), "SECRET_KEY": config.DEV_SECRET_KEY,
                                  "PUBLIC_BASE_URL": "https://kinship.example", "ENV_NAME": name})
        with pytest.raises(config.ConfigError, match="built-in development"):
            create_app(cfg)
    prod_with_test_key = type("C", (config.ProductionConfig,), {
        **vars(make_config()), "SECRET_KEY": config.TEST_SECRET_KEY, "PUBLIC_BASE_URL": "https://kinship.example"})
    with pytest.raises(config.ConfigError, match="built-in"):
        create_app(prod_with_test_key)


def test_production_needs_a_public_base_url():
    from app import create_app

    cfg = type("C", (config.ProductionConfig,), {**vars(make_config()), "SECRET_KEY": "a-real-secret-value-123",
                                                 "PUBLIC_BASE_URL": None})
    with pytest.raises(config.ConfigError, match="PUBLIC_BASE_URL"):
        create_app(cfg)
    with pytest.raises(config.ConfigError, match="PUBLIC_BASE_URL"):
        config._base_url("javascript:alert(1)")


def test_production_with_insecure_cookies_warns_loudly(caplog):
    from app import create_app

    cfg = type("C", (config.ProductionConfig,), {**vars(make_config()), "SECRET_KEY": "a-real-secret-value-123",
                                                 "PUBLIC_BASE_URL": "https://kinship.example",
                                                 "SESSION_COOKIE_SECURE": False})
    with caplog.at_level(logging.WARNING, logger="kinship"):
        app = create_app(cfg)
    _dispose(app)
    assert any("SECURITY WARNING" in r.getMessage() and "SESSION_COOKIE_SECURE" in r.getMessage()
               for r in caplog.records)
