"""Surveys (definitions, frozen versions, responses, answers) and focus-group sessions.

* ``Survey.definition`` is the working copy marketing edits; publishing freezes it as an
  immutable ``SurveyVersion`` row, and every later edit of a published survey adds a version.
  A response records the version it answered and is validated against that version.
* A partial response keeps its answers as JSON only; completion also writes one
  ``SurveyAnswer`` row per answered value so results are SQL aggregates over a narrow table.
* A member may withdraw a completed response once per survey while it is open: the response and
  its answers are deleted (so results, quota and uniqueness need no "withdrawn" state) and a
  ``SurveyWithdrawal`` row remembers it.
* ``Survey.completed_count`` and ``FocusGroupSession.confirmed_count`` are counters changed only
  by guarded ``UPDATE`` statements, which is what keeps quota and capacity from overshooting.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from community.models import utcnow
from extensions import db

SURVEY_STATUSES = ("draft", "published", "closed")
QUESTION_TYPES = ("single_choice", "multiple_choice", "short_text", "long_text", "rating", "nps", "matrix")
RESPONSE_STATUSES = ("partial", "complete")
SIGNUP_STATUSES = ("confirmed", "waitlisted", "cancelled", "attended", "no_show")


class Survey(db.Model):
    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    # The working copy: {"pages": [{"title", "questions": [...]}]}.
    definition: Mapped[dict] = mapped_column(JSON, default=dict)
    # Number of the version members answer now (0 until the first publish).
    current_version: Mapped[int] = mapped_column(default=0)
    audience_tiers: Mapped[list] = mapped_column(JSON, default=list)  # empty: every tier
    audience_roles: Mapped[list] = mapped_column(JSON, default=list)  # empty: every role
    # Only members of this analytics segment (``analytics.segments.is_member_in``); None: everyone.
    audience_segment_id: Mapped[int | None] = mapped_column(nullable=True)
    opens_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closes_at: Mapped[datetime | None] = mapped_column(nullable=True)
    max_responses: Mapped[int | None] = mapped_column(nullable=True)
    completed_count: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    versions: Mapped[list[SurveyVersion]] = relationship(
        back_populates="survey", order_by="SurveyVersion.number", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint("status IN ('draft','published','closed')", name="status"),
        CheckConstraint("completed_count >= 0", name="completed_count"),
        CheckConstraint("max_responses IS NULL OR max_responses > 0", name="max_responses"),
    )


class SurveyVersion(db.Model):
    """An immutable snapshot of a survey's questions, as published."""

    __tablename__ = "survey_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    number: Mapped[int]
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    survey: Mapped[Survey] = relationship(back_populates="versions")

    __table_args__ = (UniqueConstraint("survey_id", "number"),)


class SurveyResponse(db.Model):
    __tablename__ = "survey_responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("survey_versions.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Chosen by the client; a retried submit carrying the same id is answered, not repeated.
    client_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="partial")
    answers: Mapped[dict] = mapped_column(JSON, default=dict)
    # The member's tier when they completed it: results break down by it.
    member_tier: Mapped[str | None] = mapped_column(String(20), nullable=True)
    nps_score: Mapped[int | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)

    version: Mapped[SurveyVersion] = relationship()

    __table_args__ = (
        UniqueConstraint("survey_id", "member_id"),
        CheckConstraint("status IN ('partial','complete')", name="status"),
        # Also covers the per-tier response count of the results.
        Index("ix_survey_responses_survey_status", "survey_id", "status", "member_tier"),
        # Ids key points awards ("survey_response:<id>"): a deleted response's id must never
        # come back for a new response, which SQLite would otherwise allow.
        {"sqlite_autoincrement": True},
    )


