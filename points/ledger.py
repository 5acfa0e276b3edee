"""The points ledger: the only code that changes a member's points.

Every function here

* is idempotent on ``key`` (unique in ``journal_entries``): a replay with the same payload returns
  the original entry and changes nothing; the same key with another payload raises ``Conflict``
  (409, code ``idempotency_conflict``);
* writes one balanced entry (its lines sum to zero), changes the stored ``member_balances`` row
  in the same transaction by atomic SQL, and keeps the member's expiring lots in step;
* only flushes: the caller commits (or rolls back, e.g. after ``InsufficientPoints``; nothing is
  written before that check fails, so a caller may also carry on).

Clawbacks (one policy for every reversal of points already given): reversing an award or a
credit adjustment takes the points back in full — first from what is left of the award's own
lot, then from the member's other available points; what the member already spent beyond that
becomes ``owed`` on their balance row.  While anything is owed, holds (redemptions) are refused
with 409 ``points_owed``, and every later credit to ``available`` repays it first (an ``adjust``
entry, source ``owed_repayment``).  The only part ever written off is what expired unused in the
award's lot (the member never had the benefit).  The ``adjusted`` account carries the owed
points until they are repaid, so entries still balance.  So a withdrawal, refund or removal can
never leave a member with points they would not have had without the reversed event.

Concurrency: a write that depends on what it reads first locks the member's balance row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions already hold the database
lock from ``BEGIN IMMEDIATE``), so checks and writes for one member never interleave.  Debits
are also guarded updates (``… WHERE available >= :n``, rowcount checked) and the table has CHECK
constraints, so a balance can never go negative even if a caller forgets the lock.  The entry is
inserted with ``ON CONFLICT DO NOTHING`` before any balance change, so a concurrent duplicate
(same key, or a second close of the same hold) is detected without aborting the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached

from community.models import utcnow
from errors import Conflict, NotFound, ValidationError
from extensions import db
from messaging.webhooks import events as webhooks

from .models import JournalEntry, JournalLine, LotConsumption, MemberBalance, PointLot


class InsufficientPoints(Conflict):
    """The available balance cannot cover a debit (409, ``insufficient_points``)."""

    code = "insufficient_points"


@dataclass(frozen=True)
class Balance:
    available: int
    held: int
    lifetime_earned: int
    owed: int = 0


# --------------------------------------------------------------------------- helpers

# Core tables for the hot write path: plain INSERTs skip the ORM's bulk-insert bookkeeping.
_ENTRIES = JournalEntry.__table__
_BALANCES = MemberBalance.__table__
_LINES = JournalLine.__table__
_LOTS = PointLot.__table__


def _check_amount(amount) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationError("The amount must be a positive whole number of points.", fields={"amount": ["> 0"]})
    return amount


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValidationError("An idempotency key of 1-200 characters is required.", fields={"key": ["Required."]})
    return key


def _find(key: str) -> JournalEntry | None:
    return db.session.scalar(select(JournalEntry).where(JournalEntry.key == key))


def _same_or_conflict(entry: JournalEntry, **expected) -> JournalEntry:
    """A replay must describe the same event; ``None`` in ``expected`` means "not checked"."""
    for name, value in expected.items():
        if value is not None and getattr(entry, name) != value:
            raise Conflict(
                "This idempotency key was already used for a different operation.",
                code="idempotency_conflict",
                fields={"key": [entry.key], name: [f"was {getattr(entry, name)!r}, now {value!r}"]},
            )
    return entry


def _replay(key: str, **expected) -> JournalEntry | None:
    entry = _find(key)
    return None if entry is None else _same_or_conflict(entry, **expected)


class PointsOwed(Conflict):
    """The member owes clawed-back points; redemptions wait until new points repay them (409)."""

    code = "points_owed"


def _lock_balance(member_id: int):
    """Lock the member's balance row for this transaction; None when the member has none yet."""
    return db.session.execute(
        select(MemberBalance.available, MemberBalance.held, MemberBalance.lifetime_earned, MemberBalance.owed)
        .where(MemberBalance.member_id == member_id)
        .with_for_update()
    ).first()


def _due_lots(member_id: int) -> tuple:
    """The member's lots whose expiry time has passed but whose expiry is not posted yet."""
    return PointLot.member_id == member_id, PointLot.expired_at.is_(None), PointLot.expires_at <= utcnow()


