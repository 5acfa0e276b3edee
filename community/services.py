"""Account business logic.  No request objects here: callers pass plain values.

Functions only ``flush``; the request handler (or job, or CLI) commits once.
"""

from __future__ import annotations

import re
import secrets
from datetime import date

from blinker import Namespace
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from errors import Conflict, NotFound, Unauthorized, ValidationError
from extensions import db

from .models import GRANTABLE_ROLES, ApiToken, AuditLog, Notification, User, UserRole, utcnow

signals = Namespace()
# Sent inside the registering transaction: receivers (points, referrals) write in the same one.
member_registered = signals.signal("member-registered")
# Sent inside the transaction that suspends a member or lifts a suspension (sender: the User);
# tiers recomputes the member after the commit (``no_suspension`` is a tier requirement).
member_suspension_changed = signals.signal("member-suspension-changed")

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN = 10
PASSWORD_MAX = 128
# A valid hash of a random password, checked when the email is unknown so that a login for a
# missing account costs the same as one for an existing account.
_DUMMY_HASH: str | None = None


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise ValidationError("Enter a valid email address.", fields={"email": ["Not a valid email address."]})
    return email


def _check_password_strength(password: str, field: str = "password") -> None:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise ValidationError(
            "The password is too short.", fields={field: [f"Use at least {PASSWORD_MIN} characters."]}
        )
    if len(password) > PASSWORD_MAX:
        raise ValidationError("The password is too long.", fields={field: [f"Use at most {PASSWORD_MAX} characters."]})
    if password.strip() == "" or len(set(password)) < 4:
        raise ValidationError("The password is too weak.", fields={field: ["Use a less repetitive password."]})


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email))


def register(
    *,
    email: str,
    password: str,
    display_name: str,
    referral_code: str | None = None,
    signup_ip: str | None = None,
    birthday: date | None = None,
    password_hash: str | None = None,
) -> User:
    """Create a member account.  ``password_hash`` lets fixtures skip the (slow) KDF."""
    email = normalise_email(email)
    display_name = (display_name or "").strip()
    if not display_name:
        raise ValidationError("A display name is required.", fields={"display_name": ["Required."]})
    if password_hash is None:
        _check_password_strength(password)
        password_hash = hash_password(password)
    if find_by_email(email) is not None:
        raise Conflict("An account with this email already exists.", fields={"email": ["Already registered."]})
    referrer = None
    if referral_code:
        referrer = db.session.scalar(select(User).where(User.referral_code == referral_code.strip().upper()))
        if referrer is None:
            raise ValidationError("Unknown referral code.", fields={"referral_code": ["No member has this code."]})
    user = User(
        email=email,
        password_hash=password_hash,
        display_name=display_name,
        signup_ip=signup_ip,
        birthday=birthday,
        referred_by_id=referrer.id if referrer else None,
    )
    db.session.add(user)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # a concurrent registration won the race for the email
        raise Conflict("An account with this email already exists.", fields={"email": ["Already registered."]}) from exc
    member_registered.send(user, referrer=referrer, signup_ip=signup_ip)
    return user


def authenticate(email: str, password: str) -> User:
    global _DUMMY_HASH
    try:
        email = normalise_email(email)
    except ValidationError:
        email = ""
    user = find_by_email(email) if email else None
    if user is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
        check_password_hash(_DUMMY_HASH, password or "")
        raise Unauthorized("Wrong email or password.", code="invalid_credentials")
    if not check_password_hash(user.password_hash, password or ""):
        raise Unauthorized("Wrong email or password.", code="invalid_credentials")
    if not user.is_active:
        raise Unauthorized("This account is disabled.", code="account_disabled")
    return user


PROFILE_FIELDS = ("display_name", "bio", "birthday")


