"""Journeys jobs on the "journeys" queue.

* ``advance_enrolments(ids)``: advance these enrolments (idempotent: each step runs once, see
  ``engine``); enqueued after the commit that enrolled them, and by the sweeper.
* ``sweep_due`` (every 30 s, ``periodic``): hands due enrolments of active journeys to advance
  jobs in batches of ``JOURNEYS_BATCH_SIZE`` (``engine.batch_size``), found through the partial
  index on ``next_run_at``; a job lost with Redis, or whose worker died, is handed out again
  after ``JOURNEYS_LEASE_SECONDS``.
* ``scan_schedules`` (every 15 min): enrols today's members of date / inactivity / calendar
  journeys, each journey once a day.
"""

from __future__ import annotations

import logging

from extensions import db
from jobs import Periodic, enqueue_now, job

from . import engine, triggers

log = logging.getLogger(__name__)

MAX_BATCHES = 100


@job("journeys", timeout=600, retries=2, backoff=(10, 60))
def advance_enrolments(ids: list[int]) -> dict:
    return engine.advance(list(ids))


@job("periodic", timeout=300, retries=0)
def sweep_due(max_batches: int = MAX_BATCHES) -> int:
    handed = 0
    for _ in range(max_batches):
        ids = engine.due_ids(engine.batch_size())
        db.session.commit()
        if not ids:
            break
        try:
            enqueue_now(advance_enrolments, ids)
        except Exception:  # Redis down: the lease hands them out again later
            log.warning("could not enqueue %d journey enrolments", len(ids), exc_info=True)
            break
        handed += len(ids)
    return handed


@job("journeys", timeout=1800, retries=1, backoff=(300,))
def scan_schedules() -> dict:
    return triggers.scan_schedules()


PERIODIC = [Periodic(sweep_due, interval=30), Periodic(scan_schedules, interval=900)]
