"""Email delivery: one ``email_deliveries`` row per email, sent at most once.

The life of a delivery::

    pending --claim--> sending --SMTP 250--> sent
       ^  \\                \\--4xx / connection--> pending (not_before = now + backoff) … failed
       |   \\--preference off / over the cap (marketing) / account gone--> suppressed
       \\--quiet hours / over the cap (research)--> pending (not_before = next free time)

``deliver(ids)`` works in short transactions:

1. **claim** (one transaction per chunk of ids, committed before anything is sent): lock the rows, decide
   (preferences, frequency cap, quiet hours), then mark them ``sending``
   with ``attempts + 1``, the claim time and a ``Message-ID`` chosen once and kept for every
   retry.  Only a ``pending`` row that is due, or a ``sending`` row whose claim is older than
   the lease (its worker died), can be claimed, so two jobs for one delivery never both send.
2. **render and send** over the open SMTP connection (several in parallel for a batch).
3. **record** ``sent`` (or the failure) at once: one commit for a single delivery; for a batch,
   group-committed by the recorder (``_Recorder``) before that connection's next message can be
   accepted.

At-least-once edge: if the process dies after the SMTP server accepted a message (250) and
before its outcome is committed, the row stays ``sending`` and is sent again after the lease,
with the same ``Message-ID`` (which receiving systems use to discard duplicates).  At most one
message per SMTP connection is ever in that state (no rendering, no other I/O in the window).
A death anywhere else (before or during the SMTP transaction, after the commit) sends nothing
twice.

The frequency cap counts this member's ``marketing`` and ``research`` deliveries claimed in the
last 7 days (``sending`` and ``sent``), under a lock on the member's preferences row, so two
workers cannot both take the last slot.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import and_, bindparam, func, literal, or_, select, text, update

from community.models import Notification, User, utcnow
from extensions import db

from . import mail, preferences
from .catalog import CAPPED, DEFAULT_CHANNELS, OVER_CAP, kind_info
from .models import EmailDelivery, MemberPreferences, NotificationPreference
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


def queue_for_notifications(notification_ids: list[int]) -> int:
    """Deliveries for notifications a bulk writer inserted itself (the tier run's ``INSERT ...
    SELECT``), their jobs enqueued after the commit in batches of ``MESSAGING_BATCH_SIZE``.

    One ``INSERT ... SELECT ... RETURNING`` per thousand ids (nothing loaded but the new ids),
    so the email goes out at the commit like ``notify``'s, not at the sweeper's next backfill.
    Notifications that have a delivery already are skipped.  Returns how many were created.
    """
    from .jobs import schedule_many

    n = Notification.__table__
    d = EmailDelivery.__table__
    now = utcnow()
    created: list[int] = []
    for start in range(0, len(notification_ids), 1000):
        chunk = notification_ids[start:start + 1000]
        rows = (
            select(n.c.member_id, n.c.id, n.c.kind, n.c.created_at, literal(now))
            .where(n.c.id.in_(chunk))
            .where(~select(d.c.id).where(d.c.notification_id == n.c.id).exists())
        )
        created += db.session.scalars(
            d.insert().from_select(["member_id", "notification_id", "kind", "not_before", "enqueued_at"], rows)
            .returning(d.c.id)
        ).all()
    schedule_many(created)
    return len(created)


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
    """A delivery this worker claimed, with what rendering it needs (read inside the claim)."""

    delivery_id: int
    message_id: str
    attempts: int
    claimed_at: datetime
    kind: str
    payload: dict
    member_name: str
    locale: str
    time_zone: str
    links: dict
    to: str


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


def _suppressed(reason: str) -> dict:
    return {"state": "suppressed", "reason": reason, "payload": {}}


@dataclass
class _Batch:
    """What the claim of a batch reads in a few queries instead of a few per delivery."""

    users: dict
    notifications: dict
    prefs: dict
    overrides: dict
    holdout: frozenset = frozenset()  # members of the batch's marketing rows in the programme holdout

    @classmethod
    def load(cls, rows: list[EmailDelivery]) -> _Batch:
        member_ids = {r.member_id for r in rows}
        note_ids = [r.notification_id for r in rows if r.notification_id]
        # Plain rows of the few columns the decision reads (no ORM objects to build and track).
        u, n = User.__table__.c, Notification.__table__.c
        p, o = MemberPreferences.__table__.c, NotificationPreference.__table__.c
        run = db.session.connection().execute
        users = {r.id: r for r in run(select(u.id, u.email, u.display_name, u.is_active_account)
                                      .where(u.id.in_(member_ids)))}
        notes = {r.id: r for r in run(select(n.id, n.payload).where(n.id.in_(note_ids)))} if note_ids else {}
        prefs = {r.member_id: r for r in run(select(p.member_id, p.locale, p.time_zone)
                                             .where(p.member_id.in_(member_ids)))}
        overrides = {(r.member_id, r.category): r.enabled for r in run(
            select(o.member_id, o.category, o.enabled).where(o.member_id.in_(member_ids), o.channel == "email"))}
        marketing = {r.member_id for r in rows if (r.category or kind_info(r.kind).category) == "marketing"}
        if marketing:  # one query per batch (analytics' global control group gets no marketing)
            from analytics.experiments import holdout_members

            return cls(users, notes, prefs, overrides, frozenset(holdout_members(marketing)))
        return cls(users, notes, prefs, overrides)

    def email_enabled(self, member_id: int, category: str) -> bool:
        if category == "transactional":
            return True
        found = self.overrides.get((member_id, category))
        return DEFAULT_CHANNELS.get(category, {}).get("email", True) if found is None else found


def _decide(delivery, batch: _Batch, now: datetime, capped_here: dict) -> tuple[Claimed | None, dict]:
    """Decide one locked delivery (a row): what to send, if anything, and the row's new values.

    ``capped_here``: capped sends claimed earlier in this batch, per member (their UPDATEs are
    written with the batch's, after every decision, so the cap query cannot see them yet).
    """
    info = kind_info(delivery.kind)
    category = delivery.category or info.category
    member = batch.users.get(delivery.member_id)
    notification = batch.notifications.get(delivery.notification_id) if delivery.notification_id else None
    if member is None or not member.is_active_account or (delivery.notification_id and notification is None):
        return None, {"category": category, **_suppressed("account_inactive")}
    if category == "marketing" and member.id in batch.holdout:
        return None, {"category": category, **_suppressed("holdout")}
    if not batch.email_enabled(member.id, category):
        return None, {"category": category, **_suppressed("preference")}
    prefs = batch.prefs.get(member.id)
    locale = prefs.locale if prefs else current_app.config["MESSAGING_DEFAULT_LOCALE"]
    time_zone = prefs.time_zone if prefs else "UTC"
    if not info.urgent:
        until = quiet_until(now, time_zone, current_app.config["MESSAGING_QUIET_HOURS"])
        if until is not None:
            return None, {"category": category, "not_before": until, "reason": "quiet_hours", "enqueued_at": None}
    if category in CAPPED:
        # The lock on the member's row serialises their capped sends (see the module docstring).
        preferences.member_preferences(member.id, lock=True)
        used, oldest = db.session.execute(
            select(func.count(), func.min(EmailDelivery.claimed_at)).where(
                EmailDelivery.member_id == member.id, EmailDelivery.category.in_(CAPPED),
                EmailDelivery.state.in_(("sending", "sent")), EmailDelivery.claimed_at > now - CAP_WINDOW,
                EmailDelivery.id != delivery.id,
            )
        ).one()
        earlier = capped_here.get(member.id, 0)
        if earlier:  # claimed at ``now`` by this batch
            used, oldest = used + earlier, min(oldest, now) if oldest is not None else now
        if used >= current_app.config["MESSAGING_WEEKLY_CAP"]:
            if OVER_CAP[category] == "drop":
                return None, {"category": category, **_suppressed("frequency_cap")}
            # the next free slot: when the oldest send in the window leaves it
            return None, {"category": category, "not_before": oldest + CAP_WINDOW + timedelta(seconds=1),
                          "reason": "frequency_cap", "enqueued_at": None}
        capped_here[member.id] = earlier + 1

    locale = normalise_locale(locale, current_app.config["MESSAGING_DEFAULT_LOCALE"])
    message_id = delivery.message_id or (
        f"<{delivery.id}.{secrets.token_hex(8)}@{current_app.config['MESSAGING_MESSAGE_ID_DOMAIN']}>"
    )
    payload = (notification.payload if notification is not None else delivery.payload) or {}
    attempts = delivery.attempts + 1
    to_address = delivery.to_address or member.email
    values = {"category": category, "state": "sending", "attempts": attempts, "claimed_at": now,
              "message_id": message_id, "locale": locale, "to_address": to_address, "reason": None}
    return Claimed(delivery.id, message_id, attempts, now, delivery.kind, dict(payload), member.display_name,
                   locale, time_zone, _links(delivery, category), to_address), values


_SENDING_COLUMNS = ("attempts", "category", "claimed_at", "locale", "message_id", "reason", "state", "to_address")
# The claim of the rows to send, on PostgreSQL: the rows are locked by this transaction's
# ``SELECT ... FOR UPDATE``, so the lock is the guard, as for the per-row UPDATEs of the other
# decisions.
_CLAIM_PG = (
    "UPDATE email_deliveries AS d SET state = 'sending', reason = NULL, claimed_at = %(now)s, "
    "attempts = v.attempts, message_id = v.message_id, category = v.category, locale = v.locale, "
    "to_address = v.to_address "
    "FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(message_ids)s::varchar[], %(categories)s::varchar[], "
    "%(locales)s::varchar[], %(to_addresses)s::varchar[]) AS v(id, attempts, message_id, category, locale, "
    "to_address) WHERE d.id = v.id"
)


def _claim_batch(ids: list[int]) -> list[Claimed]:
    """Lock, decide and claim ``ids`` in one committed transaction; returns what to send.

    ``SKIP LOCKED`` (PostgreSQL): rows another worker is claiming right now are left to it.
    Plain rows in, one executemany of guarded-by-lock UPDATEs out (per set of columns written),
    no ORM objects.  Rendering happens after the commit (in the senders), so the transaction
    stays short.
    """
    now = utcnow()
    t = EmailDelivery.__table__
    conn = db.session.connection()
    rows = conn.execute(
        select(t.c.id, t.c.member_id, t.c.notification_id, t.c.kind, t.c.category, t.c.message_id,
               t.c.attempts, t.c.to_address, t.c.payload)
        .where(t.c.id.in_(ids), _claimable(now)).order_by(t.c.id).with_for_update(skip_locked=True)
    ).all()
    if not rows:
        db.session.rollback()
        return []
    batch = _Batch.load(rows)
    claimed: list[Claimed] = []
    updates: dict[tuple, list[dict]] = {}
    capped_here: dict[int, int] = {}
    for row in rows:
        item, values = _decide(row, batch, now, capped_here)
        if item is not None:
            claimed.append(item)
        updates.setdefault(tuple(sorted(values)), []).append({"_id": row.id, **values})
    sending = updates.pop(_SENDING_COLUMNS, None) if conn.dialect.name == "postgresql" else None
    if sending:
        # The usual decision, every claimed row, as one statement of arrays (not one UPDATE per row).
        conn.exec_driver_sql(_CLAIM_PG, {
            "now": now, "ids": [p["_id"] for p in sending], "attempts": [p["attempts"] for p in sending],
            "message_ids": [p["message_id"] for p in sending], "categories": [p["category"] for p in sending],
            "locales": [p["locale"] for p in sending], "to_addresses": [p["to_address"] for p in sending],
        })
    for columns, params in updates.items():
        conn.execute(t.update().where(t.c.id == bindparam("_id"))
                     .values({c: bindparam(f"v_{c}", type_=t.c[c].type) for c in columns}),
                     [{"_id": p.pop("_id"), **{f"v_{c}": v for c, v in p.items()}} for p in params])
    db.session.commit()
    return claimed


def _build(item: Claimed) -> mail.PreparedMessage:
    """Render and serialise the message (RenderError / ValueError: it can never be sent)."""
    rendered = render(
        item.kind,
        {"payload": item.payload, "member_name": item.member_name, "action_url": item.payload.get("url"),
         **item.links},
        locale=item.locale, time_zone=item.time_zone,
    )
    fixed = (("Content-Language", item.locale), ("Auto-Submitted", "auto-generated"), ("X-Kinship-Kind", item.kind))
    headers = {}
    if item.links["one_click_url"]:
        # RFC 8058: an HTTPS URI the mail client POSTs "List-Unsubscribe=One-Click" to.
        fixed += (("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),)
        headers["List-Unsubscribe"] = f"<{item.links['one_click_url']}>"
    try:
        return mail.build(to=item.to, subject=rendered.subject, text=rendered.text, html=rendered.html,
                          message_id=item.message_id, headers=headers, fixed=fixed)
    except Exception as exc:  # a malformed address or header
        raise ValueError(f"bad message: {exc}") from exc


def _finish(claimed: Claimed, **values) -> None:
    """Record the outcome, guarded on the claim (a row reclaimed after the lease is not ours).

    On PostgreSQL the commit does not wait for its WAL flush (``synchronous_commit`` off for this
    transaction only): once the server has the COMMIT, a dead *worker* loses nothing; only a crash
    of the database server within ~0.6 s (3 x ``wal_writer_delay``) could forget the outcome, and
    the row is then sent again after the lease with the same ``Message-ID`` (docs/messaging.md).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit TO off"))
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


class _Direct:
    """Outcomes recorded by the sending thread itself, one commit each (a single connection)."""

    def __init__(self, counts: dict):
        self.counts = counts

    def ready(self) -> None:
        pass

    def record(self, item: Claimed, outcome: str, **values) -> None:
        _finish(item, **values)
        self.counts[outcome] += 1


class _Outcome:
    __slots__ = ("item", "outcome", "values", "done")

    def __init__(self, item: Claimed, outcome: str, values: dict):
        self.item, self.outcome, self.values, self.done = item, outcome, values, threading.Event()


# Recorder threads (each with its own connection): an outcome handed over while one group is
# being written goes out in the next group at once, on the other connection.
RECORDERS = 2


class _Recorder:
    """Group commit of the sender threads' outcomes: one transaction for whatever is waiting.

    A sender hands its outcome over right after the server's answer and, before its next SMTP
    transaction, waits until that outcome is committed (``_Grouped.ready``).  So at any moment
    each connection has at most one message the server accepted and the database has not
    recorded: the at-least-once window is what it was with one commit per message (at most one
    message per connection, ``MESSAGING_SMTP_CONNECTIONS``), but the outcomes of the messages
    answered meanwhile on the other connections share one guarded ``UPDATE ... WHERE id IN``
    and one COMMIT.  The sender renders its next message while the commit runs.
    """

    def __init__(self, app, counts: dict, lock: threading.Lock):
        self.app, self.counts, self.lock = app, counts, lock
        self.queue: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._run, name=f"smtp-recorder-{i}", daemon=True)
                        for i in range(RECORDERS)]
        for thread in self.threads:
            thread.start()

    def submit(self, item: Claimed, outcome: str, values: dict) -> _Outcome:
        entry = _Outcome(item, outcome, values)
        self.queue.put(entry)
        return entry

    def close(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()

    def _run(self) -> None:
        with self.app.app_context():
            conn = None
            try:
                stop = False
                while not stop:
                    first = self.queue.get()
                    if first is None:
                        break
                    group = [first]
                    while len(group) < CLAIM_CHUNK:
                        try:
                            entry = self.queue.get_nowait()
                        except queue.Empty:
                            break
                        if entry is None:
                            stop = True
                            break
                        group.append(entry)
                    conn = self._write(conn, group)
            finally:
                _release_outcome_connection(conn)
                db.session.remove()

    def _write(self, conn, group: list[_Outcome]):
        try:
            conn = conn or _outcome_connection()
            _record_group(conn, group)
        except Exception:  # the database went away: these claims wait for their lease
            log.exception("deliveries %s: could not record the outcome", [e.item.delivery_id for e in group])
            _release_outcome_connection(conn)
            conn = None
        else:
            with self.lock:
                for entry in group:
                    self.counts[entry.outcome] += 1
        finally:
            for entry in group:
                entry.done.set()
        return conn


class _Grouped:
    """One sender's handle on the recorder: at most one outcome of its own in flight."""

    def __init__(self, recorder: _Recorder):
        self.recorder, self.last = recorder, None

    def ready(self) -> None:
        if self.last is not None:
            self.last.done.wait()
            self.last = None

    def record(self, item: Claimed, outcome: str, **values) -> None:
        self.last = self.recorder.submit(item, outcome, values)


def _outcome_connection():
    """The recorder's own connection.  PostgreSQL: in autocommit, each guarded UPDATE is its own
    transaction (one round trip per group, no BEGIN/COMMIT), and its commits do not wait for the
    WAL flush (as in ``_finish``; set for this session, reset before the connection goes back to
    the pool).  SQLite: a transaction per group (``BEGIN IMMEDIATE``, extensions.py)."""
    conn = db.engine.connect()
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SET synchronous_commit TO off")
    return conn


def _release_outcome_connection(conn) -> None:
    if conn is None:
        return
    try:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("RESET synchronous_commit")
        conn.close()
    except Exception:  # a broken connection: the pool discards it
        conn.invalidate()
        conn.close()


def _record_group(conn, group: list[_Outcome]) -> None:
    """Record a group of outcomes, each guarded on its claim (``state`` ``sending`` and the claim's
    ``Message-ID``; a ``Message-ID`` names its own delivery, so ``id IN ... AND message_id IN ...``
    matches exactly the rows claimed).  One statement (and, in autocommit, one commit) for the
    ``sent`` ones, one each for the rarer other outcomes."""
    if conn.dialect.name == "postgresql":
        _record_statements(conn, group)
    else:
        with conn.begin():
            _record_statements(conn, group)


# The recorder's one frequent statement, as the driver takes it (PostgreSQL): no SQL expression
# built, compiled or cache-keyed per group, one text whatever the group's size (arrays, not an
# ``IN`` list per size), so psycopg prepares it once per connection.
_RECORD_SENT_PG = (
    "UPDATE email_deliveries SET state = 'sent', sent_at = %(now)s, last_error = NULL, payload = '{}' "
    "WHERE id = ANY(%(ids)s) AND state = 'sending' AND message_id = ANY(%(message_ids)s)"
)


def _record_statements(conn, group: list[_Outcome]) -> None:
    t = EmailDelivery.__table__
    sent = [e.item for e in group if e.outcome == "sent"]
    if sent and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_RECORD_SENT_PG, {"now": utcnow(), "ids": [c.delivery_id for c in sent],
                                               "message_ids": [c.message_id for c in sent]})
    elif sent:
        conn.execute(
            t.update()
            .where(t.c.id.in_([c.delivery_id for c in sent]), t.c.state == "sending",
                   t.c.message_id.in_([c.message_id for c in sent]))
            .values(state="sent", sent_at=utcnow(), last_error=None, payload={})
        )
    for entry in group:
        if entry.outcome != "sent":
            conn.execute(
                t.update()
                .where(t.c.id == entry.item.delivery_id, t.c.state == "sending",
                       t.c.message_id == entry.item.message_id)
                .values(**entry.values)
            )


