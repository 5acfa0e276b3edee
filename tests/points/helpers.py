"""Shared checks for the points tests: the ledger's invariants, read straight from the tables."""

from __future__ import annotations

from sqlalchemy import func, select

from extensions import db
from points.models import JournalLine, MemberBalance, PointLot


def assert_ledger_consistent() -> None:
    """Every entry balances; stored balances equal the sums of lines and of lot remainders."""
    unbalanced = db.session.execute(
        select(JournalLine.entry_id).group_by(JournalLine.entry_id).having(func.sum(JournalLine.amount) != 0)
    ).all()
    assert unbalanced == []
    for bal in db.session.scalars(select(MemberBalance).execution_options(populate_existing=True)):
        sums = dict(
            db.session.execute(
                select(JournalLine.account, func.sum(JournalLine.amount))
                .where(JournalLine.member_id == bal.member_id)
                .group_by(JournalLine.account)
            ).all()
        )
        assert bal.available == (sums.get("available") or 0), bal.member_id
        assert bal.held == (sums.get("held") or 0), bal.member_id
        assert bal.lifetime_earned == -(sums.get("issued") or 0), bal.member_id
        assert min(bal.available, bal.held, bal.lifetime_earned) >= 0
        lots = db.session.scalar(
            select(func.coalesce(func.sum(PointLot.remaining), 0)).where(PointLot.member_id == bal.member_id)
        )
        assert bal.available == lots, bal.member_id