def _lock_spendable(member_id: int):
    """Lock the member's balance row after expiring their lots that are already due.

    The hourly ``expire_due_lots`` job posts expiries in bulk; a spend in between must not use
    points whose time has passed, so every debit first posts this member's due expiries (the
    same ``expire:lot:<id>`` entries, exactly once) under the member's lock.
    """
    row = _lock_balance(member_id)
    if row is None:
        return None
    due = db.session.scalars(select(PointLot.id).where(*_due_lots(member_id))).all()
    if not due:
        return row
    for lot_id in due:
        expire_lot(lot_id)
    return _lock_balance(member_id)


def lock_member(member_id: int) -> None:
    """Serialise point-changing work for one member (used by earning caps): ensure and lock the row."""
    db.session.execute(
        _statements()["ensure_balance"], {"member_id": member_id, "available": 0, "held": 0, "lifetime_earned": 0}
    )
    _lock_balance(member_id)


_ENTRY_FIELDS = ("key", "kind", "member_id", "amount", "reason", "source_type", "source_id", "actor_id",
                 "related_id")


def _insert_entry(**fields) -> JournalEntry | None:
    """Insert an entry unless its key (or the entry it closes) is already taken; None then.

    A Core INSERT … RETURNING every column, then the row becomes a persistent object of the
    session without another query: the ORM's bulk INSERT path cost two thirds of an award.
    """
    params = {name: fields.get(name) for name in _ENTRY_FIELDS}
    params["created_at"] = utcnow()
    row = db.session.execute(_statements()["entry"], params).first()
    if row is None:
        return None
    entry = JournalEntry(**row._mapping)
    make_transient_to_detached(entry)
    db.session.add(entry)
    return entry


def _statements() -> dict:
    """The hot path's statements, built once per dialect: executing them only binds parameters."""
    dialect = db.session.get_bind().dialect.name
    built = _BUILT.get(dialect)
    if built is None:
        ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
        credit = ins(_BALANCES)
        credit = credit.on_conflict_do_update(
            index_elements=["member_id"],
            set_={
                "available": _BALANCES.c.available + credit.excluded.available,
                "lifetime_earned": _BALANCES.c.lifetime_earned + credit.excluded.lifetime_earned,
            },
        )
        built = _BUILT[dialect] = {
            "entry": ins(_ENTRIES).on_conflict_do_nothing().returning(*_ENTRIES.c),
            # The owed points come back with the credit: repaying them costs no extra query.
            "credit": credit.returning(_BALANCES.c.owed),
            "ensure_balance": ins(_BALANCES).on_conflict_do_nothing(),
            "lines": insert(_LINES),
            "lot": insert(_LOTS),
        }
    return built


_BUILT: dict[str, dict] = {}


def _write_entry(*, expected: dict, **fields) -> tuple[JournalEntry, bool]:
    """Insert the entry: ``(entry, True)``; for a replay of its key ``(original, False)``.

    A taken key with another payload raises ``idempotency_conflict``; a free key whose entry
    closes something already closed (the unique ``related_id``) raises ``already_closed``.
    """
    entry = _insert_entry(**fields)
    if entry is not None:
        return entry, True
    existing = _find(fields["key"])
    if existing is not None:
        return _same_or_conflict(existing, **expected), False
    raise Conflict("This entry was already closed or reversed.", code="already_closed")


def _lines(entry: JournalEntry, movements: dict[str, int]) -> None:
    rows = [
        {"entry_id": entry.id, "account": account, "member_id": entry.member_id, "amount": amount}
        for account, amount in movements.items()
        if amount
    ]
    assert sum(r["amount"] for r in rows) == 0, f"unbalanced entry {entry.key}: {movements}"
    if rows:
        db.session.execute(_statements()["lines"], rows)
    webhooks.publish("points.changed", {
        "member_id": entry.member_id, "entry_id": entry.id, "kind": entry.kind, "amount": entry.amount,
        "available_change": movements.get("available", 0), "held_change": movements.get("held", 0),
        "reason": entry.reason, "source_type": entry.source_type, "source_id": entry.source_id})


