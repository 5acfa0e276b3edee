"""Fault tests with real worker processes (``flask worker -q messaging``) and a real SMTP server.

* the worker is killed with SIGKILL while it holds a claimed delivery (after the claim
  committed, before the SMTP send): the delivery is sent once, by the next worker, after the
  lease;
* the same during a batch job (four connections, outcomes group-committed): what was accepted
  was recorded, what was claimed and not sent goes out once after the lease;
* the SMTP server stops in the middle of a run and comes back: the deliveries that met a
  closed port are retried with backoff and each arrives once.

The exactly-once check counts what the SMTP server received: one message per member, each
with the Message-ID recorded on its delivery.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from community.models import utcnow
from extensions import db
from messaging.jobs import sweep_deliveries
from messaging.models import EmailDelivery
from messaging.services import FAULT_ENV
from tests.servers import FlaskProcess

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
LEASE = 3


class MailWorker(FlaskProcess):
    def __init__(self, app, smtp_port: int, **env):
        super().__init__(app, "worker", "-q", "messaging", drop=(FAULT_ENV,), name="messaging-worker", env={
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "MAIL_TIMEOUT": "5",
            "MESSAGING_SEND_LEASE_SECONDS": str(LEASE),
            "MESSAGING_RETRY_BACKOFF": ",".join(["1"] * 30),
            "MESSAGING_QUIET_HOURS": "off",
            **env,
        })


@pytest.fixture
def workers(mail_app):
    started: list[MailWorker] = []
    mail_app.config["MESSAGING_SEND_LEASE_SECONDS"] = LEASE

    def start(smtp_port: int, **env) -> MailWorker:
        worker = MailWorker(mail_app, smtp_port, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def _count(*states: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(EmailDelivery).where(EmailDelivery.state.in_(states)))


def wait_for(predicate, timeout: float, what: str, worker: MailWorker | None = None, sweep: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if sweep:
            # As the scheduler's run would: a sweep refused SQLite's write lock by a busy worker
            # (a loaded machine) simply runs again on the next tick.
            try:
                sweep_deliveries()
            except OperationalError:
                db.session.rollback()
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{worker.output() if worker else ''}")


def _assert_exactly_once(smtp, members) -> None:
    received = smtp.received
    per_address = Counter(r.rcpt_tos[0] for r in received)
    assert per_address == Counter({m.email: 1 for m in members}), per_address
    db.session.rollback()
    recorded = {d.to_address: d.message_id for d in db.session.scalars(select(EmailDelivery))}
    assert {r.rcpt_tos[0]: r.message["Message-ID"] for r in received} == recorded


def _notify_all(members) -> None:
    from community.services import notify

    for m in members:
        notify(m.id, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    db.session.commit()  # each delivery's job is enqueued now


def test_worker_killed_while_holding_a_claim_sends_each_message_once(mail_app, smtp, make_member, workers):
    members = [make_member() for _ in range(12)]
    slow = workers(smtp.port, **{FAULT_ENV: "sleep_before_send:2"})
    _notify_all(members)

    def fresh_claim() -> bool:
        # Claimed less than 0.8 s ago: the kill lands well inside the 2 s stall, even on a
        # loaded machine (the suite runs on every core).
        return len(smtp.received) >= 3 and _count("sending") == 1 and db.session.scalar(
            select(func.count()).select_from(EmailDelivery).where(
                EmailDelivery.state == "sending", EmailDelivery.claimed_at > utcnow() - timedelta(seconds=0.8))
        ) == 1

    wait_for(fresh_claim, 90, "a claim in flight", slow)
    slow.kill()  # inside the stall: claimed and committed, not sent
    held = _count("sending")
    assert held == 1
    sent_before = len(smtp.received)
    assert _count("sent") == sent_before

    healthy = workers(smtp.port)
    # The queued jobs run; the orphaned claim waits for its lease, then the sweeper hands it on.
    wait_for(lambda: _count("sent") == len(members), 90, "every delivery sent", healthy, sweep=True)
    _assert_exactly_once(smtp, members)
    db.session.rollback()
    retried = db.session.scalars(select(EmailDelivery).where(EmailDelivery.attempts == 2)).all()
    assert len(retried) == 1  # the one the killed worker held


def test_worker_killed_during_a_batch_job_sends_each_message_once(mail_app, smtp, make_member, workers):
    """The batch path (``deliver_emails``: four SMTP connections, outcomes group-committed by the
    recorder): killed between two rounds of sends, nothing accepted is left unrecorded."""
    from community.models import Notification
    from messaging.services import queue_for_notifications

    members = [make_member() for _ in range(12)]
    slow = workers(smtp.port, **{FAULT_ENV: "sleep_before_send:2"})
    notes = [Notification(member_id=m.id, kind="tiers.tier_changed",
                          payload={"from_tier": "aware", "to_tier": "engaged"}) for m in members]
    db.session.add_all(notes)
    db.session.flush()
    assert queue_for_notifications([n.id for n in notes]) == 12  # one deliver_emails job at the commit
    db.session.commit()

    # A round of four sends has landed and been recorded; the next is two seconds away.
    wait_for(lambda: 4 <= len(smtp.received) < 12 and _count("sent") == len(smtp.received), 90,
             "a round of sends recorded", slow)
    slow.kill()
    sent_before = len(smtp.received)
    assert _count("sent") == sent_before
    assert _count("sending") == 12 - sent_before  # claimed in one chunk, not sent: they wait for the lease

    healthy = workers(smtp.port)
    wait_for(lambda: _count("sent") == len(members), 90, "every delivery sent", healthy, sweep=True)
    _assert_exactly_once(smtp, members)


def test_smtp_server_stopping_mid_run_is_retried_and_nothing_is_doubled(mail_app, smtp, make_member, workers):
    members = [make_member() for _ in range(12)]
    worker = workers(smtp.port, **{FAULT_ENV: "sleep_before_send:0.2"})
    _notify_all(members)

    wait_for(lambda: len(smtp.received) >= 3, 90, "the first messages", worker)
    smtp.stop()
    wait_for(lambda: _count("pending") >= 1 and db.session.scalar(
        select(func.count()).select_from(EmailDelivery).where(EmailDelivery.attempts >= 1,
                                                              EmailDelivery.state == "pending")) >= 1,
             60, "a delivery to meet the closed port", worker)
    time.sleep(1.0)
    smtp.start()
    wait_for(lambda: _count("sent") == len(members), 120, "every delivery sent", worker, sweep=True)
    _assert_exactly_once(smtp, members)
    db.session.rollback()
    assert db.session.scalar(select(func.max(EmailDelivery.attempts))) >= 2
    errors = [d.last_error for d in db.session.scalars(select(EmailDelivery))]
    assert all(e is None for e in errors)  # cleared once sent