def update_profile(user: User, changes: dict) -> User:
    """Apply an allow-listed set of profile changes (never roles, tier, email or balances)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationError("These fields cannot be changed here.", fields={k: ["Unknown field."] for k in unknown})
    if "display_name" in changes:
        name = (changes["display_name"] or "").strip()
        if not name:
            raise ValidationError("A display name is required.", fields={"display_name": ["Required."]})
        user.display_name = name
    if "bio" in changes:
        user.bio = changes["bio"] or ""
    if "birthday" in changes:
        user.birthday = changes["birthday"]
    db.session.flush()
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    if not check_password_hash(user.password_hash, current_password or ""):
        raise ValidationError("The current password is wrong.", fields={"current_password": ["Wrong password."]})
    _check_password_strength(new_password, "new_password")
    user.password_hash = hash_password(new_password)
    db.session.flush()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and the secret, which is shown once and never stored."""
    from .auth import hash_token

    name = (name or "").strip()
    if not name:
        raise ValidationError("A token name is required.", fields={"name": ["Required."]})
    secret = "kin_" + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(secret), prefix=secret[:10])
    db.session.add(token)
    db.session.flush()
    return token, secret


def list_tokens(user: User) -> list[ApiToken]:
    return list(
        db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc()))
    )


def revoke_token(user: User, token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.flush()
    return token


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such member.")
    return user


def grant_role(actor: User, user_id: int, role: str) -> User:
    """Grant ``role``; granting a role the member already holds is a no-op (also under a race)."""
    if role not in GRANTABLE_ROLES:
        raise ValidationError("Unknown role.", fields={"role": [f"One of {', '.join(GRANTABLE_ROLES)}."]})
    user = get_user(user_id)
    if role not in user.roles:
        try:
            with db.session.begin_nested():
                db.session.add(UserRole(user_id=user.id, role=role, granted_by_id=actor.id))
        except IntegrityError:
            pass  # a concurrent request granted it first: the outcome is the same
        else:
            audit(actor.id, "community.role.grant", "user", user.id, details={"role": role})
        db.session.flush()
        db.session.expire(user, ["role_rows"])
    return user


def revoke_role(actor: User, user_id: int, role: str) -> User:
    """Revoke ``role``.  The last admin cannot lose the role, nor can admins demote themselves."""
    if role not in GRANTABLE_ROLES:
        raise ValidationError("Unknown role.", fields={"role": [f"One of {', '.join(GRANTABLE_ROLES)}."]})
    user = get_user(user_id)
    if role == "admin" and user.id == actor.id:
        raise Conflict("Admins cannot revoke their own admin role.")
    if role == "admin" and "admin" in user.roles:
        # Lock the admin rows (PostgreSQL; SQLite's write transaction is already exclusive) so
        # two admins revoking each other at once cannot both succeed and leave no admin.
        admins = db.session.scalars(
            select(UserRole.user_id).where(UserRole.role == "admin").with_for_update()
        ).all()
        if user.id not in admins:
            return user  # revoked concurrently
        if len(admins) <= 1:
            raise Conflict("The last admin cannot lose the admin role.")
    for row in list(user.role_rows):
        if row.role == role:
            user.role_rows.remove(row)
            audit(actor.id, "community.role.revoke", "user", user.id, details={"role": role})
    db.session.flush()
    return user


def notify(member_id: int, kind: str, payload: dict | None = None, dedupe_key: str | None = None) -> None:
    """Queue a member notification in the outbox; a repeated ``dedupe_key`` is a no-op."""
    if dedupe_key is not None:
        exists = db.session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe_key))
        if exists is not None:
            return
    db.session.add(Notification(member_id=member_id, kind=kind, payload=payload or {}, dedupe_key=dedupe_key))
    db.session.flush()


def list_notifications(member_id: int, *, limit: int = 50, before_id: int | None = None) -> list[Notification]:
    query = select(Notification).where(Notification.member_id == member_id)
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return list(db.session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


def audit(
    actor_id: int | None,
    action: str,
    target_type: str,
    target_id: int | None,
    *,
    reason: str = "",
    details: dict | None = None,
) -> AuditLog:
    entry = AuditLog(
        actor_id=actor_id, action=action, target_type=target_type, target_id=target_id, reason=reason,
        details=details or {},
    )
    db.session.add(entry)
    return entry


def create_admin(email: str, password: str, display_name: str = "Admin") -> User:
    """Create an admin account, or grant admin to an existing one (``flask create-admin``)."""
    email = normalise_email(email)
    user = find_by_email(email)
    if user is None:
        user = register(email=email, password=password, display_name=display_name)
    if "admin" not in user.roles:
        user.role_rows.append(UserRole(user_id=user.id, role="admin"))
        audit(None, "community.role.grant", "user", user.id, details={"role": "admin", "via": "cli"})
    db.session.flush()
    return user
