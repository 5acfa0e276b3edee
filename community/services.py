"""Account business logic.  No request objects here: callers pass plain values.

Functions only ``flush``; the request handler (or job, or CLI) commits once.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta

from blinker import Namespace
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn import zxcvbn

from errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from extensions import db
from security.text import has_invisible, skeleton, strip_invisible

from .models import GRANTABLE_ROLES, ApiToken, AuditLog, Notification, User, UserRole, utcnow

signals = Namespace()
# Sent inside the registering transaction: receivers (points, referrals) write in the same one.
member_registered = signals.signal("member-registered")
# Sent inside the transaction that suspends a member or lifts a suspension (sender: the User);
# tiers recomputes the member after the commit (``no_suspension`` is a tier requirement).
member_suspension_changed = signals.signal("member-suspension-changed")
# Sent inside the transaction that wrote a notification (sender: the Notification, flushed);
# messaging gives it an email delivery, enqueued after the commit.
notification_created = signals.signal("notification-created")

PASSWORD_MIN = 10
PASSWORD_MAX = 128
# zxcvbn's score (0 too guessable … 4 very unguessable) a new password must reach.
PASSWORD_MIN_SCORE = 3
# Birthdays: a member is between these ages (in years).
BIRTHDAY_MIN_AGE_YEARS = 13
BIRTHDAY_MAX_AGE_YEARS = 120
# A valid hash of a random password, checked when the email is unknown so that a login for a
# missing account costs the same as one for an existing account.
_DUMMY_HASH: str | None = None


def normalise_email(email: str) -> str:
    """Syntax-check and normalise an address with email-validator (NFC, lower-case domain and,
    as before, lower-case local part).  Addresses with invisible characters, a trailing dot or
    an unsafe character are refused; deliverability (DNS) is not checked."""
    raw = (email or "").strip()
    try:
        if len(raw) > 254 or has_invisible(raw):
            raise EmailNotValidError("The email address contains invisible or control characters.")
        normalised = validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValidationError("Enter a valid email address.", fields={"email": [str(exc)]}) from exc
    return normalised.lower()


def email_skeleton(email: str) -> str:
    """What a (normalised) address looks like: one account per skeleton (see ``security.text``)."""
    return skeleton(email)


def _check_password_strength(
    password: str, field: str = "password", *, user_inputs: tuple[str, ...] = ()
) -> None:
    """At least ``PASSWORD_MIN`` characters and a zxcvbn score of ``PASSWORD_MIN_SCORE``, judged
    with the member's own email and name as known words; never the email itself."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise ValidationError(
            "The password is too short.", fields={field: [f"Use at least {PASSWORD_MIN} characters."]}
        )
    if len(password) > PASSWORD_MAX:
        raise ValidationError("The password is too long.", fields={field: [f"Use at most {PASSWORD_MAX} characters."]})
    inputs = [i for i in user_inputs if i]
    for value in list(inputs):
        if "@" in value:
            inputs.append(value.split("@", 1)[0])
    lowered = password.strip().casefold()
    if any(lowered == i.casefold() for i in inputs):
        raise ValidationError("The password is too weak.", fields={field: ["Do not use your email or name."]})
    result = zxcvbn(password, user_inputs=inputs, max_length=PASSWORD_MAX)
    if result["score"] < PASSWORD_MIN_SCORE:
        feedback = result.get("feedback") or {}
        hints = [h for h in [feedback.get("warning"), *(feedback.get("suggestions") or [])] if h]
        raise ValidationError(
            "The password is too easy to guess.",
            fields={field: hints or ["Use a longer password with uncommon words."]},
        )


def clean_display_name(name: str, *, user_id: int | None = None) -> str:
    """A display name without control/bidi/zero-width characters that does not look like a
    staff member's (``security.text.skeleton``); staff may keep names like their own."""
    cleaned = strip_invisible(name or "")
    if not cleaned:
        raise ValidationError("A display name is required.", fields={"display_name": ["Required."]})
    if len(cleaned) > 80:
        raise ValidationError("The display name is too long.", fields={"display_name": ["At most 80 characters."]})
    wanted = skeleton(cleaned, loose=True)
    staff = db.session.execute(
        select(User.id, User.display_name).where(User.id.in_(select(UserRole.user_id)))
    ).all()
    for staff_id, staff_name in staff:
        if staff_id != user_id and skeleton(staff_name, loose=True) == wanted:
            raise Conflict(
                "This display name looks like a staff member's.", code="display_name_reserved",
                fields={"display_name": ["Too similar to a staff member's name."]},
            )
    return cleaned


