"""The production process set for real: gunicorn with gunicorn.conf.py, supervisord with
deploy/supervisord.conf, and what clients see while PostgreSQL or Redis is down.

* supervisord starts web, the workers per queue group and the scheduler; a SIGKILLed worker is
  back within seconds; stopping supervisord stops every process.
* gunicorn on our own PostgreSQL cluster and redis-server: while Redis is down a cookie login
  answers 503 ``service_unavailable`` (bearer tokens keep working); while PostgreSQL is stopped
  every request answers 503 in the envelope, never a raw 500, with one log line per failure and
  no traceback; both recover when the server returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.servers import PG_BIN, PostgresServer, RedisServer, free_port, redis_server_binary, wait_until

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server binary"),
]


def _get(url: str, headers: dict | None = None, body: dict | None = None) -> tuple[int, dict | None, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - local URL
            raw = resp.read().decode()
            return resp.status, json.loads(raw or "null"), raw
    except urllib.error.HTTPError as err:
        raw = err.read().decode()
        try:
            return err.code, json.loads(raw or "null"), raw
        except json.JSONDecodeError:
            return err.code, None, raw


def _status(run_dir: str) -> dict[str, tuple[str, int]]:
    out = subprocess.run(  # noqa: S603 - fixed argv
        [str(ROOT / ".venv/bin/supervisorctl"), "-c", str(ROOT / "deploy/supervisord.conf"), "status"],
        env={**os.environ, "KINSHIP_HOME": str(ROOT), "KINSHIP_RUN_DIR": run_dir},
        capture_output=True, text=True, timeout=30,
    ).stdout
    programs = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else 0
            programs[parts[0]] = (parts[1], pid)
    return programs


def test_supervisord_runs_the_process_set_and_restarts_a_killed_worker(app, tmp_path):
    redis_server = RedisServer().start()
    run_dir = tempfile.mkdtemp(prefix="kinship-supervisor-", dir="/tmp")  # a short socket path
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "KINSHIP_HOME": str(ROOT), "KINSHIP_RUN_DIR": run_dir, "KINSHIP_ENV": "test",
        "KINSHIP_INSTANCE_DIR": str(tmp_path), "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": redis_server.url, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "supervisord.log"
    with open(log_path, "w") as log_file:
        supervisord = subprocess.Popen(  # noqa: S603 - fixed argv
            [str(ROOT / ".venv/bin/supervisord"), "-c", str(ROOT / "deploy/supervisord.conf")],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    expected = {"web", "worker-redemptions:worker-redemptions-0", "worker-redemptions:worker-redemptions-1",
                "worker-messaging", "worker-periodic", "scheduler"}
    try:
        def all_running() -> bool:
            status = _status(run_dir)
            return set(status) == expected and all(state == "RUNNING" for state, _ in status.values())

        wait_until(all_running, 120, f"the process set ({log_path.read_text()[-3000:]})", interval=0.5)
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "web to answer", interval=0.5)

        _state, old_pid = _status(run_dir)["worker-periodic"]
        os.kill(old_pid, signal.SIGKILL)

        def back() -> bool:
            state, pid = _status(run_dir)["worker-periodic"]
            return state == "RUNNING" and pid not in (0, old_pid)

        wait_until(back, 60, f"the killed worker to return ({log_path.read_text()[-3000:]})", interval=0.5)
        processes = psutil.Process(supervisord.pid).children(recursive=True)
    finally:
        supervisord.send_signal(signal.SIGTERM)
        supervisord.wait(timeout=120)
        redis_server.cleanup()
    _gone, alive = psutil.wait_procs(processes, timeout=15)
    assert not alive, f"left running: {alive}"
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="no PostgreSQL 15 binaries")
def test_gunicorn_answers_503_in_the_envelope_while_postgresql_or_redis_is_down(app, make_app, tmp_path):
    import psycopg
    from flask_migrate import upgrade
    from sqlalchemy import text

    from community.models import User
    from community.services import create_token, hash_password
    from extensions import db

    pg = PostgresServer().start()
    redis_server = RedisServer().start()
    gunicorn = None
    try:
        url = pg.create_database()
        other = make_app(SQLALCHEMY_DATABASE_URI=url.replace("postgresql://", "postgresql+psycopg://"),
                         REDIS_URL=redis_server.url)
        # A view whose database connection dies after it answered: the session's rollback in
        # Flask's teardown fails, and must neither raise (a raw 500 from the server) nor log twice.
        @other.get("/test/lose-connection")
        def lose_connection():
            pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            return {"terminated": pid}

        with other.app_context():
            upgrade(revision="heads")
            user = User(email="ops@example.com", display_name="Ops", password_hash=hash_password("a long password 1"))
            db.session.add(user)
            db.session.flush()
            _token, secret = create_token(user, "ops")
            db.session.commit()
            db.engine.dispose()
        with other.app_context():
            resp = other.test_client().get("/test/lose-connection")
            assert resp.status_code == 200, resp.get_data(as_text=True)
            db.engine.dispose()

        port = free_port()
        log_path = tmp_path / "gunicorn.log"
        env = {**os.environ, "KINSHIP_ENV": "test", "DATABASE_URL": url, "REDIS_URL": redis_server.url,
               "KINSHIP_INSTANCE_DIR": str(tmp_path), "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
               "LOG_LEVEL": "INFO"}
        with open(log_path, "w") as log_file:
            gunicorn = subprocess.Popen(  # noqa: S603 - fixed argv
                [str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
                cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        bearer = {"Authorization": f"Bearer {secret}"}
        login = {"email": "ops@example.com", "password": "a long password 1"}
        wait_until(lambda: _get(f"{base}/healthz")[0] == 200, 60, "gunicorn", interval=0.2)
        status, me, _ = _get(f"{base}/api/v1/me", bearer)
        assert (status, me["email"]) == (200, "ops@example.com")

        failures = 0
        redis_server.stop()
        status, body, raw = _get(f"{base}/api/v1/auth/login", body=login)
        assert (status, body["error"]["code"]) == (503, "service_unavailable"), raw
        failures += 1
        assert _get(f"{base}/api/v1/me", bearer)[0] == 200  # tokens do not need Redis
        redis_server.start()
        assert _get(f"{base}/api/v1/auth/login", body=login)[0] == 200

        pg.stop()
        for path, body_ in [("/api/v1/me", None), ("/api/v1/me/points", None), ("/api/v1/me", None),
                            ("/api/v1/auth/login", login)]:
            status, body, raw = _get(f"{base}{path}", bearer if body_ is None else None, body_)
            assert status == 503 and body is not None, raw  # in the envelope, not gunicorn's raw page
            assert body["error"]["code"] == "service_unavailable", raw
            failures += 1
        assert _get(f"{base}/readyz")[0] == 503
        pg.start()
        wait_until(lambda: _get(f"{base}/api/v1/me", bearer)[0] == 200, 30, "recovery after PostgreSQL returned")
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=60)
        pg.cleanup()
        redis_server.cleanup()
    output = log_path.read_text()
    assert "Traceback" not in output, output[-4000:]
    assert output.count("backend unavailable") == failures, output[-4000:]
    assert " 500 " not in output
