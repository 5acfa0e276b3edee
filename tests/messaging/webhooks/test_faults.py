"""A real worker process killed mid-delivery: the lease expires, the sweeper retries, the
receiver sees the same ``webhook-id`` twice (at-least-once) and can de-duplicate on it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from community.models import utcnow
from extensions import db
from messaging.webhooks import jobs
from messaging.webhooks.models import WebhookAttempt, WebhookDelivery
from points import ledger
from tests.servers import FlaskProcess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def test_a_worker_killed_mid_delivery_is_retried_with_the_same_id(app, register, receiver, make_member,
                                                                   deliver_all):
    register(receiver.url, ["points.changed"])
    receiver.delay = 30  # the receiver holds the request: the worker is inside the HTTP call
    ledger.award(make_member().id, 10, key="fault", reason="x")
    db.session.commit()

    worker = FlaskProcess(app, "worker", "-q", "webhooks", name="webhooks-worker")
    try:
        deadline = time.monotonic() + 60
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.received, worker.output()
    finally:
        worker.kill()

    db.session.rollback()
    (row,) = db.session.scalars(select(WebhookDelivery)).all()
    assert row.status == "pending" and row.attempts == 0 and row.locked_until > utcnow()
    assert db.session.scalars(select(WebhookAttempt)).all() == []
    assert jobs.sweep_due_deliveries() == 0  # the lease still stands

    receiver.delay = 0
    db.session.execute(update(WebhookDelivery).values(locked_until=utcnow() - timedelta(seconds=1),
                                                      next_attempt_at=utcnow() - timedelta(minutes=2)))
    db.session.commit()
    assert jobs.sweep_due_deliveries() == 1
    deliver_all()
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    db.session.expire_all()
    (row,) = db.session.scalars(select(WebhookDelivery)).all()
    assert row.status == "succeeded" and row.attempts == 1
