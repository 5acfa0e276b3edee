"""Webhook jobs on the ``webhooks`` queue: one delivery attempt, the sweeper, pruning.

``deliver`` takes a delivery id and makes at most one attempt (see ``services.attempt``): it is
idempotent, because an attempt is claimed with a guarded UPDATE (a pending, due, unleased
delivery), so a duplicate or late job finds nothing to do.  Retries are not RQ's: the schedule
lives in the delivery row (``next_attempt_at``) and each failure schedules the next attempt
with RQ's scheduler; ``sweep_due_deliveries`` re-enqueues any due delivery whose job was lost.
"""

from __future__ import annotations

import logging

from extensions import db
from jobs import Periodic, enqueue_now, job

from . import services

log = logging.getLogger(__name__)


# Our own schedule replaces RQ's retries (retries=0); the timeout covers one HTTP attempt.
@job("webhooks", timeout=120, retries=0)
def deliver(delivery_id: int, manual: bool = False) -> str | None:
    """One attempt of one delivery; returns its outcome (None: nothing was due)."""
    return services.attempt(delivery_id, manual=manual)


@job("periodic", timeout=120, retries=0)
def sweep_due_deliveries() -> int:
    """Enqueue deliveries that are due but whose job was lost; returns how many."""
    ids = services.due_delivery_ids()
    db.session.rollback()
    enqueued = 0
    for delivery_id in ids:
        if enqueue_now(deliver, delivery_id, unique_key=f"webhooks:delivery:{delivery_id}"):
            enqueued += 1
    if ids:
        log.info("webhooks sweeper: %d due deliveries, %d enqueued", len(ids), enqueued)
    return enqueued


@job("periodic", timeout=600, retries=0)
def prune_old_events() -> int:
    """Forget delivered events older than ``WEBHOOKS_RETENTION_DAYS``."""
    pruned = services.prune()
    db.session.commit()
    return pruned


PERIODIC = [
    Periodic(sweep_due_deliveries, interval=60),
    Periodic(prune_old_events, cron="40 4 * * *"),
]
