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
