"""Webhook endpoints, the event outbox, deliveries and the attempt log.

* ``WebhookEndpoint``: a URL an admin registered, the event types it wants, its signing secret
  (and the previous one during a rotation's grace period), its failure streak.  Never deleted
  outright (``deleted_at``): its delivery log stays readable and nothing can point at a
  missing row.
* ``WebhookEvent``: the outbox.  One row per domain event, written in the transaction of the
  change itself (``events.publish``), so an event exists exactly when its change committed.
  ``event_id`` is the public, stable id sent as ``webhook-id`` on every attempt.
* ``WebhookDelivery``: one event for one endpoint: its state, the scheduled attempt count and
  when the next attempt is due; ``locked_until`` is the lease a worker takes for an attempt.
* ``WebhookAttempt``: every HTTP attempt (scheduled or by hand) with outcome, status, latency
  and the start of the response body.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from community.models import utcnow
from extensions import db

DELIVERY_STATES = ("pending", "succeeded", "failed")


class WebhookEndpoint(db.Model):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Signing secrets (``whsec_`` + base64).  They must be readable to sign, so they are stored
    # as they are; the API shows a secret only once, when it is created or rotated.
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Consecutive failed attempts since the last success, and when that streak began.
    failure_count: Mapped[int] = mapped_column(default=0)
    failing_since: Mapped[datetime | None] = mapped_column(nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def secret_prefix(self) -> str:
        return self.secret[:10]


class WebhookEvent(db.Model):
    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Scheduled attempts made so far (attempts by hand are logged but not counted here).
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    event: Mapped[WebhookEvent] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("event_pk", "endpoint_id"),
        CheckConstraint("status IN ('pending','succeeded','failed')", name="status"),
        # The sweeper's scan: due pending deliveries.
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )


class WebhookAttempt(db.Model):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    manual: Mapped[bool] = mapped_column(default=False)
    # success, http_error, redirect, timeout, connection_error, tls_error, blocked_address
    outcome: Mapped[str] = mapped_column(String(24))
    status_code: Mapped[int | None] = mapped_column(nullable=True)
    latency_ms: Mapped[int] = mapped_column(default=0)
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
