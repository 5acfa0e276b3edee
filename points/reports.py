"""Read models of the ledger: member history, expiring points, liability, and verification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, bindparam, case, func, select

from community.models import utcnow
from extensions import db

from .models import SYSTEM_ACCOUNTS, JournalEntry, JournalLine, MemberBalance, PointLot

EXPIRING_SOON_DAYS = 30


def history_query(member_id: int) -> Select:
    return select(JournalEntry).where(JournalEntry.member_id == member_id).order_by(JournalEntry.id.desc())


def with_deltas(entries: list[JournalEntry]) -> list[dict]:
    """Entries with what each did to the member's available and held balances (one query)."""
    ids = [e.id for e in entries]
    deltas: dict[int, dict[str, int]] = {i: {"available": 0, "held": 0} for i in ids}
    if ids:
        rows = db.session.execute(
            select(JournalLine.entry_id, JournalLine.account, JournalLine.amount).where(
                JournalLine.entry_id.in_(ids), JournalLine.account.in_(("available", "held"))
            )
        )
        for entry_id, account, amount in rows:
            deltas[entry_id][account] += int(amount)
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "amount": e.amount,
            "available_change": deltas[e.id]["available"],
            "held_change": deltas[e.id]["held"],
            "reason": e.reason,
            "source_type": e.source_type,
            "source_id": e.source_id,
            "related_id": e.related_id,
            "actor_id": e.actor_id,
            "key": e.key,
            "created_at": e.created_at,
        }
        for e in entries
    ]


# The balance page in one statement, built once: the balance row with, joined to it, every open
# lot that expires within the "soon" window (which includes the lots already due but not yet
# posted by the hourly expiry job: those are not spendable, see ``ledger.due_unexpired``).
_BALANCE_VIEW = (
    select(MemberBalance.available, MemberBalance.held, MemberBalance.lifetime_earned,
           PointLot.remaining, PointLot.expires_at, MemberBalance.owed)
    .select_from(MemberBalance)
    .outerjoin(PointLot, and_(
        PointLot.member_id == MemberBalance.member_id, PointLot.remaining > 0, PointLot.expired_at.is_(None),
        PointLot.expires_at <= bindparam("soon"),
    ))
    .where(MemberBalance.member_id == bindparam("member_id"))
    .order_by(PointLot.expires_at)
)


def balance_view(member_id: int, now: datetime | None = None) -> dict:
    """What ``GET /me/points`` shows: available (less what is due to expire), held, owed (points
    clawed back after they were spent), lifetime earned and what expires within
    ``EXPIRING_SOON_DAYS``; the same figures as ``ledger.get_balance``, ``ledger.due_unexpired``
    and ``expiring``, in one query."""
    now = now or utcnow()
    # On the session's connection (its transaction), without the ORM's execution layer: plain
    # columns need none of it, and it cost twice the query.
    rows = db.session.connection().execute(
        _BALANCE_VIEW, {"member_id": member_id, "soon": now + timedelta(days=EXPIRING_SOON_DAYS)}
    ).all()
    # No balance row: the member was never credited, so there are no lots either.
    available, held, lifetime = (int(v) for v in rows[0][:3]) if rows else (0, 0, 0)
    owed = int(rows[0][5]) if rows else 0
    soon = [{"points": int(r[3]), "expires_at": r[4]} for r in rows if r[3] is not None]
    due = sum(lot["points"] for lot in soon if lot["expires_at"] <= now)
    return {
        "member_id": member_id,
        "available": available - due,
        "held": held,
        "owed": owed,
        "lifetime_earned": lifetime,
        "expiring_soon_total": sum(lot["points"] for lot in soon),
        "expiring_soon": soon,
    }


def expiring(member_id: int, within_days: int = EXPIRING_SOON_DAYS, now: datetime | None = None) -> list[dict]:
    now = now or utcnow()
    rows = db.session.execute(
        select(PointLot.remaining, PointLot.expires_at)
        .where(
            PointLot.member_id == member_id, PointLot.remaining > 0, PointLot.expired_at.is_(None),
            PointLot.expires_at <= now + timedelta(days=within_days),
        )
        .order_by(PointLot.expires_at)
    )
    return [{"points": int(r.remaining), "expires_at": r.expires_at} for r in rows]


AGE_BUCKETS = ((30, "0-30 days"), (90, "31-90 days"), (180, "91-180 days"), (365, "181-365 days"))


def liability(now: datetime | None = None) -> dict:
    """Outstanding points (available + held), available points by age of their lot, what expires soon,
    and the lifetime totals of the system accounts."""
    now = now or utcnow()
    totals = db.session.execute(
        select(
            func.coalesce(func.sum(MemberBalance.available), 0),
            func.coalesce(func.sum(MemberBalance.held), 0),
            func.count().filter(MemberBalance.available + MemberBalance.held > 0),
        )
    ).one()
    bucket = case(
        *[(PointLot.earned_at >= now - timedelta(days=days), label) for days, label in AGE_BUCKETS],
        else_="over 365 days",
    )
    open_lots = (PointLot.remaining > 0, PointLot.expired_at.is_(None))
    by_age = dict(
        db.session.execute(select(bucket, func.sum(PointLot.remaining)).where(*open_lots).group_by(bucket)).all()
    )
    labels = [label for _, label in AGE_BUCKETS] + ["over 365 days"]

    def expiring_within(days: int) -> int:
        return int(
            db.session.scalar(
                select(func.coalesce(func.sum(PointLot.remaining), 0)).where(
                    *open_lots, PointLot.expires_at <= now + timedelta(days=days)
                )
            )
        )

    accounts = dict(
        db.session.execute(
            select(JournalLine.account, func.sum(JournalLine.amount))
            .where(JournalLine.account.in_(SYSTEM_ACCOUNTS))
            .group_by(JournalLine.account)
        ).all()
    )
    available, held, members = (int(v) for v in totals)
    return {
        "as_of": now,
        "outstanding": available + held,
        "available": available,
        "held": held,
        "members_with_points": members,
        "by_age": [{"age": label, "points": int(by_age.get(label) or 0)} for label in labels],
        "expiring_30_days": expiring_within(30),
        "expiring_90_days": expiring_within(90),
        "system_accounts": {name: int(accounts.get(name) or 0) for name in SYSTEM_ACCOUNTS},
    }


