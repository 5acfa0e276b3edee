from datetime import timedelta

import pytest
from sqlalchemy import func, select

from errors import Conflict, NotFound, ValidationError
from extensions import db
from points import ledger
from points.ledger import InsufficientPoints
from points.models import JournalEntry, JournalLine, PointLot
from tests.points.helpers import assert_ledger_consistent


def bal(member):
    b = ledger.get_balance(member.id)
    return (b.available, b.held, b.lifetime_earned)


def test_award_is_balanced_and_idempotent(make_member):
    m = make_member()
    e1 = ledger.award(m.id, 100, key="k1", reason="welcome", source_type="post", source_id=7)
    e2 = ledger.award(m.id, 100, key="k1", reason="welcome", source_type="post", source_id=7)
    db.session.commit()
    assert e1.id == e2.id
    assert bal(m) == (100, 0, 100)
    lines = db.session.execute(select(JournalLine.account, JournalLine.amount).where(JournalLine.entry_id == e1.id))
    assert sorted(lines) == [("available", 100), ("issued", -100)]
    assert db.session.scalar(select(func.count()).select_from(JournalEntry)) == 1
    assert_ledger_consistent()


def test_same_key_other_payload_is_conflict(make_member):
    m = make_member()
    ledger.award(m.id, 100, key="k1", reason="x")
    with pytest.raises(Conflict) as err:
        ledger.award(m.id, 101, key="k1", reason="x")
    assert err.value.code == "idempotency_conflict"


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "3"])
def test_award_rejects_bad_amounts(make_member, amount):
    m = make_member()
    with pytest.raises(ValidationError):
        ledger.award(m.id, amount, key="k", reason="x")


def test_hold_settle_release(make_member):
    m = make_member()
    ledger.award(m.id, 100, key="a", reason="x")
    h = ledger.hold(m.id, 30, key="redemption:1:hold", reason="mug", source_type="redemption", source_id=1)
    assert ledger.hold(m.id, 30, key="redemption:1:hold", reason="mug", source_type="redemption",
                       source_id=1).id == h.id
    assert bal(m) == (70, 30, 100)
    s = ledger.settle_hold(key="redemption:1:settle", source_type="redemption", source_id=1)
    assert ledger.settle_hold(key="redemption:1:settle", source_type="redemption", source_id=1).id == s.id
    assert bal(m) == (70, 0, 100)
    with pytest.raises(Conflict) as err:
        ledger.release_hold(key="redemption:1:release", source_type="redemption", source_id=1, reason="x")
    assert err.value.code == "already_closed"

    ledger.hold(m.id, 50, key="redemption:2:hold", reason="cap", source_type="redemption", source_id=2)
    r = ledger.release_hold(key="redemption:2:release", source_type="redemption", source_id=2, reason="cancelled")
    assert r.related_id is not None
    assert bal(m) == (70, 0, 100)
    db.session.commit()
    assert_ledger_consistent()


def test_hold_insufficient_writes_nothing(make_member):
    m = make_member()
    with pytest.raises(InsufficientPoints) as err:
        ledger.hold(m.id, 1, key="h", reason="x", source_type="redemption", source_id=1)
    assert err.value.status == 409 and err.value.code == "insufficient_points"
    ledger.award(m.id, 10, key="a", reason="x")
    with pytest.raises(InsufficientPoints):
        ledger.hold(m.id, 11, key="h", reason="x", source_type="redemption", source_id=1)
    assert db.session.scalar(select(func.count()).select_from(JournalEntry)) == 1
    assert bal(m) == (10, 0, 10)


def test_settle_unknown_hold_is_404(make_member):
    with pytest.raises(NotFound):
        ledger.settle_hold(key="s", source_type="redemption", source_id=99)


def test_spending_uses_oldest_expiring_lot_first(make_member):
    m = make_member()
    old = ledger.award(m.id, 10, key="a1", reason="x")
    new = ledger.award(m.id, 10, key="a2", reason="x")
    db.session.execute(
        db.update(PointLot).where(PointLot.entry_id == new.id).values(expires_at=ledger.utcnow() + timedelta(days=900))
    )
    ledger.hold(m.id, 15, key="h", reason="x", source_type="redemption", source_id=1)
    remaining = dict(db.session.execute(select(PointLot.entry_id, PointLot.remaining)).all())
    assert remaining == {old.id: 0, new.id: 5}
    ledger.release_hold(key="r", source_type="redemption", source_id=1, reason="x")
    remaining = dict(db.session.execute(select(PointLot.entry_id, PointLot.remaining)).all())
    assert remaining == {old.id: 10, new.id: 10}
    db.session.commit()
    assert_ledger_consistent()


