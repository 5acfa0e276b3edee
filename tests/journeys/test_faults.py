"""A real ``flask worker -q journeys`` killed with SIGKILL in the middle of a batch (after the
steps' effects were written, before the commit): another worker finishes the batch after the
lease, and every step has run exactly once (one notification, one ledger award per member)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from community.models import Notification
from extensions import db, sqlite_begin_mode
from jobs import get_queue
from journeys.engine import FAULT_ENV
from journeys.jobs import sweep_due
from journeys.models import StepExecution
from points.models import JournalEntry
from points.services import record_interaction
from tests.servers import FlaskProcess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LEASE = 2


class Worker(FlaskProcess):
    def __init__(self, app, **env):
        super().__init__(app, "worker", "-q", "journeys", drop=(FAULT_ENV,), name="journeys-worker", env={
            "JOURNEYS_LEASE_SECONDS": str(LEASE),
            "JOURNEYS_CACHE_SECONDS": "0",
            **env,
        })


def _count(model, *where) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def wait_for(predicate, timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{worker.output()}")


def test_worker_killed_mid_batch_runs_each_step_once(app, make_member, template, journey):
    app.config["JOURNEYS_LEASE_SECONDS"] = LEASE
    template("thanks")
    author = make_member(roles=("marketer",))
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks", "next": "gift"},
                 {"id": "gift", "type": "action", "action": "award_points", "points": 7}], author=author)
    members = [make_member() for _ in range(20)]
    for i, m in enumerate(members):
        record_interaction(m.id, "purchase", key=f"fault-{j.id}-{i}", value=5)
    db.session.commit()  # the advance jobs are enqueued now, for the worker to find
    queue = get_queue("journeys", app)
    queued = queue.count
    assert queued >= 1

    stalled = Worker(app, **{FAULT_ENV: "sleep_before_commit:60"})
    try:
        wait_for(lambda: queue.count < queued, 60, "the stalled worker to take a job", stalled)
        time.sleep(3)  # inside the batch: effects flushed, not committed
    finally:
        stalled.kill()
    assert _count(StepExecution, StepExecution.journey_id == j.id) == 0  # rolled back with the process

    healthy = Worker(app)
    try:
        time.sleep(LEASE + 0.5)

        def finished() -> bool:
            # As the scheduler would, every 30 s: hands out what the dead worker held.  Like any
            # job it writes in a transaction that takes SQLite's write lock up front (a deferred
            # one that read first gets SQLITE_BUSY at once when the worker committed meanwhile).
            db.session.rollback()
            token = sqlite_begin_mode.set("IMMEDIATE")
            try:
                sweep_due()
            finally:
                sqlite_begin_mode.reset(token)
            return _count(StepExecution, StepExecution.journey_id == j.id) == 40

        wait_for(finished, 120, "every step to run", healthy)
    finally:
        healthy.kill()
    ids = [m.id for m in members]
    assert _count(Notification, Notification.member_id.in_(ids), Notification.kind.like("journeys.%")) == 20
    assert _count(JournalEntry, JournalEntry.member_id.in_(ids), JournalEntry.source_type == "journey") == 20
    rows = db.session.execute(select(StepExecution.member_id, StepExecution.step_id)
                              .where(StepExecution.journey_id == j.id)).all()
    assert len(set(rows)) == 40
