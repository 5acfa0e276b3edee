"""The points ledger (double entry), expiring lots, interactions, earning rules and referrals.

Ledger shape
------------
* ``JournalEntry`` is one business event (an award, a hold, a settlement, a reversal …).  It is
  append-only: never updated or deleted.  ``key`` is unique: replaying an event is harmless.
  ``related_id`` links a settlement/release/reversal to the entry it closes or reverses; it is
  unique, so a hold is closed at most once and an entry is reversed at most once, enforced by
  the database even under concurrency.
* ``JournalLine`` rows of one entry sum to zero.  Accounts are the member's ``available`` and
  ``held`` balances and the system accounts ``issued``, ``redeemed``, ``expired`` and
  ``adjusted``.  Every line carries the member it concerns, so per-member totals (and the
  system accounts per member) are plain SUMs.
* ``MemberBalance`` stores available / held / lifetime_earned for speed.  It changes only in
  the entry's transaction, by atomic SQL, and ``flask points verify`` rebuilds it from lines.
  ``lifetime_earned`` is minus the member's ``issued`` lines: points earned through the
  programme, less clawed-back awards (manual adjustments are not "earned").
* ``PointLot`` is an earned lot with an expiry date; ``remaining`` is what is still available
  of it (the member's available balance equals the sum of their lots' ``remaining``).
  ``LotConsumption`` records which lots a hold / debit drew from, so a release or refund puts
  points back into the very lots they came from.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from community.models import utcnow
from extensions import db

MEMBER_ACCOUNTS = ("available", "held")
SYSTEM_ACCOUNTS = ("issued", "redeemed", "expired", "adjusted")
ACCOUNTS = MEMBER_ACCOUNTS + SYSTEM_ACCOUNTS
ENTRY_KINDS = ("award", "hold", "settle", "release", "reversal", "expire", "adjust")


class JournalEntry(db.Model):
    __tablename__ = "journal_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The magnitude of the event (always > 0); the signed movements are in the lines.  A
    # reversal's lines may move less than its amount (see ``ledger.reverse``).
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    source_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    related_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "kind IN ('award','hold','settle','release','reversal','expire','adjust')", name="kind"
        ),
        # INCLUDE: the tier run sums a member's awards from this index alone (PostgreSQL).
        Index("ix_journal_entries_member_id_id", "member_id", "id",
              postgresql_include=["kind", "amount", "created_at"]),
        Index("ix_journal_entries_reversal", "related_id", postgresql_where=text("kind = 'reversal'"),
              sqlite_where=text("kind = 'reversal'")),
        Index("ix_journal_entries_source", "source_type", "source_id"),
        # The tier run finds the members whose ledger changed, or whose awards left the window.
        Index("ix_journal_entries_created_at", "created_at"),
    )

    def __repr__(self) -> str:
        return f"<JournalEntry {self.id} {self.kind} {self.amount} m{self.member_id} {self.key!r}>"


class JournalLine(db.Model):
    __tablename__ = "journal_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint(
            "account IN ('available','held','issued','redeemed','expired','adjusted')", name="account"
        ),
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_journal_lines_member_account", "member_id", "account"),
    )


class MemberBalance(db.Model):
    __tablename__ = "member_balances"

    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    # Points clawed back by a reversal that the member had already spent (see
    # ``ledger.reverse``): while owed, redemptions are refused; new points repay it first.
    owed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (
        CheckConstraint("available >= 0", name="available_nonnegative"),
        CheckConstraint("held >= 0", name="held_nonnegative"),
        CheckConstraint("lifetime_earned >= 0", name="lifetime_nonnegative"),
    )


class PointLot(db.Model):
    """Points earned together that expire together; spent oldest-expiring first."""

    __tablename__ = "point_lots"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    # Set once, by the expiry job or a later release into an already-expired lot.
    expired_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_range"),
        Index("ix_point_lots_member_expires", "member_id", "expires_at"),
        Index("ix_point_lots_expires_at", "expires_at"),
    )


class LotConsumption(db.Model):
    """How much of a lot an entry took (positive) or gave back (negative)."""

    __tablename__ = "lot_consumptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("point_lots.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class Interaction(db.Model):
    """Every member interaction, whether or not it earned points."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    source_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    # Points this interaction earned (0 when no rule, capped out, or a zero rule).
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # INCLUDE: the tier run counts a member's interactions from this index alone (PostgreSQL).
        Index("ix_interactions_member_kind_occurred", "member_id", "kind", "occurred_at",
              postgresql_include=["value", "entry_id"]),
        Index("ix_interactions_source", "source_type", "source_id"),
        Index("ix_interactions_kind_occurred", "kind", "occurred_at"),
        # The tier run finds the members with interactions recorded since it last ran, or
        # entering or leaving the window; INCLUDE: the analytics KPI day build counts a day's and
        # the last 30 days' members, purchases and amounts from this index alone (PostgreSQL).
        Index("ix_interactions_occurred_at", "occurred_at", postgresql_include=["member_id", "kind", "value"]),
        Index("ix_interactions_created_at", "created_at"),
    )