def check_birthday(birthday: date | None, today: date | None = None) -> date | None:
    """A plausible birthday: the member is 13 to 120 years old."""
    if birthday is None:
        return None
    today = today or utcnow().date()
    youngest = today.replace(year=today.year - BIRTHDAY_MIN_AGE_YEARS) if not (
        today.month == 2 and today.day == 29) else date(today.year - BIRTHDAY_MIN_AGE_YEARS, 2, 28)
    oldest = date(today.year - BIRTHDAY_MAX_AGE_YEARS, 1, 1)
    if not oldest <= birthday <= youngest:
        raise ValidationError(
            "Enter your real birthday.",
            fields={"birthday": [f"Between {oldest.isoformat()} and {youngest.isoformat()}."]},
        )
    return birthday


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
    display_name = clean_display_name(display_name)
    birthday = check_birthday(birthday)
    if password_hash is None:
        _check_password_strength(password, user_inputs=(email, display_name))
        password_hash = hash_password(password)
    look = email_skeleton(email)
    if find_by_email(email) is not None or db.session.scalar(select(User.id).where(User.email_skeleton == look)):
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
        birthday_set_at=utcnow() if birthday else None,
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


def check_not_suspended(user: User) -> None:
    """Suspended means read-only: any write, through a session or a token, is refused."""
    if user.is_suspended():
        raise Forbidden(
            "Your account is suspended: you can read, but not change anything, until the suspension ends.",
            code="account_suspended", fields={"suspended_until": [user.suspended_until.isoformat()]},
        )


PROFILE_FIELDS = ("display_name", "bio", "birthday")


def update_profile(user: User, changes: dict) -> User:
    """Apply an allow-listed set of profile changes (never roles, tier, email or balances)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValidationError("These fields cannot be changed here.", fields={k: ["Unknown field."] for k in unknown})
    if "display_name" in changes:
        user.display_name = clean_display_name(changes["display_name"], user_id=user.id)
    if "bio" in changes:
        user.bio = changes["bio"] or ""
    if "birthday" in changes and changes["birthday"] != user.birthday:
        # Set once by the member (a birthday campaign doubles points on that day): staff
        # correct it afterwards (``correct_birthday``, audited).
        if user.birthday is not None:
            raise Conflict(
                "Your birthday is already set; ask staff to correct it.", code="birthday_already_set",
                fields={"birthday": ["Already set."]},
            )
        user.birthday = check_birthday(changes["birthday"])
        user.birthday_set_at = utcnow() if user.birthday else None
    db.session.flush()
    return user


def correct_birthday(actor: User, user_id: int, birthday: date | None, reason: str) -> User:
    """Staff correction of a member's birthday (audited); the campaign waiting period restarts."""
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    user = get_user(user_id)
    before = user.birthday
    user.birthday = check_birthday(birthday)
    user.birthday_set_at = utcnow() if birthday else None
    audit(actor.id, "community.birthday.correct", "user", user.id, reason=reason.strip(),
          details={"before": before.isoformat() if before else None,
                   "after": birthday.isoformat() if birthday else None})
    db.session.flush()
    return user


MEMBER_DATES = ("renewal_on", "contract_on")


def set_member_dates(actor: User, user_id: int, changes: dict, reason: str) -> User:
    """Staff set a member's renewal and contract dates (held on the member record for journeys'
    date triggers; null clears one); audited with the values before and after."""
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    user = get_user(user_id)
    before, after = {}, {}
    for name in MEMBER_DATES:
        if name in changes:
            old = getattr(user, name)
            before[name] = old.isoformat() if old else None
            after[name] = changes[name].isoformat() if changes[name] else None
            setattr(user, name, changes[name])
    audit(actor.id, "community.member_dates.set", "user", user.id, reason=reason.strip(),
          details={"before": before, "after": after})
    db.session.flush()
    return user


def birthday_counts(user, at, min_age_days: int) -> bool:
    """A birthday set fewer than ``min_age_days`` before ``at`` does not earn birthday bonuses."""
    set_at = getattr(user, "birthday_set_at", None)
    return user.birthday is not None and (set_at is None or set_at <= at - timedelta(days=min_age_days))


