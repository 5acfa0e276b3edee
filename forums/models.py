"""Boards, threads, posts, revisions, reactions, flags and member sanctions.

Counters (reply counts, last activity, like counts, flag scores) are denormalised onto the
rows listings read, and change only through atomic SQL updates in ``services``.

Full-text search is a database object the models cannot express: on SQLite an external-content
FTS5 table ``forum_search_fts`` over ``forum_posts.search_text`` kept in sync by triggers; on
PostgreSQL an expression GIN index ``ix_fts_forum_posts_search`` on
``to_tsvector('simple', search_text)``.  Both are created by the forums migration.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from community.models import utcnow
from extensions import db

BOARD_KINDS = ("discussion", "bulletin")
FLAG_REASONS = ("spam", "abuse", "off_topic", "inappropriate", "other")
FLAG_STATUSES = ("open", "agreed", "disagreed")
SANCTION_KINDS = ("warn", "silence", "suspend", "lift")
# Why a post is hidden: members' flags crossed the board threshold, or a moderator hid it.
HIDDEN_REASONS = ("flags", "moderator")


class Board(db.Model):
    """A discussion forum (members start threads) or a bulletin board (staff start threads)."""

    __tablename__ = "forum_boards"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="discussion")
    # Bulletin boards only: whether members may reply to staff threads (else read only).
    members_can_reply: Mapped[bool] = mapped_column(default=True)
    # Access: members below this tier (community.models.tier_rank) neither see nor post here.
    min_tier: Mapped[str] = mapped_column(String(20), default="aware")
    # Access: if set, only members holding this role see the board (staff always do).
    required_role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Sum of flag weights at which a post is hidden automatically pending review.
    flag_threshold: Mapped[int] = mapped_column(default=5)
    position: Mapped[int] = mapped_column(default=0)
    # Threads not deleted (moved threads count on their new board).
    thread_count: Mapped[int] = mapped_column(default=0)
    last_activity_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('discussion','bulletin')", name="kind"),
        CheckConstraint("min_tier IN ('aware','engaged','satisfied','loyal','advocate')", name="min_tier"),
        CheckConstraint("flag_threshold > 0", name="flag_threshold_positive"),
    )


class Thread(db.Model):
    __tablename__ = "forum_threads"

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("forum_boards.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    pinned: Mapped[bool] = mapped_column(default=False)
    locked: Mapped[bool] = mapped_column(default=False)
    # Visible replies (the first post is not a reply).
    reply_count: Mapped[int] = mapped_column(default=0)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_post_id: Mapped[int | None] = mapped_column(nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        # The board listing: pinned first, then most recently active.
        Index("ix_forum_threads_board_listing", "board_id", "pinned", "last_activity_at"),
    )


class Post(db.Model):
    __tablename__ = "forum_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("forum_threads.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    is_first: Mapped[bool] = mapped_column(default=False)
    quote_post_id: Mapped[int | None] = mapped_column(ForeignKey("forum_posts.id"), nullable=True)
    # Sanitised HTML (sanitize.clean_html at write time).
    body: Mapped[str] = mapped_column(Text)
    # Plain text indexed for full-text search (thread title + body for a first post).
    search_text: Mapped[str] = mapped_column(Text, default="")
    like_count: Mapped[int] = mapped_column(default=0)
    flag_score: Mapped[int] = mapped_column(default=0)
    edit_count: Mapped[int] = mapped_column(default=0)
    edited_at: Mapped[datetime | None] = mapped_column(nullable=True)
    hidden_at: Mapped[datetime | None] = mapped_column(nullable=True)
    hidden_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_forum_posts_thread_id_id", "thread_id", "id"),
        # Posting limits count a member's recent posts.
        Index("ix_forum_posts_author_created", "author_id", "created_at"),
    )

    @property
    def state(self) -> str:
        if self.deleted_at is not None:
            return "deleted"
        if self.hidden_at is not None:
            return "hidden"
        return "visible"


class PostRevision(db.Model):
    """A post's previous body (and title, for a thread's first post) before an edit."""

    __tablename__ = "forum_post_revisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("forum_posts.id", ondelete="CASCADE"), index=True)
    editor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reaction(db.Model):
    __tablename__ = "forum_reactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("forum_posts.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="like")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("post_id", "member_id", "kind"),
        CheckConstraint("kind IN ('like')", name="kind"),
    )


class Flag(db.Model):
    """A member's report of a post; open flags form the moderators' review queue."""

    __tablename__ = "forum_flags"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("forum_posts.id", ondelete="CASCADE"))
    flagger_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    # The flagger's weight when flagging (grows with their tier).
    weight: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("post_id", "flagger_id"),
        Index("ix_forum_flags_status_id", "status", "id"),
        CheckConstraint("status IN ('open','agreed','disagreed')", name="status"),
        CheckConstraint("weight > 0", name="weight_positive"),
    )


class Sanction(db.Model):
    """A moderator's warning, silence or suspension of a member (or the lifting of one)."""

    __tablename__ = "forum_sanctions"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    moderator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint("kind IN ('warn','silence','suspend','lift')", name="kind"),)
