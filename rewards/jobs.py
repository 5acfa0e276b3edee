"""Background processing of redemptions, and the sweeper that makes sure none is forgotten.

Two jobs on the ``redemptions`` queue carry a ``pending`` redemption forward; both count the
attempt in our own ``redemption_jobs`` row (committed first, so the count survives a crash),
then do the work in one transaction, and running either twice is harmless: only a ``pending``
redemption is processed, and every state change is a guarded update.

* ``drain_redemptions`` is what a request wakes (one unique job, not one per redemption: a
  request whose wake-up is already waiting in the queue costs one Redis ``SET NX``).  It claims
  the fresh pending redemptions in batches (``services.claim_batch``: job row ``queued`` ->
  ``running``, ``FOR UPDATE SKIP LOCKED`` so workers take disjoint batches) and settles each
  batch in one transaction (``services.process_many``), until none is left.  A batch that
  fails is rolled back and its redemptions are handed to ``process_redemption`` one by one.
* ``process_redemption(id)`` processes one redemption, with RQ's retries and backoff: the
  sweeper's job, and the fallback for a failed batch.

``sweep_pending_redemptions`` (every minute) enqueues ``process_redemption`` for redemptions
still ``pending`` after a minute: the wake-up was lost (Redis down), the job was lost (Redis
restarted without persistence) or a worker was killed mid-job or mid-batch (its rows stay
``running``, which the drain never claims again).
"""

from __future__ import annotations

import logging
import os
import time

from flask import current_app

from extensions import db
from jobs import Periodic, enqueue_after_commit, enqueue_now, job

from . import services

log = logging.getLogger(__name__)

FAULT_ENV = "KINSHIP_REWARDS_FAULT"
DRAIN_KEY = "redemptions:drain"
BATCH_SIZE = 50  # redemptions per transaction in the drain
DRAIN_SECONDS = 20.0  # then the drain hands over to a fresh job, so other jobs on the queue get a turn


def _injected_fault(attempt: int) -> None:
    """Fault injection for the worker fault tests (tests/rewards/test_faults.py).

    Honoured only when the app runs under the test configuration and the environment asks for
    it: ``sleep:<seconds>`` stalls after the code is claimed and before the commit (so a test can
    kill the worker there), ``raise_once`` fails the first attempt at the same point.
    """
    fault = os.environ.get(FAULT_ENV)  # the drain passes its batch's first attempt number
    if not fault or not current_app.testing:
        return
    if fault.startswith("sleep:"):
        time.sleep(float(fault.split(":", 1)[1]))
    elif fault == "raise_once" and attempt == 1:
        raise RuntimeError("injected fault: first attempt fails")


@job("redemptions", timeout=60, retries=5, backoff=(1, 5, 15, 60, 120))
def process_redemption(redemption_id: int) -> str | None:
    """Process one redemption (see ``rewards.services.process``); returns its resulting state."""
    attempt = services.start_attempt(redemption_id)
    db.session.commit()
    if attempt is None:
        return None
    try:
        redemption = services.process(redemption_id)
        _injected_fault(attempt)
        services.finish_attempt(redemption_id)
        state = redemption.state if redemption is not None else None  # read now: the commit expires it
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        services.finish_attempt(redemption_id, error=f"{exc.__class__.__name__}: {exc}")
        db.session.commit()
        raise
    return state


def _unique_key(redemption_id: int) -> str:
    return f"redemption:{redemption_id}"


def schedule_processing(redemption_id: int) -> None:
    """Wake the drain once the request's transaction commits (the redemption's ``queued`` job
    row is what the drain claims; the id is not needed to find it)."""
    enqueue_after_commit(drain_redemptions, unique_key=DRAIN_KEY)


@job("redemptions", timeout=120, retries=0)
def drain_redemptions(batch_size: int = BATCH_SIZE) -> int:
    """Settle fresh pending redemptions a batch per transaction until none is left; returns how
    many were claimed.  Its unique key is released when it starts, so a request committed after
    that wakes another drain: no redemption waits for the sweeper unless Redis lost the wake-up."""
    deadline = time.monotonic() + DRAIN_SECONDS
    total = 0
    while True:
        claimed = services.claim_batch(batch_size)
        db.session.commit()
        if not claimed:
            return total
        total += len(claimed)
        ids = list(claimed)
        try:
            services.process_many(ids)
            _injected_fault(min(claimed.values()))
            services.finish_attempts(ids)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            log.warning("redemption batch of %d failed (%s: %s); processing them one by one",
                        len(ids), exc.__class__.__name__, exc)
            services.finish_attempts(ids, error=f"{exc.__class__.__name__}: {exc}")
            db.session.commit()
            _hand_over(ids)
        if time.monotonic() > deadline:
            _wake_drain()
            return total


def _hand_over(ids: list[int]) -> None:
    """Enqueue ``process_redemption`` for each (RQ's retries and backoff); if Redis is down the
    sweeper finds them (``error``, still pending) after a minute."""
    for rid in ids:
        try:
            enqueue_now(process_redemption, rid, unique_key=_unique_key(rid))
        except Exception:
            log.warning("could not enqueue redemption %s; leaving it to the sweeper", rid, exc_info=True)
            return


def _wake_drain() -> None:
    try:
        enqueue_now(drain_redemptions, unique_key=DRAIN_KEY)
    except Exception:
        log.warning("could not wake the redemption drain; the next request or the sweeper will", exc_info=True)


@job("periodic", timeout=120, retries=0)
def sweep_pending_redemptions(min_age_seconds: int = 60) -> int:
    """Re-enqueue every redemption still ``pending`` after ``min_age_seconds``; returns how many.

    The unique key is the request's: a job still waiting in the queue is not doubled, while one
    whose enqueue was lost, or whose worker died (the key is released when a job starts), is.
    """
    _settle_orphaned_job_rows()
    ids = services.stale_pending_ids(min_age_seconds)
    db.session.rollback()
    enqueued = 0
    for redemption_id in ids:
        if enqueue_now(process_redemption, redemption_id, unique_key=_unique_key(redemption_id)):
            enqueued += 1
    if ids:  # routine when everything is already queued; news when something had been lost
        (log.info if enqueued else log.debug)("sweeper: %d pending redemption(s), %d enqueued", len(ids), enqueued)
    return enqueued


def _settle_orphaned_job_rows() -> int:
    """Job rows still ``queued`` whose redemption is no longer ``pending``: no attempt will ever
    run (accepted while Redis was down, then cancelled or rejected before a sweep), so they are
    ``skipped``, not left looking like a stuck queue.  Committed here; returns how many."""
    from sqlalchemy import select, update

    from .models import Redemption, RedemptionJob

    result = db.session.execute(
        update(RedemptionJob)
        .where(
            RedemptionJob.status == "queued",
            RedemptionJob.redemption_id.in_(select(Redemption.id).where(Redemption.state != "pending")),
        )
        .values(status="skipped", finished_at=services.utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount:
        log.info("sweeper: %d job row(s) of redemptions decided before processing marked skipped", result.rowcount)
    return result.rowcount


PERIODIC = [Periodic(sweep_pending_redemptions, interval=60)]