class PurchaseLineItem(db.Model):
    """One line of a purchase (or of a refund naming what it returns): for cross-purchase analytics.

    Written once with the event's interaction (``line_no`` keeps replays harmless); a refund's
    lines name products of the purchase it refunds, never more of one than was bought.
    """

    __tablename__ = "purchase_line_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    product_id: Mapped[str] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    quantity: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column()

    __table_args__ = (
        UniqueConstraint("interaction_id", "line_no", name="uq_purchase_line_items_interaction_line"),
        CheckConstraint("kind IN ('purchase','refund')", name="kind"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount IS NULL OR amount >= 0", name="amount_nonnegative"),
        Index("ix_purchase_line_items_member_occurred", "member_id", "occurred_at"),
    )


class EarningRule(db.Model):
    """Points for one interaction kind, with optional per-member caps (in points) per period.

    Kinds without a row use ``points.rules.DEFAULT_RULES``.
    """

    __tablename__ = "earning_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), unique=True)
    points: Mapped[int] = mapped_column(Integer, default=0)
    # Value-based part, e.g. 1 point per currency unit of a purchase.
    points_per_unit: Mapped[Decimal] = mapped_column(Numeric(10, 4), default=0)
    daily_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    weekly_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    monthly_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("points >= 0", name="points_nonnegative"),
        CheckConstraint("points_per_unit >= 0", name="ppu_nonnegative"),
    )


class Campaign(db.Model):
    """A multiplier for a time window, e.g. double points in December or on birthdays."""

    __tablename__ = "points_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    multiplier: Mapped[Decimal] = mapped_column(Numeric(6, 3))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    # None: every kind; otherwise a list of interaction kinds.
    kinds: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # Applies only on the member's birthday (month and day of ``User.birthday``).
    birthday_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only members of this analytics segment (``analytics.segments.is_member_in``); None: everyone.
    segment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("multiplier >= 1", name="multiplier_min"),
        CheckConstraint("ends_at > starts_at", name="window"),
    )


class MemberMultiplier(db.Model):
    """One member's earning multiplier for a window: a campaign of one, e.g. the double points a
    birthday journey grants for the day (``journeys``' ``points_multiplier`` action).

    ``rules.campaign_multiplier`` takes it like a campaign's (the highest applies, they do not
    stack).  Written once per ``key`` (the granting step's idempotency key), never changed.
    """

    __tablename__ = "points_member_multipliers"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    multiplier: Mapped[Decimal] = mapped_column(Numeric(6, 3))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    # None: every kind; otherwise a list of interaction kinds.
    kinds: Mapped[list | None] = mapped_column(JSON, nullable=True)
    key: Mapped[str] = mapped_column(String(190), unique=True)
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("multiplier >= 1", name="multiplier_min"),
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_points_member_multipliers_member", "member_id", "ends_at"),
    )


REFERRAL_STATUSES = ("signed_up", "converted")
REWARD_STATUSES = ("none", "rewarded", "held", "rejected", "capped")


class Referral(db.Model):
    """Referee ``referee_id`` signed up with ``referrer_id``'s code (one referrer per referee)."""

    __tablename__ = "referrals"

    id: Mapped[int] = mapped_column(primary_key=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    referee_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    signup_ip: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="signed_up")
    reward_status: Mapped[str] = mapped_column(String(16), default="none")
    flag_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    signed_up_at: Mapped[datetime] = mapped_column(default=utcnow)
    converted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    rewarded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The purchase interaction that converted it: refunding that purchase claws the rewards back.
    conversion_interaction_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        CheckConstraint("referrer_id <> referee_id", name="not_self"),
        CheckConstraint("status IN ('signed_up','converted')", name="status"),
        CheckConstraint("reward_status IN ('none','rewarded','held','rejected','capped')", name="reward_status"),
        Index("ix_referrals_signed_up_at", "signed_up_at"),
    )


class ReferralInvite(db.Model):
    """A member said they invited someone (we keep only a hash of the address): the funnel's top."""

    __tablename__ = "referral_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email_hash: Mapped[str] = mapped_column(String(64))
    invited_on: Mapped[date] = mapped_column(Date, default=lambda: utcnow().date())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("member_id", "email_hash", name="uq_referral_invites_member_email"),
        Index("ix_referral_invites_created_at", "created_at"),
    )


PENDING_AWARD_KINDS = ("interaction", "adjustment")
PENDING_AWARD_STATUSES = ("pending", "approved", "rejected")


class PendingAward(db.Model):
    """Four-eyes: an award staff caused above ``AWARD_APPROVAL_THRESHOLD`` waits here until a
    second staff member (never the requester, never the recipient) approves or rejects it.

    ``request`` holds the arguments of the award (``record_interaction`` for ``interaction``,
    ``adjust_points`` for ``adjustment``), applied as they are on approval.
    """

    __tablename__ = "points_pending_awards"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    request: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('interaction','adjustment')", name="kind"),
        CheckConstraint("status IN ('pending','approved','rejected')", name="status"),
        Index("ix_points_pending_awards_status", "status", "id"),
    )


__all__ = [
    "PendingAward",
    "ACCOUNTS",
    "ENTRY_KINDS",
    "JournalEntry",
    "JournalLine",
    "MemberBalance",
    "PointLot",
    "LotConsumption",
    "Interaction",
    "PurchaseLineItem",
    "EarningRule",
    "Campaign",
    "MemberMultiplier",
    "Referral",
    "ReferralInvite",
]
