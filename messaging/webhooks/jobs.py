"""Webhook jobs on the ``webhooks`` queue: the dispatcher, one delivery attempt, the sweeper, pruning.

* ``dispatch`` (enqueued after every commit that published events, at most one pending)
  attempts every due delivery with a small thread pool;
* ``deliver`` makes at most one attempt of one delivery: a scheduled retry or a redelivery
  by hand.

Both are idempotent: an attempt is claimed with a guarded UPDATE (a pending, due, unleased
delivery), so a duplicate or late job finds nothing to do.  Retries are not RQ's: the schedule
lives in the delivery row (``next_attempt_at``) and each failure schedules the next attempt
with RQ's scheduler; ``sweep_due_deliveries`` wakes the dispatcher for anything due and missed.
"""

from __future__ import annotations

import logging

from extensions import db
from jobs import Periodic, enqueue_now, job

from . import services

log = logging.getLogger(__name__)


DISPATCH_KEY = "webhooks:dispatch"


# Our own schedule replaces RQ's retries (retries=0); the timeout covers one HTTP attempt.
@job("webhooks", timeout=120, retries=0)
def deliver(delivery_id: int, manual: bool = False) -> str | None:
    """One attempt of one delivery (scheduled retries, redelivery by hand); returns its outcome
    (None: nothing was due)."""
    return services.attempt(delivery_id, manual=manual)


@job("webhooks", timeout=services.DISPATCH_BUDGET_SECONDS + 240, retries=0)
def dispatch() -> int:
    """Attempt every due delivery, ``WEBHOOKS_CONCURRENCY`` at a time (enqueued after each
    commit that published events; one pending at a time thanks to its unique key)."""
    attempted, more = services.dispatch_due()
    if more:
        enqueue_now(dispatch, unique_key=DISPATCH_KEY)
    return attempted


@job("periodic", timeout=120, retries=0)
def sweep_due_deliveries() -> int:
    """Wake the dispatcher if deliveries are due but nobody is on them (the enqueue after a
    commit was lost, a retry's schedule was dropped, a worker died mid-attempt: its lease
    expired); returns how many are due."""
    ids = services.due_delivery_ids()
    db.session.rollback()
    if ids:
        enqueued = enqueue_now(dispatch, unique_key=DISPATCH_KEY) is not None
        log.info("webhooks sweeper: %d due deliveries, dispatcher %s", len(ids),
                 "enqueued" if enqueued else "already pending")
    return len(ids)


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
