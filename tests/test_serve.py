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


def _embedded_redis_pid(instance: Path) -> int:
    settings = json.loads((instance / "redis.db.settings").read_text())
    return int(Path(settings["pidfile"]).read_text().strip())


def test_serve_restarts_a_dead_child_refuses_a_second_run_and_stops_everything_on_sighup(tmp_path):
    port = unused_port()
    env = _env(tmp_path, port)
    env["LOG_LEVEL"] = "INFO"
    _flask(env, "db", "upgrade", "heads")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=log_file,  # noqa: S603
                                  stderr=subprocess.STDOUT)
    try:
        def child(name: str):
            for proc in psutil.Process(server.pid).children():
                try:
                    if name in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                        return proc
                except psutil.Error:  # exited (a zombie until serve.py reaps it)
                    continue
            return None

        deadline = time.monotonic() + 60
        while not (child("worker") and child("scheduler") and "serving on" in log_path.read_text()):
            assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.3)
        redis_pid = _embedded_redis_pid(tmp_path)
        assert psutil.pid_exists(redis_pid)
        # Wait for the scheduler's lock: then a second `make run` on this Redis must refuse.
        deadline = time.monotonic() + 60
        while "holding kinship:scheduler-lock" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)

        first_worker = child("worker")
        first_worker.kill()
        deadline = time.monotonic() + 30
        while not ((new := child("worker")) and new.pid != first_worker.pid):
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        expected = f"worker (pid {first_worker.pid}) exited unexpectedly (exit -9); restarting it in 1s"
        assert expected in log_path.read_text()

        second = subprocess.run([sys.executable, "serve.py"], cwd=ROOT, env=dict(env, KINSHIP_PORT=str(unused_port())),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert "another scheduler" in second.stderr
        assert server.poll() is None and psutil.pid_exists(redis_pid)  # the refused run touched nothing

        children = psutil.Process(server.pid).children(recursive=True)
    finally:
        server.send_signal(signal.SIGHUP)  # the terminal closed
        exit_code = server.wait(timeout=60)
    assert exit_code == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children left running: {alive}"
    deadline = time.monotonic() + 10
    while psutil.pid_exists(redis_pid) and psutil.Process(redis_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the embedded Redis was left running"
        time.sleep(0.2)
    output = log_path.read_text()
    stop_part = output[output.index("received SIGHUP"):]
    assert "ERROR" not in stop_part and "Traceback" not in stop_part and "failed" not in stop_part, stop_part
    assert "\x1b[" not in output  # no colour codes off a terminal
