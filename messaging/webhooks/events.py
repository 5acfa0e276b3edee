"""The event catalogue and ``publish``, the one function other domains call.

``publish(type, data)`` runs inside the caller's transaction and only flushes: it writes the
event (the outbox row) and one pending delivery per subscribed endpoint, and arranges for the
dispatcher job to run once that transaction commits.  A rolled-back change therefore never
reaches a receiver, and a committed one always has its event (if Redis is down at commit the
sweeper finds the pending deliveries in the database).

Events nobody subscribes to are not stored at all.  Which endpoints want which types is cached
per app for ``WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS`` (the hot paths, e.g. every points award,
would otherwise pay a query each); changes made through this process invalidate it at once,
changes made elsewhere are seen within that many seconds.  A stale entry is harmless: an
endpoint is never deleted outright, and the delivery job checks it is still enabled.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from flask import current_app
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from community.models import utcnow
from extensions import db

from .models import WebhookDelivery, WebhookEndpoint, WebhookEvent

# type -> what it means (the API lists these; docs/webhooks.md shows a payload for each).
EVENT_TYPES: dict[str, str] = {
    "member.registered": "A member account was created.",
    "points.changed": "A member's points moved (award, spend hold, settlement, release, refund, adjustment, expiry).",
    "tier.changed": "A member's loyalty tier changed (promotion, demotion or an admin's pin).",
    "redemption.state_changed": "A redemption moved to a new state.",
    "survey.response_completed": "A member completed a survey.",
    "focus_group.signup_changed": "A focus-group sign-up was made, confirmed, cancelled or marked.",
    "referral.converted": "A referred member made their first purchase.",
    "post.moderated": "A forum post was hidden, restored or deleted by a moderator or by flags.",
}

_cache_lock = threading.Lock()
# In-process subscribers (other domains reacting to the same events, e.g. journeys):
# type -> [(wants(type) -> bool, receive(type, items))], called inside the publishing transaction.
_local: dict[str, list[tuple]] = {}


def subscribe_local(event_type: str, receive, wants=None) -> None:
    """Have ``receive(event_type, items)`` called, in the caller's transaction, for every publish of
    ``event_type`` (when ``wants(event_type)`` is true: a cheap check that spares hot paths)."""
    entry = (wants or (lambda _t: True), receive)
    if entry not in _local.setdefault(event_type, []):
        _local[event_type].append(entry)


def _local_wanted(event_type: str) -> list:
    return [receive for wants, receive in _local.get(event_type, ()) if wants(event_type)]


def new_event_id() -> str:
    """``evt_`` + 26 random URL-safe characters: unique, opaque, stable for the event's life."""
    return "evt_" + secrets.token_urlsafe(20)[:26]


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + ("" if value.tzinfo else "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _plain(data: dict) -> dict:
    return json.loads(json.dumps(data, default=_json_default))


def invalidate_subscriptions(app=None) -> None:
    (app or current_app).extensions.pop("webhook_subscriptions", None)


def subscribers(event_type: str) -> list[int]:
    """Ids of the enabled endpoints subscribed to ``event_type`` (cached, see the module doc)."""
    app = current_app
    ttl = float(app.config.get("WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS", 2))
    cached = app.extensions.get("webhook_subscriptions")
    now = time.monotonic()
    if cached is None or cached[0] <= now:
        rows = db.session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
                WebhookEndpoint.enabled.is_(True), WebhookEndpoint.deleted_at.is_(None)
            )
        ).all()
        by_type: dict[str, list[int]] = {}
        for endpoint_id, types in rows:
            for t in types or ():
                by_type.setdefault(t, []).append(endpoint_id)
        cached = (now + ttl, by_type)
        if ttl > 0:
            with _cache_lock:
                app.extensions["webhook_subscriptions"] = cached
    return cached[1].get(event_type, [])


def wanted(event_type: str) -> bool:
    """Whether any endpoint listens for ``event_type`` (for callers that would otherwise read
    extra data just to publish it)."""
    return bool(subscribers(event_type)) or bool(_local_wanted(event_type))


def publish(event_type: str, data: dict, *, endpoint_ids: Iterable[int] | None = None) -> str | None:
    """Record ``event_type`` with ``data`` for its subscribers; returns the event id (None: nobody listens).

    Call it inside the transaction that makes the change.  ``endpoint_ids`` overrides the
    subscribers (a test ping to one endpoint).
    """
    ids = publish_many(event_type, [data], endpoint_ids=endpoint_ids)
    return ids[0] if ids else None


def publish_many(event_type: str, items: Iterable[dict], *, endpoint_ids: Iterable[int] | None = None
                 ) -> list[str]:
    """``publish`` for many events of one type (set-based callers such as the tier run).

    Returns the new event ids, in order; empty when nobody listens (``items`` is then not even
    iterated, so a caller may pass a generator at no cost).
    """
    if event_type not in EVENT_TYPES and endpoint_ids is None:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    targets = list(endpoint_ids) if endpoint_ids is not None else subscribers(event_type)
    local = _local_wanted(event_type) if endpoint_ids is None else []
    if not targets and not local:
        return []
    items = list(items)
    if not items:
        return []
    for receive in local:
        receive(event_type, items)
    if not targets:
        return []
    now = utcnow()
    ids = [new_event_id() for _ in items]
    session = db.session
    rows = session.execute(
        insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True),
        [{"event_id": ev, "type": event_type, "data": _plain(d), "created_at": now} for ev, d in zip(ids, items,
                                                                                                    strict=True)],
    ).all()
    session.execute(
        insert(WebhookDelivery),
        [
            {"event_pk": row.id, "endpoint_id": endpoint_id, "status": "pending", "attempts": 0,
             "next_attempt_at": now, "last_error": "", "created_at": now}
            for row in rows
            for endpoint_id in targets
        ],
    )
    _wake_dispatcher(session)
    return ids


def _wake_dispatcher(session) -> None:
    """After the commit, make sure one ``dispatch`` job is pending (not one job per delivery:
    a tier run may publish thousands of events in one transaction).  While a dispatch waits
    in the queue, further commits only try its unique key (one Redis round trip)."""
    if session.info.get("webhooks_dispatch_pending"):
        return
    from jobs import enqueue_after_commit

    from . import jobs

    session.info["webhooks_dispatch_pending"] = True
    enqueue_after_commit(jobs.dispatch, unique_key=jobs.DISPATCH_KEY)


@event.listens_for(Session, "after_commit")
def _reset_dispatch_flag(session) -> None:
    if not session.in_nested_transaction():
        session.info.pop("webhooks_dispatch_pending", None)


@event.listens_for(Session, "after_soft_rollback")
def _reset_dispatch_flag_on_rollback(session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: its jobs are dropped too
        session.info.pop("webhooks_dispatch_pending", None)
