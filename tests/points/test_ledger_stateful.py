"""Hypothesis stateful test: any sequence of ledger operations keeps the books right.

After every step: every entry balances, every stored balance equals the sum of its lines (and
of the member's open lots), nothing is negative, and ``reports.verify`` finds no drift.
"""

import itertools
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from community.models import utcnow
from errors import Conflict
from extensions import db
from points import ledger, reports
from points.models import JournalEntry, PointLot
from tests.points.helpers import assert_ledger_consistent

_run = itertools.count()


def test_ledger_state_machine(app, make_member):
    member = st.integers(0, 1)  # an index into this example's own two members

    class Ledger(RuleBasedStateMachine):
        @initialize()
        def start(self):
            # Fresh members per example: earlier examples' balances must not leak into this one.
            self.members = [make_member().id for _ in range(2)]
            self.prefix = f"run{next(_run)}"
            self.n = itertools.count()
            self.open_holds: list[int] = []  # source ids of holds not yet closed
            self.settled: list[int] = []  # settle entry ids

        def key(self, what):
            return f"{self.prefix}:{what}:{next(self.n)}"

        def attempt(self, fn, *args, **kwargs):
            """Run one operation and commit, or roll back if the ledger refuses it (409)."""
            try:
                result = fn(*args, **kwargs)
                db.session.commit()
                return result
            except Conflict:
                db.session.rollback()
                return None

        @rule(member=member, amount=st.integers(1, 500))
        def earn(self, member, amount):
            self.attempt(ledger.award, self.members[member], amount, key=self.key("award"), reason="earn")

        @rule(member=member, amount=st.integers(1, 400))
        def spend(self, member, amount):
            source_id = next(self.n)
            entry = self.attempt(ledger.hold, self.members[member], amount, key=self.key("hold"), reason="spend",
                                 source_type=self.prefix, source_id=source_id)
            if entry is not None:
                self.open_holds.append(source_id)

        @precondition(lambda self: self.open_holds)
        @rule(data=st.data())
        def settle(self, data):
            source_id = data.draw(st.sampled_from(self.open_holds))
            self.open_holds.remove(source_id)
            entry = self.attempt(ledger.settle_hold, key=self.key("settle"), source_type=self.prefix,
                                 source_id=source_id)
            if entry is not None:
                self.settled.append(entry.id)

        @precondition(lambda self: self.open_holds)
        @rule(data=st.data())
        def release(self, data):
            source_id = data.draw(st.sampled_from(self.open_holds))
            self.open_holds.remove(source_id)
            self.attempt(ledger.release_hold, key=self.key("release"), source_type=self.prefix,
                         source_id=source_id, reason="cancel")

        @rule(member=member, delta=st.integers(-300, 300).filter(bool))
        def adjust(self, member, delta):
            self.attempt(ledger.adjust, self.members[member], delta, key=self.key("adjust"), reason="fix",
                         actor_id=None)

        # Entries and lots are picked by position, never by database id: ids differ between runs,
        # and hypothesis needs the same draws to mean the same choices.
        @rule(data=st.data())
        def reverse(self, data):
            ids = db.session.scalars(
                select(JournalEntry.id).where(JournalEntry.key.startswith(self.prefix),
                                              JournalEntry.member_id.in_(self.members))
            ).all()
            if not ids:
                return
            entry_id = sorted(ids)[data.draw(st.integers(0, 1000)) % len(ids)]
            self.attempt(ledger.reverse, entry_id, key=self.key("reverse"), reason="undo")

        @rule(data=st.data())
        def expire(self, data):
            lots = db.session.scalars(
                select(PointLot.id).where(PointLot.member_id.in_(self.members), PointLot.expired_at.is_(None))
            ).all()
            if not lots:
                return
            lot_id = sorted(lots)[data.draw(st.integers(0, 1000)) % len(lots)]
            db.session.execute(db.update(PointLot).where(PointLot.id == lot_id)
                               .values(expires_at=utcnow() - timedelta(seconds=1)))
            db.session.commit()
            self.attempt(ledger.expire_lot, lot_id)

        @invariant()
        def books_are_right(self):
            db.session.rollback()
            assert_ledger_consistent()
            assert reports.verify() == []

    run_state_machine_as_test(
        Ledger,
        settings=settings(max_examples=25, stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck)),
    )