def _send_one(item: Claimed, conn, outcomes, backoff: tuple[int, ...], stale_after: timedelta,
              counts: dict) -> None:
    """Build, send and hand over the outcome of one claimed delivery (``outcomes``: ``_Direct``
    commits it at once, ``_Grouped`` with the other connections' and before the next send)."""
    if utcnow() - item.claimed_at > stale_after:
        counts["skipped"] += 1  # it may be reclaimed by now: the sweeper hands it on after the lease
        return
    try:
        message = _build(item)
    except (RenderError, ValueError) as exc:
        outcomes.record(item, "failed", state="failed", last_error=str(exc)[:2000], payload={})
        return
    _injected_fault()
    try:
        # The envelope goes out while this connection's previous outcome is being committed;
        # ``ready`` waits for that commit before the content, so the server accepts nothing
        # while an earlier acceptance on this connection is unrecorded.
        mail.send(message, conn, before_accept=outcomes.ready)
    except mail.TemporaryFailure as exc:
        if item.attempts > len(backoff):
            outcomes.record(item, "failed", state="failed", payload={},
                            last_error=f"gave up after {item.attempts} attempts: {exc}"[:2000])
        else:
            outcomes.record(item, "retry", state="pending", last_error=str(exc)[:2000], reason="retry",
                            enqueued_at=None, not_before=utcnow() + timedelta(seconds=backoff[item.attempts - 1]))
        log.warning("delivery %s: temporary failure (%s)", item.delivery_id, exc)
        return
    except mail.PermanentFailure as exc:
        outcomes.record(item, "failed", state="failed", last_error=str(exc)[:2000], payload={})
        log.warning("delivery %s: permanent failure (%s)", item.delivery_id, exc)
        return
    # First thing after the server's 250: this commit closes the at-least-once window.
    outcomes.record(item, "sent", state="sent", sent_at=utcnow(), last_error=None, payload={})


