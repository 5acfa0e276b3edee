"""In-app notifications: the member's inbox with cursor pagination, unread count, mark read.

Notifications of a category the member switched off for ``in_app`` are left out of the list
and the count (they still exist: switching the category back on shows them again).
The cursor is opaque to clients: the id of the last item seen, signed so a client cannot
page through arbitrary ids of its own making (not a secret, just not an API).
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import and_, func, not_, select, update

from community.models import Notification, utcnow
from errors import NotFound, ValidationError
from extensions import db

from . import preferences
from .catalog import category_condition, kind_info

MAX_LIMIT = 100


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="kinship.messaging.inbox-cursor")


def _visible(member_id: int):
    conds = [Notification.member_id == member_id]
    for category, chans in preferences.channels(member_id).items():
        if not chans["in_app"]:
            conds.append(not_(category_condition(Notification.kind, category)))
    return and_(*conds)


def page(member_id: int, *, cursor: str | None, limit: int, unread_only: bool) -> dict:
    before = None
    if cursor:
        try:
            data = _serializer().loads(cursor)
        except BadSignature as exc:
            raise ValidationError("Invalid cursor.", fields={"cursor": ["Not a cursor from this API."]}) from exc
        if not isinstance(data, dict) or data.get("m") != member_id or not isinstance(data.get("b"), int):
            raise ValidationError("Invalid cursor.", fields={"cursor": ["Not a cursor from this API."]})
        before = data["b"]
    visible = _visible(member_id)
    query = select(Notification).where(visible)
    if before is not None:
        query = query.where(Notification.id < before)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    rows = list(db.session.scalars(query.order_by(Notification.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row.category = kind_info(row.kind).category  # transient, for the schema
    return {
        "items": rows,
        "next_cursor": _serializer().dumps({"m": member_id, "b": rows[-1].id}) if more else None,
        "unread_count": unread_count(member_id),
    }


def unread_count(member_id: int) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Notification).where(_visible(member_id), Notification.read_at.is_(None))
    )


def mark_read(member_id: int, notification_id: int) -> Notification:
    note = db.session.get(Notification, notification_id)
    if note is None or note.member_id != member_id:
        raise NotFound("No such notification.")
    if note.read_at is None:
        db.session.execute(
            update(Notification).where(Notification.id == note.id, Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        db.session.refresh(note)
    note.category = kind_info(note.kind).category
    return note


def mark_all_read(member_id: int) -> int:
    return db.session.execute(
        update(Notification).where(Notification.member_id == member_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    ).rowcount
