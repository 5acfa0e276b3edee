"""In-app notifications: the member's inbox (one ``{items, meta}`` page at a time, like every
collection of the API), unread count, mark read.

Notifications of a category the member switched off for ``in_app`` are left out of the list
and the count (they still exist: switching the category back on shows them again).
"""

from __future__ import annotations

from sqlalchemy import and_, func, not_, select, update

from community.models import Notification, utcnow
from errors import NotFound
from extensions import db
from pagination import paginate

from . import preferences
from .catalog import category_condition, kind_info


def _visible(member_id: int):
    conds = [Notification.member_id == member_id]
    for category, chans in preferences.channels(member_id).items():
        if not chans["in_app"]:
            conds.append(not_(category_condition(Notification.kind, category)))
    return and_(*conds)


def page(member_id: int, *, page: int, per_page: int, unread_only: bool) -> dict:
    """One page of the member's visible notifications, newest first (``{items, meta}``)."""
    query = select(Notification).where(_visible(member_id))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    result = paginate(query.order_by(Notification.id.desc()), page, per_page)
    for row in result["items"]:
        row.category = kind_info(row.kind).category  # transient, for the schema
    return {**result, "unread_count": unread_count(member_id)}


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
