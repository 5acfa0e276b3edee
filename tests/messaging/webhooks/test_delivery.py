"""Signed delivery to a real receiver: signatures, stable ids, retries, auto-disable, redelivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, update
from standardwebhooks import Webhook, WebhookVerificationError

from community.models import AuditLog, Notification, utcnow
from extensions import db, get_redis
from jobs import get_queue
from messaging.webhooks import services
from messaging.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from points import ledger

_keys = iter(range(1, 10**6))


def award(member_id: int, amount: int = 10) -> None:
    ledger.award(member_id, amount, key=f"test:award:{next(_keys)}", reason="test")
    db.session.commit()


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def attempts(delivery_id: int) -> list[WebhookAttempt]:
    return services.attempts_of(delivery_id)


def make_due() -> None:
    """Pretend the retry delay has passed: every pending delivery is due now."""
    db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.status == "pending")
        .values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def fire_scheduled(app) -> int:
    """Move the retries RQ's scheduler holds onto the queue now (as its clock would later)."""
    queue = get_queue("webhooks", app)
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_job_ids()
    for job_id in ids:
        job = queue.fetch_job(job_id)
        registry.remove(job)
        queue.enqueue_job(job)
    return len(ids)


def test_a_committed_change_is_delivered_signed_and_verifiable(make_member, register, receiver, deliver_all):
    endpoint, secret = register(receiver.url, ["points.changed"])
    assert secret.startswith("whsec_")
    member = make_member()
    award(member.id, 25)
    deliver_all()

    assert len(receiver.received) == 1
    got = receiver.received[0]
    assert got.path == "/hooks/kinship"
    payload = Webhook(secret).verify(got.body, got.headers)  # raises unless the signature is good
    assert payload["type"] == "points.changed"
    assert payload["data"]["member_id"] == member.id
    assert payload["data"]["available_change"] == 25 and payload["data"]["kind"] == "award"
    assert got.headers["webhook-id"].startswith("evt_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert got.headers["content-type"] == "application/json"
    # Another secret does not verify it.
    with pytest.raises(WebhookVerificationError):
        Webhook(services.new_secret()).verify(got.body, got.headers)

    (row,) = deliveries()
    assert row.status == "succeeded" and row.attempts == 1 and row.last_status_code == 200
    (log,) = attempts(row.id)
    assert log.outcome == "success" and log.status_code == 200 and log.response_excerpt == '{"ok":true}'
    assert log.latency_ms >= 0


def test_nothing_is_recorded_or_sent_for_a_rolled_back_change(make_member, register, receiver, deliver_all):
    register(receiver.url, ["points.changed"])
    member = make_member()
    ledger.award(member.id, 10, key="rolled-back", reason="x")
    db.session.rollback()
    deliver_all()
    assert receiver.received == []
    assert db.session.scalar(select(db.func.count()).select_from(WebhookEvent)) == 0


def test_unsubscribed_events_are_not_stored(make_member, register, receiver, deliver_all):
    register(receiver.url, ["tier.changed"])
    award(make_member().id)
    deliver_all()
    assert receiver.received == []
    assert db.session.scalar(select(db.func.count()).select_from(WebhookEvent)) == 0


def test_each_endpoint_gets_its_own_signature_and_the_same_event_id(make_member, register, receiver, deliver_all):
    _, first_secret = register(receiver.url + "?n=1", ["points.changed"])
    _, second_secret = register(receiver.url + "?n=2", ["points.changed"])
    award(make_member().id)
    deliver_all()
    by_path = {r.path: r for r in receiver.received}
    one, two = by_path["/hooks/kinship?n=1"], by_path["/hooks/kinship?n=2"]
    Webhook(first_secret).verify(one.body, one.headers)
    Webhook(second_secret).verify(two.body, two.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(first_secret).verify(two.body, two.headers)
    assert one.headers["webhook-id"] == two.headers["webhook-id"]


def test_retries_follow_the_schedule_with_the_same_id_and_body(app, make_member, register, receiver, deliver_all):
    receiver.script = [500, 503, 200]
    _, secret = register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    (row,) = deliveries()
    assert row.status == "pending" and row.attempts == 1 and row.last_status_code == 500
    # The next attempt waits the first step of the schedule, and RQ's scheduler holds it.
    delay = (row.next_attempt_at - row.last_attempt_at).total_seconds()
    assert delay == pytest.approx(services.RETRY_SCHEDULE[0], abs=1)
    registry = ScheduledJobRegistry(queue=get_queue("webhooks", app))
    (job_id,) = registry.get_job_ids()
    scheduled = registry.get_scheduled_time(job_id)
    assert abs((scheduled - row.next_attempt_at.replace(tzinfo=UTC)).total_seconds()) < 2

    # Fired early (a clock ahead, a duplicate job): nothing is due yet, nothing is sent.
    fire_scheduled(app)
    deliver_all()
    assert len(receiver.received) == 1

    make_due()
    services.schedule_retry(row.id, utcnow())  # the early job is spent: the sweeper would bring it back
    fire_scheduled(app)
    deliver_all()
    (row,) = deliveries()
    assert row.attempts == 2 and row.status == "pending"
    delay = (row.next_attempt_at - row.last_attempt_at).total_seconds()
    assert delay == pytest.approx(services.RETRY_SCHEDULE[1], abs=1)

    make_due()
    fire_scheduled(app)
    deliver_all()
    (row,) = deliveries()
    assert row.status == "succeeded" and row.attempts == 3
    assert [a.status_code for a in attempts(row.id)] == [500, 503, 200]
    ids = {r.headers["webhook-id"] for r in receiver.received}
    bodies = {r.body for r in receiver.received}
    assert len(ids) == 1 and len(bodies) == 1  # receivers can de-duplicate on webhook-id
    for got in receiver.received:
        Webhook(secret).verify(got.body, got.headers)


def test_the_schedule_spans_about_a_day_then_the_delivery_fails(app, make_member, register, receiver, deliver_all):
    assert 20 * 3600 <= sum(services.RETRY_SCHEDULE) <= 30 * 3600
    app.config["WEBHOOKS_DISABLE_AFTER_FAILURES"] = 1000  # this test is about one delivery
    receiver.script = [500]
    register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    for _ in range(services.MAX_ATTEMPTS - 1):
        make_due()
        fire_scheduled(app)
        deliver_all()
    (row,) = deliveries()
    assert row.status == "failed" and row.attempts == services.MAX_ATTEMPTS and row.next_attempt_at is None
    assert len(receiver.received) == services.MAX_ATTEMPTS
    assert fire_scheduled(app) == 0  # nothing further is scheduled


def test_a_timeout_is_logged_and_retried(app, make_member, register, receiver, deliver_all):
    app.config["WEBHOOKS_TIMEOUT_SECONDS"] = 1
    receiver.delay = 2.5
    register(receiver.url, ["points.changed"])
    award(make_member().id)
    started = time.monotonic()
    deliver_all()
    assert time.monotonic() - started < 2.4
    (row,) = deliveries()
    (log,) = attempts(row.id)
    assert log.outcome == "timeout" and log.status_code is None and "1 s" in log.error
    assert row.status == "pending" and row.next_attempt_at is not None


def test_redirects_are_not_followed(make_member, register, receiver, deliver_all):
    receiver.script = [302]
    receiver.extra_headers = {"Location": "http://169.254.169.254/latest/meta-data"}
    register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    assert len(receiver.received) == 1
    (row,) = deliveries()
    (log,) = attempts(row.id)
    assert log.outcome == "redirect" and log.status_code == 302 and "not followed" in log.error
    assert row.status == "pending"


def test_an_unreachable_endpoint_is_a_logged_connection_error(make_member, register, deliver_all):
    from tests.conftest import unused_port

    register(f"http://127.0.0.1:{unused_port()}/nobody", ["points.changed"])
    award(make_member().id)
    deliver_all()
    (row,) = deliveries()
    (log,) = attempts(row.id)
    assert log.outcome == "connection_error" and row.status == "pending"


def test_repeated_failures_disable_the_endpoint_and_tell_the_admins(app, make_member, admin, register, receiver,
                                                                    deliver_all):
    app.config["WEBHOOKS_DISABLE_AFTER_FAILURES"] = 3
    receiver.script = [500]
    endpoint, _ = register(receiver.url, ["points.changed"])
    member = make_member()
    award(member.id)
    award(member.id)
    deliver_all()  # two failures, streak started
    db.session.execute(update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(hours=25)))
    db.session.commit()
    make_due()
    fire_scheduled(app)
    deliver_all()
    row = db.session.get(WebhookEndpoint, endpoint["id"], populate_existing=True)
    assert row.enabled is False and row.disabled_at is not None
    assert "failed attempts in a row" in row.disabled_reason
    # Every delivery still waiting is failed, nothing more is sent, and new events skip it.
    assert {d.status for d in deliveries()} == {"failed"}
    sent = len(receiver.received)
    award(member.id)
    make_due()
    fire_scheduled(app)
    deliver_all()
    assert len(receiver.received) == sent
    audit = db.session.scalars(select(AuditLog).where(AuditLog.action == "webhooks.endpoint.auto_disable")).all()
    assert len(audit) == 1 and audit[0].target_id == endpoint["id"]
    notes = db.session.scalars(select(Notification).where(Notification.kind == "webhooks.endpoint_disabled")).all()
    assert [n.member_id for n in notes] == [admin.id]
    assert notes[0].payload["endpoint_id"] == endpoint["id"]


def test_a_short_failure_streak_does_not_disable(app, make_member, register, receiver, deliver_all):
    app.config["WEBHOOKS_DISABLE_AFTER_FAILURES"] = 2
    receiver.script = [500, 500, 500, 200]
    endpoint, _ = register(receiver.url, ["points.changed"])
    member = make_member()
    for _ in range(3):
        award(member.id)
    deliver_all()  # three failures within seconds: not a day of failing
    row = db.session.get(WebhookEndpoint, endpoint["id"], populate_existing=True)
    assert row.enabled is True and row.failure_count == 3
    award(member.id)
    deliver_all()  # a success ends the streak
    row = db.session.get(WebhookEndpoint, endpoint["id"], populate_existing=True)
    assert row.failure_count == 0 and row.failing_since is None


def test_redelivery_by_hand_resends_the_same_event(make_member, register, receiver, deliver_all, admin_client):
    _, secret = register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    (row,) = deliveries()
    resp = admin_client.post(f"/api/v1/admin/webhooks/deliveries/{row.id}/redeliver")
    assert resp.status_code == 202, resp.get_json()
    deliver_all()
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    Webhook(secret).verify(second.body, second.headers)
    logs = attempts(row.id)
    assert [a.manual for a in logs] == [False, True]
    detail = admin_client.get(f"/api/v1/admin/webhooks/deliveries/{row.id}").get_json()
    assert [a["manual"] for a in detail["attempt_log"]] == [False, True]
    assert detail["payload"]["member_id"] and detail["event_type"] == "points.changed"
    assert detail["attempts"] == 1  # attempts by hand do not use up the schedule


def test_redelivery_of_a_failed_delivery_succeeds(app, make_member, register, receiver, deliver_all, admin_client):
    app.config["WEBHOOKS_DISABLE_AFTER_FAILURES"] = 1000
    receiver.script = [500] * services.MAX_ATTEMPTS + [200]
    register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    for _ in range(services.MAX_ATTEMPTS - 1):
        make_due()
        fire_scheduled(app)
        deliver_all()
    (row,) = deliveries()
    assert row.status == "failed"
    assert admin_client.post(f"/api/v1/admin/webhooks/deliveries/{row.id}/redeliver").status_code == 202
    deliver_all()
    (row,) = deliveries()
    assert row.status == "succeeded" and row.last_status_code == 200


def test_redelivery_to_a_disabled_endpoint_is_refused(make_member, register, receiver, deliver_all, admin_client):
    endpoint, _ = register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    (row,) = deliveries()
    admin_client.patch(f"/api/v1/admin/webhooks/endpoints/{endpoint['id']}", json={"enabled": False})
    resp = admin_client.post(f"/api/v1/admin/webhooks/deliveries/{row.id}/redeliver")
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "endpoint_disabled"
    deliver_all()
    assert len(receiver.received) == 1


def test_secret_rotation_signs_with_both_secrets_during_the_grace_period(app, make_member, register, receiver,
                                                                         deliver_all, admin_client):
    endpoint, old = register(receiver.url, ["points.changed"])
    resp = admin_client.post(f"/api/v1/admin/webhooks/endpoints/{endpoint['id']}/rotate-secret")
    assert resp.status_code == 200
    new = resp.get_json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert resp.get_json()["endpoint"]["previous_secret_expires_at"] is not None
    member = make_member()
    award(member.id)
    deliver_all()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(got.body, got.headers)
    Webhook(old).verify(got.body, got.headers)
    # After the grace period only the new secret signs.
    db.session.execute(update(WebhookEndpoint).values(previous_secret_expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    award(member.id)
    deliver_all()
    got = receiver.received[-1]
    Webhook(new).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(got.body, got.headers)
    # The secret is never shown again.
    shown = admin_client.get(f"/api/v1/admin/webhooks/endpoints/{endpoint['id']}").get_json()
    assert new not in str(shown) and shown["secret_prefix"] == new[:10]


def test_a_lost_job_is_found_by_the_sweeper(app, make_member, register, receiver, deliver_all, run_jobs):
    from messaging.webhooks import jobs

    register(receiver.url, ["points.changed"])
    member = make_member()
    award(member.id)
    award(member.id)
    get_redis(app).flushdb()  # the dispatcher's job was lost (Redis restarted without persistence)
    deliver_all()
    assert receiver.received == []
    assert services.due_delivery_ids() == []  # not yet: a fresh delivery's job may just be late
    db.session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    assert jobs.sweep_due_deliveries() == 2
    assert jobs.sweep_due_deliveries() == 2
    assert get_queue("webhooks", app).count == 1  # one dispatcher for both, not doubled
    deliver_all()
    assert len(receiver.received) == 2
    assert jobs.sweep_due_deliveries() == 0


def test_one_dispatcher_job_per_transaction_however_many_events(app, make_member, register, receiver, deliver_all):
    register(receiver.url, ["points.changed"])
    register(receiver.url + "?second", ["points.changed"])
    member = make_member()
    for i in range(30):
        ledger.award(member.id, 1, key=f"many:{i}", reason="x")
    db.session.commit()
    award(member.id)  # a second transaction while the first dispatcher still waits
    assert get_queue("webhooks", app).count == 1
    deliver_all()
    assert len(receiver.received) == 62
    assert {d.status for d in deliveries()} == {"succeeded"}


def test_a_lease_keeps_two_workers_from_sending_the_same_attempt(app, make_member, register, receiver):
    from tests.conftest import in_threads

    register(receiver.url, ["points.changed"])
    award(make_member().id)
    (row,) = deliveries()
    delivery_id = row.id

    def attempt(_):
        with app.app_context():
            try:
                return services.attempt(delivery_id)
            finally:
                db.session.remove()

    outcomes = in_threads(4, attempt)
    assert sorted(map(str, outcomes)) == ["None", "None", "None", "success"], [repr(o)[:80] for o in outcomes]
    assert len(receiver.received) == 1


def test_ping_reaches_only_that_endpoint(register, receiver, deliver_all, admin_client):
    endpoint, secret = register(receiver.url + "?one", ["tier.changed"])
    register(receiver.url + "?other", ["tier.changed"])
    resp = admin_client.post(f"/api/v1/admin/webhooks/endpoints/{endpoint['id']}/ping")
    assert resp.status_code == 202
    deliver_all()
    (got,) = receiver.received
    assert got.path.endswith("?one")
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "webhook.ping" and got.headers["webhook-id"] == resp.get_json()["event_id"]


def test_old_delivered_events_are_pruned(app, make_member, register, receiver, deliver_all):
    register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    assert services.prune() == 0
    db.session.execute(update(WebhookEvent).values(created_at=datetime(2020, 1, 1)))
    db.session.commit()
    assert services.prune() == 1
    db.session.commit()
    assert deliveries() == []
    assert db.session.scalar(select(db.func.count()).select_from(WebhookAttempt)) == 0


def test_the_cache_of_subscriptions_sees_local_changes_at_once(app, make_member, register, receiver, deliver_all,
                                                               admin_client):
    app.config["WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS"] = 3600
    member = make_member()
    award(member.id)  # cached: nobody listens
    endpoint, _ = register(receiver.url, ["points.changed"])  # invalidates
    award(member.id)
    deliver_all()
    assert len(receiver.received) == 1
    admin_client.patch(f"/api/v1/admin/webhooks/endpoints/{endpoint['id']}", json={"event_types": ["tier.changed"]})
    award(member.id)
    deliver_all()
    assert len(receiver.received) == 1


def test_a_binary_or_huge_answer_is_cut_to_an_excerpt(make_member, register, receiver, deliver_all):
    receiver.script = [400]
    receiver.body = b"\x00\xff binary \x00" + b"x" * 100_000
    register(receiver.url, ["points.changed"])
    award(make_member().id)
    deliver_all()
    (row,) = deliveries()
    (log,) = attempts(row.id)
    assert log.outcome == "http_error" and log.status_code == 400 and "400" in log.error
    assert len(log.response_excerpt) <= 1024 and "\x00" not in log.response_excerpt
    assert log.response_excerpt.startswith("\ufffd\ufffd binary")
