"""Analytics tables.

* ``AnalyticsSettings``: the configuration (RFM window and class rules, value weights, health
  components, ROI costs) as versioned data; the highest version is in force.
* ``MemberScore``: per member, the last recompute's RFM, value score and health index, with each
  health component's contribution stored so staff can see why a member is at risk.
  ``ScoreScratch`` is the recompute's scratch copy (rebuilt by every run).
* ``RfmClassChange``: every movement between RFM classes (the history of the classes).
* ``MemberFlag`` (the staff-set strategic flag) and ``MemberTag`` (hand-set tags).
* ``Segment`` (a saved definition: data, not code), ``SegmentMember`` (its materialisation) and
  ``SegmentHistory`` (who was in it when).
* ``KpiDaily``: one row per day, metric and breakdown; ``KpiDay`` says which days are built.
* ``ReviewSnapshot``: a stored month / quarter / half-year review (never recomputed).
* ``Experiment`` and ``ExperimentAssignment``: control vs test, persistent per member.
* ``AnalyticsRun``: one job run (scores, segments, KPIs, assignment) with its outcome.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from community.models import User, utcnow
from extensions import db

RFM_CLASSES = ("high_value", "potential", "at_risk", "low_value")
HEALTH_COMPONENTS = ("recency", "frequency_trend", "community", "survey", "nps", "flags")
EXPERIMENT_KINDS = ("holdout", "campaign", "reward", "touch")
EXPERIMENT_STATUSES = ("draft", "running", "stopped")
ARMS = ("test", "control")
REVIEW_PERIODS = ("month", "quarter", "half_year")
_CLASS_CHECK = "IN ('high_value','potential','at_risk','low_value')"


class AnalyticsSettings(db.Model):
    __tablename__ = "analytics_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    settings: Mapped[dict] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class _ScoreColumns:
    """The columns a recompute writes (shared by the scores and their scratch copy)."""

    member_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recency_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    frequency: Mapped[int] = mapped_column(Integer, default=0)
    monetary: Mapped[float] = mapped_column(Float, default=0)
    r_score: Mapped[int] = mapped_column(Integer, default=1)
    f_score: Mapped[int] = mapped_column(Integer, default=1)
    m_score: Mapped[int] = mapped_column(Integer, default=1)
    rfm_class: Mapped[str] = mapped_column(String(16), default="low_value")
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    referrals_converted: Mapped[int] = mapped_column(Integer, default=0)
    historical: Mapped[float] = mapped_column(Float, default=0)
    potential: Mapped[float] = mapped_column(Float, default=0)
    strategic: Mapped[float] = mapped_column(Float, default=0)
    value_score: Mapped[float] = mapped_column(Float, default=0)
    health: Mapped[float] = mapped_column(Float, default=0)
    # Each component's contribution to ``health`` (they sum to it).
    health_recency: Mapped[float] = mapped_column(Float, default=0)
    health_frequency_trend: Mapped[float] = mapped_column(Float, default=0)
    health_community: Mapped[float] = mapped_column(Float, default=0)
    health_survey: Mapped[float] = mapped_column(Float, default=0)
    health_nps: Mapped[float] = mapped_column(Float, default=0)
    health_flags: Mapped[float] = mapped_column(Float, default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column(nullable=True)
    latest_nps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    open_flags: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


SCORE_COLUMNS = [name for name in _ScoreColumns.__annotations__]


class MemberScore(_ScoreColumns, db.Model):
    __tablename__ = "member_scores"
    # No foreign key to users: the recompute rewrites a million rows at once; rows of deleted
    # members are dropped by the next recompute.

    __table_args__ = (
        CheckConstraint(f"rfm_class {_CLASS_CHECK}", name="rfm_class"),
        Index("ix_member_scores_rfm_class", "rfm_class"),
        Index("ix_member_scores_health", "health"),
    )


class ScoreScratch(_ScoreColumns, db.Model):
    """Scratch rows of the running recompute (unlogged on PostgreSQL)."""

    __tablename__ = "analytics_score_scratch"


class RfmClassChange(db.Model):
    """One movement between RFM classes.  No foreign keys (like ``member_scores``): a first
    recompute appends a million rows in one statement, and per-row constraint triggers would
    dominate it; the rows are history (of a deleted member or run they stay as they were)."""

    __tablename__ = "rfm_class_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(Integer)
    from_class: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_class: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_rfm_class_changes_member_changed", "member_id", "changed_at"),
        Index("ix_rfm_class_changes_changed_at", "changed_at"),
    )


class MemberFlag(db.Model):
    """Staff-set strategic importance of a member (the value score's strategic part)."""

    __tablename__ = "analytics_member_flags"

    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    strategic: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemberTag(db.Model):
    __tablename__ = "analytics_member_tags"

    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    tagged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_analytics_member_tags_tag", "tag"),)


class Segment(db.Model):
    __tablename__ = "analytics_segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # {"match": "all"|"any", "conditions": [{"field": ..., "op": ..., "value": ...}, ...]}
    definition: Mapped[dict] = mapped_column(JSON)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    materialised_at: Mapped[datetime | None] = mapped_column(nullable=True)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SegmentMember(db.Model):
    __tablename__ = "analytics_segment_members"

    segment_id: Mapped[int] = mapped_column(ForeignKey("analytics_segments.id", ondelete="CASCADE"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)

    __table_args__ = (Index("ix_analytics_segment_members_member", "member_id"),)


class SegmentHistory(db.Model):
    """Segment membership over time: one row per stay of a member in a segment, ``[joined_at,
    left_at)``.  ``joined_at`` NULL: a member since before history was kept (the segment's first
    materialisation, or the rows present when this table was added); ``left_at`` NULL: still in.
    KPI breakdowns by segment read membership as of the day from here.  No foreign keys, like the
    assignments: materialising a million members writes no per-row constraint checks, and rows of a
    deleted account or archived segment keep describing the past."""

    __tablename__ = "analytics_segment_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(Integer)
    joined_at: Mapped[datetime | None] = mapped_column(nullable=True)
    left_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        Index("ix_analytics_segment_history_segment", "segment_id", "left_at", "member_id"),
        Index("ix_analytics_segment_history_member", "member_id"),
    )


class KpiDaily(db.Model):
    """One KPI value for one day; ``dim``/``dim_value`` ('', '') is the programme total, else a
    breakdown (``tier``/``loyal``, ``segment``/``7``, ``cohort``/``2026-05``).  Ratio metrics keep
    numerator and denominator so a week or a quarter is sum(numerator) / sum(denominator)."""

    __tablename__ = "kpi_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(48), primary_key=True)
    dim: Mapped[str] = mapped_column(String(16), primary_key=True, default="")
    dim_value: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_kpi_daily_metric_dim_day", "metric", "dim", "dim_value", "day"),)


class KpiDay(db.Model):
    __tablename__ = "kpi_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    built_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewSnapshot(db.Model):
    __tablename__ = "analytics_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    data: Mapped[dict] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("period", "period_start", name="uq_analytics_reviews_period_start"),
        CheckConstraint("period IN ('month','quarter','half_year')", name="period"),
    )


