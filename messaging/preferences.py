"""Member preferences: locale and time zone, channels per category, unsubscribes.

A member without rows has the documented defaults (``catalog.DEFAULT_CHANNELS``); only
overrides are stored.  ``transactional`` cannot be switched off.  Unsubscribe tokens are
signed (itsdangerous, the app's ``SECRET_KEY``) and expire; they name the member and the
category, so a token cannot unsubscribe anyone else or from anything else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import zlib
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Integer, any_, literal, select
from sqlalchemy.dialects.postgresql import ARRAY

from community.models import User
from errors import NotFound, ValidationError
from extensions import db, dialect_insert

from .catalog import CATEGORIES, DEFAULT_CHANNELS, OPTIONAL_CATEGORIES
from .models import CHANNELS, MemberPreferences, NotificationPreference, Unsubscribe
from .render import LOCALES

UNSUBSCRIBE_SALT = "kinship.messaging.unsubscribe"
UNSUBSCRIBE_SOURCES = ("one_click", "footer_link", "preferences")
# A member without a preferences row (most members: it is written on first change) is in UTC.
DEFAULT_TIME_ZONE = "UTC"


def member_preferences(member_id: int, *, lock: bool = False) -> MemberPreferences:
    """The member's row, created with the defaults if missing; ``lock`` takes it FOR UPDATE.

    Creation is INSERT ... ON CONFLICT DO NOTHING, so two transactions creating it at once
    both go on with the one row.
    """
    if lock or db.session.get(MemberPreferences, member_id) is None:
        db.session.execute(
            dialect_insert(MemberPreferences.__table__)
            .values(member_id=member_id, locale=current_app.config["MESSAGING_DEFAULT_LOCALE"],
                    time_zone=DEFAULT_TIME_ZONE, email_verified=True)
            .on_conflict_do_nothing(index_elements=["member_id"])
        )
    query = select(MemberPreferences).where(MemberPreferences.member_id == member_id)
    if lock:
        query = query.with_for_update()
    return db.session.scalars(query.execution_options(populate_existing=True)).one()


def peek_preferences(member_id: int) -> tuple[str, str, bool]:
    """(locale, time zone, email verified) without writing a row."""
    row = db.session.get(MemberPreferences, member_id)
    if row is None:
        return current_app.config["MESSAGING_DEFAULT_LOCALE"], DEFAULT_TIME_ZONE, True
    return row.locale, row.time_zone, row.email_verified


def channels(member_id: int) -> dict[str, dict[str, bool]]:
    """Every category's channels for this member: the defaults with the member's overrides."""
    result = {cat: dict(chans) for cat, chans in DEFAULT_CHANNELS.items()}
    for row in db.session.scalars(select(NotificationPreference).where(NotificationPreference.member_id == member_id)):
        if row.category in result and row.category != "transactional":
            result[row.category][row.channel] = row.enabled
    return result


def channel_enabled(member_id: int, category: str, channel: str) -> bool:
    if category == "transactional":
        return True
    row = db.session.get(NotificationPreference, (member_id, category, channel))
    if row is not None:
        return row.enabled
    return DEFAULT_CHANNELS.get(category, {}).get(channel, True)


def reachable(member_ids, category: str) -> set[int]:
    """Which of ``member_ids`` have ``category`` on for email or in-app (one query for many)."""
    member_ids = set(member_ids)
    if category == "transactional":
        return member_ids
    defaults = DEFAULT_CHANNELS.get(category, {})
    state = {m: dict(defaults) for m in member_ids}
    p = NotificationPreference.__table__.c
    if db.session.get_bind().dialect.name == "postgresql":
        # One array parameter: the same short statement for a batch of any size (an IN list of a
        # thousand placeholders is re-parsed by the driver on every call).
        members = p.member_id == any_(literal(sorted(member_ids), ARRAY(Integer)))
    else:
        members = p.member_id.in_(member_ids)
    for member_id, channel, enabled in db.session.execute(
            select(p.member_id, p.channel, p.enabled).where(members, p.category == category)):
        state[member_id][channel] = enabled
    return {m for m, chans in state.items() if chans.get("email", True) or chans.get("in_app", True)}


def set_channel(member_id: int, category: str, channel: str, enabled: bool) -> None:
    _check_category(category)
    if channel not in CHANNELS:
        raise ValidationError("Unknown channel.", fields={"channel": [f"One of {', '.join(CHANNELS)}."]})
    row = db.session.get(NotificationPreference, (member_id, category, channel))
    if row is None:
        db.session.add(NotificationPreference(member_id=member_id, category=category, channel=channel,
                                              enabled=enabled))
    else:
        row.enabled = enabled
    db.session.flush()


def _check_category(category: str) -> None:
    if category not in OPTIONAL_CATEGORIES:
        if category in CATEGORIES:
            raise ValidationError("Account emails cannot be switched off.",
                                  fields={"category": ["transactional is always sent."]})
        raise ValidationError("Unknown category.", fields={"category": [f"One of {', '.join(OPTIONAL_CATEGORIES)}."]})


def update(member: User, changes: dict) -> dict:
    """Apply ``{"locale", "time_zone", "channels": {category: {channel: bool}}}``; all or nothing."""
    errors: dict[str, list[str]] = {}
    if "locale" in changes and changes["locale"] not in LOCALES:
        errors["locale"] = [f"One of {', '.join(LOCALES)}."]
    if "time_zone" in changes and not _valid_zone(changes["time_zone"]):
        errors["time_zone"] = ["An IANA time zone such as Asia/Shanghai."]
    for category, chans in (changes.get("channels") or {}).items():
        if category not in OPTIONAL_CATEGORIES:
            errors.setdefault("channels", []).append(
                f"{category}: transactional is always sent." if category == "transactional"
                else f"{category}: unknown category."
            )
            continue
        for channel in chans:
            if channel not in CHANNELS:
                errors.setdefault("channels", []).append(f"{category}.{channel}: unknown channel.")
    if errors:
        raise ValidationError("Some preferences are invalid.", fields=errors)
    prefs = member_preferences(member.id)
    if "locale" in changes:
        prefs.locale = changes["locale"]
    if "time_zone" in changes:
        prefs.time_zone = changes["time_zone"]
    for category, chans in (changes.get("channels") or {}).items():
        for channel, enabled in chans.items():
            was = channel_enabled(member.id, category, channel)
            set_channel(member.id, category, channel, bool(enabled))
            if was and not enabled:
                db.session.add(Unsubscribe(member_id=member.id, category=category, channel=channel,
                                           source="preferences"))
    db.session.flush()
    return view(member.id)


def _valid_zone(name) -> bool:
    if not isinstance(name, str) or len(name) > 64 or name not in available_timezones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def view(member_id: int) -> dict:
    locale, zone, verified = peek_preferences(member_id)
    return {"locale": locale, "time_zone": zone, "email_verified": verified, "channels": channels(member_id)}


# --------------------------------------------------------------------------- unsubscribe


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=UNSUBSCRIBE_SALT)


@functools.lru_cache(maxsize=8)
def _token_mac(secret_key: str | bytes) -> hmac.HMAC:
    """The HMAC-SHA1 ``_serializer()`` signs with, keyed once: itsdangerous's default key
    derivation ("django-concat", SHA-1 of salt + ``signer`` + secret key)."""
    secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
    key = hashlib.sha1(UNSUBSCRIBE_SALT.encode() + b"signer" + secret).digest()  # noqa: S324  (itsdangerous's own derivation, kept for token compatibility)
    return hmac.new(key, digestmod=hashlib.sha1)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unsubscribe_token(member_id: int, category: str, delivery_id: int | None = None) -> str:
    """The token ``_serializer().dumps({"m", "c", "d"})`` makes, byte for byte (so
    ``read_unsubscribe_token`` verifies it like any other), without building a serializer and
    deriving its key per token: a fan-out signs one per email (tests compare the two)."""
    payload = json.dumps({"m": member_id, "c": category, "d": delivery_id}, ensure_ascii=False,
                         separators=(",", ":")).encode()
    compressed = zlib.compress(payload)
    body = b"." + _b64(compressed) if len(compressed) < len(payload) - 1 else _b64(payload)
    value = body + b"." + _b64(int(time.time()).to_bytes(8, "big").lstrip(b"\x00"))
    mac = _token_mac(current_app.config["SECRET_KEY"]).copy()
    mac.update(value)
    return (value + b"." + _b64(mac.digest())).decode()


def read_unsubscribe_token(token: str) -> dict:
    """The token's ``{"m", "c", "d"}``; 404 for a forged or mangled token, 410-like 422 expired."""
    max_age = current_app.config["MESSAGING_UNSUBSCRIBE_MAX_AGE_DAYS"] * 86400
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise ValidationError("This unsubscribe link has expired; change your settings after logging in.",
                              code="token_expired", fields={"token": ["Expired."]}) from exc
    except BadSignature as exc:
        raise NotFound("No such unsubscribe link.", code="invalid_token") from exc
    if not isinstance(data, dict) or data.get("c") not in OPTIONAL_CATEGORIES or not isinstance(data.get("m"), int):
        raise NotFound("No such unsubscribe link.", code="invalid_token")
    return data


def unsubscribe(token: str, source: str) -> dict:
    """Switch the token's category off for email; idempotent (a repeat records nothing new)."""
    data = read_unsubscribe_token(token)
    member_id, category = data["m"], data["c"]
    if db.session.get(User, member_id) is None:
        raise NotFound("No such unsubscribe link.", code="invalid_token")
    if channel_enabled(member_id, category, "email"):
        set_channel(member_id, category, "email", False)
        db.session.add(Unsubscribe(member_id=member_id, category=category, channel="email", source=source,
                                   delivery_id=data.get("d")))
        db.session.flush()
    return {"category": category, "email": False}
