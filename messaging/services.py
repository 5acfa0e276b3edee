"""Email delivery: one ``email_deliveries`` row per email, sent at most once, in two commits.

The life of a delivery::

    pending --claim--> sending --SMTP 250--> sent
       ^  \\                \\--4xx / connection--> pending (not_before = now + backoff) … failed
       |   \\--preference off / over the cap (marketing) / account gone--> suppressed
       \\--quiet hours / over the cap (research)--> pending (not_before = next free time)

``deliver(ids)`` handles each id in its own short transactions:

1. **claim** (one transaction, committed before anything is sent): lock the row, decide
   (preferences, frequency cap, quiet hours), render the message, then mark it ``sending``
   with ``attempts + 1``, the claim time and a ``Message-ID`` chosen once and kept for every
   retry.  Only a ``pending`` row that is due, or a ``sending`` row whose claim is older than
   the lease (its worker died), can be claimed, so two jobs for one delivery never both send.
2. **send** over the open SMTP connection.
3. **record** ``sent`` (or the failure) and commit at once.

At-least-once edge: if the process dies after the SMTP server accepted the message (250) and
before step 3 commits, the row stays ``sending`` and is sent again after the lease, with the
same ``Message-ID`` (which receiving systems use to discard duplicates).  The window is one
UPDATE and COMMIT wide (no rendering, no other I/O in it).  A death anywhere else (before or
during the SMTP transaction, after the commit) sends nothing twice.

The frequency cap counts this member's ``marketing`` and ``research`` deliveries claimed in the
last 7 days (``sending`` and ``sent``), under a lock on the member's preferences row, so two
workers cannot both take the last slot.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from community.models import Notification, User, utcnow
from extensions import db

from . import mail, preferences
from .catalog import CAPPED, OVER_CAP, kind_info
from .models import EmailDelivery
from .render import RenderError, normalise_locale, render

log = logging.getLogger(__name__)

FAULT_ENV = "KINSHIP_MESSAGING_FAULT"
CAP_WINDOW = timedelta(days=7)


# --------------------------------------------------------------------------- creating deliveries


def queue_for_notification(notification: Notification) -> EmailDelivery:
    """Give a new notification its delivery row; the job is enqueued after the commit."""
    from .jobs import schedule

    delivery = EmailDelivery(
        member_id=notification.member_id, notification_id=notification.id, kind=notification.kind,
        category=kind_info(notification.kind).category,
    )
    db.session.add(delivery)
    db.session.flush()
    schedule(delivery.id)
    return delivery


def queue_account_email(member_id: int, kind: str, to_address: str, payload: dict) -> EmailDelivery:
    """An account email (verification, reset) with its own data; sent whatever the preferences."""
    from .jobs import schedule

    delivery = EmailDelivery(member_id=member_id, kind=kind, category="transactional", to_address=to_address,
                             payload=payload)
    db.session.add(delivery)
    db.session.flush()
    schedule(delivery.id)
    return delivery


def backfill_deliveries(max_age_hours: int) -> int:
    """Rows for notifications written without one (set-based writers, e.g. a tier run).

    One INSERT ... SELECT: nothing is loaded into Python, however many there are.
    """
    since = utcnow() - timedelta(hours=max_age_hours)
    n = Notification.__table__
    d = EmailDelivery.__table__
    missing = (
        select(n.c.member_id, n.c.id, n.c.kind, n.c.created_at)
        .where(n.c.created_at >= since)
        .where(~select(d.c.id).where(d.c.notification_id == n.c.id).exists())
    )
    result = db.session.execute(
        d.insert().from_select(["member_id", "notification_id", "kind", "not_before"], missing)
    )
    return result.rowcount or 0


# --------------------------------------------------------------------------- delivering


@dataclass
class Claimed:
    delivery_id: int
    message_id: str
    message: object  # flask_mailman.EmailMultiAlternatives


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(now: datetime, time_zone: str, hours: tuple[int, int] | None) -> datetime | None:
    """If ``now`` (naive UTC) is inside the member's local quiet hours, when they end (naive UTC)."""
    if hours is None:
        return None
    start, end = hours
    zone = _zone(time_zone)
    local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    h = local.hour
    inside = (start <= h or h < end) if start > end else (start <= h < end)
    if not inside:
        return None
    ends = local.replace(hour=end, minute=0, second=0, microsecond=0)
    if ends <= local:
        ends += timedelta(days=1)
    return ends.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def _lease() -> timedelta:
    return timedelta(seconds=current_app.config["MESSAGING_SEND_LEASE_SECONDS"])


