"""Concurrent mixed load with injected faults, then an invariant check of everything it touched.

    .venv/bin/python bench/load_fault.py                      # 50 clients, 120 s, every fault
    .venv/bin/python bench/load_fault.py --clients 20 --seconds 60

Runs on servers of its own (never the shared ones): a PostgreSQL 15 cluster (initdb in a temp
dir) and a redis-server with AOF, and the production process set from deploy/supervisord.conf:
gunicorn (gunicorn.conf.py), two workers on ``redemptions,default``, one on ``tiers,periodic``
and the scheduler.  Members with API tokens then, concurrently: request redemptions (coupon with
a code pool, digital, physical; each with an Idempotency-Key, retried with the same key after a
503 or a dropped connection), cancel some, read their points and the catalogue; an integration
token posts purchase events.  Meanwhile, at fixed fractions of the run:

* SIGKILL of a redemptions worker and its work horse (supervisord restarts it);
* SIGKILL of a gunicorn worker (gunicorn's master replaces it);
* a Redis restart (SIGTERM, down 2 s, start: AOF keeps the data);
* a PostgreSQL stop for ``--pg-down`` (10) seconds;
* SIGKILL of the periodic worker.

Afterwards it waits until no redemption is ``pending`` (the worker retries, or the sweeper), and
checks: every journal entry balances, stored balances equal their journal lines, available
equals the lots' remaining, held equals the open redemptions, nothing negative; every
acknowledged (202) redemption exists, once per idempotency key; none left ``pending`` and no job
row left ``queued`` for a decided one; each reward's stock equals its initial stock less its
live redemptions; each code given at most once and every fulfilled coupon holding exactly one;
every answer was JSON in the envelope (no raw 5xx); every process of the set is running.
Prints a report (JSON) and exits 1 if an invariant failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.servers import PostgresServer, RedisServer, free_port, wait_until  # noqa: E402

PROGRAMS = ("web", "worker-redemptions:worker-redemptions-0", "worker-redemptions:worker-redemptions-1",
            "worker-messaging", "worker-periodic", "scheduler")
SECRET = "load-fault-secret-key-not-for-production"  # noqa: S105 - a throwaway stack


# --------------------------------------------------------------------------- the stack


class Stack:
    """Own PostgreSQL and Redis, and the process set under supervisord."""

    def __init__(self, web_processes: int = 2):
        self.pg = PostgresServer()
        self.redis = RedisServer(persist=True)
        self.run_dir = tempfile.mkdtemp(prefix="kinship-lf-", dir="/tmp")
        self.port = free_port()
        self.web_processes = web_processes
        self.sup: subprocess.Popen | None = None
        self.log_path = os.path.join(self.run_dir, "processes.log")

    def start_servers(self) -> None:
        self.pg.start()
        self.db_url = self.pg.create_database()
        self.redis.start()

    @property
    def env(self) -> dict:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            "KINSHIP_HOME": ROOT, "KINSHIP_RUN_DIR": self.run_dir, "KINSHIP_ENV": "production",
            "SECRET_KEY": SECRET, "KINSHIP_INSTANCE_DIR": self.run_dir, "PUBLIC_BASE_URL": "http://127.0.0.1",
            "DATABASE_URL": self.db_url, "REDIS_URL": self.redis.url,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(self.web_processes),
            "REDEMPTION_RATE_LIMIT": "1000000", "LOG_LEVEL": "WARNING",
        }

    def start_processes(self) -> None:
        log = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        self.sup = subprocess.Popen(  # noqa: S603 - fixed argv
            [os.path.join(ROOT, ".venv/bin/supervisord"), "-c", os.path.join(ROOT, "deploy/supervisord.conf")],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(self.all_running, 180, "the process set", interval=0.5)
        wait_until(lambda: http("GET", self.base + "/readyz")[0] == 200, 120, "web", interval=0.5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, tuple[str, int]]:
        out = subprocess.run(  # noqa: S603 - fixed argv
            [os.path.join(ROOT, ".venv/bin/supervisorctl"), "-c", os.path.join(ROOT, "deploy/supervisord.conf"),
             "status"], env=self.env, capture_output=True, text=True, timeout=60,
        ).stdout
        programs = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else 0
                programs[parts[0]] = (parts[1], pid)
        return programs

    def all_running(self) -> bool:
        status = self.status()
        return all(status.get(name, ("?",))[0] == "RUNNING" for name in PROGRAMS)

    # --- faults

    def kill_program(self, name: str) -> None:
        """SIGKILL a program and everything under it (RQ's work horse has its own group)."""
        import psutil

        pid = self.status()[name][1]
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            os.kill(pid, signal.SIGKILL)

    def kill_web_worker(self) -> None:
        import psutil

        master = psutil.Process(self.status()["web"][1])
        master.children()[0].kill()

    def stop(self) -> None:
        if self.sup is not None and self.sup.poll() is None:
            self.sup.send_signal(signal.SIGTERM)
            try:
                self.sup.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.sup.kill()
        self.redis.cleanup()
        self.pg.cleanup()


def http(method: str, url: str, headers: dict | None = None, body: dict | None = None,
         timeout: float = 30) -> tuple[int, object, str]:
    """(status, parsed JSON or None, raw body); status 0 for a connection that failed."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - our own http:// URL
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read().decode(errors="replace"), err.code
    except (OSError, urllib.error.URLError):
        return 0, None, ""
    try:
        return status, json.loads(raw) if raw else None, raw
    except json.JSONDecodeError:
        return status, None, raw


# --------------------------------------------------------------------------- data


@dataclass
class Seed:
    tokens: dict[int, str]
    integration_token: str
    rewards: dict[int, dict]  # id -> {"kind", "cost", "initial_stock"}


def make_app(stack: Stack):
    from config import DevelopmentConfig, normalise_database_url

    attrs = {"SQLALCHEMY_DATABASE_URI": normalise_database_url(stack.db_url), "REDIS_URL": stack.redis.url,
             "INSTANCE_PATH": stack.run_dir, "REDISLITE_PATH": os.path.join(stack.run_dir, "redis.db")}
    from app import create_app

    return create_app(type("LoadFaultConfig", (DevelopmentConfig,), attrs))


def seed(app, members: int, codes: int) -> Seed:
    from flask_migrate import upgrade

    from community.models import User, UserRole
    from community.services import create_token
    from extensions import db
    from points import ledger
    from rewards import services as rewards
    from rewards.models import Reward

    with app.app_context():
        upgrade(revision="heads")
        admin = User(email="lf-admin@example.com", display_name="Admin", password_hash="x")
        admin.role_rows.append(UserRole(role="admin"))
        db.session.add(admin)
        db.session.flush()
        tokens = {}
        for i in range(members):
            user = User(email=f"lf-member{i}@example.com", display_name=f"Member {i}", password_hash="x")
            db.session.add(user)
            db.session.flush()
            ledger.award(user.id, 3_000, key=f"lf-seed:{user.id}", reason="seed")
            tokens[user.id] = create_token(user, "load")[1]
        integration = create_token(admin, "integration")[1]
        coupon = Reward(name="Coupon", kind="coupon", cost=150, stock=0)
        digital = Reward(name="E-book", kind="digital", cost=100, stock=members * 3)
        physical = Reward(name="Tote bag", kind="physical", cost=250, stock=members)
        db.session.add_all([coupon, digital, physical])
        db.session.commit()
        rewards.add_codes(admin, coupon.id, [f"LF-{i:06d}" for i in range(codes)])
        db.session.commit()
        catalogue = {r.id: {"kind": r.kind, "cost": r.cost, "initial_stock": r.stock}
                     for r in db.session.scalars(db.select(Reward))}
        db.session.remove()
        db.engine.dispose()
    return Seed(tokens, integration, catalogue)


# --------------------------------------------------------------------------- load


@dataclass
class Results:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    raw_errors: list = field(default_factory=list)  # 5xx not in the envelope
    acknowledged: dict = field(default_factory=dict)  # idempotency key -> (member id, redemption id)
    accepted_at: dict = field(default_factory=dict)  # redemption id -> monotonic time of the 202
    cancelled: set = field(default_factory=set)

    def record(self, label: str, status: int, body, raw: str) -> None:
        with self.lock:
            self.statuses[f"{label} {status}"] += 1
            if status >= 500 and not (isinstance(body, dict) and "error" in body):
                self.raw_errors.append((label, status, raw[:200]))


def client_loop(stack: Stack, data: Seed, member_id: int, results: Results, stop: threading.Event, rng) -> None:
    base = stack.base
    auth = {"Authorization": f"Bearer {data.tokens[member_id]}"}
    mine: list[int] = []
    retry_key: tuple[str, int] | None = None
    reward_ids = list(data.rewards)
    while not stop.is_set():
        r = rng.random()
        if retry_key is not None or r < 0.35:
            key, reward_id = retry_key or (uuid.uuid4().hex, rng.choice(reward_ids))
            status, body, raw = http("POST", f"{base}/api/v1/redemptions", {**auth, "Idempotency-Key": key},
                                     {"reward_id": reward_id})
            results.record("redeem", status, body, raw)
            retry_key = (key, reward_id) if status in (0, 503) else None  # unknown outcome: same key again
            if status == 202:
                with results.lock:
                    results.acknowledged.setdefault(key, (member_id, body["id"]))
                    results.accepted_at.setdefault(body["id"], time.monotonic())
                mine.append(body["id"])
        elif r < 0.45 and mine:
            rid = rng.choice(mine)
            status, body, raw = http("POST", f"{base}/api/v1/redemptions/{rid}/cancel", auth)
            results.record("cancel", status, body, raw)
            if status == 200:
                with results.lock:
                    results.cancelled.add(rid)
        elif r < 0.75:
            status, body, raw = http("GET", f"{base}/api/v1/me/points", auth)
            results.record("points", status, body, raw)
        elif r < 0.90:
            status, body, raw = http("GET", f"{base}/api/v1/rewards", auth)
            results.record("rewards", status, body, raw)
        else:
            event = {"event_id": f"lf-{uuid.uuid4().hex}", "type": "purchase", "member_id": member_id,
                     "amount": str(rng.randint(5, 80))}
            status, body, raw = http("POST", f"{base}/api/v1/points/events",
                                     {"Authorization": f"Bearer {data.integration_token}"}, event)
            results.record("purchase", status, body, raw)
        if status in (0, 503):
            time.sleep(0.2)  # a backend is down: do not spin


# --------------------------------------------------------------------------- invariants


def check_invariants(app, data: Seed, results: Results) -> list[str]:
    from sqlalchemy import func, select

    from extensions import db
    from points.models import JournalLine, MemberBalance, PointLot
    from rewards.models import Redemption, RedemptionJob, Reward, RewardCode
    from rewards.services import LIVE_STATES

    problems: list[str] = []
    with app.app_context():
        unbalanced = db.session.execute(
            select(JournalLine.entry_id).group_by(JournalLine.entry_id).having(func.sum(JournalLine.amount) != 0)
        ).all()
        if unbalanced:
            problems.append(f"journal entries not summing to zero: {unbalanced[:5]}")
        sums: dict[tuple[int, str], int] = {
            (m, a): int(s) for m, a, s in db.session.execute(
                select(JournalLine.member_id, JournalLine.account, func.sum(JournalLine.amount))
                .group_by(JournalLine.member_id, JournalLine.account))
        }
        lots = dict(db.session.execute(
            select(PointLot.member_id, func.sum(PointLot.remaining)).group_by(PointLot.member_id)).all())
        open_held = collections.Counter()
        settled = collections.Counter()
        for member_id, state, cost in db.session.execute(select(Redemption.member_id, Redemption.state,
                                                                Redemption.cost)):
            if state in ("pending", "awaiting_fulfilment"):
                open_held[member_id] += cost
            elif state in ("fulfilled", "approved", "shipped", "completed"):
                settled[member_id] += cost
        for b in db.session.scalars(select(MemberBalance)):
            m = b.member_id
            if b.available != sums.get((m, "available"), 0) or b.held != sums.get((m, "held"), 0):
                problems.append(f"member {m}: balance {b.available}/{b.held} != journal "
                                f"{sums.get((m, 'available'), 0)}/{sums.get((m, 'held'), 0)}")
            if b.available < 0 or b.held < 0:
                problems.append(f"member {m}: negative balance {b.available}/{b.held}")
            if b.available != int(lots.get(m) or 0):
                problems.append(f"member {m}: available {b.available} != lots remaining {lots.get(m)}")
            if b.held != open_held[m]:
                problems.append(f"member {m}: held {b.held} != open redemptions {open_held[m]}")
            if sums.get((m, "redeemed"), 0) != settled[m]:
                problems.append(f"member {m}: redeemed {sums.get((m, 'redeemed'), 0)} != settled {settled[m]}")

        rows = {r.id: r for r in db.session.scalars(select(Redemption))}
        for key, (member_id, rid) in results.acknowledged.items():
            row = rows.get(rid)
            if row is None or row.member_id != member_id or row.idempotency_key != key:
                problems.append(f"acknowledged redemption {rid} (key {key}) lost or altered")
        dupes = db.session.execute(
            select(Redemption.member_id, Redemption.idempotency_key, func.count())
            .group_by(Redemption.member_id, Redemption.idempotency_key).having(func.count() > 1)).all()
        if dupes:
            problems.append(f"idempotency keys used twice: {dupes[:5]}")
        for rid in results.cancelled:
            if rows[rid].state != "cancelled":
                problems.append(f"redemption {rid} was cancelled (200) but is {rows[rid].state}")
        pending = [r.id for r in rows.values() if r.state == "pending"]
        if pending:
            problems.append(f"{len(pending)} redemption(s) still pending: {pending[:10]}")
        # A redemption decided before its first attempt (e.g. cancelled while its enqueue was
        # lost to the Redis restart) leaves a job row ``queued`` until the next sweep, at most
        # a minute later; run that sweep step now rather than wait for the schedule.
        from rewards.jobs import _settle_orphaned_job_rows

        _settle_orphaned_job_rows()
        stale_jobs = db.session.scalars(
            select(RedemptionJob.redemption_id).join(Redemption, Redemption.id == RedemptionJob.redemption_id)
            .where(RedemptionJob.status == "queued", Redemption.state != "pending")).all()
        if stale_jobs:
            problems.append(f"job rows 'queued' for decided redemptions: {stale_jobs[:10]}")

        for reward in db.session.scalars(select(Reward)):
            initial = data.rewards[reward.id]["initial_stock"]
            if reward.kind == "coupon":
                initial = db.session.scalar(select(func.count()).select_from(RewardCode)
                                            .where(RewardCode.reward_id == reward.id))
            live = sum(1 for r in rows.values() if r.reward_id == reward.id and r.state in LIVE_STATES)
            if reward.stock != initial - live:
                problems.append(f"reward {reward.id} ({reward.kind}): stock {reward.stock} != {initial} - {live} live")
            if reward.stock < 0:
                problems.append(f"reward {reward.id}: negative stock")
        assigned = db.session.execute(
            select(RewardCode.redemption_id, func.count()).where(RewardCode.redemption_id.is_not(None))
            .group_by(RewardCode.redemption_id)).all()
        if any(n != 1 for _, n in assigned):
            problems.append("a redemption holds more than one code")
        coupon_ids = {rid for rid, info in data.rewards.items() if info["kind"] == "coupon"}
        fulfilled_coupons = {r.id for r in rows.values() if r.reward_id in coupon_ids
                             and r.state in ("fulfilled", "refunded")}
        if fulfilled_coupons != {rid for rid, _ in assigned}:
            problems.append(f"coupons fulfilled without a code or codes on others: "
                            f"{sorted(fulfilled_coupons ^ {rid for rid, _ in assigned})[:10]}")
        states = collections.Counter(r.state for r in rows.values())
        waits = sorted((r.fulfilled_at - r.created_at).total_seconds() for r in rows.values()
                       if r.state == "fulfilled" and r.fulfilled_at is not None)
        results.fulfil_seconds = {  # type: ignore[attr-defined]
            q: round(waits[min(len(waits) - 1, int(p * len(waits)))], 2) if waits else None
            for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        }
        db.session.remove()
        db.engine.dispose()
    if results.raw_errors:
        problems.append(f"{len(results.raw_errors)} 5xx answer(s) outside the envelope: {results.raw_errors[:3]}")
    results.states = dict(states)  # type: ignore[attr-defined]
    return problems


def wait_settled(app, timeout: float, sweep_now: bool = False) -> float:
    """Seconds until no redemption is pending (the workers' retries and the sweeper at work).

    ``sweep_now`` (the short test version) runs the sweeper's job body every 5 s instead of
    waiting for its minute: the same function, enqueueing on the same Redis.
    """
    from sqlalchemy import func, select

    from extensions import db
    from rewards.jobs import sweep_pending_redemptions
    from rewards.models import Redemption

    start = time.monotonic()
    last_sweep = 0.0
    with app.app_context():
        while time.monotonic() - start < timeout:
            n = db.session.scalar(select(func.count()).select_from(Redemption).where(Redemption.state == "pending"))
            db.session.rollback()
            if n == 0:
                break
            if sweep_now and time.monotonic() - last_sweep > 5:
                sweep_pending_redemptions(min_age_seconds=0)
                last_sweep = time.monotonic()
            time.sleep(1)
        db.session.remove()
        db.engine.dispose()
    return time.monotonic() - start


# --------------------------------------------------------------------------- the run


def run(clients: int = 50, seconds: float = 120, pg_down: float = 10, settle_timeout: float = 300,
        faults: tuple[str, ...] = ("worker", "web", "redis", "postgres", "periodic"), web_processes: int = 2,
        sweep_now: bool = False, log=print) -> dict:
    stack = Stack(web_processes)
    report: dict = {"clients": clients, "seconds": seconds, "faults": []}
    try:
        t0 = time.monotonic()
        stack.start_servers()
        app = make_app(stack)
        data = seed(app, members=clients, codes=clients * 4)
        stack.start_processes()
        report["setup_seconds"] = round(time.monotonic() - t0, 1)
        log(f"stack up in {report['setup_seconds']} s: {stack.base}")

        results = Results()
        stop = threading.Event()
        threads = [threading.Thread(target=client_loop, args=(stack, data, mid, results, stop, random.Random(mid)),
                                    daemon=True) for mid in data.tokens]
        schedule = {
            "worker": (0.15, lambda: stack.kill_program("worker-redemptions:worker-redemptions-0")),
            "web": (0.30, stack.kill_web_worker),
            "redis": (0.45, lambda: stack.redis.restart(down_for=2.0)),
            "postgres": (0.60, lambda: (stack.pg.stop(), time.sleep(pg_down), stack.pg.start())),
            "periodic": (0.80, lambda: stack.kill_program("worker-periodic")),
        }
        plan = sorted((schedule[name][0] * seconds, name, schedule[name][1]) for name in faults)
        start = time.monotonic()
        for t in threads:
            t.start()
        for at, name, inject in plan:
            time.sleep(max(0.0, start + at - time.monotonic()))
            began = time.monotonic() - start
            inject()
            report["faults"].append({"fault": name, "at_s": round(began, 1),
                                     "took_s": round(time.monotonic() - start - began, 1)})
            log(f"{began:6.1f}s fault: {name}")
        time.sleep(max(0.0, start + seconds - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(timeout=60)
        load_seconds = time.monotonic() - start
        report["requests"] = dict(sorted(results.statuses.items()))
        report["requests_per_second"] = round(sum(results.statuses.values()) / load_seconds, 1)
        log(f"load done: {report['requests_per_second']} req/s; waiting for pending redemptions to settle")
        report["settle_seconds"] = round(wait_settled(app, settle_timeout, sweep_now), 1)
        wait_until(stack.all_running, 60, "every process running again", interval=0.5)
        report["all_processes_running"] = stack.all_running()
        problems = check_invariants(app, data, results)
        report["redemptions"] = results.states  # type: ignore[attr-defined]
        report["acknowledged"] = len(results.acknowledged)
        report["request_to_fulfilled_seconds"] = results.fulfil_seconds  # type: ignore[attr-defined]
        report["invariant_violations"] = problems
        report["ok"] = not problems and report["all_processes_running"]
        return report
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--pg-down", type=float, default=10)
    parser.add_argument("--web-processes", type=int, default=2)
    args = parser.parse_args()
    report = run(args.clients, args.seconds, args.pg_down, web_processes=args.web_processes)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