class SurveyAnswer(db.Model):
    """One answered value of a completed response (a multiple choice gives one row per option).

    ``choice`` holds the option (or the rating/NPS value as text; NULL on a multiple choice's
    one-per-respondent marker row) for counting, ``number`` the
    numeric value for averages (rating, NPS, a matrix row's 1-based scale position), ``text`` a
    free-text answer.  ``tier`` is copied from the response so breakdowns need no join.
    """

    __tablename__ = "survey_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    response_id: Mapped[int] = mapped_column(ForeignKey("survey_responses.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[str] = mapped_column(String(64))
    row_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    choice: Mapped[str | None] = mapped_column(String(200), nullable=True)
    number: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    tier: Mapped[str] = mapped_column(String(20))

    # Covers the results query, so it reads the index alone.
    __table_args__ = (
        Index("ix_survey_answers_results", "survey_id", "tier", "question_id", "row_key", "choice", "number"),
    )


class SurveyResultCount(db.Model):
    """The results' tallies, kept as answers arrive and leave (see ``surveys.results``).

    One row per survey, tier, question, matrix row and choice: how many answer rows, how many
    of them carry a number, and the sum of those numbers (numbers are small whole values:
    float sums of them are exact).  ``question_id`` ``""`` holds the per-tier count of completed
    responses.  ``row_key`` and ``choice`` are NOT NULL so they can be part of the key: ``""``
    stands for NULL and any present value is stored with a leading ``=`` (so an option that
    really is the empty string stays distinct from "none").
    """

    __tablename__ = "survey_result_counts"

    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True)
    tier: Mapped[str] = mapped_column(String(20), primary_key=True)
    question_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    row_key: Mapped[str] = mapped_column(String(201), primary_key=True)
    choice: Mapped[str] = mapped_column(String(201), primary_key=True)
    answers: Mapped[int] = mapped_column(default=0)
    number_count: Mapped[int] = mapped_column(default=0)
    number_sum: Mapped[float] = mapped_column(Float, default=0.0)


class SurveyWithdrawal(db.Model):
    """A completed response its member withdrew (the response row itself is deleted).

    At most one per member and survey: the answer given after a withdrawal is final, so a
    member cannot cycle withdraw/answer to pile up ``survey_completed`` interactions (those stay
    in history: interactions are append-only).  ``response_id`` is the deleted response's id
    (no foreign key; response ids are never reused), the source of its points award.
    """

    __tablename__ = "survey_withdrawals"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    response_id: Mapped[int] = mapped_column(unique=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    withdrawn_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The completion award reversed (0 if the earning rule gave none).
    points_reversed: Mapped[int] = mapped_column(default=0)

    __table_args__ = (UniqueConstraint("survey_id", "member_id"),)


class FocusGroupSession(db.Model):
    __tablename__ = "focus_group_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    location: Mapped[str | None] = mapped_column(String(300), nullable=True)
    online_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    capacity: Mapped[int] = mapped_column(default=30)
    confirmed_count: Mapped[int] = mapped_column(default=0)
    screener_survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id"), nullable=True)
    # {"question": "<id>", "in": [values]}: the screener answer that makes a member eligible.
    eligibility_rule: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    signup_deadline: Mapped[datetime | None] = mapped_column(nullable=True)
    cancellation_cutoff: Mapped[datetime | None] = mapped_column(nullable=True)
    # Sent as the "focus_group_attended" interaction's value: the points engine's earning rule
    # turns it into points (rule.points + value x rule.points_per_unit, times multipliers).
    attendance_points: Mapped[int] = mapped_column(default=100)
    cancelled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("capacity > 0", name="capacity"),
        CheckConstraint("confirmed_count >= 0 AND confirmed_count <= capacity", name="confirmed_count"),
        CheckConstraint("ends_at > starts_at", name="times"),
    )


class FocusGroupSignup(db.Model):
    __tablename__ = "focus_group_signups"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("focus_group_sessions.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    # benefits_for(tier)["focus_group_priority"] at sign-up: higher waits less.
    priority: Mapped[int] = mapped_column(default=0)
    signed_up_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    marked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    marked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)

    __table_args__ = (
        UniqueConstraint("session_id", "member_id"),
        CheckConstraint("status IN ('confirmed','waitlisted','cancelled','attended','no_show')", name="status"),
        Index("ix_focus_group_signups_waitlist", "session_id", "status", "priority", "signed_up_at"),
    )
