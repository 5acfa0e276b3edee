"""Members, roles, API tokens, the notification outbox and the audit log."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime

from flask_login import UserMixin
from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from extensions import db

ROLES = ("member", "moderator", "marketer", "redemption_staff", "admin")
# Roles that can be granted; "member" is what every account is.
GRANTABLE_ROLES = ROLES[1:]

# The loyalty ladder, lowest first.  Requirements and benefits live in ``tiers``.
TIERS = ("aware", "engaged", "satisfied", "loyal", "advocate")


def tier_rank(tier: str | None) -> int:
    """0 for aware … 4 for advocate; unknown or missing counts as aware."""
    try:
        return TIERS.index(tier or "aware")
    except ValueError:
        return 0


def utcnow() -> datetime:
    """Naive UTC: stored the same way on SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_referral_code() -> str:
    return secrets.token_urlsafe(6).replace("-", "x").replace("_", "y").upper()


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    # What the address looks like (``security.text.skeleton``): one account per look-alike.
    email_skeleton: Mapped[str | None] = mapped_column(String(254), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(80))
    bio: Mapped[str] = mapped_column(Text, default="")
    birthday: Mapped[date | None] = mapped_column(db.Date, nullable=True)
    # When the birthday was set: birthday campaigns ignore one set only just now.
    birthday_set_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # A renewal date (journeys count down to it); added by journeys_0001.
    renewal_on: Mapped[date | None] = mapped_column(db.Date, nullable=True)
    # The start of the member's contract (journeys greet its yearly anniversary); journeys_0004.
    contract_on: Mapped[date | None] = mapped_column(db.Date, nullable=True)
    is_active_account: Mapped[bool] = mapped_column(default=True)
    tier: Mapped[str] = mapped_column(String(20), default="aware", server_default="aware")
    referral_code: Mapped[str] = mapped_column(String(16), unique=True, default=new_referral_code)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    signup_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Moderation state (set by forums moderation): silenced members may read but not post,
    # suspended members may not post, react or flag.
    silenced_until: Mapped[datetime | None] = mapped_column(nullable=True)
    suspended_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    role_rows: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin", foreign_keys="UserRole.user_id"
    )

    __table_args__ = (
        CheckConstraint("tier IN ('aware','engaged','satisfied','loyal','advocate')", name="tier"),
        Index("ix_users_email_skeleton", "email_skeleton", unique=True),
    )

    @validates("email")
    def _keep_skeleton(self, _key: str, value: str) -> str:
        from security.text import skeleton

        self.email_skeleton = skeleton(value) if value else None
        return value

    @property
    def roles(self) -> set[str]:
        return {"member"} | {r.role for r in self.role_rows}

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def is_active(self) -> bool:  # flask-login
        return self.is_active_account

    def is_suspended(self, now: datetime | None = None) -> bool:
        return self.suspended_until is not None and self.suspended_until > (now or utcnow())

    def is_silenced(self, now: datetime | None = None) -> bool:
        return self.silenced_until is not None and self.silenced_until > (now or utcnow())

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class UserRole(db.Model):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="role_rows", foreign_keys=[user_id])

    __table_args__ = (
        CheckConstraint("role IN ('moderator','marketer','redemption_staff','admin')", name="role"),
    )


class ApiToken(db.Model):
    """A bearer token for integrations.  Only its SHA-256 is stored; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)

    user: Mapped[User] = relationship()


class UserSession(db.Model):
    """A live cookie session: the signed cookie carries a random id, this row its SHA-256.

    The cookie is accepted only while its row exists and has not expired, so logout, "log out
    everywhere", a password change, a reset or a suspension (which delete rows) make a replayed
    cookie worthless at once.  Looked up in the same query as the member (``community.auth``):
    a cookie request costs one indexed lookup, like a token request.
    """

    __tablename__ = "user_sessions"

    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Notification(db.Model):
    """Outbox of member notifications; a delivery channel (mail, push) drains it later."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    # Optional de-duplication key: the same event never produces two notifications.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ix_notifications_member_created", "member_id", "created_at"),)


class AuditLog(db.Model):
    """Who did what to what: role grants, moderator actions, adjustments, tier pins."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)


__all__ = [
    "ROLES",
    "GRANTABLE_ROLES",
    "TIERS",
    "tier_rank",
    "utcnow",
    "User",
    "UserRole",
    "ApiToken",
    "Notification",
    "AuditLog",
]
