"""Webhook business logic: endpoints, secrets, the delivery state machine, auto-disable.

Endpoint functions only flush; the request handler commits.  ``attempt`` (the delivery job's
body) is the one exception to "one transaction per job": it must never hold a database
transaction (on SQLite, the write lock) while it waits for a remote server, so it

1. claims the delivery in a short transaction: a guarded UPDATE takes a lease
   (``locked_until``) only if the delivery is still pending and due, and reads what it sends;
2. sends the HTTP request with no transaction open;
3. records the attempt and the delivery's new state in a second short transaction.

A worker killed between 1 and 3 leaves a lease that expires; the sweeper then retries, so a
receiver may (rarely) get the same ``webhook-id`` twice: delivery is at-least-once, and the
stable id is what receivers de-duplicate on.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update
from standardwebhooks import Webhook

from community.models import User, UserRole, utcnow
from community.services import audit, notify
from errors import Conflict, NotFound, ValidationError
from extensions import db

from . import delivery as transport
from .events import EVENT_TYPES, invalidate_subscriptions, publish
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

# Seconds to wait after each failed scheduled attempt (the Standard Webhooks / Svix schedule):
# 8 attempts over about 27 hours, then the delivery is failed.
RETRY_SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
MAX_EVENT_TYPES = len(EVENT_TYPES)


def _config(name: str, default):
    return current_app.config.get(name, default)


def allow_private() -> bool:
    return bool(_config("WEBHOOKS_ALLOW_PRIVATE", False))


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (the Standard Webhooks secret format)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# --------------------------------------------------------------------------- endpoints


def _check_event_types(types) -> list[str]:
    if not isinstance(types, list) or not types:
        raise ValidationError("Choose at least one event type.", fields={"event_types": ["At least one."]})
    unknown = sorted({t for t in types if t not in EVENT_TYPES}, key=str)
    if unknown:
        raise ValidationError(
            "Unknown event types.",
            fields={"event_types": [f"Unknown: {', '.join(map(str, unknown))}. Known: {', '.join(EVENT_TYPES)}."]},
        )
    return sorted(set(types))


def _check_url(url: str) -> str:
    try:
        return transport.check_url(url, allow_private=allow_private())
    except transport.UrlRejected as exc:
        raise ValidationError("This URL cannot receive webhooks.", fields={"url": [str(exc)]}) from None


def create_endpoint(actor: User, data: dict) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown this once)."""
    url = _check_url(data.get("url"))
    types = _check_event_types(data.get("event_types"))
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=url, event_types=types, description=(data.get("description") or "").strip(),
        enabled=bool(data.get("enabled", True)), secret=secret, created_by_id=actor.id,
    )
    db.session.add(endpoint)
    db.session.flush()
    audit(actor.id, "webhooks.endpoint.create", "webhook_endpoint", endpoint.id, details={"url": url, "types": types})
    invalidate_subscriptions()
    return endpoint, secret


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.deleted_at is not None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def endpoints_query():
    return select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None)).order_by(WebhookEndpoint.id)


def update_endpoint(actor: User, endpoint_id: int, changes: dict) -> WebhookEndpoint:
    """Change URL, event types, description or ``enabled``; enabling clears the failure streak."""
    endpoint = get_endpoint(endpoint_id)
    # Validate everything before changing anything: a bad field leaves the endpoint as it was.
    url = _check_url(changes["url"]) if "url" in changes else None
    types = _check_event_types(changes["event_types"]) if "event_types" in changes else None
    if url is not None:
        endpoint.url = url
    if types is not None:
        endpoint.event_types = types
    if "description" in changes:
        endpoint.description = (changes["description"] or "").strip()
    if "enabled" in changes:
        enabled = bool(changes["enabled"])
        if enabled and not endpoint.enabled:
            endpoint.failure_count, endpoint.failing_since = 0, None
            endpoint.disabled_at, endpoint.disabled_reason = None, ""
        elif not enabled and endpoint.enabled:
            endpoint.disabled_at, endpoint.disabled_reason = utcnow(), "Disabled by an admin."
        endpoint.enabled = enabled
    db.session.flush()
    audit(actor.id, "webhooks.endpoint.update", "webhook_endpoint", endpoint.id,
          details={k: changes[k] for k in sorted(changes)})
    invalidate_subscriptions()
    return endpoint


