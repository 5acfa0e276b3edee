"""The rewards catalogue, coupon-code pools, redemptions, their transition log and job status.

* ``Reward``: one catalogue entry.  ``stock`` is the number still available to request (NULL
  means unlimited); for coupon rewards it follows the uploaded code pool.
* ``RewardCode``: one coupon code of a reward's pool; ``redemption_id`` is set once, when the
  code is given out, and is unique, so no code can go to two redemptions.
* ``Redemption``: a member's request, moved through ``rewards.services.TRANSITIONS``.
  ``(member_id, idempotency_key)`` is unique, which makes a replayed request harmless.
  ``reject_reason`` / ``refund_reason`` hold the staff's reason for those two outcomes.
* ``RedemptionTransition``: every state change with its actor (NULL actor = the system).
* ``RedemptionJob``: our own record of the background processing (attempts, last error,
  timestamps), which the API shows instead of RQ internals.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from community.models import utcnow
from extensions import db

REWARD_KINDS = ("coupon", "physical", "digital", "donation", "experience")
# Kinds the processing job completes on its own; the others wait for staff.
SELF_FULFILLING_KINDS = frozenset({"coupon", "digital", "donation"})

STATES = (
    "pending",
    "awaiting_fulfilment",
    "approved",
    "shipped",
    "completed",
    "fulfilled",
    "cancelled",
    "rejected",
    "refunded",
)
# "skipped": the redemption left ``pending`` (cancelled, rejected) before any attempt ran.
JOB_STATUSES = ("queued", "running", "succeeded", "error", "skipped")


def _in(values) -> str:
    return "IN (" + ",".join(f"'{v}'" for v in values) + ")"


class Reward(db.Model):
    __tablename__ = "rewards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    cost: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    stock: Mapped[int | None] = mapped_column(nullable=True)
    per_member_limit: Mapped[int | None] = mapped_column(nullable=True)
    min_tier: Mapped[str] = mapped_column(String(20), default="aware")
    starts_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(nullable=True)
    image_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Audience: only members of this analytics segment (``analytics.segments``); None: everyone.
    segment_id: Mapped[int | None] = mapped_column(nullable=True)
    # A marketing reward (a promotion, not the standing catalogue) is withheld from the
    # programme-wide holdout; redeeming ordinary catalogue rewards is transactional service.
    marketing: Mapped[bool] = mapped_column(server_default=false())
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("cost > 0", name="cost_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        CheckConstraint("per_member_limit IS NULL OR per_member_limit > 0", name="limit_positive"),
        CheckConstraint(f"kind {_in(REWARD_KINDS)}", name="kind"),
        CheckConstraint("min_tier IN ('aware','engaged','satisfied','loyal','advocate')", name="min_tier"),
        Index("ix_rewards_active_window", "is_active", "starts_at", "ends_at"),
    )


class RewardCode(db.Model):
    __tablename__ = "reward_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(200))
    redemption_id: Mapped[int | None] = mapped_column(
        ForeignKey("redemptions.id"), nullable=True, unique=True
    )
    assigned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("reward_id", "code"),
        # Finding the next unused code of a reward.
        Index("ix_reward_codes_pool", "reward_id", "redemption_id"),
    )


class Redemption(db.Model):
    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"), index=True)
    state: Mapped[str] = mapped_column(String(24), default="pending")
    # The cost at request time: later price changes do not touch requests already made.
    cost: Mapped[int]
    idempotency_key: Mapped[str] = mapped_column(String(100))
    tracking_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    refund_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    fulfilled_at: Mapped[datetime | None] = mapped_column(nullable=True)

    reward: Mapped[Reward] = relationship(lazy="joined", innerjoin=True)
    code_row: Mapped[RewardCode | None] = relationship(
        primaryjoin="RewardCode.redemption_id == Redemption.id", uselist=False, viewonly=True, lazy="selectin"
    )
    job: Mapped[RedemptionJob | None] = relationship(uselist=False, viewonly=True, lazy="selectin")

    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint(f"state {_in(STATES)}", name="state"),
        CheckConstraint("cost > 0", name="cost_positive"),
        Index("ix_redemptions_state_created", "state", "created_at"),
    )

    @property
    def code(self) -> str | None:
        return self.code_row.code if self.code_row is not None else None


class RedemptionTransition(db.Model):
    __tablename__ = "redemption_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(24), nullable=True)
    to_state: Mapped[str] = mapped_column(String(24))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RedemptionJob(db.Model):
    __tablename__ = "redemption_jobs"

    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    enqueued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (CheckConstraint(f"status {_in(JOB_STATUSES)}", name="status"),)


__all__ = [
    "REWARD_KINDS",
    "SELF_FULFILLING_KINDS",
    "STATES",
    "Reward",
    "RewardCode",
    "Redemption",
    "RedemptionTransition",
    "RedemptionJob",
]