def _change_balance(member_id: int, *, available: int = 0, held: int = 0, lifetime: int = 0) -> None:
    """Apply deltas in one guarded UPDATE; a debit that would go negative raises InsufficientPoints."""
    stmt = update(MemberBalance).where(MemberBalance.member_id == member_id)
    if available < 0:
        stmt = stmt.where(MemberBalance.available >= -available)
    if held < 0:
        stmt = stmt.where(MemberBalance.held >= -held)
    if lifetime < 0:
        stmt = stmt.where(MemberBalance.lifetime_earned >= -lifetime)
    stmt = stmt.values(
        available=MemberBalance.available + available,
        held=MemberBalance.held + held,
        lifetime_earned=MemberBalance.lifetime_earned + lifetime,
    ).execution_options(synchronize_session=False)
    if db.session.execute(stmt).rowcount != 1:
        raise InsufficientPoints("Not enough points.", fields={"amount": [-available or -held]})


def _expiry_days() -> int:
    return int(current_app.config.get("POINTS_EXPIRY_DAYS", 365))


def _new_lot(entry: JournalEntry) -> None:
    now = entry.created_at
    db.session.execute(
        _statements()["lot"],
        {
            "member_id": entry.member_id,
            "entry_id": entry.id,
            "amount": entry.amount,
            "remaining": entry.amount,
            "earned_at": now,
            "expires_at": now + timedelta(days=_expiry_days()),
            "expired_at": None,
        },
    )


