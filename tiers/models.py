"""Tier rule sets, each member's tier state, the tier history and the recompute runs.

* ``TierRuleSet``: the requirements admins edit, append-only and versioned (the highest
  version is the one in force; the defaults in ``tiers.rules`` are installed as version 1).
* ``MemberTierState``: per member, the requirement metrics of the last computation, the tier the
  rules give, when the member fell below the bar to stay (the grace clock) and an admin pin.
  ``users.tier`` stays the column every other domain reads; this table is how we got there.
* ``TierChange``: every change of ``users.tier`` with its reason.
* ``TierRun``: one periodic recomputation (full or incremental), with progress for admins.
* ``TierBenefit``: admins' overrides of a tier's benefits (read through ``tiers.benefits``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from community.models import utcnow
from extensions import db

_TIER_CHECK = "IN ('aware','engaged','satisfied','loyal','advocate')"


class TierRuleSet(db.Model):
    __tablename__ = "tier_rule_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    # {"engaged": {"active_weeks": 2, ...}, "satisfied": {...}, "loyal": {...}, "advocate": {...}}
    requirements: Mapped[dict] = mapped_column(JSON)
    window_days: Mapped[int] = mapped_column(Integer)
    grace_days: Mapped[int] = mapped_column(Integer)
    # Staying in a tier needs keep_percent % of each threshold (entering needs 100 %).
    keep_percent: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("keep_percent BETWEEN 1 AND 100", name="keep_percent"),
        CheckConstraint("window_days >= 1", name="window_days"),
        CheckConstraint("grace_days >= 0", name="grace_days"),
    )


class MemberTierState(db.Model):
    __tablename__ = "member_tier_states"

    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # Requirement metrics as of computed_at (see tiers.rules.REQUIREMENTS).
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    active_weeks: Mapped[int] = mapped_column(default=0)
    surveys_completed: Mapped[int] = mapped_column(default=0)
    nps_promoter: Mapped[int] = mapped_column(default=0)
    focus_groups_attended: Mapped[int] = mapped_column(default=0)
    referrals_converted: Mapped[int] = mapped_column(default=0)
    accepted_posts: Mapped[int] = mapped_column(default=0)
    no_suspension: Mapped[int] = mapped_column(default=1)
    # Highest tier whose entry requirements are met, and the tier decided for the member.
    qualified_tier: Mapped[str] = mapped_column(String(20), default="aware")
    target_tier: Mapped[str] = mapped_column(String(20), default="aware")
    # Set when the member first fell below the bar to stay in their tier; demotion happens once
    # it is older than the grace period, and it clears as soon as the member is back above it.
    below_since: Mapped[datetime | None] = mapped_column(nullable=True)
    pinned_tier: Mapped[str | None] = mapped_column(String(20), nullable=True)
    pin_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    pinned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    pinned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    rule_version: Mapped[int] = mapped_column(default=0)
    # When any of the values above last changed (unchanged rows are not rewritten).
    changed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        CheckConstraint(f"qualified_tier {_TIER_CHECK}", name="qualified_tier"),
        CheckConstraint(f"target_tier {_TIER_CHECK}", name="target_tier"),
        CheckConstraint(f"pinned_tier IS NULL OR pinned_tier {_TIER_CHECK}", name="pinned_tier"),
    )


class TierChange(db.Model):
    """One change of a member's tier.  ``kind``: promotion, demotion or pin (by an admin)."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    from_tier: Mapped[str] = mapped_column(String(20))
    to_tier: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("tier_runs.id", ondelete="SET NULL"), nullable=True)
    rule_version: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (
        CheckConstraint("kind IN ('promotion','demotion','pin')", name="kind"),
        Index("ix_tier_changes_member_created", "member_id", "created_at"),
    )


class TierRun(db.Model):
    """A recomputation of every member's tier.  ``status``: running, done, failed or abandoned.

    ``mode``: "full" re-aggregates everyone's history; "incremental" re-aggregates only the
    members whose inputs changed since the last completed run (``total`` counts those) and
    leaves everyone else's state as it is, which is what a full run would also give them.
    """

    __tablename__ = "tier_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    mode: Mapped[str] = mapped_column(String(16), default="full")
    rule_version: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    promoted: Mapped[int] = mapped_column(default=0)
    demoted: Mapped[int] = mapped_column(default=0)
    # Members per tier when the run finished: the distribution over time for marketing.
    distribution: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        CheckConstraint("status IN ('running','done','failed','abandoned')", name="status"),
        CheckConstraint("mode IN ('full','incremental')", name="mode"),
    )


class TierMetricStage(db.Model):
    """Scratch rows of a run: one member range's metrics, aggregated once per range.

    The decisions read a range's metrics twice (state rows to update, state rows to insert);
    each range's transaction fills its rows here, decides, and deletes them again.  Ranges are
    disjoint, so concurrent ranges never touch each other's rows.
    """

    __tablename__ = "tier_metric_stage"

    member_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    active_weeks: Mapped[int] = mapped_column(default=0)
    surveys_completed: Mapped[int] = mapped_column(default=0)
    nps_promoter: Mapped[int] = mapped_column(default=0)
    focus_groups_attended: Mapped[int] = mapped_column(default=0)
    referrals_converted: Mapped[int] = mapped_column(default=0)
    accepted_posts: Mapped[int] = mapped_column(default=0)


class TierDirtyMember(db.Model):
    """Scratch table of one incremental run: the members whose tier inputs changed."""

    __tablename__ = "tier_dirty_members"

    member_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class TierBenefit(db.Model):
    """An admin's override of one tier's benefits (tiers without a row use the code defaults)."""

    __tablename__ = "tier_benefits"

    tier: Mapped[str] = mapped_column(String(20), primary_key=True)
    earning_multiplier: Mapped[Decimal] = mapped_column(Numeric(4, 2))
    # {"threads_per_day": int | None, "replies_per_day": int | None, "min_seconds_between_posts": int}
    posting_limits: Mapped[dict] = mapped_column(JSON)
    focus_group_priority: Mapped[int] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(f"tier {_TIER_CHECK}", name="tier"),
        CheckConstraint("earning_multiplier >= 0 AND earning_multiplier <= 10", name="earning_multiplier"),
        CheckConstraint("focus_group_priority >= 0", name="focus_group_priority"),
    )