CLAIM_CHUNK = 50


def deliver(ids: list[int]) -> dict[str, int]:
    """Deliver ``ids`` (see the module docstring); returns counts by outcome.

    This thread claims ``CLAIM_CHUNK`` ids at a time (one commit each).  Up to
    ``MESSAGING_SMTP_CONNECTIONS`` sender threads, each with its own SMTP connection and app
    context, render and send every claimed message, so the waits for the server's replies
    overlap with the rendering of the next messages; one recorder thread commits their
    outcomes in groups (``_Recorder``: still at most one unrecorded accepted message per
    connection).  A claim older than half the lease when its turn comes is not sent (it may
    be reclaimed by now).
    """
    counts = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0}
    backoff = current_app.config["MESSAGING_RETRY_BACKOFF"]
    stale_after = _lease() / 2
    senders = max(1, min(current_app.config["MESSAGING_SMTP_CONNECTIONS"], len(ids)))
    if senders == 1:
        conn = mail.connection()
        direct = _Direct(counts)
        try:
            for start in range(0, len(ids), CLAIM_CHUNK):
                chunk = ids[start:start + CLAIM_CHUNK]
                claimed = _claim_batch(chunk)
                counts["skipped"] += len(chunk) - len(claimed)
                for item in claimed:
                    _send_one(item, conn, direct, backoff, stale_after, counts)
        finally:
            mail.close_quietly(conn)
        return counts

    app = current_app._get_current_object()
    outbox: queue.Queue = queue.Queue(maxsize=senders * 4)
    lock = threading.Lock()
    recorder = _Recorder(app, counts, lock)

    def sender() -> None:
        mine = {"skipped": 0}
        outcomes = _Grouped(recorder)
        with app.app_context():
            conn = mail.connection()
            try:
                while (item := outbox.get()) is not None:
                    try:
                        _send_one(item, conn, outcomes, backoff, stale_after, mine)
                    except Exception:  # unexpected: the claim waits for the lease
                        log.exception("delivery %s: could not be delivered", item.delivery_id)
                outcomes.ready()
            finally:
                mail.close_quietly(conn)
                db.session.remove()
        with lock:
            counts["skipped"] += mine["skipped"]

    threads = [threading.Thread(target=sender, name=f"smtp-sender-{i}", daemon=True) for i in range(senders)]
    for thread in threads:
        thread.start()
    try:
        for start in range(0, len(ids), CLAIM_CHUNK):
            chunk = ids[start:start + CLAIM_CHUNK]
            claimed = _claim_batch(chunk)
            with lock:
                counts["skipped"] += len(chunk) - len(claimed)
            for item in claimed:
                outbox.put(item)
    finally:
        for _ in threads:
            outbox.put(None)
        for thread in threads:
            thread.join()
        recorder.close()
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