def delete_endpoint(actor: User, endpoint_id: int) -> None:
    """Stop all deliveries to the endpoint; its log stays readable to the audit trail."""
    endpoint = get_endpoint(endpoint_id)
    now = utcnow()
    endpoint.deleted_at, endpoint.enabled = now, False
    _fail_pending(endpoint.id, "The endpoint was deleted.", now)
    audit(actor.id, "webhooks.endpoint.delete", "webhook_endpoint", endpoint.id, details={"url": endpoint.url})
    db.session.flush()
    invalidate_subscriptions()


def rotate_secret(actor: User, endpoint_id: int) -> tuple[WebhookEndpoint, str]:
    """A new secret (shown once); the old one still signs for ``WEBHOOKS_SECRET_GRACE_HOURS``."""
    endpoint = get_endpoint(endpoint_id)
    grace = int(_config("WEBHOOKS_SECRET_GRACE_HOURS", 24))
    secret = new_secret()
    if grace > 0:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = utcnow() + timedelta(hours=grace)
    else:
        endpoint.previous_secret = endpoint.previous_secret_expires_at = None
    endpoint.secret = secret
    db.session.flush()
    audit(actor.id, "webhooks.endpoint.rotate_secret", "webhook_endpoint", endpoint.id, details={"grace_hours": grace})
    return endpoint, secret


def ping(actor: User, endpoint_id: int) -> str:
    """Send a ``webhook.ping`` event to this endpoint only (to test a receiver)."""
    endpoint = get_endpoint(endpoint_id)
    if not endpoint.enabled:
        raise Conflict("This endpoint is disabled; enable it first.", code="endpoint_disabled")
    event_id = publish("webhook.ping", {"endpoint_id": endpoint.id, "requested_by": actor.id},
                       endpoint_ids=[endpoint.id])
    audit(actor.id, "webhooks.endpoint.ping", "webhook_endpoint", endpoint.id, details={"event_id": event_id})
    return event_id


# --------------------------------------------------------------------------- deliveries (staff views)


def deliveries_query(endpoint_id: int, status: str | None = None, event_type: str | None = None):
    get_endpoint(endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if event_type:
        query = query.join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_pk).where(
            WebhookEvent.type == event_type
        )
    return query.order_by(WebhookDelivery.id.desc())


def get_delivery(delivery_id: int) -> WebhookDelivery:
    found = db.session.get(WebhookDelivery, delivery_id)
    if found is None:
        raise NotFound("No such delivery.")
    return found


def attempts_of(delivery_id: int) -> list[WebhookAttempt]:
    return list(
        db.session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(WebhookAttempt.id)
        )
    )


def redeliver(actor: User, delivery_id: int) -> WebhookDelivery:
    """Send this delivery once more, now, with the same ``webhook-id`` (enqueued after commit).

    Works for failed, succeeded and still-retrying deliveries; the endpoint must be enabled.
    """
    from jobs import enqueue_after_commit

    from . import jobs

    found = get_delivery(delivery_id)
    endpoint = db.session.get(WebhookEndpoint, found.endpoint_id)
    if endpoint.deleted_at is not None or not endpoint.enabled:
        raise Conflict("The endpoint is disabled or deleted; enable it first.", code="endpoint_disabled")
    audit(actor.id, "webhooks.delivery.redeliver", "webhook_delivery", found.id,
          details={"event_id": found.event.event_id, "status": found.status})
    enqueue_after_commit(jobs.deliver, found.id, manual=True, unique_key=f"webhooks:redeliver:{found.id}")
    return found


# --------------------------------------------------------------------------- the delivery job


