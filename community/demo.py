"""Demo accounts: one per staff role and a handful of members.  Password: ``demo-password-1``."""

from __future__ import annotations

from sqlalchemy import select

from .models import User, UserRole
from .services import hash_password, register

DEMO_PASSWORD = "demo-password-1"  # noqa: S105 - published demo credential, dev only

ACCOUNTS = [
    ("admin@example.com", "Ada Admin", ["admin"]),
    ("mod@example.com", "Mo Moderator", ["moderator"]),
    ("marketing@example.com", "Mia Marketer", ["marketer"]),
    ("redeem@example.com", "Rex Redemptions", ["redemption_staff"]),
    ("alice@example.com", "Alice", []),
    ("bob@example.com", "Bob", []),
    ("carol@example.com", "Carol", []),
    ("dave@example.com", "Dave", []),
]


def load(ctx: dict) -> None:
    from extensions import db

    pw_hash = hash_password(DEMO_PASSWORD)
    members: dict[str, User] = {}
    for email, name, roles in ACCOUNTS:
        user = db.session.scalar(select(User).where(User.email == email))
        if user is None:
            user = register(email=email, password=DEMO_PASSWORD, display_name=name, password_hash=pw_hash)
        for role in roles:
            if role not in user.roles:
                user.role_rows.append(UserRole(user_id=user.id, role=role))
        members[email.split("@")[0]] = user
    db.session.flush()
    ctx["members"] = members