def verify_password(user: User, password: str, field: str = "password") -> None:
    if not check_password_hash(user.password_hash, password or ""):
        raise ValidationError("The current password is wrong.", fields={field: ["Wrong password."]})


def change_password(user: User, current_password: str, new_password: str) -> int:
    """Change the password; every API token of the member is revoked (a stolen session must not
    leave a lasting credential behind).  Returns the number of tokens revoked."""
    verify_password(user, current_password, "current_password")
    if new_password == current_password or check_password_hash(user.password_hash, new_password or ""):
        raise ValidationError("Choose a new password.", fields={"new_password": ["Same as the current password."]})
    _check_password_strength(new_password, "new_password", user_inputs=(user.email, user.display_name))
    user.password_hash = hash_password(new_password)
    revoked = revoke_all_tokens(user.id)
    audit(user.id, "community.password.change", "user", user.id, details={"tokens_revoked": revoked})
    db.session.flush()
    return revoked


def revoke_all_tokens(user_id: int) -> int:
    """Revoke every live API token of a member (password change, suspension)."""
    return db.session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow()).execution_options(synchronize_session=False)
    ).rowcount


def log_out_everywhere(user: User, *, revoke_tokens: bool) -> int:
    """Record a member's "log out everywhere" (a lost phone, a shared computer): the API tokens
    too when ``revoke_tokens``.  Returns the number of tokens revoked; the caller ends the cookie
    sessions with ``auth.end_all_sessions``, which commits all of it as one transaction."""
    revoked = revoke_all_tokens(user.id) if revoke_tokens else 0
    audit(user.id, "community.sessions.end_all", "user", user.id, details={"tokens_revoked": revoked})
    db.session.flush()
    return revoked


def set_password(user: User, new_password: str) -> None:
    """Set a password without the current one (a verified reset link); the caller revokes the
    member's sessions and API tokens."""
    _check_password_strength(new_password, "new_password", user_inputs=(user.email, user.display_name))
    user.password_hash = hash_password(new_password)
    db.session.flush()


def create_token(user: User, name: str, password: str | None = None) -> tuple[ApiToken, str]:
    """Returns the token row and the secret, which is shown once and never stored.

    Creating a token needs the account's current password (a hijacked session alone cannot mint
    a lasting credential); ``password=None`` is for trusted callers (CLI, fixtures) only.
    """
    from .auth import hash_token

    if password is not None:
        verify_password(user, password)
    check_not_suspended(user)
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


def notify(member_id: int, kind: str, payload: dict | None = None, dedupe_key: str | None = None
           ) -> Notification | None:
    """Queue a member notification in the outbox; a repeated ``dedupe_key`` is a no-op (None)."""
    if dedupe_key is not None:
        exists = db.session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe_key))
        if exists is not None:
            return None
    note = Notification(member_id=member_id, kind=kind, payload=payload or {}, dedupe_key=dedupe_key)
    db.session.add(note)
    db.session.flush()
    notification_created.send(note)
    return note


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


class Refused(Forbidden):
    """A 403 that must leave a trace: the request rolls back, then ``community.api`` writes
    ``audit`` (an ``AuditLog`` row's fields) in its own transaction and answers the envelope."""

    def __init__(self, message: str, *, code: str, audit: dict):
        super().__init__(message, code=code)
        self.audit = audit


def refuse(
    actor: User | int | None, action: str, target_type: str, target_id: int | None, message: str, *,
    code: str, details: dict | None = None,
) -> None:
    """Raise ``Refused`` (403 ``code``), audited as ``<action>.refused``."""
    actor_id = actor if isinstance(actor, int) or actor is None else actor.id
    raise Refused(message, code=code, audit={
        "actor_id": actor_id, "action": f"{action}.refused", "target_type": target_type, "target_id": target_id,
        "reason": message, "details": {"code": code, **(details or {})},
    })


def refuse_self_dealing(
    actor: User | int, action: str, target_type: str, target_id: int | None, message: str, *,
    code: str = "self_dealing", details: dict | None = None,
) -> None:
    """Separation of duties: staff may not act on their own behalf (their own redemption,
    attendance, referral, sanction or adjustment): 403 ``code`` (default ``self_dealing``), audited."""
    refuse(actor, action, target_type, target_id, message, code=code, details=details)


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