def _headers(event_id: str, body: str, secrets_: list[str], when: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per valid secret (space-separated)."""
    signatures = " ".join(Webhook(s).sign(event_id, when, body) for s in secrets_)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signatures,
    }


def body_of(event: WebhookEvent) -> str:
    """The payload: identical bytes on every attempt (only the signature headers change)."""
    return json.dumps(
        {"type": event.type, "timestamp": event.created_at.isoformat(timespec="seconds") + "Z", "data": event.data},
        separators=(",", ":"), sort_keys=True, ensure_ascii=False,
    )


def _lease_seconds() -> int:
    return int(_config("WEBHOOKS_TIMEOUT_SECONDS", 10)) + 60


def _claim(delivery_id: int, manual: bool, now: datetime) -> dict | None:
    """Take the lease for one attempt; what to send, or None when there is nothing to do."""
    lease = now + timedelta(seconds=_lease_seconds())
    conditions = [WebhookDelivery.id == delivery_id,
                  or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now)]
    if not manual:
        conditions += [WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now]
    claimed = db.session.execute(
        update(WebhookDelivery).where(*conditions).values(locked_until=lease).execution_options(
            synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        return None
    found = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = db.session.get(WebhookEndpoint, found.endpoint_id)
    if endpoint.deleted_at is not None or not endpoint.enabled:
        if found.status == "pending":
            _finish(found, "failed", now, error="The endpoint is disabled." if endpoint.deleted_at is None
                    else "The endpoint was deleted.")
        found.locked_until = None
        db.session.commit()
        return None
    keys = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        keys.append(endpoint.previous_secret)
    work = {"url": endpoint.url, "event_id": found.event.event_id, "body": body_of(found.event), "secrets": keys}
    db.session.commit()
    return work


def _finish(found: WebhookDelivery, status: str, now: datetime, *, error: str = "") -> None:
    found.status, found.completed_at, found.next_attempt_at = status, now, None
    if error:
        found.last_error = error


def attempt(delivery_id: int, *, manual: bool = False) -> str | None:
    """One attempt of one delivery (the job's body); returns its outcome, None when skipped."""
    now = utcnow()
    work = _claim(delivery_id, manual, now)
    if work is None:
        return None
    sent_at = datetime.now(UTC)
    headers = _headers(work["event_id"], work["body"], work["secrets"], sent_at)
    result = transport.send(
        work["url"], work["body"].encode("utf-8"), headers,
        timeout=float(_config("WEBHOOKS_TIMEOUT_SECONDS", 10)), allow_private=allow_private(),
    )
    _record(delivery_id, result, manual)
    return result.outcome


def _record(delivery_id: int, result: transport.Result, manual: bool) -> None:
    now = utcnow()
    found = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = db.session.get(WebhookEndpoint, found.endpoint_id, populate_existing=True)
    db.session.add(WebhookAttempt(
        delivery_id=found.id, attempted_at=now, manual=manual, outcome=result.outcome,
        status_code=result.status_code, latency_ms=result.latency_ms,
        response_excerpt=result.excerpt[: transport.EXCERPT_BYTES], error=result.error,
    ))
    found.locked_until = None
    found.last_attempt_at, found.last_status_code = now, result.status_code
    found.last_error = result.error
    if not manual:
        found.attempts += 1
    if result.ok:
        if found.status != "succeeded":
            _finish(found, "succeeded", now)
        # Atomic: concurrent attempts of other deliveries update the same streak.
        db.session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id)
            .values(failure_count=0, failing_since=None).execution_options(synchronize_session=False)
        )
    else:
        if not manual and found.status == "pending":
            if found.attempts >= MAX_ATTEMPTS:
                _finish(found, "failed", now)
            else:
                found.next_attempt_at = now + timedelta(seconds=RETRY_SCHEDULE[found.attempts - 1])
        db.session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id)
            .values(failure_count=WebhookEndpoint.failure_count + 1,
                    failing_since=db.func.coalesce(WebhookEndpoint.failing_since, now))
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(endpoint)
        _maybe_disable(endpoint, now)
    next_at = found.next_attempt_at if found.status == "pending" else None
    db.session.commit()
    if next_at is not None:
        schedule_retry(delivery_id, next_at)


def schedule_retry(delivery_id: int, when: datetime) -> None:
    """Ask RQ's scheduler to run the delivery at ``when``; the sweeper covers a lost schedule."""
    from jobs import get_queue

    from . import jobs

    spec = jobs.deliver.spec
    try:
        get_queue(spec.queue).enqueue_at(when.replace(tzinfo=UTC), jobs.deliver, delivery_id,
                                         job_timeout=spec.timeout)
    except Exception:  # Redis down: the sweeper finds the due delivery in the database
        current_app.logger.warning("could not schedule webhook delivery %s", delivery_id, exc_info=True)


