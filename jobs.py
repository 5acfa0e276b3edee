"""Background jobs on RQ: one decorator, named queues, enqueue-after-commit, the periodic schedule.

Conventions (after Redash):

* queues are named by workload (``QUEUES``);
* every job is declared with ``@job(queue, timeout, retries)``, takes ids (never ORM objects)
  and must be idempotent: RQ may run it twice (retries, a killed worker);
* a job runs in a fresh application context with its own database session and commits once;
* request handlers never enqueue directly: ``enqueue_after_commit`` defers the enqueue until
  the surrounding transaction has committed, and drops it on rollback;
* a ``unique_key`` prevents duplicate enqueues of the same logical job while one is pending;
* the periodic schedule is data (``PERIODIC`` lists in each domain's ``jobs.py``), registered
  with RQ's own cron scheduler by ``flask scheduler``.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, has_app_context
from rq import Callback, Queue, Retry
from sqlalchemy import event
from sqlalchemy.orm import Session

from extensions import db, get_redis

log = logging.getLogger(__name__)

QUEUES = ("default", "redemptions", "tiers", "messaging", "webhooks", "analytics", "journeys", "periodic")
DOMAINS = (
    "community",
    "points",
    "forums",
    "surveys",
    "rewards",
    "tiers",
    "messaging",
    "messaging.webhooks",
    "analytics",
    "journeys",
    "console",
)

_worker_app: Flask | None = None


def set_worker_app(app: Flask) -> None:
    """The app a job uses when it runs outside any app context (worker processes)."""
    global _worker_app
    _worker_app = app


def _job_app() -> Flask:
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    if _worker_app is None:
        from app import create_app

        set_worker_app(create_app())
    assert _worker_app is not None
    return _worker_app


@dataclass(frozen=True)
class JobSpec:
    queue: str
    timeout: int
    retries: int
    backoff: tuple[int, ...]


def job(queue: str = "default", *, timeout: int = 300, retries: int = 3, backoff: tuple[int, ...] = (5, 30, 120)):
    """Declare a background job.  The wrapped function runs in its own app context and session."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {QUEUES}")

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            from rq import get_current_job

            from logs import job_id

            app = _job_app()
            current = get_current_job()
            token = job_id.set(current.id) if current is not None else None  # in its log lines
            try:
                with app.app_context():
                    _release_current_unique()
                    try:
                        return fn(*args, **kwargs)
                    except Exception:
                        db.session.rollback()
                        raise
                    finally:
                        db.session.remove()
            finally:
                if token is not None:
                    job_id.reset(token)

        run.spec = JobSpec(queue, timeout, retries, tuple(backoff))  # type: ignore[attr-defined]
        run.__wrapped_job__ = fn  # type: ignore[attr-defined]
        return run

    return decorate


def get_queue(name: str, app: Flask | None = None) -> Queue:
    return Queue(name, connection=get_redis(app))


def _unique_lock_key(unique_key: str) -> str:
    return f"kinship:job-lock:{unique_key}"


def enqueue_now(fn: Callable, *args: Any, unique_key: str | None = None, app: Flask | None = None, **kwargs: Any):
    """Enqueue immediately (callers outside a transaction: CLI, sweepers, the scheduler)."""
    spec: JobSpec = fn.spec  # type: ignore[attr-defined]
    conn = get_redis(app)
    # The lock is held while the job waits in its queue: released when the job starts (so work
    # that arrives during a run is enqueued again), by the failure callback, or by its expiry.
    if unique_key is not None and not conn.set(_unique_lock_key(unique_key), "1", nx=True, ex=spec.timeout + 60):
        log.debug("job %s already pending; not enqueued again", unique_key)
        return None
    retry = Retry(max=spec.retries, interval=list(spec.backoff)) if spec.retries else None
    queue = Queue(spec.queue, connection=conn)
    return queue.enqueue(
        fn,
        args=args,
        kwargs=kwargs,
        job_timeout=spec.timeout,
        retry=retry,
        meta={"unique_key": unique_key} if unique_key else None,
        on_failure=Callback(_release_unique) if unique_key else None,
    )


