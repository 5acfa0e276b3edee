"""Checks shared by the rewards tests: the ledger balances and agrees with the redemptions."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select

from extensions import db
from points import ledger
from points.models import JournalLine, MemberBalance
from rewards.models import Redemption, Reward, RewardCode

SETTLED = ("fulfilled", "approved", "shipped", "completed")
HELD = ("pending", "awaiting_fulfilment")


def assert_books_balanced() -> None:
    """Every journal entry sums to zero, stored balances equal their lines, and per member the
    redeemed points equal the settled redemptions and the held points the open ones."""
    db.session.rollback()  # a fresh snapshot: other threads and processes have committed since
    unbalanced = db.session.execute(
        select(JournalLine.entry_id).group_by(JournalLine.entry_id).having(func.sum(JournalLine.amount) != 0)
    ).all()
    assert unbalanced == []
    redeemed: dict[int, int] = defaultdict(int)
    held: dict[int, int] = defaultdict(int)
    for member_id, state, cost in db.session.execute(select(Redemption.member_id, Redemption.state, Redemption.cost)):
        if state in SETTLED:
            redeemed[member_id] += cost
        elif state in HELD:
            held[member_id] += cost
    for member_id in db.session.scalars(select(MemberBalance.member_id)):
        sums = dict(
            db.session.execute(
                select(JournalLine.account, func.sum(JournalLine.amount))
                .where(JournalLine.member_id == member_id)
                .group_by(JournalLine.account)
            ).all()
        )
        balance = ledger.get_balance(member_id)
        assert balance.available == (sums.get("available") or 0), member_id
        assert balance.held == (sums.get("held") or 0), member_id
        assert balance.held == held[member_id], member_id
        assert (sums.get("redeemed") or 0) == redeemed[member_id], member_id
        assert balance.available >= 0 and balance.held >= 0


def assert_no_code_twice() -> None:
    """Each code went to at most one redemption, and each fulfilled coupon got exactly one code,
    which it keeps when refunded (a refunded coupon is only ever refunded from fulfilled)."""
    db.session.rollback()
    assigned = db.session.execute(
        select(RewardCode.redemption_id, func.count()).where(RewardCode.redemption_id.is_not(None))
        .group_by(RewardCode.redemption_id)
    ).all()
    assert all(n == 1 for _, n in assigned)
    given_coupons = set(
        db.session.scalars(
            select(Redemption.id)
            .join(Reward, Reward.id == Redemption.reward_id)
            .where(Redemption.state.in_(("fulfilled", "refunded")), Reward.kind == "coupon")
        )
    )
    assert given_coupons == {rid for rid, _ in assigned}
