"""Tier jobs on the "tiers" queue: one member after an interaction, everyone periodically.

The periodic run (``run_full_recompute``) leaves every member's tier as the rules give it, in
set-based SQL, in one of two modes (``choose_mode``):

* full: every member-id range in turn has its members' history aggregated into
  ``tier_metric_stage`` (index-only range scans of the covering member indexes on PostgreSQL)
  and decided by ``tiers.engine.apply_range``.  The first run, the first after a rules change,
  at least every ``TIER_FULL_RUN_DAYS``, and when an admin asks (``?full=true``);
* incremental (the everyday run): ``tiers.engine.changed_members`` lists the members whose
  inputs changed since the last completed run (history recorded, history entering or leaving
  the window, suspensions, grace periods) into ``tier_dirty_members``; only their history is
  re-aggregated, range by range in the same way, and only they are decided.  Everyone
  else's metrics and decision cannot have changed, so the result is what a full run would give
  (tests/tiers/test_incremental.py checks this on random histories, bench/tiers.py at 1 M).

Either mode commits per range (ranges decided by ``TIER_RUN_WORKERS`` threads on PostgreSQL),
so admins see progress in ``tier_runs``.  A Redis lock (SET NX with an expiry, renewed after
every range) keeps two runs from overlapping; a run whose worker died is marked "abandoned" by
the next one.  Re-running is harmless: unchanged members are not rewritten.
"""
from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import LockError
from sqlalchemy import delete, func, insert, select, text, update

from community.models import User, utcnow
from extensions import db, get_redis
from jobs import Periodic, job

from . import engine, services
from .models import TierDirtyMember, TierMetricStage, TierRun

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
def recompute_all(full: bool | None = None) -> int | None:
    """The periodic recomputation; returns the run id (None when another run holds the lock)."""
    return run_full_recompute(full=full)


PERIODIC = [Periodic(recompute_all, cron="15 3 * * *")]


def run_full_recompute(*, now: datetime | None = None, batch_size: int = BATCH_SIZE, full: bool | None = None
                       ) -> int | None:
    """Recompute every member's tier; see the module docstring.  Commits per range.

    ``full``: True re-aggregates everyone's history, False only the members whose inputs
    changed since the last completed run, None (the schedule) decides: see ``choose_mode``.
    """
    lock = get_redis().lock(LOCK_NAME, timeout=LOCK_TTL)
    if not lock.acquire(blocking=False):
        log.info("tier recomputation already running; not starting another")
        return None
    try:
        return _run(lock, now or utcnow(), batch_size, full)
    finally:
        with contextlib.suppress(LockError):  # expired meanwhile: nothing left to release
            lock.release()


def choose_mode(now: datetime, rules, *, full: bool | None = None) -> tuple[str, TierRun | None]:
    """("full" | "incremental", the run an incremental one continues from).

    Incremental needs a completed run under the same rule version, as of a time before ``now``,
    and a full run within ``TIER_FULL_RUN_DAYS`` (a periodic full pass puts right anything a
    lost signal or a hand-edited row could have left behind).
    """
    session = db.session
    last = session.scalar(select(TierRun).where(TierRun.status == "done").order_by(TierRun.id.desc()).limit(1))
    if full or last is None or last.rule_version != rules.version or last.started_at > now:
        return "full", None
    if full is None:
        last_full = session.scalar(select(func.max(TierRun.started_at)).where(
            TierRun.status == "done", TierRun.mode == "full", TierRun.rule_version == rules.version))
        every = timedelta(days=current_app.config.get("TIER_FULL_RUN_DAYS", 7))
        if last_full is None or last_full <= now - every:
            return "full", None
    return "incremental", last