@dataclass
class Drift:
    kind: str
    member_id: int | None
    detail: str


def verify() -> list[Drift]:
    """Rebuild every balance from the journal lines and compare with what is stored.

    Reports: entries whose lines do not sum to zero, stored balances that differ from the lines
    (available, held, lifetime earned = minus the ``issued`` lines), members with lines but no
    balance row, available balances that differ from the sum of the member's open lots, and
    negative values anywhere.

    ``owed`` is checked against what the entries allow (the lines do not hold it: a clawback
    books the owed points together with any written-off ones): it is at most what credit
    reversals left untaken minus what was repaid (equal unless part of a clawed-back award had
    expired unused and was written off), and while anything is owed nothing is available (every
    credit repays first).
    """
    drifts: list[Drift] = []
    for entry_id, total in db.session.execute(
        select(JournalLine.entry_id, func.sum(JournalLine.amount))
        .group_by(JournalLine.entry_id)
        .having(func.sum(JournalLine.amount) != 0)
    ):
        drifts.append(Drift("unbalanced_entry", None, f"entry {entry_id} lines sum to {total}"))

    rebuilt: dict[int, dict[str, int]] = {}
    for member_id, account, total in db.session.execute(
        select(JournalLine.member_id, JournalLine.account, func.sum(JournalLine.amount))
        .where(JournalLine.account.in_(("available", "held", "issued")))
        .group_by(JournalLine.member_id, JournalLine.account)
    ):
        rebuilt.setdefault(member_id, {"available": 0, "held": 0, "issued": 0})[account] = int(total)
    lots = dict(
        db.session.execute(
            select(PointLot.member_id, func.sum(PointLot.remaining)).group_by(PointLot.member_id)
        ).all()
    )
    stored = {
        row.member_id: row
        for row in db.session.execute(
            select(MemberBalance.member_id, MemberBalance.available, MemberBalance.held, MemberBalance.lifetime_earned)
        )
    }
    for member_id in sorted(set(rebuilt) | set(stored)):
        want = rebuilt.get(member_id, {"available": 0, "held": 0, "issued": 0})
        have = stored.get(member_id)
        if have is None:
            if any(want.values()):
                drifts.append(Drift("missing_balance", member_id, f"lines say {want} but no balance row"))
            continue
        expected = {"available": want["available"], "held": want["held"], "lifetime_earned": -want["issued"]}
        for field, value in expected.items():
            if getattr(have, field) != value:
                drifts.append(Drift("balance", member_id, f"{field} stored {getattr(have, field)}, lines {value}"))
            if getattr(have, field) < 0:
                drifts.append(Drift("negative", member_id, f"{field} is {getattr(have, field)}"))
        lot_total = int(lots.get(member_id) or 0)
        if lot_total != have.available:
            drifts.append(Drift("lots", member_id, f"available {have.available}, open lots hold {lot_total}"))
    drifts.extend(_owed_drifts())
    return drifts


def _owed_drifts() -> list[Drift]:
    """``owed`` against the entries: the most credit reversals could have left owed, less repayments."""
    rev, orig = JournalEntry.__table__.alias("rev"), JournalEntry.__table__.alias("orig")
    lines = JournalLine.__table__
    credited = (  # the original's own ``available`` line: > 0 for an award or a credit adjustment
        select(func.coalesce(func.sum(lines.c.amount), 0))
        .where(lines.c.entry_id == orig.c.id, lines.c.account == "available").scalar_subquery()
    )
    taken = (
        select(func.coalesce(func.sum(lines.c.amount), 0))
        .where(lines.c.entry_id == rev.c.id, lines.c.account == "available").scalar_subquery()
    )
    original_id = case((rev.c.source_type == "clawback", rev.c.source_id), else_=rev.c.related_id)
    untaken = (
        select(rev.c.member_id.label("member_id"), (rev.c.amount + taken).label("points"))
        .select_from(rev.join(orig, orig.c.id == original_id))
        .where(rev.c.kind == "reversal", orig.c.kind.in_(("award", "adjust")), credited > 0)
    )
    repaid = select(JournalEntry.member_id.label("member_id"), (-JournalEntry.amount).label("points")).where(
        JournalEntry.kind == "adjust", JournalEntry.source_type == "owed_repayment"
    )
    both = untaken.union_all(repaid).subquery("owed_sources")
    bound = dict(db.session.execute(
        select(both.c.member_id, func.sum(both.c.points)).group_by(both.c.member_id)
    ).all())
    drifts = []
    for member_id, owed, available in db.session.execute(
        select(MemberBalance.member_id, MemberBalance.owed, MemberBalance.available).where(MemberBalance.owed != 0)
    ):
        most = int(bound.get(member_id) or 0)
        if owed < 0:
            drifts.append(Drift("negative", member_id, f"owed is {owed}"))
        elif owed > most:
            drifts.append(Drift("owed", member_id, f"owed {owed}, but reversals left at most {most} untaken"))
        if owed > 0 and available > 0:
            drifts.append(Drift("owed", member_id, f"owed {owed} while {available} points are available"))
    return drifts
