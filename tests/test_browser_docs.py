"""Swagger UI at /api/docs renders in a real browser with no network access beyond our server.

Debian's chromium (``apt-get install chromium``; ``.ci/run`` installs it) driven by Playwright
against a real HTTP server for the test app.  Every request the page makes is recorded: all
of them must go to our own server, so the page also works offline.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from tests.conftest import CHROMIUM

SCREENSHOT = "/tmp/kinship-api-docs.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_swagger_ui_renders_offline_with_our_operations(live_server, browser):
    requested: list[str] = []
    failed: list[str] = []
    context = browser.new_context()  # the session's one browser (tests/conftest.py)
    try:
        page = context.new_page()
        page.on("request", lambda req: requested.append(req.url))
        page.on("requestfailed", lambda req: failed.append(req.url))
        page.goto(f"{live_server}/api/docs", wait_until="networkidle")
        page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
        page.wait_for_selector(".opblock", timeout=20_000)

        assert "Kinship API" in page.inner_text(".swagger-ui .info .title")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        joined = " ".join(p.replace("\u200b", "") for p in paths)
        for path in ("/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/me"):
            assert path in joined, f"{path} not rendered; saw {joined[:500]}"
        page.screenshot(path=SCREENSHOT, full_page=False)
    finally:
        context.close()

    origin = urlsplit(live_server).netloc
    foreign = [u for u in requested if urlsplit(u).netloc not in (origin, "") and not u.startswith("data:")]
    assert not foreign, f"the docs page reached outside our server: {foreign}"
    assert not failed, f"requests failed: {failed}"
    assert any(u.endswith("/api/v1/openapi.json") for u in requested)
    assert any("/api/docs/static/swagger-ui-bundle.js" in u for u in requested)
