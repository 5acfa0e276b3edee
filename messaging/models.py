"""Messaging tables: member preferences, email deliveries, unsubscribes, account tokens.

* ``member_preferences``: one row per member who has one (locale, time zone, email state);
  a member without a row has the defaults (``settings.DEFAULT_LOCALE``, UTC, verified).
* ``notification_preferences``: only the member's overrides of the documented defaults
  (``catalog.DEFAULT_CHANNELS``), per category and channel.
* ``email_deliveries``: the delivery state of one email, usually for one ``notifications``
  row (unique), or an account email (verification, password reset) with no notification.
* ``unsubscribes``: every unsubscribe with its time and source (one-click header, footer page,
  preferences API).
* ``account_tokens``: single-use, expiring tokens for email verification, email change and
  password reset; only their SHA-256 is stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from community.models import utcnow
from extensions import db

DELIVERY_STATES = ("pending", "sending", "sent", "failed", "suppressed")
CHANNELS = ("email", "in_app")
TOKEN_PURPOSES = ("verify_email", "change_email", "reset_password")


def _in(values) -> str:
    return "IN (" + ",".join(f"'{v}'" for v in values) + ")"


class MemberPreferences(db.Model):
    __tablename__ = "member_preferences"

    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    locale: Mapped[str] = mapped_column(String(8), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # False only for accounts that signed up (or changed their email) and have not confirmed
    # the address yet; see docs/messaging.md for what such a member may do.
    email_verified: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (CheckConstraint("locale IN ('en','zh-CN')", name="locale"),)


class NotificationPreference(db.Model):
    __tablename__ = "notification_preferences"

    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    enabled: Mapped[bool] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (CheckConstraint(f"channel {_in(CHANNELS)}", name="channel"),)


class EmailDelivery(db.Model):
    __tablename__ = "email_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), unique=True, nullable=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    # Filled from the kind when the row is written or, for rows the sweeper created, at claim.
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Account emails carry their own data (the link); cleared once sent.
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    # Account emails go to a fixed address (an email change confirms the new one).
    to_address: Mapped[str | None] = mapped_column(String(254), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    message_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    # Why the last decision deferred or suppressed it (quiet_hours, frequency_cap, preference…).
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    locale: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        CheckConstraint(f"state {_in(DELIVERY_STATES)}", name="state"),
        Index("ix_email_deliveries_state_not_before", "state", "not_before"),
        Index("ix_email_deliveries_member_claimed", "member_id", "claimed_at"),
    )


class Unsubscribe(db.Model):
    __tablename__ = "unsubscribes"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="email")
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[int | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccountToken(db.Model):
    __tablename__ = "account_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (CheckConstraint(f"purpose {_in(TOKEN_PURPOSES)}", name="purpose"),)


__all__ = [
    "DELIVERY_STATES",
    "CHANNELS",
    "MemberPreferences",
    "NotificationPreference",
    "EmailDelivery",
    "Unsubscribe",
    "AccountToken",
]
