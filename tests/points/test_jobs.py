"""The expiry job through a real RQ worker, and the periodic schedule entry."""

from datetime import timedelta

from sqlalchemy import func, select

from community.models import utcnow
from extensions import db
from jobs import enqueue_now, periodic_schedule
from points import ledger
from points.jobs import expire_due_lots
from points.models import JournalEntry, PointLot
from tests.points.helpers import assert_ledger_consistent


def _expire_count():
    return db.session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "expire"))


def test_expiry_posts_once_per_lot_oldest_first(app, make_member, run_jobs):
    m = make_member()
    due = ledger.award(m.id, 30, key="old", reason="x")
    ledger.award(m.id, 20, key="new", reason="x")
    spent_out = ledger.award(m.id, 5, key="spent", reason="x")
    db.session.execute(db.update(PointLot).where(PointLot.entry_id.in_((due.id, spent_out.id)))
                       .values(expires_at=utcnow() + timedelta(minutes=2)))
    db.session.execute(db.update(PointLot).where(PointLot.entry_id == spent_out.id)
                       .values(expires_at=utcnow() + timedelta(minutes=1)))
    db.session.commit()
    # Spending 15 drains the oldest-expiring lot ("spent", 5) first, then 10 of "old".
    ledger.hold(m.id, 15, key="h", reason="x", source_type="redemption", source_id=1)
    db.session.commit()
    # Then both lots' time passes (a spend after that would post their expiry itself first).
    db.session.execute(db.update(PointLot).where(PointLot.entry_id.in_((due.id, spent_out.id)))
                       .values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()

    enqueue_now(expire_due_lots)
    enqueue_now(expire_due_lots)
    run_jobs()
    db.session.rollback()
    assert _expire_count() == 1  # "spent" was empty: marked expired without an entry
    entry = db.session.scalar(select(JournalEntry).where(JournalEntry.kind == "expire"))
    assert entry.amount == 20 and entry.key.startswith("expire:lot:")
    b = ledger.get_balance(m.id)
    assert (b.available, b.held) == (20, 15)
    assert db.session.scalar(select(func.count()).select_from(PointLot).where(PointLot.expired_at.isnot(None))) == 2
    assert expire_due_lots() == 0
    assert_ledger_consistent()


def test_expiry_jobs_are_in_the_periodic_schedule():
    from points.jobs import warn_expiring_points

    entry = next(p for p in periodic_schedule() if p.fn is expire_due_lots)
    assert entry.interval == 3600 and expire_due_lots.spec.queue == "periodic"
    assert next(p for p in periodic_schedule() if p.fn is warn_expiring_points).interval == 86400


def test_cli_expire(app, make_member):
    m = make_member()
    ledger.award(m.id, 3, key="a", reason="x")
    db.session.execute(db.update(PointLot).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["points", "expire"])
    assert "1 expiry entries posted" in result.output
    db.session.rollback()
    assert ledger.get_balance(m.id).available == 0


def test_expiry_warning_once_per_member_and_date(app, make_member):
    from community.models import Notification
    from points.jobs import warn_expiring_points

    m, other = make_member(), make_member()
    ledger.award(m.id, 8, key="soon", reason="x")
    ledger.award(m.id, 4, key="soon2", reason="x")
    ledger.award(other.id, 9, key="later", reason="x")
    db.session.execute(db.update(PointLot).where(PointLot.member_id == m.id)
                       .values(expires_at=utcnow() + timedelta(days=5)))
    db.session.commit()
    assert warn_expiring_points() == 1
    assert warn_expiring_points() == 1
    notes = db.session.scalars(select(Notification).where(Notification.kind == "points.expiring")).all()
    assert len(notes) == 1 and notes[0].member_id == m.id and notes[0].payload["points"] == 12
