"""Background jobs of the points domain: posting expiry of due lots, and warning members before it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from community.models import utcnow
from community.services import notify
from extensions import db
from jobs import Periodic, job

from . import ledger
from .models import PointLot

EXPIRY_BATCH = 500


@job("periodic", timeout=900, retries=2)
def expire_due_lots(batch: int = EXPIRY_BATCH) -> int:
    """Post one expiry entry per due lot (key ``expire:lot:<id>``), committing lot by lot.

    Safe to run twice or concurrently: each lot is re-checked under its member's lock and the
    entry key is unique, so a lot's expiry is posted exactly once.  Returns the entries posted.
    """
    now = utcnow()
    posted = 0
    last_id = 0
    while True:
        due = db.session.scalars(
            select(PointLot.id)
            .where(PointLot.expired_at.is_(None), PointLot.expires_at <= now, PointLot.id > last_id)
            .order_by(PointLot.id)
            .limit(batch)
        ).all()
        db.session.rollback()  # end the read before the first write (SQLite takes its lock per write tx)
        if not due:
            return posted
        for lot_id in due:
            if ledger.expire_lot(lot_id, now=now) is not None:
                posted += 1
            db.session.commit()
        last_id = due[-1]


EXPIRY_WARNING_DAYS = 30


@job("periodic", timeout=900, retries=2)
def warn_expiring_points(within_days: int = EXPIRY_WARNING_DAYS) -> int:
    """Tell each member whose points start expiring within ``within_days`` how many and when.

    One notification per member per first-expiry date (the dedupe key), so the daily run does
    not repeat itself, and a member hears again only when a later lot comes up.
    """
    now = utcnow()
    rows = db.session.execute(
        select(PointLot.member_id, func.min(PointLot.expires_at), func.sum(PointLot.remaining))
        .where(PointLot.remaining > 0, PointLot.expired_at.is_(None), PointLot.expires_at > now,
               PointLot.expires_at <= now + timedelta(days=within_days))
        .group_by(PointLot.member_id)
    ).all()
    db.session.rollback()
    for member_id, first, points in rows:
        notify(
            member_id, "points.expiring",
            {"points": int(points), "first_expires_at": first.isoformat() + "Z"},
            dedupe_key=f"points.expiring:{member_id}:{first.date().isoformat()}",
        )
        db.session.commit()
    return len(rows)


PERIODIC = [Periodic(expire_due_lots, interval=3600), Periodic(warn_expiring_points, interval=86400)]
