"""Tier jobs on the "tiers" queue: one member after an interaction, everyone periodically.

The full recomputation (``run_full_recompute``) is set-based: one grouped pass over the history
into ``tier_metric_stage``, then ``tiers.engine.apply_range`` per member-id range, committing
per range so admins see progress in ``tier_runs``.  A Redis lock (SET NX with an expiry,
renewed after every range) keeps two runs from overlapping; a run whose worker died is marked
"abandoned" by the next one.  Re-running is harmless: unchanged members are not rewritten.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from redis.exceptions import LockError
from sqlalchemy import delete, func, insert, select, text, update

from community.models import User, utcnow
from extensions import db, get_redis
from jobs import Periodic, job

from . import engine, services
from .models import TierMetricStage, TierRun

log = logging.getLogger(__name__)

LOCK_NAME = "kinship:tiers:full-run"
# Renewed after every range, so it only has to outlive one range (and expire if the worker dies).
LOCK_TTL = 600
BATCH_SIZE = 20_000
STAGE_WORK_MEM = "256MB"


@job("tiers", timeout=120, retries=3, backoff=(5, 30, 120))
def recompute_member(member_id: int) -> None:
    """Recompute one member (enqueued after each of their interactions)."""
    services.recompute_member(member_id)
    db.session.commit()


@job("tiers", timeout=3600, retries=1, backoff=(300,))
def recompute_all() -> int | None:
    """The periodic full recomputation; returns the run id (None when another run holds the lock)."""
    return run_full_recompute()


PERIODIC = [Periodic(recompute_all, cron="15 3 * * *")]


def run_full_recompute(*, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int | None:
    """Recompute every member's tier; see the module docstring.  Commits per range."""
    lock = get_redis().lock(LOCK_NAME, timeout=LOCK_TTL)
    if not lock.acquire(blocking=False):
        log.info("tier recomputation already running; not starting another")
        return None
    try:
        return _run(lock, now or utcnow(), batch_size)
    finally:
        with contextlib.suppress(LockError):  # expired meanwhile: nothing left to release
            lock.release()


def _run(lock, now: datetime, batch_size: int) -> int:
    session = db.session
    # We hold the lock, so a run still marked "running" lost its worker.
    session.execute(update(TierRun).where(TierRun.status == "running").values(status="abandoned",
                                                                               finished_at=now))
    services.ensure_default_rules()
    rules = services.current_rules()
    first, last, total = session.execute(select(func.min(User.id), func.max(User.id), func.count(User.id))).one()
    run = TierRun(status="running", rule_version=rules.version, total=total, started_at=now)
    session.add(run)
    session.commit()
    run_id = run.id
    try:
        stage = TierMetricStage.__table__
        if session.get_bind().dialect.name == "postgresql":
            # One grouped pass over the whole history: let it hash in memory rather than spill.
            session.execute(text(f"SET LOCAL work_mem = '{STAGE_WORK_MEM}'"))
        session.execute(delete(stage))
        session.execute(insert(stage).from_select(["member_id", *engine.HISTORY_METRICS],
                                                  engine.metric_rows(now, rules)))
        session.commit()
        lock.reacquire()
        for lo in range(first or 0, (last or -1) + 1, batch_size):
            hi = lo + batch_size - 1
            source = select(stage).where(stage.c.member_id.between(lo, hi)).subquery("src")
            counts = engine.apply_range(source, lo, hi, now, rules, run_id=run_id)
            n = session.scalar(select(func.count()).where(User.id.between(lo, hi)))
            session.execute(update(TierRun).where(TierRun.id == run_id).values(
                processed=TierRun.processed + n,
                promoted=TierRun.promoted + counts["promoted"],
                demoted=TierRun.demoted + counts["demoted"],
            ))
            session.commit()
            lock.reacquire()  # raises if the lock expired and someone else may be running
        session.execute(delete(stage))
        session.execute(update(TierRun).where(TierRun.id == run_id).values(
            status="done", distribution=services.distribution(), finished_at=utcnow()))
        session.commit()
    except Exception as exc:
        session.rollback()
        session.execute(update(TierRun).where(TierRun.id == run_id).values(
            status="failed", error=f"{exc.__class__.__name__}: {exc}"[:2000], finished_at=utcnow()))
        session.commit()
        raise
    return run_id
