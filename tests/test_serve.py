"""``make run``'s pieces for real: migrate, load demo data, serve.py with its worker and
scheduler, a member signs up and reads /api/v1/me, SIGTERM stops everything.

Always on the embedded default in a temporary instance folder, whatever backends the suite uses.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import unused_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _env(instance: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "KINSHIP_ENV")}
    env.update(KINSHIP_INSTANCE_DIR=str(instance), KINSHIP_PORT=str(port), FLASK_APP="app", LOG_LEVEL="WARNING")
    return env


def _flask(env: dict, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _call(opener, url: str, body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - our own http:// URL
    try:
        with opener.open(request, timeout=10) as resp:  # noqa: S310 - our own http:// URL
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_serve_runs_api_worker_and_scheduler_and_stops_them_all(tmp_path):
    port = unused_port()
    env = _env(tmp_path, port)
    _flask(env, "db", "upgrade", "heads")
    _flask(env, "demo-data")

    server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        deadline = time.monotonic() + 60
        while True:
            try:
                if _call(opener, f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve.py did not answer within 60s"
            assert server.poll() is None, "serve.py exited early"
            time.sleep(0.3)

        assert _call(opener, f"{base}/readyz") == (200, {"status": "ok", "checks": {"database": "ok", "redis": "ok"}})
        with urllib.request.urlopen(f"{base}/api/docs", timeout=10) as docs:  # noqa: S310 - local URL
            assert docs.status == 200 and b"swagger-ui-bundle.js" in docs.read()

        new = {"email": "runner@example.com", "password": "a long password 1", "display_name": "Runner"}
        assert _call(urllib.request.build_opener(), f"{base}/api/v1/auth/register", new)[0] == 201
        login = {"email": new["email"], "password": new["password"]}
        assert _call(opener, f"{base}/api/v1/auth/login", login)[0] == 200
        status, me = _call(opener, f"{base}/api/v1/me")
        assert status == 200 and me["email"] == "runner@example.com"
        demo = {"email": "alice@example.com", "password": "demo-password-1"}
        assert _call(opener, f"{base}/api/v1/auth/login", demo)[0] == 403  # a cookie write without CSRF header

        children = psutil.Process(server.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "worker" in names and "scheduler" in names
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=60)
    assert exit_code == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children left running: {alive}"
