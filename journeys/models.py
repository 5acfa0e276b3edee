"""Journeys tables.

* ``journeys``: the named journey marketing manages (status, the version new members enter,
  the experiment that measures it).
* ``journey_versions``: the definition (trigger, audience, entry rule, goal, steps as data).
  A version is never changed once written: editing a journey writes a new version.
* ``journey_enrolments``: one member's passage through a version for one *occurrence* (``once``
  for once-ever journeys, the date or the event for the others); ``next_run_at`` (indexed, only
  for active rows) is when the engine next looks at it.
* ``journey_step_executions``: one row per (version, member, occurrence, step), UNIQUE, written
  in the transaction that performs the step, so a step runs exactly once however often the job
  that performs it runs.  It references its enrolment (cascading); journey, version and member
  are the enrolment's, copied for the key and the stats without FKs of their own.
* ``journey_tasks``: work for staff ("call this customer").
* ``journey_templates``: the message a ``send`` step sends, in a messaging category, in ``en``
  and ``zh-CN``.

The member dates the schedules use are found through indexes declared here on other domains'
tables (birthday, sign-up and contract month/day expression indexes on ``users``, the renewal
date, the last activity of ``member_scores``), created by the journeys migrations.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, extract, text
from sqlalchemy.orm import Mapped, mapped_column

from analytics.models import MemberScore
from community.models import User, utcnow
from extensions import db

STATUSES = ("draft", "active", "paused", "archived")
ENROLMENT_STATES = ("active", "done", "exited")
OUTCOMES = ("done", "sent", "skipped", "failed")
TASK_STATUSES = ("open", "done")


def _in(values) -> str:
    return "IN (" + ",".join(f"'{v}'" for v in values) + ")"


class Journey(db.Model):
    __tablename__ = "journeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # The version new members enter (the latest); no FK (the two tables reference each other).
    current_version_id: Mapped[int | None] = mapped_column(nullable=True)
    # Share of entrants held out (they enter, receive nothing), in basis points; 0 = no experiment.
    holdout_share_bp: Mapped[int] = mapped_column(default=0)
    experiment_id: Mapped[int | None] = mapped_column(nullable=True)
    # The last day the schedule (member dates, calendar) enrolled for: each day is scanned once.
    scanned_on: Mapped[date | None] = mapped_column(db.Date, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(f"status {_in(STATUSES)}", name="status"),
        CheckConstraint("holdout_share_bp BETWEEN 0 AND 5000", name="holdout_share"),
    )

    @property
    def holdout_share(self) -> float:
        return self.holdout_share_bp / 10000


class JourneyVersion(db.Model):
    __tablename__ = "journey_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column()
    trigger: Mapped[dict] = mapped_column(JSON)
    audience: Mapped[dict] = mapped_column(JSON)
    entry: Mapped[dict] = mapped_column(JSON)
    goal: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    steps: Mapped[list] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("journey_id", "number"),)

    def step(self, step_id: str) -> dict | None:
        return next((s for s in self.steps if s["id"] == step_id), None)


class Enrolment(db.Model):
    __tablename__ = "journey_enrolments"

    id: Mapped[int] = mapped_column(primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("journey_versions.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    occurrence: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="active")
    # 'test' or 'holdout' (decided at the first step; NULL: not decided yet or no experiment).
    arm: Mapped[str | None] = mapped_column(String(8), nullable=True)
    current_step: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # A wait step in progress ends at this time.
    wait_until: Mapped[datetime | None] = mapped_column(nullable=True)
    next_run_at: Mapped[datetime | None] = mapped_column(nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    converted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (
        UniqueConstraint("journey_id", "member_id", "occurrence"),
        CheckConstraint(f"state {_in(ENROLMENT_STATES)}", name="state"),
        CheckConstraint("arm IS NULL OR arm IN ('test','holdout')", name="arm"),
        # The engine's due query: active rows by next_run_at (partial, so finished rows cost nothing).
        Index("ix_journey_enrolments_due", "next_run_at", postgresql_where=text("state = 'active'"),
              sqlite_where=text("state = 'active'")),
        Index("ix_journey_enrolments_member", "member_id", "journey_id"),
        Index("ix_journey_enrolments_journey_state", "journey_id", "state"),
    )


class StepExecution(db.Model):
    __tablename__ = "journey_step_executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The enrolment's journey, version and member, copied for the UNIQUE key and the stats index;
    # no FKs of their own (journeys_0003): the enrolment's FK, with its cascades, covers them.
    journey_id: Mapped[int] = mapped_column()
    version_id: Mapped[int] = mapped_column()
    member_id: Mapped[int] = mapped_column()
    occurrence: Mapped[str] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(40))
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("journey_enrolments.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    # Why it was skipped (holdout, unsubscribed, own_journey, paused…) or which branch a condition took.
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    notification_id: Mapped[int | None] = mapped_column(nullable=True)
    # The A/B variant a send step with ``variants`` chose for the member (its id); NULL otherwise
    # and for the journey's holdout arm (journeys_0004).
    variant: Mapped[str | None] = mapped_column(String(40), nullable=True)
    entry_id: Mapped[int | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("version_id", "member_id", "occurrence", "step_id", name="uq_journey_step_once"),
        CheckConstraint(f"outcome {_in(OUTCOMES)}", name="outcome"),
        Index("ix_journey_step_executions_stats", "journey_id", "step_id", "outcome"),
    )


class JourneyTask(db.Model):
    __tablename__ = "journey_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("journey_enrolments.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    __table_args__ = (
        CheckConstraint(f"status {_in(TASK_STATUSES)}", name="status"),
        Index("ix_journey_tasks_status", "status", "id"),
    )


class JourneyTemplate(db.Model):
    __tablename__ = "journey_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    # {"en": "...", "zh-CN": "..."}
    subject: Mapped[dict] = mapped_column(JSON)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("category IN ('points_redemptions','tiers','community','research','marketing')",
                        name="category"),
    )


# Indexes on other domains' tables that the schedules need (created by journeys_0001).
_users = User.__table__
Index("ix_users_birthday_md", extract("month", _users.c.birthday), extract("day", _users.c.birthday))
Index("ix_users_signup_md", extract("month", _users.c.created_at), extract("day", _users.c.created_at))
Index("ix_users_renewal_on", _users.c.renewal_on)
Index("ix_users_contract_md", extract("month", _users.c.contract_on), extract("day", _users.c.contract_on))
Index("ix_member_scores_last_activity", MemberScore.__table__.c.last_activity_at)
