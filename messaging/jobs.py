"""Email delivery jobs on the ``messaging`` queue, and the sweeper that forgets nothing.

* ``deliver_email(id)``: enqueued after the commit that created the delivery (one per
  notification or account email).
* ``deliver_emails(ids)``: a batch over a few SMTP connections, enqueued by the sweeper and,
  after the commit, for notifications written in bulk (``services.queue_for_notifications``).
* ``sweep_deliveries`` (every 30 s): gives notifications written without a delivery one (bulk
  writers such as the tier run), then enqueues, in batches, every delivery that is due: new
  ones whose enqueue was lost (Redis down), retries whose backoff has passed, deferred ones
  (quiet hours, frequency cap) whose time has come, and claims whose worker died (the lease).

Retries are the database's, not RQ's (``retries=0``): the row's ``not_before`` is the backoff,
so a retry survives a Redis restart.  Running any job twice is harmless (the claim is guarded).
"""

from __future__ import annotations

import logging

from flask import current_app

from extensions import db
from jobs import Periodic, enqueue_after_commit, enqueue_now, job

from . import services

log = logging.getLogger(__name__)


@job("messaging", timeout=120, retries=0)
def deliver_email(delivery_id: int) -> dict:
    return services.deliver([delivery_id])


@job("messaging", timeout=1800, retries=0)
def deliver_emails(delivery_ids: list[int]) -> dict:
    return services.deliver(list(delivery_ids))


def schedule(delivery_id: int) -> None:
    """Enqueue the delivery once the surrounding transaction commits."""
    services.mark_enqueued(delivery_id)
    enqueue_after_commit(deliver_email, delivery_id, unique_key=f"email:{delivery_id}")


def schedule_many(delivery_ids: list[int]) -> None:
    """Enqueue ``deliver_emails`` for these deliveries, in batches, once the transaction commits
    (the caller wrote them with ``enqueued_at`` set, so the sweeper leaves them to these jobs)."""
    size = current_app.config["MESSAGING_BATCH_SIZE"]
    for start in range(0, len(delivery_ids), size):
        enqueue_after_commit(deliver_emails, delivery_ids[start:start + size])


@job("periodic", timeout=300, retries=0)
def sweep_deliveries(max_batches: int = 50) -> int:
    """Enqueue due deliveries in batches (at most ``max_batches`` per run); returns how many."""
    created = services.backfill_deliveries(current_app.config["MESSAGING_BACKFILL_HOURS"])
    db.session.commit()
    if created:
        log.info("sweeper: %d notification(s) given an email delivery", created)
    size = current_app.config["MESSAGING_BATCH_SIZE"]
    total = 0
    for _ in range(max_batches):
        ids = services.due_ids(size)
        db.session.commit()
        if not ids:
            break
        enqueue_now(deliver_emails, ids)
        total += len(ids)
        if len(ids) < size:
            break
    if total:
        log.info("sweeper: %d email delivery(ies) enqueued", total)
    return total


PERIODIC = [Periodic(sweep_deliveries, interval=30)]
