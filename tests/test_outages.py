"""Workers and the scheduler ride out Redis outages (real processes, our own redis-server).

* a Redis restart while a job runs and ends: the worker stays up, the job's result is recorded
  once Redis is back, the next job runs;
* a due retry resumes within seconds of Redis returning, and after its worker was SIGKILLed
  (the dead holder's ``rq:scheduler-lock`` is taken over instead of waiting for it to expire);
* ``flask scheduler`` survives Redis dying in the middle of its tick, and a second scheduler on
  the same Redis refuses to start, while one replacing a dead scheduler starts at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from community.models import Notification
from community.services import notify
from extensions import db
from jobs import enqueue_now, job
from tests.servers import FlaskProcess, RedisServer, redis_server_binary, wait_until
from workers import SCHEDULER_LOCK_KEY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server binary"),
]
ROOT = Path(__file__).resolve().parent.parent


@job("default", timeout=60, retries=0)
def slow_job(member_id: int, seconds: float) -> str:
    notify(member_id, "slow-started", dedupe_key=f"slow-started:{member_id}")
    db.session.commit()
    time.sleep(seconds)
    notify(member_id, "slow-done", dedupe_key=f"slow-done:{member_id}")
    db.session.commit()
    return "done"


@job("default", timeout=30, retries=2, backoff=(3, 3))
def flaky_job(member_id: int) -> None:
    """Fails its first attempt (recorded in the database), succeeds on the retry."""
    if not _kinds(member_id, "flaky-1"):
        notify(member_id, "flaky-1", dedupe_key=f"flaky-1:{member_id}")
        db.session.commit()
        raise RuntimeError("first attempt fails")
    notify(member_id, "flaky-done", dedupe_key=f"flaky-done:{member_id}")
    db.session.commit()


@job("default", timeout=30, retries=0)
def quick_job(member_id: int) -> None:
    notify(member_id, "quick", dedupe_key=f"quick:{member_id}")
    db.session.commit()


def _kinds(member_id: int, kind: str) -> list[str]:
    return list(db.session.scalars(
        select(Notification.kind).where(Notification.member_id == member_id, Notification.kind == kind)
    ))


def has(member_id: int, kind: str) -> bool:
    db.session.rollback()  # a fresh snapshot
    return bool(_kinds(member_id, kind))


class Proc(FlaskProcess):
    """``flask <args>`` in its own session, logging to a file."""

    def __init__(self, app, redis_url: str, *args: str):
        super().__init__(app, *args, redis_url=redis_url, env={"LOG_LEVEL": "INFO"})

    def output(self, tail: int | None = None) -> str:
        return super().output(tail)


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(app, redis_url, *args) -> Proc:
        proc = Proc(app, redis_url, *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.kill()


@pytest.fixture
def own_redis():
    servers: list[RedisServer] = []

    def make(persist: bool) -> RedisServer:
        server = RedisServer(persist=persist).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


def _wait(predicate, timeout, what, proc: Proc | None = None):
    try:
        wait_until(predicate, timeout, what, interval=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- log ---\n{proc.output()[-5000:] if proc else ''}") from None


def test_worker_survives_a_redis_restart_while_its_job_runs_and_ends(app, make_app, make_member, procs, own_redis):
    server = own_redis(persist=True)
    other = make_app(REDIS_URL=server.url)
    member = make_member()
    worker = procs(app, server.url, "worker", "-q", "default")
    with other.app_context():
        job_id = enqueue_now(slow_job, member.id, 2.0).id
    _wait(lambda: has(member.id, "slow-started"), 60, "the job to start", worker)

    server.stop()  # Redis goes away while the horse runs ...
    _wait(lambda: has(member.id, "slow-done"), 30, "the job's database work", worker)
    time.sleep(1.5)  # ... and stays away while the horse and the worker try to record the result
    server.start()

    client = redis.Redis.from_url(server.url)
    _wait(lambda: Job.fetch(job_id, connection=client).get_status() == JobStatus.FINISHED, 60,
          "the result to be recorded", worker)
    assert Job.fetch(job_id, connection=client).return_value() == "done"
    with other.app_context():
        enqueue_now(quick_job, member.id)
    _wait(lambda: has(member.id, "quick"), 60, "the next job", worker)
    assert worker.alive(), worker.output()[-3000:]
    assert "quitting" not in worker.output()
    assert worker.stop() == 0


def test_due_retries_resume_after_a_redis_restart_and_after_their_worker_was_killed(
    app, make_app, make_member, procs, own_redis
):
    server = own_redis(persist=True)  # the scheduler locks survive the restart, as with AOF in production
    other = make_app(REDIS_URL=server.url)
    first, second = make_member(), make_member()
    worker = procs(app, server.url, "worker", "-q", "default")

    with other.app_context():
        enqueue_now(flaky_job, first.id)
    _wait(lambda: has(first.id, "flaky-1"), 60, "the first attempt", worker)
    server.restart(down_for=2.0)
    back = time.monotonic()
    _wait(lambda: has(first.id, "flaky-done"), 30, "the retry after the restart", worker)
    assert time.monotonic() - back < 30
    assert worker.alive(), worker.output()[-3000:]

    with other.app_context():
        enqueue_now(flaky_job, second.id)
    _wait(lambda: has(second.id, "flaky-1"), 60, "the second job's first attempt", worker)
    # Its first attempt committed; kill once the failure is handled and the retry waits in the
    # scheduled registry (killed before that, the attempt is an abandoned job instead, which RQ
    # recovers only after the job's timeout: not this test's subject).
    scheduled = ScheduledJobRegistry("default", connection=redis.Redis.from_url(server.url))
    _wait(lambda: scheduled.count > 0, 30, "the second job's retry to be scheduled", worker)
    worker.kill()  # worker, horse and retry scheduler, holding rq:scheduler-lock:default
    assert redis.Redis.from_url(server.url).exists("rq:scheduler-lock:default")
    killed = time.monotonic()
    replacement = procs(app, server.url, "worker", "-q", "default")
    _wait(lambda: has(second.id, "flaky-done"), 40, "the retry on the replacement worker", replacement)
    assert time.monotonic() - killed < 45  # the dead holder's lock (61 s TTL) was taken over
    assert replacement.stop() == 0


def test_scheduler_survives_redis_dying_during_its_tick(app, procs, own_redis):
    server = own_redis(persist=False)
    scheduler = procs(app, server.url, "scheduler")
    client = redis.Redis.from_url(server.url)
    _wait(lambda: client.exists(SCHEDULER_LOCK_KEY) and client.llen("rq:queue:periodic") > 0, 60,
          "the scheduler's first tick", scheduler)

    for _ in range(2):
        # Writes block for 8 s: the scheduler's next tick (at most 5 s away) hangs on one, and
        # Redis dies under it.
        client.execute_command("CLIENT", "PAUSE", "8000", "WRITE")
        time.sleep(6)
        server.restart(down_for=1.0, kill=True)  # empty: lock, registry and queues are gone
        _wait(lambda: client.exists(SCHEDULER_LOCK_KEY)
              and client.zcard("rq:cron_schedulers") == 1, 30, "the scheduler to re-register", scheduler)
        assert scheduler.alive(), scheduler.output()[-3000:]
    output = scheduler.output()
    assert "Traceback" not in output, output[-3000:]
    assert scheduler.stop() == 0
    assert not client.exists(SCHEDULER_LOCK_KEY)  # released on a clean stop


def test_a_second_scheduler_is_refused_and_a_dead_ones_successor_starts(app, procs, own_redis):
    server = own_redis(persist=False)
    client = redis.Redis.from_url(server.url)
    first = procs(app, server.url, "scheduler")
    _wait(lambda: client.exists(SCHEDULER_LOCK_KEY), 60, "the first scheduler", first)

    second = procs(app, server.url, "scheduler")
    assert second.proc.wait(timeout=60) == 1
    assert "another scheduler" in second.output()
    assert first.alive()

    first.kill()  # its lock stays behind (30 s TTL) ...
    holder = client.get(SCHEDULER_LOCK_KEY)
    successor = procs(app, server.url, "scheduler")  # ... and is taken over: the holder is dead
    _wait(lambda: client.get(SCHEDULER_LOCK_KEY) not in (None, holder), 30, "the successor", successor)
    assert successor.alive()
    assert successor.stop() == 0