class Experiment(db.Model):
    __tablename__ = "analytics_experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    salt: Mapped[str] = mapped_column(String(64))
    # Share of the population in the test arm, in basis points (1-9999).
    test_share_bp: Mapped[int] = mapped_column(Integer)
    stratify_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # What the treatment is (at most one): a points campaign, a reward, or nothing (a touch).
    campaign_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reward_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The population: a segment's members (materialised), or every member when None.
    segment_id: Mapped[int | None] = mapped_column(
        ForeignKey("analytics_segments.id", ondelete="RESTRICT"), nullable=True
    )
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime | None] = mapped_column(nullable=True)
    pre_days: Mapped[int] = mapped_column(Integer, default=90)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The end of the post-period the stored per-member values (``ExperimentValue``) were computed
    # for; None until the first refresh.
    values_through: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('holdout','campaign','reward','touch')", name="kind"),
        CheckConstraint("status IN ('draft','running','stopped')", name="status"),
        CheckConstraint("test_share_bp BETWEEN 1 AND 9999", name="share"),
        CheckConstraint("stratify_by IS NULL OR stratify_by IN ('tier','rfm_class')", name="stratify_by"),
        CheckConstraint("pre_days BETWEEN 1 AND 730", name="pre_days"),
    )

    @property
    def test_share(self) -> float:
        return self.test_share_bp / 10000


class ExperimentAssignment(db.Model):
    __tablename__ = "analytics_experiment_assignments"

    # No foreign keys: a holdout assigns a million rows in one INSERT … SELECT, and a per-row
    # constraint trigger would dominate it.  Experiments are never deleted; assignments of a
    # deleted account stay (they keep counting in the arm sizes the SRM check compares).
    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    member_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    arm: Mapped[str] = mapped_column(String(8))
    stratum: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bucket: Mapped[int] = mapped_column(BigInteger)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("arm IN ('test','control')", name="arm"),
        Index("ix_analytics_experiment_assignments_member", "member_id", "experiment_id"),
    )


VALUE_METRICS = ("net_amount", "purchases", "distinct_products", "distinct_categories", "retention",
                 "points_earned", "points_redeemed")


class ExperimentValue(db.Model):
    """One assigned member's pre- and post-period value of every metric, as of the experiment's
    ``values_through`` (rebuilt by ``experiments.refresh_values``), so a result sums one narrow
    row per member instead of re-aggregating purchases, line items and the ledger.  No foreign
    keys (a holdout writes a million rows in one statement), like the assignments."""

    __tablename__ = "analytics_experiment_values"

    experiment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    member_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    arm: Mapped[str] = mapped_column(String(8))
    net_amount_pre: Mapped[float] = mapped_column(Float, default=0)
    net_amount_post: Mapped[float] = mapped_column(Float, default=0)
    purchases_pre: Mapped[float] = mapped_column(Float, default=0)
    purchases_post: Mapped[float] = mapped_column(Float, default=0)
    distinct_products_pre: Mapped[float] = mapped_column(Float, default=0)
    distinct_products_post: Mapped[float] = mapped_column(Float, default=0)
    distinct_categories_pre: Mapped[float] = mapped_column(Float, default=0)
    distinct_categories_post: Mapped[float] = mapped_column(Float, default=0)
    retention_pre: Mapped[float] = mapped_column(Float, default=0)
    retention_post: Mapped[float] = mapped_column(Float, default=0)
    points_earned_pre: Mapped[float] = mapped_column(Float, default=0)
    points_earned_post: Mapped[float] = mapped_column(Float, default=0)
    points_redeemed_pre: Mapped[float] = mapped_column(Float, default=0)
    points_redeemed_post: Mapped[float] = mapped_column(Float, default=0)


VALUE_COLUMNS = [f"{m}_{p}" for m in VALUE_METRICS for p in ("pre", "post")]


class AnalyticsRun(db.Model):
    __tablename__ = "analytics_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        CheckConstraint("kind IN ('scores','segments','kpis','assign')", name="kind"),
        CheckConstraint("status IN ('queued','running','done','failed')", name="status"),
    )


# On another domain's table (created by analytics_0004): the KPI day build counts a day's new
# members by sign-up time, which was a full scan of ``users`` twice per day built.
Index("ix_users_created_at", User.__table__.c.created_at)
