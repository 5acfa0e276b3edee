"""Real concurrent spenders against one balance, on whichever database the run uses."""

from sqlalchemy import func, select

from extensions import db
from points import ledger
from points.ledger import InsufficientPoints
from points.models import JournalEntry
from tests.conftest import in_threads
from tests.points.helpers import assert_ledger_consistent


def test_200_concurrent_spends_against_a_balance_covering_50(app, make_member):
    m = make_member()
    member_id = m.id
    # Several lots, so concurrent holds also race on lot consumption.
    for i in range(5):
        ledger.award(member_id, 10, key=f"seed:{i}", reason="seed")
    db.session.commit()

    def spend(i):
        with app.app_context():
            try:
                ledger.hold(member_id, 1, key=f"spend:{i}", reason="coffee", source_type="redemption", source_id=i)
                db.session.commit()
                return "ok"
            except InsufficientPoints:
                db.session.rollback()
                return "insufficient"
            finally:
                db.session.remove()

    results = in_threads(200, spend)
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert results.count("ok") == 50 and results.count("insufficient") == 150
    db.session.rollback()
    balance = ledger.get_balance(member_id)
    assert (balance.available, balance.held) == (0, 50)
    holds = db.session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "hold"))
    assert holds == 50
    assert_ledger_consistent()


def test_concurrent_replays_of_one_key_award_once(app, make_member):
    m = make_member()
    member_id = m.id

    def replay(i):
        with app.app_context():
            try:
                entry = ledger.award(member_id, 5, key="purchase:event-1", reason="purchase")
                db.session.commit()
                return entry.id
            finally:
                db.session.remove()

    results = in_threads(20, replay)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    db.session.rollback()
    assert ledger.get_balance(member_id).available == 5
    assert_ledger_consistent()


def test_concurrent_settle_and_release_of_one_hold(app, make_member):
    from errors import Conflict

    m = make_member()
    member_id = m.id
    ledger.award(member_id, 10, key="seed", reason="seed")
    ledger.hold(member_id, 10, key="h", reason="x", source_type="redemption", source_id=1)
    db.session.commit()

    def close(i):
        with app.app_context():
            try:
                if i % 2:
                    ledger.settle_hold(key=f"settle:{i}", source_type="redemption", source_id=1)
                else:
                    ledger.release_hold(key=f"release:{i}", source_type="redemption", source_id=1, reason="x")
                db.session.commit()
                return "closed"
            except Conflict as exc:
                db.session.rollback()
                return exc.code
            finally:
                db.session.remove()

    results = in_threads(10, close)
    assert results.count("closed") == 1 and results.count("already_closed") == 9, results
    db.session.rollback()
    balance = ledger.get_balance(member_id)
    assert balance.held == 0 and balance.available in (0, 10)
    assert_ledger_consistent()


def test_concurrent_expiry_runs_post_each_lot_once(app, make_member):
    from datetime import timedelta

    from community.models import utcnow
    from points.jobs import expire_due_lots
    from points.models import PointLot

    members = [make_member().id for _ in range(3)]
    for i, member_id in enumerate(members):
        for j in range(4):
            ledger.award(member_id, 5, key=f"lot:{i}:{j}", reason="x")
    db.session.execute(db.update(PointLot).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()

    def run(i):
        with app.app_context():
            return expire_due_lots()

    results = in_threads(4, run)
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 12
    db.session.rollback()
    expired = db.session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "expire"))
    assert expired == 12
    assert all(ledger.get_balance(m).available == 0 for m in members)
    assert_ledger_consistent()