def _release_unique(job, connection, *args, **kwargs):  # RQ callback signature
    key = (job.meta or {}).get("unique_key")
    if key:
        connection.delete(_unique_lock_key(key))


def _release_current_unique() -> None:
    """Inside a running RQ job: its unique key no longer means "pending"."""
    from rq import get_current_job

    current = get_current_job()
    if current is not None:
        _release_unique(current, current.connection)


@dataclass
class _Pending:
    fn: Callable
    args: tuple
    kwargs: dict
    unique_key: str | None


def enqueue_after_commit(fn: Callable, *args: Any, unique_key: str | None = None, **kwargs: Any) -> None:
    """Enqueue ``fn(*args)`` once the current session commits; forget it on rollback.

    If Redis is unreachable at that moment the enqueue is logged and dropped: every job that
    matters has a sweeper that finds its work in the database (e.g. pending redemptions).
    """
    session = db.session()
    session.info.setdefault("pending_jobs", []).append(_Pending(fn, args, kwargs, unique_key))


@event.listens_for(Session, "after_commit")
def _flush_pending_jobs(session: Session) -> None:
    if session.in_nested_transaction():
        return  # SQLAlchemy also reports a released savepoint as a commit; wait for the real one
    pending = session.info.pop("pending_jobs", None)
    if not pending:
        return
    for item in pending:
        try:
            enqueue_now(item.fn, *item.args, unique_key=item.unique_key, **item.kwargs)
        except Exception:  # Redis down: the sweeper re-enqueues from the database.
            log.warning("could not enqueue %s%r; leaving it to the sweeper", item.fn.__name__, item.args, exc_info=True)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_jobs(session: Session, previous_transaction) -> None:
    # Only the outermost transaction's rollback drops them: a savepoint rolled back inside it
    # (e.g. an idempotent insert that found its row) leaves the rest of the transaction, and
    # the jobs it enqueued, to commit.
    if previous_transaction.parent is None:
        session.info.pop("pending_jobs", None)


# --------------------------------------------------------------------------- periodic schedule


@dataclass(frozen=True)
class Periodic:
    """One entry of the periodic schedule: run ``fn`` every ``interval`` seconds or on ``cron``."""

    fn: Callable
    interval: int | None = None
    cron: str | None = None
    kwargs: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__name__}"


def periodic_schedule() -> list[Periodic]:
    """Collect ``PERIODIC`` from every domain's ``jobs`` module."""
    schedule: list[Periodic] = []
    for domain in DOMAINS:
        try:
            module = importlib.import_module(f"{domain}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{domain}.jobs":
                raise
            continue
        schedule.extend(getattr(module, "PERIODIC", []))
    return schedule


def build_cron_scheduler(app: Flask, schedule: list[Periodic] | None = None):
    """An RQ ``CronScheduler`` with ``schedule`` (default: the whole periodic schedule) registered.

    Every entry must be an ``@job`` (its queue, timeout and name come from there) with exactly
    one of ``interval`` and ``cron``; a bad entry stops the scheduler at start, loudly.
    """
    from workers import KinshipCronScheduler

    scheduler = KinshipCronScheduler(get_redis(app), name=f"kinship-{os.getpid()}")
    for entry in periodic_schedule() if schedule is None else schedule:
        spec: JobSpec | None = getattr(entry.fn, "spec", None)
        if spec is None:
            raise ValueError(f"periodic entry {entry.name} is not declared with @job")
        if (entry.interval is None) == (entry.cron is None):
            raise ValueError(f"periodic entry {entry.name} needs exactly one of interval and cron")
        scheduler.register(
            entry.fn,
            queue_name=spec.queue,
            kwargs=entry.kwargs or None,
            interval=entry.interval,
            cron=entry.cron,
            job_timeout=spec.timeout,
            name=entry.name,
        )
    return scheduler