def _claimable(now: datetime):
    return or_(
        and_(EmailDelivery.state == "pending", EmailDelivery.not_before <= now),
        and_(EmailDelivery.state == "sending", EmailDelivery.claimed_at < now - _lease()),
    )


def _links(delivery: EmailDelivery, category: str) -> dict:
    base = current_app.config["MESSAGING_BASE_URL"].rstrip("/")
    links = {"preferences_url": f"{base}/api/v1/me/notification-preferences", "unsubscribe_url": None,
             "one_click_url": None}
    if category != "transactional":
        token = preferences.unsubscribe_token(delivery.member_id, category, delivery.id)
        links["unsubscribe_url"] = f"{base}/unsubscribe/{token}"
        links["one_click_url"] = f"{base}/api/v1/unsubscribe/{token}"
    return links


def _suppress(delivery: EmailDelivery, reason: str) -> None:
    delivery.state = "suppressed"
    delivery.reason = reason
    delivery.payload = {}


def _claim(delivery_id: int) -> Claimed | None:
    """Decide and claim one delivery in one committed transaction; None if there is nothing to send."""
    now = utcnow()
    delivery = db.session.scalars(
        select(EmailDelivery).where(EmailDelivery.id == delivery_id, _claimable(now)).with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if delivery is None:
        db.session.rollback()
        return None
    info = kind_info(delivery.kind)
    category = delivery.category = delivery.category or info.category
    member = db.session.get(User, delivery.member_id)
    notification = db.session.get(Notification, delivery.notification_id) if delivery.notification_id else None
    if member is None or not member.is_active_account or (delivery.notification_id and notification is None):
        _suppress(delivery, "account_inactive")
        db.session.commit()
        return None
    # The lock serialises this member's capped sends (see the module docstring).
    prefs = preferences.member_preferences(member.id, lock=category in CAPPED)
    if not preferences.channel_enabled(member.id, category, "email"):
        _suppress(delivery, "preference")
        db.session.commit()
        return None
    if not info.urgent:
        until = quiet_until(now, prefs.time_zone, current_app.config["MESSAGING_QUIET_HOURS"])
        if until is not None:
            delivery.not_before, delivery.reason, delivery.enqueued_at = until, "quiet_hours", None
            db.session.commit()
            return None
    if category in CAPPED:
        window = [EmailDelivery.member_id == member.id, EmailDelivery.category.in_(CAPPED),
                  EmailDelivery.state.in_(("sending", "sent")), EmailDelivery.claimed_at > now - CAP_WINDOW,
                  EmailDelivery.id != delivery.id]
        used, oldest = db.session.execute(
            select(func.count(), func.min(EmailDelivery.claimed_at)).where(*window)
        ).one()
        if used >= current_app.config["MESSAGING_WEEKLY_CAP"]:
            if OVER_CAP[category] == "drop":
                _suppress(delivery, "frequency_cap")
            else:  # the next free slot: when the oldest send in the window leaves it
                delivery.not_before = oldest + CAP_WINDOW + timedelta(seconds=1)
                delivery.reason, delivery.enqueued_at = "frequency_cap", None
            db.session.commit()
            return None

    locale = normalise_locale(prefs.locale, current_app.config["MESSAGING_DEFAULT_LOCALE"])
    to = delivery.to_address or member.email
    links = _links(delivery, category)
    payload = notification.payload if notification is not None else delivery.payload
    try:
        rendered = render(
            delivery.kind,
            {"payload": payload or {}, "member_name": member.display_name, "action_url": (payload or {}).get("url"),
             **links},
            locale=locale, time_zone=prefs.time_zone,
        )
    except RenderError as exc:
        delivery.state, delivery.last_error, delivery.payload = "failed", str(exc)[:2000], {}
        db.session.commit()
        return None
    message_id = delivery.message_id or (
        f"<{delivery.id}.{secrets.token_hex(8)}@{current_app.config['MESSAGING_MESSAGE_ID_DOMAIN']}>"
    )
    headers = {"Content-Language": locale, "Auto-Submitted": "auto-generated", "X-Kinship-Kind": delivery.kind,
               "X-Kinship-Delivery": str(delivery.id)}
    if links["one_click_url"]:
        # RFC 8058: an HTTPS URI the mail client POSTs "List-Unsubscribe=One-Click" to.
        headers["List-Unsubscribe"] = f"<{links['one_click_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    try:
        message = mail.build(to=to, subject=rendered.subject, text=rendered.text, html=rendered.html,
                             message_id=message_id, headers=headers)
        message.message()  # header injection or an unencodable address fails here, before the claim
    except Exception as exc:
        delivery.state, delivery.last_error, delivery.payload = "failed", f"bad message: {exc}"[:2000], {}
        db.session.commit()
        return None
    delivery.state = "sending"
    delivery.attempts += 1
    delivery.claimed_at = now
    delivery.message_id = message_id
    delivery.locale = locale
    delivery.to_address = to
    delivery.reason = None
    db.session.commit()
    return Claimed(delivery.id, message_id, message)


def _finish(claimed: Claimed, **values) -> None:
    """Record the outcome, guarded on the claim (a row reclaimed after the lease is not ours)."""
    db.session.execute(
        update(EmailDelivery)
        .where(EmailDelivery.id == claimed.delivery_id, EmailDelivery.state == "sending",
               EmailDelivery.message_id == claimed.message_id)
        .values(**values)
    )
    db.session.commit()


def _injected_fault() -> None:
    """``sleep_before_send:<s>`` (tests only): stall after the claim commits, before SMTP."""
    fault = os.environ.get(FAULT_ENV)
    if fault and current_app.testing and fault.startswith("sleep_before_send:"):
        time.sleep(float(fault.split(":", 1)[1]))


def deliver(ids: list[int]) -> dict[str, int]:
    """Deliver each id (see the module docstring) over one SMTP connection; returns counts."""
    counts = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0}
    backoff = current_app.config["MESSAGING_RETRY_BACKOFF"]
    conn = mail.connection()
    try:
        for delivery_id in ids:
            claimed = _claim(delivery_id)
            if claimed is None:
                counts["skipped"] += 1
                continue
            _injected_fault()
            try:
                mail.send(claimed.message, conn)
            except mail.TemporaryFailure as exc:
                attempts = db.session.scalar(select(EmailDelivery.attempts).where(EmailDelivery.id == delivery_id))
                if attempts > len(backoff):
                    _finish(claimed, state="failed", last_error=f"gave up after {attempts} attempts: {exc}"[:2000],
                            payload={})
                    counts["failed"] += 1
                else:
                    _finish(claimed, state="pending", last_error=str(exc)[:2000], reason="retry", enqueued_at=None,
                            not_before=utcnow() + timedelta(seconds=backoff[attempts - 1]))
                    counts["retry"] += 1
                log.warning("delivery %s: temporary failure (%s)", delivery_id, exc)
                continue
            except mail.PermanentFailure as exc:
                _finish(claimed, state="failed", last_error=str(exc)[:2000], payload={})
                counts["failed"] += 1
                log.warning("delivery %s: permanent failure (%s)", delivery_id, exc)
                continue
            _finish(claimed, state="sent", sent_at=utcnow(), last_error=None, payload={})
            counts["sent"] += 1
    finally:
        mail.close_quietly(conn)
    return counts


def due_ids(limit: int) -> list[int]:
    """Deliveries a worker should try now and that no job was given recently (oldest first)."""
    now = utcnow()
    recently = now - _lease()
    ids = list(db.session.scalars(
        select(EmailDelivery.id)
        .where(_claimable(now), or_(EmailDelivery.enqueued_at.is_(None), EmailDelivery.enqueued_at < recently))
        .order_by(EmailDelivery.id).limit(limit)
    ))
    if ids:
        db.session.execute(update(EmailDelivery).where(EmailDelivery.id.in_(ids)).values(enqueued_at=now))
    return ids


def mark_enqueued(delivery_id: int) -> None:
    db.session.execute(update(EmailDelivery).where(EmailDelivery.id == delivery_id).values(enqueued_at=utcnow()))


def get_delivery(notification_id: int) -> EmailDelivery | None:
    return db.session.scalar(select(EmailDelivery).where(EmailDelivery.notification_id == notification_id))
