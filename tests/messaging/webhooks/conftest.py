"""A real HTTP receiver on loopback, and helpers to register endpoints and run deliveries."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from extensions import db


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers from ``script`` (a list of status codes, last one repeats)."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    body: bytes = b'{"ok":true}'
    extra_headers: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            status = self.script[min(self.calls, len(self.script) - 1)]
            self.calls += 1
            return status


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = receiver.next_status()
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            for key, value in receiver.extra_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(receiver.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the sender timed out and left
                self.wfile.write(receiver.body)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/kinship"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


ALL_TYPES = [
    "member.registered", "points.changed", "tier.changed", "redemption.state_changed", "survey.response_completed",
    "focus_group.signup_changed", "referral.converted", "post.moderated",
]


@pytest.fixture
def admin(make_member):
    return make_member(roles=("admin",))


@pytest.fixture
def admin_client(admin, login):
    return login(admin)


@pytest.fixture
def register(admin_client):
    """``register(url, types)`` -> (endpoint json, secret) through the API."""

    def do(url: str, types=None, **extra):
        resp = admin_client.post("/api/v1/admin/webhooks/endpoints",
                                 json={"url": url, "event_types": types or ALL_TYPES, **extra})
        assert resp.status_code == 201, resp.get_json()
        body = resp.get_json()
        return body["endpoint"], body["secret"]

    return do


@pytest.fixture
def deliver_all(app, run_jobs):
    """Run the webhook queue (a real RQ burst worker through Redis) and refresh the session."""

    def run():
        db.session.commit()
        run_jobs(("webhooks",))
        db.session.commit()

    return run
