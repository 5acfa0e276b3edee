"""Account emails: address verification (sign-up and email change) and password reset.

Tokens are random (``secrets.token_urlsafe(32)``), stored as SHA-256 only, single use (a
guarded UPDATE sets ``used_at``; the loser of a race gets the same answer as a stale token)
and expire (``MESSAGING_VERIFY_TOKEN_HOURS``, ``MESSAGING_RESET_TOKEN_MINUTES``).

*Unverified members* (signed up, address not confirmed yet) may log in, read, post, answer
surveys and earn points, but may not redeem rewards: ``ensure_email_verified`` is called by
``rewards.services.request_redemption`` (403 ``email_unverified``).  Accounts that existed
before messaging, and accounts created by staff tools, count as verified.

A password-reset request never tells whether the address has an account: the answer is the
same 202 either way, and the email goes out (or not) from the worker.  A reset ends every
session and revokes every API token of the member.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update
from werkzeug.security import check_password_hash

from community import services as community
from community.models import ApiToken, User, utcnow
from errors import Conflict, Forbidden, NotFound, ValidationError
from extensions import db

from . import preferences
from .models import AccountToken
from .services import queue_account_email


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(member_id: int, purpose: str, email: str, lifetime: timedelta) -> str:
    token = secrets.token_urlsafe(32)
    db.session.add(AccountToken(member_id=member_id, purpose=purpose, email=email, token_hash=_hash(token),
                                expires_at=utcnow() + lifetime))
    db.session.flush()
    return token


def _link(path: str, token: str) -> str:
    return f"{current_app.config['MESSAGING_BASE_URL'].rstrip('/')}{path}?token={token}"


def _consume(token: str, purposes: tuple[str, ...]) -> AccountToken:
    """Use a token once.  Unknown, used, expired and wrong-purpose tokens all get one answer."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        raise ValidationError("This link is invalid or has expired.", code="invalid_token",
                              fields={"token": ["Invalid or expired."]})
    now = utcnow()
    digest = _hash(token)
    used = db.session.execute(
        update(AccountToken)
        .where(AccountToken.token_hash == digest, AccountToken.used_at.is_(None), AccountToken.expires_at > now,
               AccountToken.purpose.in_(purposes))
        .values(used_at=now)
    ).rowcount
    if used != 1:
        raise ValidationError("This link is invalid or has expired.", code="invalid_token",
                              fields={"token": ["Invalid or expired."]})
    return db.session.scalars(select(AccountToken).where(AccountToken.token_hash == digest)).one()


# --------------------------------------------------------------------------- verification


def send_verification(user: User) -> None:
    hours = current_app.config["MESSAGING_VERIFY_TOKEN_HOURS"]
    token = _issue(user.id, "verify_email", user.email, timedelta(hours=hours))
    queue_account_email(user.id, "account.verify_email", user.email,
                        {"url": _link("/account/verify-email", token), "hours": hours})


def on_member_registered(user: User, **_) -> None:
    """Receiver of ``member_registered`` (in the sign-up transaction): unverified until confirmed."""
    prefs = preferences.member_preferences(user.id)
    prefs.email_verified = False
    send_verification(user)


def resend_verification(user: User) -> bool:
    """Send a new link unless the address is verified already; returns whether one was sent."""
    if preferences.peek_preferences(user.id)[2]:
        return False
    send_verification(user)
    return True


def request_email_change(user: User, new_email: str, password: str) -> None:
    """Send a confirmation link to the new address; the email changes only once it is used.

    An address that belongs to another account gets nothing, and the answer is the same.
    """
    if not check_password_hash(user.password_hash, password or ""):
        raise ValidationError("The password is wrong.", fields={"password": ["Wrong password."]})
    email = community.normalise_email(new_email)
    if email == user.email:
        raise ValidationError("This is already your email address.", fields={"new_email": ["Unchanged."]})
    if community.find_by_email(email) is not None:
        return
    hours = current_app.config["MESSAGING_VERIFY_TOKEN_HOURS"]
    token = _issue(user.id, "change_email", email, timedelta(hours=hours))
    queue_account_email(user.id, "account.change_email", email,
                        {"url": _link("/account/verify-email", token), "hours": hours})


def verify(token: str) -> User:
    """Confirm an address: a sign-up's (``verify_email``) or a new one (``change_email``)."""
    row = _consume(token, ("verify_email", "change_email"))
    user = db.session.get(User, row.member_id)
    if user is None:
        raise NotFound("No such member.")
    if row.purpose == "change_email":
        if community.find_by_email(row.email) not in (None, user):
            raise Conflict("Another account uses this address now.", fields={"email": ["Already registered."]})
        user.email = row.email
    elif row.email != user.email:  # a link for an address the member has since changed
        raise ValidationError("This link is invalid or has expired.", code="invalid_token",
                              fields={"token": ["Invalid or expired."]})
    preferences.member_preferences(user.id).email_verified = True
    db.session.flush()
    return user


def ensure_email_verified(member_id: int) -> None:
    """Published for other domains: 403 ``email_unverified`` for a member who has not confirmed."""
    if not preferences.peek_preferences(member_id)[2]:
        raise Forbidden("Confirm your email address first (see the link we sent you).", code="email_unverified")


# --------------------------------------------------------------------------- password reset


def request_password_reset(email: str) -> None:
    """Queue a reset link if the address has an active account; silent either way."""
    try:
        email = community.normalise_email(email)
    except ValidationError:
        return
    user = community.find_by_email(email)
    if user is None or not user.is_active_account:
        return
    minutes = current_app.config["MESSAGING_RESET_TOKEN_MINUTES"]
    token = _issue(user.id, "reset_password", user.email, timedelta(minutes=minutes))
    queue_account_email(user.id, "account.password_reset", user.email,
                        {"url": _link("/account/reset-password", token), "minutes": minutes})


def reset_password(token: str, new_password: str) -> User:
    """Set the new password, burn every other reset link, revoke every API token.

    The caller ends the member's cookie sessions with ``auth.end_all_sessions``, which commits both.
    """
    row = _consume(token, ("reset_password",))
    user = db.session.get(User, row.member_id)
    if user is None or user.email != row.email:
        raise ValidationError("This link is invalid or has expired.", code="invalid_token",
                              fields={"token": ["Invalid or expired."]})
    community.set_password(user, new_password)
    now = utcnow()
    db.session.execute(
        update(AccountToken)
        .where(AccountToken.member_id == user.id, AccountToken.purpose == "reset_password",
               AccountToken.used_at.is_(None))
        .values(used_at=now)
    )
    db.session.execute(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    community.audit(user.id, "community.password.reset", "user", user.id)
    # Receiving the link proves the address.
    preferences.member_preferences(user.id).email_verified = True
    db.session.flush()
    return user
