"""Browser tests of the console: one Chromium and one live server for the whole session.

Debian's chromium (``/usr/bin/chromium``) driven by Playwright against a werkzeug server for an
app on the test database and Redis (the per-test ``app`` fixture empties them after each test).
Screenshots of every page visited go to ``test-artifacts/console/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import CHROMIUM, TEST_PASSWORD, make_config  # the session's browser is there

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent")


@pytest.fixture(scope="session")
def live_server(_schema):
    from app import create_app

    server_app = create_app(make_config())
    server = make_server("127.0.0.1", 0, server_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


class Console:
    """A browser tab on the live server, signed in as one user; ``shot(name)`` saves a screenshot."""

    def __init__(self, page, base: str, test_name: str):
        self.page, self.base, self.test_name = page, base, test_name
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def goto(self, path: str):
        response = self.page.goto(self.base + path)
        return response

    def login(self, user):
        self.goto("/console/login")
        self.page.fill("#f-email", user.email)
        self.page.fill("#f-password", TEST_PASSWORD)
        self.page.click("button[type=submit].primary")
        self.page.wait_for_load_state()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.test_name}-{name}")
        self.page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)

    def flash(self) -> str:
        return self.page.inner_text(".flashes") if self.page.query_selector(".flashes") else ""


@pytest.fixture
def console(browser, live_server, app, request):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    tab = Console(page, live_server, request.node.name)
    try:
        yield tab
        # No page may hit a CSP violation or a script error.
        assert not tab.errors, tab.errors
    finally:
        context.close()