def _consume_lots(member_id: int, amount: int, entry_id: int) -> None:
    """Take ``amount`` from the member's lots, oldest-expiring first (caller holds the member lock)."""
    lots = db.session.execute(
        select(PointLot.id, PointLot.remaining)
        .where(PointLot.member_id == member_id, PointLot.remaining > 0, PointLot.expired_at.is_(None))
        .order_by(PointLot.expires_at, PointLot.id)
    ).all()
    left = amount
    taken = []
    for lot_id, remaining in lots:
        take = min(left, remaining)
        result = db.session.execute(
            update(PointLot)
            .where(PointLot.id == lot_id, PointLot.remaining >= take)
            .values(remaining=PointLot.remaining - take)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # only possible if a caller skipped the member lock
            raise Conflict("The points changed concurrently; try again.", code="concurrent_update")
        taken.append({"lot_id": lot_id, "entry_id": entry_id, "amount": take})
        left -= take
        if left == 0:
            break
    if left:
        # available == sum(remaining) is an invariant; this means someone bypassed the ledger.
        raise RuntimeError(f"points lots of member {member_id} do not cover the balance")
    db.session.execute(insert(LotConsumption), taken)


def _restore_lots(member_id: int, consumed_by: int, entry_id: int) -> int:
    """Give back what entry ``consumed_by`` took from lots; returns the part that has expired since.

    Points whose lot has already expired are not resurrected: the caller books them to
    ``expired`` in the same entry, exactly as if they had been in the lot when it expired.
    """
    rows = db.session.execute(
        select(LotConsumption.lot_id, func.sum(LotConsumption.amount), PointLot.expired_at)
        .join(PointLot, PointLot.id == LotConsumption.lot_id)
        .where(LotConsumption.entry_id == consumed_by)
        .group_by(LotConsumption.lot_id, PointLot.expired_at)
    ).all()
    expired = 0
    back = []
    for lot_id, amount, expired_at in rows:
        amount = int(amount or 0)
        if amount <= 0:
            continue
        if expired_at is not None:
            expired += amount
            continue
        db.session.execute(
            update(PointLot)
            .where(PointLot.id == lot_id)
            .values(remaining=PointLot.remaining + amount)
            .execution_options(synchronize_session=False)
        )
        back.append({"lot_id": lot_id, "entry_id": entry_id, "amount": -amount})
    if back:
        db.session.execute(insert(LotConsumption), back)
    return expired


# --------------------------------------------------------------------------- the contract


def award(
    member_id: int,
    amount: int,
    *,
    key: str,
    reason: str,
    source_type: str | None = None,
    source_id: int | None = None,
    actor_id: int | None = None,
) -> JournalEntry:
    """Issue ``amount`` points to the member (issued -> available) as a new expiring lot."""
    _check_amount(amount)
    _check_key(key)
    expected = {"kind": "award", "member_id": member_id, "amount": amount, "source_type": source_type,
                "source_id": source_id}
    # No lookup first: a replay is rare, and the ON CONFLICT insert detects it in the same statement.
    entry, new = _write_entry(
        expected=expected, key=key, kind="award", member_id=member_id, amount=amount, reason=reason or "",
        source_type=source_type, source_id=source_id, actor_id=actor_id,
    )
    if not new:
        return entry
    # Credit: no guard needed; the upsert also creates the member's row on their first points.
    owed = db.session.execute(
        _statements()["credit"],
        {"member_id": member_id, "available": amount, "held": 0, "lifetime_earned": amount, "owed": 0},
    ).scalar()
    _lines(entry, {"issued": -amount, "available": amount})
    _new_lot(entry)
    if owed:
        _repay_owed(member_id, entry)
    return entry


def _repay_owed(member_id: int, credit_entry: JournalEntry) -> JournalEntry | None:
    """New points repay what the member owes first (an ``adjust`` entry: available -> adjusted)."""
    row = _lock_spendable(member_id)
    pay = min(int(row.owed or 0), int(row.available)) if row is not None else 0
    if pay <= 0:
        return None
    entry = _insert_entry(
        key=f"repay:{credit_entry.id}", kind="adjust", member_id=member_id, amount=pay,
        reason="Repayment of points owed from a reversal", source_type="owed_repayment",
        source_id=credit_entry.id,
    )
    if entry is None:
        return None
    _change_balance(member_id, available=-pay)
    _change_owed(member_id, -pay)
    _lines(entry, {"available": -pay, "adjusted": pay})
    _consume_lots(member_id, pay, entry.id)
    return entry


def _change_owed(member_id: int, delta: int) -> None:
    stmt = update(MemberBalance).where(MemberBalance.member_id == member_id)
    if delta < 0:
        stmt = stmt.where(MemberBalance.owed >= -delta)
    result = db.session.execute(
        stmt.values(owed=MemberBalance.owed + delta).execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict("The points owed changed concurrently; try again.", code="concurrent_update")


def hold(member_id: int, amount: int, *, key: str, reason: str, source_type: str, source_id: int) -> JournalEntry:
    """Reserve points for a pending spend (available -> held), drawing on the oldest-expiring lots.

    Raises ``InsufficientPoints`` when the available balance cannot cover ``amount``.
    """
    _check_amount(amount)
    _check_key(key)
    expected = {"kind": "hold", "member_id": member_id, "amount": amount, "source_type": source_type,
                "source_id": source_id}
    existing = _replay(key, **expected)
    if existing is not None:
        return existing
    row = _lock_spendable(member_id)
    if row is not None and row.owed:
        raise PointsOwed(
            f"{row.owed} points are owed from a reversal (a withdrawn or refunded reward already spent); "
            "they are repaid from new points first, and redemptions wait until then.",
            fields={"owed": [int(row.owed)]},
        )
    if row is None or row.available < amount:
        raise InsufficientPoints(
            f"Not enough points: {amount} needed, {row.available if row else 0} available.",
            fields={"amount": [f"{row.available if row else 0} available"]},
        )
    entry, new = _write_entry(
        expected=expected, key=key, kind="hold", member_id=member_id, amount=amount, reason=reason or "",
        source_type=source_type, source_id=source_id,
    )
    if not new:
        return entry
    _change_balance(member_id, available=-amount, held=amount)
    _lines(entry, {"available": -amount, "held": amount})
    _consume_lots(member_id, amount, entry.id)
    return entry


def _open_hold(source_type: str, source_id: int) -> JournalEntry:
    hold_entry = db.session.scalar(
        select(JournalEntry)
        .where(JournalEntry.kind == "hold", JournalEntry.source_type == source_type,
               JournalEntry.source_id == source_id)
        .order_by(JournalEntry.id.desc())
        .limit(1)
    )
    if hold_entry is None:
        raise NotFound("No points are held for this.", fields={"source": [f"{source_type}:{source_id}"]})
    return hold_entry


def _closing_of(entry_id: int) -> JournalEntry | None:
    return db.session.scalar(select(JournalEntry).where(JournalEntry.related_id == entry_id))


def settle_hold(*, key: str, source_type: str, source_id: int) -> JournalEntry:
    """Spend the points held for ``source`` for good (held -> redeemed)."""
    _check_key(key)
    expected = {"kind": "settle", "source_type": source_type, "source_id": source_id}
    existing = _replay(key, **expected)
    if existing is not None:
        return existing
    hold_entry = _open_hold(source_type, source_id)
    _lock_balance(hold_entry.member_id)
    if _closing_of(hold_entry.id) is not None:
        raise Conflict("These points were already settled or released.", code="already_closed")
    entry, new = _write_entry(
        expected=expected, key=key, kind="settle", member_id=hold_entry.member_id, amount=hold_entry.amount,
        reason=hold_entry.reason, source_type=source_type, source_id=source_id, related_id=hold_entry.id,
    )
    if not new:
        return entry
    _change_balance(entry.member_id, held=-entry.amount)
    _lines(entry, {"held": -entry.amount, "redeemed": entry.amount})
    return entry


def _give_back(entry: JournalEntry, *, from_account: str, consumed_by: int, held_delta: int) -> None:
    """Lines and balances for points returning to available (release, refund, reversal of a debit)."""
    expired = _restore_lots(entry.member_id, consumed_by, entry.id)
    back = entry.amount - expired
    _change_balance(entry.member_id, available=back, held=held_delta)
    _lines(entry, {from_account: -entry.amount, "available": back, "expired": expired})
    if back > 0:
        _repay_if_owed(entry)


def _repay_if_owed(entry: JournalEntry) -> None:
    owed = db.session.scalar(select(MemberBalance.owed).where(MemberBalance.member_id == entry.member_id))
    if owed:
        _repay_owed(entry.member_id, entry)


def release_hold(*, key: str, source_type: str, source_id: int, reason: str) -> JournalEntry:
    """Cancel the hold of ``source``: the points return to available (and to their lots).

    Points whose lot expired while they were held are booked to ``expired`` instead.
    """
    _check_key(key)
    expected = {"kind": "release", "source_type": source_type, "source_id": source_id}
    existing = _replay(key, **expected)
    if existing is not None:
        return existing
    hold_entry = _open_hold(source_type, source_id)
    _lock_balance(hold_entry.member_id)
    if _closing_of(hold_entry.id) is not None:
        raise Conflict("These points were already settled or released.", code="already_closed")
    entry, new = _write_entry(
        expected=expected, key=key, kind="release", member_id=hold_entry.member_id,
        amount=hold_entry.amount, reason=reason or "", source_type=source_type, source_id=source_id,
        related_id=hold_entry.id,
    )
    if not new:
        return entry
    _give_back(entry, from_account="held", consumed_by=hold_entry.id, held_delta=-entry.amount)
    return entry


def reverse(entry_id: int, *, key: str, reason: str, actor_id: int | None = None) -> JournalEntry:
    """Post a reversal entry linked to ``entry_id`` (each entry is reversed at most once).

    * award / positive adjustment: the points are clawed back in full (see the module docstring:
      own lot, other points, then ``owed``), less what ``claw_back`` already took; for an award
      that amount goes back to ``issued`` (``lifetime_earned`` drops by it).  What expired unused
      in the award's lot is written off to ``adjusted``.
    * hold still open: like a release.
    * settle: a refund; the points return to available and to their lots (expired lots excepted).
    * negative adjustment: the points return, as for a refund.
    * release, expiry, reversal: not reversible (409).
    """
    _check_key(key)
    expected = {"kind": "reversal", "related_id": entry_id}
    existing = _replay(key, **expected)
    if existing is not None:
        return existing
    original = db.session.get(JournalEntry, entry_id)
    if original is None:
        raise NotFound("No such ledger entry.", fields={"entry_id": [entry_id]})
    if original.kind in ("release", "expire", "reversal") or original.source_type == "owed_repayment":
        raise Conflict(f"A {original.kind} entry cannot be reversed.", code="not_reversible")
    member_id = original.member_id
    _lock_balance(member_id)
    closing = _closing_of(original.id)
    if closing is not None:
        code = "already_reversed" if closing.kind == "reversal" else "already_closed"
        raise Conflict("This entry was already reversed or closed.", code=code)
    credit = original.kind == "award" or (original.kind == "adjust" and _is_credit(original))
    amount = original.amount - (clawed_back(original.id) if credit else 0)
    if amount <= 0:
        raise Conflict("This entry was already clawed back in full.", code="already_reversed")
    entry, new = _write_entry(
        expected=expected, key=key, kind="reversal", member_id=member_id, amount=amount,
        reason=reason or "", source_type=original.source_type, source_id=original.source_id,
        actor_id=actor_id, related_id=original.id,
    )
    if not new:
        return entry
    if credit:
        _claw_back(original, entry)
        if original.kind == "award":
            db.session.execute(
                update(MemberBalance).where(MemberBalance.member_id == member_id)
                .values(lifetime_earned=MemberBalance.lifetime_earned - amount)
                .execution_options(synchronize_session=False)
            )
    elif original.kind == "hold":
        _give_back(entry, from_account="held", consumed_by=original.id, held_delta=-entry.amount)
    elif original.kind == "settle":
        _give_back(entry, from_account="redeemed", consumed_by=original.related_id, held_delta=0)
    else:  # a debit adjustment
        _give_back(entry, from_account="adjusted", consumed_by=original.id, held_delta=0)
    return entry


def _is_credit(entry: JournalEntry) -> bool:
    return (
        db.session.scalar(
            select(JournalLine.amount).where(JournalLine.entry_id == entry.id, JournalLine.account == "available")
        )
        or 0
    ) > 0


def clawed_back(entry_id: int) -> int:
    """Points of a credit entry already taken back by partial clawbacks (``claw_back``)."""
    return int(db.session.scalar(
        select(func.coalesce(func.sum(JournalEntry.amount), 0)).where(
            JournalEntry.kind == "reversal", JournalEntry.source_type == "clawback",
            JournalEntry.source_id == entry_id,
        )
    ) or 0)


def reversed_total(entry_id: int) -> int:
    """Points of a credit entry taken back so far: partial clawbacks plus a full reversal."""
    full = db.session.scalar(
        select(JournalEntry.amount).where(JournalEntry.related_id == entry_id, JournalEntry.kind == "reversal")
    )
    return clawed_back(entry_id) + int(full or 0)


def claw_back(entry_id: int, amount: int, *, key: str, reason: str, actor_id: int | None = None) -> JournalEntry | None:
    """Take back ``amount`` points of an award or credit adjustment (a partial refund), by the
    clawback policy of the module docstring.  Never more than what is left of the entry after
    earlier clawbacks and reversals: None when nothing is left.  Idempotent on ``key``.
    """
    _check_amount(amount)
    _check_key(key)
    existing = _replay(key, kind="reversal", source_type="clawback", source_id=entry_id)
    if existing is not None:
        return existing
    original = db.session.get(JournalEntry, entry_id)
    if original is None:
        raise NotFound("No such ledger entry.", fields={"entry_id": [entry_id]})
    if not (original.kind == "award" or (original.kind == "adjust" and _is_credit(original))):
        raise Conflict("Only awards and credit adjustments can be clawed back.", code="not_reversible")
    _lock_balance(original.member_id)
    amount = min(amount, original.amount - reversed_total(original.id))
    if amount <= 0:
        return None
    entry, new = _write_entry(
        expected={"kind": "reversal", "source_type": "clawback", "source_id": entry_id}, key=key, kind="reversal",
        member_id=original.member_id, amount=amount, reason=reason or "", source_type="clawback",
        source_id=entry_id, actor_id=actor_id,
    )
    if not new:
        return entry
    _claw_back(original, entry)
    if original.kind == "award":
        db.session.execute(
            update(MemberBalance).where(MemberBalance.member_id == original.member_id)
            .values(lifetime_earned=MemberBalance.lifetime_earned - amount)
            .execution_options(synchronize_session=False)
        )
    return entry


def _claw_back(original: JournalEntry, entry: JournalEntry) -> None:
    """Take ``entry.amount`` back for ``original``: its own lot, the member's other points, then owed."""
    amount = entry.amount
    member_id = entry.member_id
    lot = db.session.execute(
        select(PointLot.id, PointLot.amount, PointLot.remaining, PointLot.expired_at)
        .where(PointLot.entry_id == original.id)
    ).first()
    own = 0 if lot is None or lot.expired_at is not None else min(amount, lot.remaining)
    if own:
        db.session.execute(
            update(PointLot)
            .where(PointLot.id == lot.id, PointLot.remaining >= own)
            .values(remaining=PointLot.remaining - own)
            .execution_options(synchronize_session=False)
        )
        db.session.execute(insert(LotConsumption).values(lot_id=lot.id, entry_id=entry.id, amount=own))
        _change_balance(member_id, available=-own)
    forgiven = 0
    if lot is not None and lot.expired_at is not None:
        # What expired unused in this lot was never of use to the member: written off, in the
        # proportion of the award being taken back.
        expired = int(db.session.scalar(
            select(JournalEntry.amount).where(JournalEntry.key == f"expire:lot:{lot.id}")
        ) or 0)
        forgiven = min(amount, expired * amount // original.amount)
    rest = amount - own - forgiven
    other = 0
    if rest > 0:
        row = _lock_spendable(member_id)
        other = min(rest, int(row.available)) if row is not None else 0
        if other:
            _change_balance(member_id, available=-other)
            _consume_lots(member_id, other, entry.id)
    owed = rest - other
    if owed:
        _change_owed(member_id, owed)
    taken = own + other
    if original.kind == "award":
        _lines(entry, {"issued": amount, "available": -taken, "adjusted": taken - amount})
    else:
        _lines(entry, {"adjusted": taken, "available": -taken})


def get_balance(member_id: int) -> Balance:
    row = db.session.execute(
        select(MemberBalance.available, MemberBalance.held, MemberBalance.lifetime_earned, MemberBalance.owed).where(
            MemberBalance.member_id == member_id
        )
    ).first()
    if row is None:
        return Balance(0, 0, 0)
    return Balance(int(row.available), int(row.held), int(row.lifetime_earned), int(row.owed or 0))


def due_unexpired(member_id: int) -> int:
    """Points in the member's lots whose expiry time has passed but whose expiry the hourly job
    has not posted yet: not spendable any more (see ``_lock_spendable``), so views subtract them."""
    return int(db.session.scalar(select(func.coalesce(func.sum(PointLot.remaining), 0)).where(*_due_lots(member_id))))


# --------------------------------------------------------------------------- beyond the contract


def adjust(member_id: int, delta: int, *, key: str, reason: str, actor_id: int) -> JournalEntry:
    """A manual correction by staff: ``delta`` > 0 credits a new lot, < 0 debits (never below zero).

    Adjustments go through the ``adjusted`` account and do not count as lifetime earnings.
    """
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
        raise ValidationError("The adjustment must be a non-zero whole number.", fields={"delta": ["Non-zero."]})
    _check_key(key)
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    amount = abs(delta)
    expected = {"kind": "adjust", "member_id": member_id, "amount": amount}
    existing = _replay(key, **expected)
    if existing is not None:
        if _is_credit(existing) != (delta > 0):
            raise Conflict("This idempotency key was already used for a different operation.",
                           code="idempotency_conflict", fields={"key": [key]})
        return existing
    if delta > 0:
        lock_member(member_id)
    else:
        row = _lock_spendable(member_id)
        if row is None or row.available < amount:
            raise InsufficientPoints(
                f"Not enough points to debit {amount}.", fields={"delta": [f"{row.available if row else 0} available"]}
            )
    entry, new = _write_entry(
        expected=expected, key=key, kind="adjust", member_id=member_id, amount=amount, reason=reason.strip(),
        source_type="adjustment", actor_id=actor_id,
    )
    if not new:
        return entry
    if delta > 0:
        _change_balance(member_id, available=amount)
        _lines(entry, {"adjusted": -amount, "available": amount})
        _new_lot(entry)
        _repay_if_owed(entry)
    else:
        _change_balance(member_id, available=-amount)
        _lines(entry, {"available": -amount, "adjusted": amount})
        _consume_lots(member_id, amount, entry.id)
    return entry


def expire_lot(lot_id: int, *, now: datetime | None = None) -> JournalEntry | None:
    """Post the expiry of one due lot, exactly once (key ``expire:lot:<id>``); None if nothing to post."""
    now = now or utcnow()
    member_id = db.session.scalar(select(PointLot.member_id).where(PointLot.id == lot_id))
    if member_id is None:
        raise NotFound("No such lot.")
    _lock_balance(member_id)
    lot = db.session.execute(
        select(PointLot.remaining, PointLot.expires_at, PointLot.expired_at).where(PointLot.id == lot_id)
    ).one()
    if lot.expired_at is not None or lot.expires_at > now:
        return None
    db.session.execute(
        update(PointLot)
        .where(PointLot.id == lot_id, PointLot.expired_at.is_(None))
        .values(remaining=0, expired_at=now)
        .execution_options(synchronize_session=False)
    )
    if lot.remaining == 0:
        return None
    entry = _insert_entry(
        key=f"expire:lot:{lot_id}", kind="expire", member_id=member_id, amount=int(lot.remaining),
        reason="Points expired", source_type="lot", source_id=lot_id,
    )
    if entry is None:  # already posted (the lot row says otherwise only if someone bypassed us)
        return _find(f"expire:lot:{lot_id}")
    _change_balance(member_id, available=-entry.amount)
    _lines(entry, {"available": -entry.amount, "expired": entry.amount})
    return entry


# --------------------------------------------------------------------------- batches


def settle_holds(items: list[tuple[str, str, int]]) -> list[JournalEntry]:
    """``settle_hold`` for many holds in one go: ``items`` are ``(key, source_type, source_id)``;
    returns the settle entries in the same order.

    Each item means exactly what ``settle_hold`` means (a replayed key returns its entry, a
    missing hold is ``NotFound``, a hold closed another way ``already_closed``), but the batch
    costs seven statements whatever its size, not seven per hold (the redemption drain settles
    dozens per transaction).  The balance rows are locked in member order, so two batches that
    share members cannot deadlock.  A problem with any item raises for the whole batch: the
    caller rolls back (and may settle the items one by one).
    """
    if not items:
        return []
    for key, _source_type, _source_id in items:
        _check_key(key)
    keys = [key for key, _, _ in items]
    if len(set(keys)) != len(keys):
        raise ValidationError("A batch names the same key twice.", fields={"key": ["Duplicate in the batch."]})
    results: dict[str, JournalEntry] = {}
    for entry in db.session.scalars(select(JournalEntry).where(JournalEntry.key.in_(keys))):
        source = next((s, i) for k, s, i in items if k == entry.key)
        results[entry.key] = _same_or_conflict(entry, kind="settle", source_type=source[0], source_id=source[1])
    todo = [item for item in items if item[0] not in results]
    if todo:
        for entry in _settle_new(todo):
            results[entry.key] = entry
    return [results[key] for key in keys]


def _settle_new(todo: list[tuple[str, str, int]]) -> list[JournalEntry]:
    holds: dict[tuple[str, int], JournalEntry] = {}
    for source_type in {source_type for _, source_type, _ in todo}:
        ids = [source_id for _, t, source_id in todo if t == source_type]
        for hold_entry in db.session.scalars(
            select(JournalEntry)
            .where(JournalEntry.kind == "hold", JournalEntry.source_type == source_type,
                   JournalEntry.source_id.in_(ids))
            .order_by(JournalEntry.id)
        ):
            holds[(source_type, hold_entry.source_id)] = hold_entry  # ascending: the latest hold wins
    missing = [f"{t}:{i}" for _, t, i in todo if (t, i) not in holds]
    if missing:
        raise NotFound("No points are held for this.", fields={"source": missing[:20]})
    members = sorted({h.member_id for h in holds.values()})
    db.session.execute(
        select(MemberBalance.member_id).where(MemberBalance.member_id.in_(members))
        .order_by(MemberBalance.member_id).with_for_update()
    ).all()
    hold_ids = [h.id for h in holds.values()]
    if db.session.scalar(select(JournalEntry.id).where(JournalEntry.related_id.in_(hold_ids)).limit(1)) is not None:
        raise Conflict("These points were already settled or released.", code="already_closed")
    now = utcnow()
    params = []
    for key, source_type, source_id in todo:
        h = holds[(source_type, source_id)]
        params.append({"key": key, "kind": "settle", "member_id": h.member_id, "amount": h.amount, "reason": h.reason,
                       "source_type": source_type, "source_id": source_id, "actor_id": None, "related_id": h.id,
                       "created_at": now})
    rows = db.session.execute(_statements()["entry"], params).all()
    if len(rows) != len(params):  # a concurrent settle or release of one of them won the race
        raise Conflict("These points were already settled or released.", code="already_closed")
    entries = []
    for row in rows:
        entry = JournalEntry(**row._mapping)
        make_transient_to_detached(entry)
        db.session.add(entry)
        entries.append(entry)
    per_member: dict[int, int] = {}
    for entry in entries:
        per_member[entry.member_id] = per_member.get(entry.member_id, 0) + entry.amount
    delta = case(per_member, value=MemberBalance.member_id)
    changed = db.session.execute(
        update(MemberBalance)
        .where(MemberBalance.member_id.in_(list(per_member)), MemberBalance.held >= delta)
        .values(held=MemberBalance.held - delta)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != len(per_member):
        raise InsufficientPoints("Not enough points held.", fields={"amount": ["held"]})
    db.session.execute(_statements()["lines"], [
        {"entry_id": e.id, "account": account, "member_id": e.member_id, "amount": amount}
        for e in entries
        for account, amount in (("held", -e.amount), ("redeemed", e.amount))
    ])
    webhooks.publish_many("points.changed", (
        {"member_id": e.member_id, "entry_id": e.id, "kind": e.kind, "amount": e.amount, "available_change": 0,
         "held_change": -e.amount, "reason": e.reason, "source_type": e.source_type, "source_id": e.source_id}
        for e in entries
    ))
    return entries