def _tune(session) -> None:
    """Planner settings for this transaction of a run (PostgreSQL; no-op elsewhere).

    * work_mem: a range's grouped pass over the history hashes in memory rather than spilling;
    * jit off: compiling the wide CASE expressions of every range's statements costs more than
      they run (measured: bench/tiers.py);
    * random_page_cost 1.1: the members a daily run re-aggregates are read through the covering
      member indexes (index-only scans), which the default cost (4, for spinning disks) passes
      over for a sequential scan of the whole ledger;
    * plan_cache_mode force_custom_plan: psycopg prepares a statement run five times, and
      PostgreSQL may then settle on a generic plan for it, blind to the range's bounds (a second
      full run in the same worker took 19.7 s instead of 12.3 s).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{STAGE_WORK_MEM}'"))
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL random_page_cost = 1.1"))
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _decide_range(lo: int, hi: int, run_id: int, now: datetime, rules, members) -> None:
    """Decide and apply members [lo, hi] from the stage, count the progress, commit."""
    session = db.session
    stage = TierMetricStage.__table__
    try:
        _tune(session)
        # The range's metrics, aggregated once (apply_range reads them twice).  On PostgreSQL the
        # covering member indexes serve a member range with index-only scans.
        session.execute(delete(stage).where(stage.c.member_id.between(lo, hi)))
        session.execute(insert(stage).from_select(["member_id", *engine.HISTORY_METRICS],
                                                  engine.metric_rows(now, rules, lo, hi, members=members)))
        source = select(stage).where(stage.c.member_id.between(lo, hi)).subquery("src")
        counts = engine.apply_range(source, lo, hi, now, rules, run_id=run_id, members=members)
        session.execute(delete(stage).where(stage.c.member_id.between(lo, hi)))
        decided = members.c.member_id if members is not None else User.id
        n = session.scalar(select(func.count()).where(decided.between(lo, hi)))
        session.execute(update(TierRun).where(TierRun.id == run_id).values(
            processed=TierRun.processed + n,
            promoted=TierRun.promoted + counts["promoted"],
            demoted=TierRun.demoted + counts["demoted"],
        ))
        session.commit()
    except Exception:
        session.rollback()
        raise


def _decide_ranges(lock, ranges: list[tuple[int, int]], run_id: int, now: datetime, rules, members) -> None:
    """Every range, by ``TIER_RUN_WORKERS`` threads (PostgreSQL) or one after the other (SQLite).

    Ranges hold disjoint members, so their transactions touch disjoint rows of
    ``member_tier_states`` and ``users``; they only meet on this run's ``tier_runs`` row, which
    each updates last, just before committing.
    """
    workers = current_app.config.get("TIER_RUN_WORKERS", 2)
    if db.session.get_bind().dialect.name != "postgresql" or workers <= 1 or len(ranges) <= 1:
        for lo, hi in ranges:
            _decide_range(lo, hi, run_id, now, rules, members)
            lock.reacquire()  # raises if the lock expired and someone else may be running
        return
    app = current_app._get_current_object()

    def work(lo, hi):
        with app.app_context():  # its own session and connection
            _decide_range(lo, hi, run_id, now, rules, members)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tier-run") as pool:
        futures = [pool.submit(work, lo, hi) for lo, hi in ranges]
        try:
            for future in as_completed(futures):
                future.result()
                lock.reacquire()  # here: the lock's token lives in this thread
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _run(lock, now: datetime, batch_size: int, full: bool | None) -> int:
    session = db.session
    # We hold the lock, so a run still marked "running" lost its worker.
    session.execute(update(TierRun).where(TierRun.status == "running").values(status="abandoned",
                                                                               finished_at=now))
    services.ensure_default_rules()
    rules = services.current_rules()
    mode, previous = choose_mode(now, rules, full=full)
    first, last, total = session.execute(select(func.min(User.id), func.max(User.id), func.count(User.id))).one()
    run = TierRun(status="running", mode=mode, rule_version=rules.version, total=total, started_at=now)
    session.add(run)
    session.commit()
    run_id = run.id
    dirty = TierDirtyMember.__table__
    try:
        members = None
        if mode == "incremental":
            _tune(session)
            margin = timedelta(minutes=current_app.config.get("TIER_CHANGE_MARGIN_MINUTES", 60))
            session.execute(delete(dirty))
            session.execute(insert(dirty).from_select(
                ["member_id"], engine.changed_members(previous.started_at, now, rules, margin)))
            if session.get_bind().dialect.name == "postgresql":
                # Fresh statistics, or the planner takes the table for empty and scans it in
                # a nested loop per member.
                session.execute(text("ANALYZE tier_dirty_members"))
            ids = session.scalars(select(dirty.c.member_id).order_by(dirty.c.member_id)).all()
            session.execute(update(TierRun).where(TierRun.id == run_id).values(total=len(ids)))
            members = dirty
            # Ranges of changed members (sparse among all ids): at most batch_size each, and
            # enough of them to keep every worker thread busy.
            threads = current_app.config.get("TIER_RUN_WORKERS", 2)
            size = max(1, min(batch_size, max(5_000, -(-len(ids) // (threads * 2)))))
            ranges = [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]
        else:
            ranges = [(lo, lo + batch_size - 1) for lo in range(first or 0, (last or -1) + 1, batch_size)]
        session.commit()
        lock.reacquire()
        _decide_ranges(lock, ranges, run_id, now, rules, members)
        session.execute(delete(dirty))
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