def test_reverse_award_claws_back_only_what_is_left(make_member):
    m = make_member()
    a = ledger.award(m.id, 100, key="a", reason="post", source_type="post", source_id=1)
    ledger.hold(m.id, 70, key="h", reason="x", source_type="redemption", source_id=1)
    ledger.settle_hold(key="s", source_type="redemption", source_id=1)
    rev = ledger.reverse(a.id, key="rev", reason="post removed")
    assert ledger.reverse(a.id, key="rev", reason="post removed").id == rev.id
    assert bal(m) == (0, 0, 0)
    with pytest.raises(Conflict) as err:
        ledger.reverse(a.id, key="rev2", reason="again")
    assert err.value.code == "already_reversed"
    query = select(JournalLine.account, JournalLine.amount).where(JournalLine.entry_id == rev.id)
    lines = dict(db.session.execute(query).all())
    assert lines == {"issued": 100, "available": -30, "adjusted": -70}
    db.session.commit()
    assert_ledger_consistent()


def test_reverse_settle_refunds(make_member):
    m = make_member()
    ledger.award(m.id, 50, key="a", reason="x")
    ledger.hold(m.id, 20, key="h", reason="x", source_type="redemption", source_id=1)
    s = ledger.settle_hold(key="s", source_type="redemption", source_id=1)
    ledger.reverse(s.id, key="refund", reason="out of stock")
    assert bal(m) == (50, 0, 50)
    db.session.commit()
    assert_ledger_consistent()


def test_reverse_open_hold_releases_and_blocks_settle(make_member):
    m = make_member()
    ledger.award(m.id, 50, key="a", reason="x")
    h = ledger.hold(m.id, 20, key="h", reason="x", source_type="redemption", source_id=1)
    ledger.reverse(h.id, key="rh", reason="x")
    assert bal(m) == (50, 0, 50)
    with pytest.raises(Conflict):
        ledger.settle_hold(key="s", source_type="redemption", source_id=1)
    db.session.commit()
    assert_ledger_consistent()


def test_release_into_expired_lot_books_expiry(make_member, app):
    m = make_member()
    ledger.award(m.id, 40, key="a", reason="x")
    ledger.hold(m.id, 30, key="h", reason="x", source_type="redemption", source_id=1)
    lot_id = db.session.scalar(select(PointLot.id))
    future = ledger.utcnow() + timedelta(days=400)
    e = ledger.expire_lot(lot_id, now=future)
    assert e.amount == 10 and ledger.expire_lot(lot_id, now=future) is None
    assert bal(m) == (0, 30, 40)
    ledger.release_hold(key="r", source_type="redemption", source_id=1, reason="x")
    assert bal(m) == (0, 0, 40)
    db.session.commit()
    assert_ledger_consistent()


def test_adjust(make_member):
    m = make_member()
    admin = make_member(roles=("admin",))
    ledger.adjust(m.id, 25, key="adj1", reason="goodwill", actor_id=admin.id)
    assert bal(m) == (25, 0, 0)
    with pytest.raises(InsufficientPoints):
        ledger.adjust(m.id, -26, key="adj2", reason="fix", actor_id=admin.id)
    with pytest.raises(ValidationError):
        ledger.adjust(m.id, -5, key="adj3", reason="  ", actor_id=admin.id)
    neg = ledger.adjust(m.id, -5, key="adj4", reason="fix", actor_id=admin.id)
    assert bal(m) == (20, 0, 0)
    ledger.reverse(neg.id, key="radj4", reason="oops")
    assert bal(m) == (25, 0, 0)
    db.session.commit()
    assert_ledger_consistent()


def test_points_past_their_expiry_cannot_be_spent_before_the_hourly_job(make_member):
    """A debit first posts the member's due expiries (exactly once), then checks the balance."""
    m, other = make_member(), make_member()
    stale = ledger.award(m.id, 40, key="stale", reason="x")
    ledger.award(m.id, 25, key="fresh", reason="x")
    ledger.award(other.id, 40, key="other", reason="x")
    db.session.execute(db.update(PointLot).where(PointLot.entry_id.in_([stale.id]))
                       .values(expires_at=ledger.utcnow() - timedelta(minutes=1)))
    db.session.commit()
    assert bal(m)[0] == 65  # the hourly job has not run yet: stored balance
    assert ledger.due_unexpired(m.id) == 40  # what the member's views subtract
    with pytest.raises(InsufficientPoints):
        ledger.hold(m.id, 30, key="h1", reason="x", source_type="redemption", source_id=1)
    db.session.rollback()
    ledger.hold(m.id, 20, key="h2", reason="x", source_type="redemption", source_id=2)
    ledger.adjust(m.id, -5, key="adj", reason="correction", actor_id=other.id)
    db.session.commit()
    assert bal(m) == (0, 20, 65)
    expiries = db.session.scalars(select(JournalEntry).where(JournalEntry.kind == "expire")).all()
    assert [(e.member_id, e.amount, e.key) for e in expiries] == [(m.id, 40, f"expire:lot:{_lot(stale)}")]
    # The hourly job finds nothing left to do for this lot; the other member is untouched.
    from points.jobs import expire_due_lots

    assert expire_due_lots() == 0
    assert bal(other)[0] == 40
    assert_ledger_consistent()


def _lot(entry):
    return db.session.scalar(select(PointLot.id).where(PointLot.entry_id == entry.id))
