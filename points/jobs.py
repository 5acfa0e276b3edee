"""Background jobs of the points domain: posting expiry of lots that reached their date."""

from __future__ import annotations

from sqlalchemy import select

from community.models import utcnow
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


PERIODIC = [Periodic(expire_due_lots, interval=3600)]