def _maybe_disable(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Disable after ``WEBHOOKS_DISABLE_AFTER_FAILURES`` failed attempts in a row spanning at
    least ``WEBHOOKS_DISABLE_AFTER_HOURS``; admins are notified and the audit log says why."""
    threshold = int(_config("WEBHOOKS_DISABLE_AFTER_FAILURES", MAX_ATTEMPTS))
    hours = float(_config("WEBHOOKS_DISABLE_AFTER_HOURS", 24))
    if not endpoint.enabled or endpoint.failure_count < threshold or endpoint.failing_since is None:
        return
    if now - endpoint.failing_since < timedelta(hours=hours):
        return
    reason = (f"Disabled automatically after {endpoint.failure_count} failed attempts in a row "
              f"since {endpoint.failing_since.isoformat(timespec='seconds')}Z.")
    disabled = db.session.execute(
        update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_at=now, disabled_reason=reason).execution_options(synchronize_session=False)
    ).rowcount
    if disabled != 1:
        return  # another worker disabled it first: one notice is enough
    _fail_pending(endpoint.id, "The endpoint was disabled after repeated failures.", now)
    audit(None, "webhooks.endpoint.auto_disable", "webhook_endpoint", endpoint.id, reason=reason,
          details={"url": endpoint.url, "failure_count": endpoint.failure_count})
    admins = db.session.scalars(select(UserRole.user_id).where(UserRole.role == "admin")).all()
    for admin_id in admins:
        notify(admin_id, "webhooks.endpoint_disabled",
               {"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason},
               dedupe_key=f"webhooks.endpoint_disabled:{endpoint.id}:{now.isoformat()}:{admin_id}")
    invalidate_subscriptions()


def _fail_pending(endpoint_id: int, error: str, now: datetime) -> None:
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
        .values(status="failed", completed_at=now, next_attempt_at=None, last_error=error)
        .execution_options(synchronize_session=False)
    )


DISPATCH_BUDGET_SECONDS = 60


def dispatch_due(*, budget_seconds: float = DISPATCH_BUDGET_SECONDS) -> tuple[int, bool]:
    """Attempt due deliveries, ``WEBHOOKS_CONCURRENCY`` in parallel (threads, each with its own
    app context and session), for about ``budget_seconds``; returns (attempted, more_left).

    A slow endpoint holds one thread for at most ``WEBHOOKS_TIMEOUT_SECONDS``; batches are
    small, so the budget is overrun by a few timeouts at most.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    workers = max(1, int(_config("WEBHOOKS_CONCURRENCY", 8)))
    deadline = time.monotonic() + budget_seconds
    attempted = 0

    def run(delivery_id: int) -> str | None:
        with app.app_context():
            try:
                return attempt(delivery_id)
            except Exception:  # one broken delivery must not stop the others
                current_app.logger.exception("webhook delivery %s failed unexpectedly", delivery_id)
                db.session.rollback()
                return None
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhooks") as pool:
        while True:
            ids = due_delivery_ids(grace_seconds=0, limit=workers * 2)
            db.session.rollback()
            if not ids:
                return attempted, False
            outcomes = list(pool.map(run, ids))
            progress = sum(1 for outcome in outcomes if outcome is not None)
            attempted += progress
            if not progress:
                return attempted, False  # all taken by other workers meanwhile (or broken): nothing to wait for
            if time.monotonic() >= deadline:
                return attempted, True


# --------------------------------------------------------------------------- sweeping and pruning


def due_delivery_ids(now: datetime | None = None, *, grace_seconds: int = 30, limit: int = 1000) -> list[int]:
    """Pending deliveries due for a while and not leased: their job was lost (Redis down at
    commit, a schedule dropped, a worker killed mid-attempt)."""
    now = now or utcnow()
    return list(db.session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now - timedelta(
            seconds=grace_seconds), or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ))


def prune(now: datetime | None = None) -> int:
    """Delete events older than ``WEBHOOKS_RETENTION_DAYS`` that no delivery still waits on."""
    now = now or utcnow()
    cutoff = now - timedelta(days=int(_config("WEBHOOKS_RETENTION_DAYS", 30)))
    waiting = select(WebhookDelivery.event_pk).where(WebhookDelivery.status == "pending")
    old = db.session.scalars(
        select(WebhookEvent.id).where(WebhookEvent.created_at < cutoff, WebhookEvent.id.not_in(waiting)).limit(5000)
    ).all()
    if not old:
        return 0
    # Children first: SQLite only cascades with foreign keys on, and this keeps both alike.
    delivery_ids = select(WebhookDelivery.id).where(WebhookDelivery.event_pk.in_(old))
    db.session.execute(db.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)))
    db.session.execute(db.delete(WebhookDelivery).where(WebhookDelivery.event_pk.in_(old)))
    db.session.execute(db.delete(WebhookEvent).where(WebhookEvent.id.in_(old)))
    return len(old)
