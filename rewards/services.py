"""Rewards business logic: the catalogue, code pools, redemption requests and the state machine.

Functions only ``flush``; the view, job or CLI commits once.  Points move only through
``points.ledger`` (hold at request time, settle when the reward is given, release on
reject/cancel, reverse the settlement on refund), each call keyed by the redemption so a replay
changes nothing.

Concurrency: stock is reserved by a guarded ``UPDATE ... WHERE stock > 0``; codes are handed
out by a guarded ``UPDATE ... WHERE redemption_id IS NULL`` (after ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL); every state change is a guarded ``UPDATE ... WHERE state = <expected>``, so two
actors racing on one redemption (the job and a member's cancel) cannot both win.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import lazyload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from community.models import TIERS, User, tier_rank, utcnow
from community.services import audit, notify, refuse_self_dealing
from errors import Conflict, Forbidden, NotFound, ValidationError
from extensions import db
from messaging.account import ensure_email_verified
from messaging.webhooks import events as webhooks
from points import ledger
from points.models import JournalEntry, JournalLine

from .models import (
    REWARD_KINDS,
    SELF_FULFILLING_KINDS,
    Redemption,
    RedemptionJob,
    RedemptionTransition,
    Reward,
    RewardCode,
)

# The explicit state machine: the only moves any actor may make.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"fulfilled", "awaiting_fulfilment", "cancelled", "rejected"}),
    "awaiting_fulfilment": frozenset({"approved", "rejected"}),
    "approved": frozenset({"shipped", "completed", "refunded"}),
    "shipped": frozenset({"completed", "refunded"}),
    "fulfilled": frozenset({"refunded"}),
    "completed": frozenset({"refunded"}),
    "cancelled": frozenset(),
    "rejected": frozenset(),
    "refunded": frozenset(),
}
# States in which a redemption counts against the member's limit and the reward's stock
# (a refunded one no longer does: the member may redeem the reward again).
LIVE_STATES = ("pending", "awaiting_fulfilment", "approved", "shipped", "fulfilled", "completed")
SOURCE_TYPE = "redemption"
IDEMPOTENCY_KEY_MAX = 100
CODE_MAX = 200
MAX_CODES_PER_UPLOAD = 50_000
# After this many attempts the sweeper stops re-enqueueing; staff see the error and decide.
MAX_SWEEP_ATTEMPTS = 20


# --------------------------------------------------------------------------- catalogue


def catalogue_query(member: User, now=None):
    """Rewards a member may see: active, inside their window, not above the member's tier, for
    their segment if it names one, and not withheld by an experiment (``_audience_filters``)."""
    now = now or utcnow()
    allowed_tiers = TIERS[: tier_rank(member.tier) + 1]
    return (
        select(Reward)
        .where(
            Reward.is_active.is_(True),
            or_(Reward.starts_at.is_(None), Reward.starts_at <= now),
            or_(Reward.ends_at.is_(None), Reward.ends_at > now),
            Reward.min_tier.in_(allowed_tiers),
            *_audience_filters(member.id, now),
        )
        .order_by(Reward.cost, Reward.id)
    )


def _audience_filters(member_id: int, now) -> list:
    """Analytics decides who a reward reaches: its segment's members only, no marketing reward for
    the programme-wide holdout, nothing for the control arm of the reward's own experiment."""
    from analytics.experiments import in_holdout, withheld_reward_ids
    from analytics.segments import segments_of

    filters = [or_(Reward.segment_id.is_(None), Reward.segment_id.in_(segments_of(member_id)))]
    if in_holdout(member_id, now):
        filters.append(Reward.marketing.is_(False))
    withheld = withheld_reward_ids(member_id, now)
    if withheld:
        filters.append(Reward.id.not_in(withheld))
    return filters


def _reaches(member_id: int, reward: Reward) -> bool:
    """The single-reward form of ``_audience_filters`` (a request names one reward)."""
    from analytics.experiments import reward_withheld
    from analytics.segments import is_member_in

    if reward.segment_id is not None and not is_member_in(reward.segment_id, member_id):
        return False
    return not reward_withheld(member_id, reward.id, marketing=reward.marketing)


def _is_open(reward: Reward, now) -> bool:
    return (
        reward.is_active
        and (reward.starts_at is None or reward.starts_at <= now)
        and (reward.ends_at is None or reward.ends_at > now)
    )


def get_visible_reward(member: User, reward_id: int) -> Reward:
    """A reward from the member's catalogue; 404 for inactive, out-of-window or out-of-audience ones."""
    reward = db.session.get(Reward, reward_id)
    if reward is None or not _is_open(reward, utcnow()):
        raise NotFound("No such reward.")
    if tier_rank(member.tier) < tier_rank(reward.min_tier) or not _reaches(member.id, reward):
        raise NotFound("No such reward.")
    return reward


def get_reward(reward_id: int, *, lock: bool = False) -> Reward:
    """The reward; ``lock`` takes its row lock (PostgreSQL) for a delete that must not race."""
    reward = db.session.get(Reward, reward_id, with_for_update=lock or None, populate_existing=lock)
    if reward is None:
        raise NotFound("No such reward.")
    return reward


def staff_rewards_query(*, kind: str | None = None, active: bool | None = None):
    query = select(Reward).order_by(Reward.id.desc())
    if kind:
        query = query.where(Reward.kind == kind)
    if active is not None:
        query = query.where(Reward.is_active.is_(active))
    return query


def _check_window(starts_at, ends_at) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise ValidationError("The window ends before it starts.", fields={"ends_at": ["Must be after starts_at."]})


def _check_segment(segment_id: int | None) -> None:
    if segment_id is not None:
        from analytics.segments import require_segment

        require_segment(segment_id)  # 404 for an unknown or archived segment


def create_reward(actor: User, data: dict) -> Reward:
    """Add a catalogue entry.  A coupon reward's stock follows its code pool, so it starts at 0."""
    if data["kind"] == "coupon":
        if data.get("stock") is not None:
            raise ValidationError(
                "The stock of a coupon reward is the number of uploaded codes.",
                fields={"stock": ["Upload codes instead."]},
            )
        data = {**data, "stock": 0}
    _check_window(data.get("starts_at"), data.get("ends_at"))
    _check_segment(data.get("segment_id"))
    reward = Reward(created_by_id=actor.id, **data)
    db.session.add(reward)
    db.session.flush()
    audit(actor.id, "rewards.reward.create", "reward", reward.id, details={"name": reward.name, "cost": reward.cost})
    return reward


def update_reward(actor: User, reward_id: int, changes: dict) -> Reward:
    reward = get_reward(reward_id)
    if "kind" in changes and changes["kind"] != reward.kind:
        raise ValidationError("The kind of a reward cannot change.", fields={"kind": ["Create a new reward."]})
    if reward.kind == "coupon" and "stock" in changes:
        raise ValidationError(
            "The stock of a coupon reward is the number of uploaded codes.", fields={"stock": ["Upload codes instead."]}
        )
    _check_window(changes.get("starts_at", reward.starts_at), changes.get("ends_at", reward.ends_at))
    _check_segment(changes.get("segment_id"))
    for key, value in changes.items():
        setattr(reward, key, value)
    db.session.flush()
    audit(actor.id, "rewards.reward.update", "reward", reward.id, details={k: str(v) for k, v in changes.items()})
    return reward


def delete_reward(actor: User, reward_id: int) -> None:
    """Delete a reward nobody has requested; one with redemptions can only be deactivated.

    The row lock pairs with the KEY SHARE lock ``request_redemption`` takes: a request either
    finishes first (and the delete sees its redemption: 409) or finds the reward gone (404).
    """
    reward = get_reward(reward_id, lock=True)
    used = db.session.scalar(select(Redemption.id).where(Redemption.reward_id == reward.id).limit(1))
    if used is not None:
        raise Conflict("This reward has redemptions; deactivate it instead.", code="reward_in_use")
    db.session.execute(RewardCode.__table__.delete().where(RewardCode.reward_id == reward.id))
    db.session.delete(reward)
    audit(actor.id, "rewards.reward.delete", "reward", reward_id, details={"name": reward.name})
    db.session.flush()


def parse_codes(text: str) -> list[str]:
    """Codes from CSV text: the first column of each row; an optional ``code`` header is skipped."""
    codes: list[str] = []
    errors: dict[str, list[str]] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not row[0].strip():
            continue
        code = row[0].strip()
        if lineno == 1 and code.lower() == "code":
            continue
        if len(code) > CODE_MAX:
            errors[f"line {lineno}"] = [f"Codes are at most {CODE_MAX} characters."]
            continue
        codes.append(code)
    if errors:
        raise ValidationError("Some codes are invalid; nothing was added.", fields=dict(list(errors.items())[:20]))
    if not codes:
        raise ValidationError("The file holds no codes.", fields={"file": ["No codes found."]})
    if len(codes) > MAX_CODES_PER_UPLOAD:
        raise ValidationError(
            "Too many codes in one upload.", fields={"file": [f"At most {MAX_CODES_PER_UPLOAD} codes per upload."]}
        )
    return codes


def add_codes(actor: User, reward_id: int, codes: list[str]) -> dict:
    """Add new codes to a coupon reward's pool; codes already in it are skipped.

    The reward row is locked (a guarded stock update) before the duplicate check, so two uploads
    to one reward are serialised and the unique constraint never surprises us.
    """
    reward = get_reward(reward_id)
    if reward.kind != "coupon":
        raise Conflict("Only coupon rewards have a code pool.", code="not_a_coupon_reward")
    # Take the reward's row lock first (a no-op update), serialising uploads to this pool.
    db.session.execute(update(Reward).where(Reward.id == reward.id).values(stock=Reward.stock))
    unique = list(dict.fromkeys(codes))
    existing: set[str] = set()
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        existing.update(
            db.session.scalars(
                select(RewardCode.code).where(RewardCode.reward_id == reward.id, RewardCode.code.in_(chunk))
            )
        )
    new = [c for c in unique if c not in existing]
    now = utcnow()
    if new:
        db.session.execute(
            RewardCode.__table__.insert(), [{"reward_id": reward.id, "code": c, "created_at": now} for c in new]
        )
        db.session.execute(update(Reward).where(Reward.id == reward.id).values(stock=Reward.stock + len(new)))
        audit(actor.id, "rewards.reward.add_codes", "reward", reward.id, details={"added": len(new)})
    db.session.flush()
    db.session.refresh(reward)
    return {"added": len(new), "duplicates": len(codes) - len(new), **code_counts(reward.id), "stock": reward.stock}


def code_counts(reward_id: int) -> dict:
    total, assigned = db.session.execute(
        select(func.count(RewardCode.id), func.count(RewardCode.redemption_id)).where(RewardCode.reward_id == reward_id)
    ).one()
    return {"codes_total": total, "codes_assigned": assigned}


# --------------------------------------------------------------------------- state machine


def _hold_key(redemption_id: int) -> str:
    return f"redemption:{redemption_id}:hold"


def _move(redemption: Redemption, to_state: str) -> bool:
    """Guarded state change; False when another actor moved the redemption first."""
    from_state = redemption.state
    if to_state not in TRANSITIONS[from_state]:
        return False
    now = utcnow()
    result = db.session.execute(
        update(Redemption)
        .where(Redemption.id == redemption.id, Redemption.state == from_state)
        .values(state=to_state, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.refresh(redemption)
        return False
    # The row now holds exactly these values: record them without reloading the object.
    set_committed_value(redemption, "state", to_state)
    set_committed_value(redemption, "updated_at", now)
    return True


def _record(
    redemption: Redemption, from_state: str | None, actor_id: int | None, reason: str = "", extra: dict | None = None
) -> None:
    """Log the transition with its actor and tell the member (once per state); ``extra`` goes
    into the notification's payload."""
    state = redemption.state
    db.session.add(
        RedemptionTransition(
            redemption_id=redemption.id, from_state=from_state, to_state=state, actor_id=actor_id, reason=reason
        )
    )
    payload = {
        "redemption_id": redemption.id,
        "reward_id": redemption.reward_id,
        "reward_name": redemption.reward.name,
        "state": state,
    }
    if state == "fulfilled" and redemption.code is not None:
        payload["code"] = redemption.code
    if state == "shipped":
        payload["tracking_reference"] = redemption.tracking_reference
    if reason:
        payload["reason"] = reason
    payload.update(extra or {})
    notify(redemption.member_id, f"rewards.redemption_{state}", payload,
           dedupe_key=f"redemption:{redemption.id}:{state}")
    webhooks.publish("redemption.state_changed", {**{k: v for k, v in payload.items() if k != "code"},
                     "member_id": redemption.member_id, "from_state": from_state, "actor_id": actor_id})


def _transition(redemption: Redemption, to_state: str, actor_id: int | None, reason: str = "") -> str:
    """Move or raise 409; returns the state moved from."""
    from_state = redemption.state
    if not _move(redemption, to_state):
        raise Conflict(
            f"A redemption that is {redemption.state} cannot become {to_state}.",
            code="illegal_transition",
            fields={"state": [redemption.state]},
        )
    return from_state


def _restore_stock(reward_id: int) -> None:
    db.session.execute(
        update(Reward).where(Reward.id == reward_id, Reward.stock.is_not(None)).values(stock=Reward.stock + 1)
    )


def _release(redemption: Redemption, reason: str) -> None:
    ledger.release_hold(
        key=f"redemption:{redemption.id}:release", source_type=SOURCE_TYPE, source_id=redemption.id, reason=reason
    )


def _settle_key(redemption_id: int) -> str:
    return f"redemption:{redemption_id}:settle"


def _settle(redemption: Redemption) -> None:
    ledger.settle_hold(key=_settle_key(redemption.id), source_type=SOURCE_TYPE, source_id=redemption.id)


def _refund_points(redemption: Redemption, reason: str, actor_id: int) -> int:
    """Reverse the settlement (redeemed -> available); returns the points the member got back.

    Points whose lot expired since the request are booked to ``expired`` by the ledger, not
    returned, exactly as a release would.
    """
    settle_id = db.session.scalar(select(JournalEntry.id).where(JournalEntry.key == _settle_key(redemption.id)))
    if settle_id is None:  # every state a refund starts from has settled: only hand-edited data gets here
        raise Conflict("This redemption has no settled points to refund.", code="not_settled")
    entry = ledger.reverse(
        settle_id, key=f"redemption:{redemption.id}:refund", reason=reason, actor_id=actor_id
    )
    returned = db.session.scalar(
        select(JournalLine.amount).where(JournalLine.entry_id == entry.id, JournalLine.account == "available")
    )
    return int(returned or 0)


# --------------------------------------------------------------------------- member side


def _check_idempotency_key(key: str | None) -> str:
    key = (key or "").strip()
    if not key:
        raise ValidationError(
            "The Idempotency-Key header is required.", fields={"Idempotency-Key": ["Missing data for required field."]}
        )
    if len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ValidationError(
            "The Idempotency-Key header is invalid.",
            fields={"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} printable characters."]},
        )
    return key


def request_redemption(member: User, reward_id: int, idempotency_key: str | None) -> tuple[Redemption, bool]:
    """Request a reward: eligibility, hold the points, reserve stock, create it ``pending``.

    Returns ``(redemption, created)``; a replayed key returns the original (``created`` False).
    The caller commits and then enqueues the processing job.
    """
    key = _check_idempotency_key(idempotency_key)
    # Serialise this member's requests (PostgreSQL; SQLite's BEGIN IMMEDIATE already does), so
    # the replay check and the per-member limit below cannot race with a parallel request.
    # FOR NO KEY UPDATE, not FOR UPDATE: foreign-key checks of other transactions (a job inserting
    # this member's notification while holding their balance lock) take KEY SHARE on the row,
    # which this mode does not block, so the two cannot deadlock.
    db.session.execute(select(User.id).where(User.id == member.id).with_for_update(key_share=True))
    existing = db.session.scalar(
        select(Redemption).where(Redemption.member_id == member.id, Redemption.idempotency_key == key)
    )
    if existing is not None:
        if existing.reward_id != reward_id:
            raise Conflict(
                "This Idempotency-Key was already used for another reward.",
                code="idempotency_conflict",
                fields={"Idempotency-Key": ["Already used with a different request."]},
            )
        return existing, False

    if member.is_suspended():
        raise Forbidden("Suspended members cannot redeem rewards.", code="member_suspended")
    ensure_email_verified(member.id)
    reward = db.session.get(Reward, reward_id, with_for_update={"read": True, "key_share": True})
    # Out of the reward's audience (segment, holdout, experiment control) it is not in the member's
    # catalogue either: the same 404, which does not tell a control member about the experiment.
    if reward is None or not _is_open(reward, utcnow()) or not _reaches(member.id, reward):
        raise NotFound("No such reward.", fields={"reward_id": ["No such reward."]})
    if tier_rank(member.tier) < tier_rank(reward.min_tier):
        raise Forbidden(
            f"This reward needs the {reward.min_tier} tier.",
            code="tier_required",
            fields={"reward_id": ["Tier too low."]},
        )
    if reward.stock is not None and reward.stock <= 0:  # fast path; the guarded update below decides
        raise Conflict("This reward is out of stock.", code="out_of_stock")
    if reward.per_member_limit is not None:
        used = db.session.scalar(
            select(func.count(Redemption.id)).where(
                Redemption.member_id == member.id,
                Redemption.reward_id == reward.id,
                Redemption.state.in_(LIVE_STATES),
            )
        )
        if used >= reward.per_member_limit:
            raise Conflict(
                f"You may redeem this reward at most {reward.per_member_limit} time(s).", code="limit_reached"
            )

    redemption = Redemption(member_id=member.id, reward_id=reward.id, cost=reward.cost, idempotency_key=key)
    db.session.add(redemption)
    db.session.flush()
    ledger.hold(
        member.id,
        reward.cost,
        key=_hold_key(redemption.id),
        reason=f"Redemption of {reward.name}",
        source_type=SOURCE_TYPE,
        source_id=redemption.id,
    )
    # Last, so the hot reward row stays locked for as short a time as possible.
    reserved = db.session.execute(
        update(Reward)
        .where(Reward.id == reward.id, or_(Reward.stock.is_(None), Reward.stock > 0))
        .values(stock=Reward.stock - 1)
    )
    if reserved.rowcount != 1:
        raise Conflict("This reward is out of stock.", code="out_of_stock")
    db.session.add(RedemptionJob(redemption_id=redemption.id, status="queued"))
    _record(redemption, None, member.id)
    db.session.flush()
    return redemption, True


def member_redemptions_query(member_id: int, state: str | None = None):
    query = (
        select(Redemption)
        .where(Redemption.member_id == member_id)
        .options(selectinload(Redemption.code_row), selectinload(Redemption.job))
        .order_by(Redemption.id.desc())
    )
    if state:
        query = query.where(Redemption.state == state)
    return query


def get_own_redemption(member_id: int, redemption_id: int) -> Redemption:
    """The member's own redemption; another member's is a 404, never a 403 (no probing)."""
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None or redemption.member_id != member_id:
        raise NotFound("No such redemption.")
    return redemption


def cancel(member: User, redemption_id: int) -> Redemption:
    """The member withdraws a request still ``pending``: points released, stock restored."""
    redemption = get_own_redemption(member.id, redemption_id)
    from_state = _transition(redemption, "cancelled", member.id)
    _release(redemption, "Redemption cancelled")
    _restore_stock(redemption.reward_id)
    _record(redemption, from_state, member.id)
    db.session.flush()
    return redemption


# --------------------------------------------------------------------------- processing (the job)


def process(redemption_id: int) -> Redemption | None:
    """Carry one ``pending`` redemption forward (``process_many`` of one); anything else is
    left alone (idempotent).  Returns the redemption, or None if there is no such one."""
    process_many([redemption_id])
    return db.session.get(Redemption, redemption_id)


def process_many(redemption_ids: list[int]) -> dict[int, str]:
    """Carry ``pending`` redemptions forward, set-based; returns each found one's state afterwards.

    Coupon: claim a code, settle the hold, ``fulfilled``.  Digital and donation: settle,
    ``fulfilled``.  Physical and experience: ``awaiting_fulfilment`` for staff (points stay held).
    Anything not ``pending`` is left alone, and every state change is a guarded
    ``UPDATE ... WHERE state = 'pending'``, so a redemption cancelled meanwhile, or processed by
    another worker, is not touched twice.  All in the caller's one transaction: a crash anywhere
    leaves every redemption of the batch ``pending`` with no code claimed and no points settled.

    The cost is a fixed number of statements for the batch (load, state change, codes per
    reward, the ledger's batch settle, transitions, job rows) plus the member's notification
    per redemption.  Locks are taken in one order: the redemption rows (the state change), then
    the balance rows in member order (the settle), as a member's cancel does, so a batch cannot
    deadlock with a cancel or with another batch.
    """
    ids = sorted(set(redemption_ids))
    if not ids:
        return {}
    # The job and code relationships load only if used (the codes are known when claimed).
    found = list(db.session.scalars(
        select(Redemption).where(Redemption.id.in_(ids))
        .options(lazyload(Redemption.code_row), lazyload(Redemption.job))
    ))
    pending = [r for r in found if r.state == "pending"]
    now = utcnow()
    for_staff = _move_many([r for r in pending if r.reward.kind not in SELF_FULFILLING_KINDS],
                           "awaiting_fulfilment", now)
    fulfilled = _move_many([r for r in pending if r.reward.kind in SELF_FULFILLING_KINDS], "fulfilled", now,
                           fulfilled_at=now)
    codes = _assign_codes([r for r in fulfilled if r.reward.kind == "coupon"], now)
    for redemption in [r for r in fulfilled if r.reward.kind == "coupon" and r.id not in codes]:
        _reject_no_code(redemption)
    settled = [r for r in fulfilled if r.reward.kind != "coupon" or r.id in codes]
    ledger.settle_holds([(_settle_key(r.id), SOURCE_TYPE, r.id) for r in settled])
    _record_many(for_staff + settled, "pending", codes)
    return {r.id: r.state for r in found}


def _move_many(redemptions: list[Redemption], to_state: str, now, **values) -> list[Redemption]:
    """Guarded ``pending -> to_state`` for many in one statement; returns those moved (others
    were cancelled or rejected meanwhile, and are expired so a later read sees their state)."""
    if not redemptions:
        return []
    moved = set(db.session.scalars(
        update(Redemption)
        .where(Redemption.id.in_([r.id for r in redemptions]), Redemption.state == "pending")
        .values(state=to_state, updated_at=now, **values)
        .returning(Redemption.id)
        .execution_options(synchronize_session=False)
    ))
    done = []
    for redemption in redemptions:
        if redemption.id in moved:
            # The row now holds exactly these values: record them without reloading the object.
            for name, value in {"state": to_state, "updated_at": now, **values}.items():
                set_committed_value(redemption, name, value)
            done.append(redemption)
        else:
            db.session.expire(redemption)
    return done


def _assign_codes(redemptions: list[Redemption], now) -> dict[int, str]:
    """Give each coupon redemption one unused code of its reward's pool; returns id -> code for
    those that got one (the others found the pool empty).

    Per reward: one ``SELECT ... FOR UPDATE SKIP LOCKED`` of as many free codes as needed (on
    PostgreSQL another worker's claimed codes are skipped, not waited for; SQLite serialises
    writers anyway) and one guarded ``UPDATE ... WHERE redemption_id IS NULL`` for them all.
    """
    by_reward: dict[int, list[Redemption]] = {}
    for redemption in redemptions:
        by_reward.setdefault(redemption.reward_id, []).append(redemption)
    given: dict[int, str] = {}
    codes = RewardCode.__table__
    for reward_id, group in by_reward.items():
        free = db.session.execute(
            select(codes.c.id, codes.c.code)
            .where(codes.c.reward_id == reward_id, codes.c.redemption_id.is_(None))
            .order_by(codes.c.id)
            .limit(len(group))
            .with_for_update(skip_locked=True)
        ).all()
        pairs = list(zip(group, free, strict=False))
        if not pairs:
            continue
        taken = db.session.execute(
            update(codes)
            .where(codes.c.id == bindparam("code_id"), codes.c.redemption_id.is_(None))
            .values(redemption_id=bindparam("for_redemption"), assigned_at=now),
            [{"code_id": code.id, "for_redemption": r.id} for r, code in pairs],
        ).rowcount
        if taken != len(pairs):  # a code we locked went elsewhere: only hand-edited data gets here
            raise RuntimeError(f"could not claim codes for reward {reward_id}")  # the batch is retried
        given.update({r.id: code.code for r, code in pairs})
    return given


def _reject_no_code(redemption: Redemption) -> None:
    """The stock said a code was left but the pool is empty (codes deleted by hand): refuse
    rather than leave the member waiting; the stock was already wrong, so it is not restored."""
    db.session.execute(
        update(Redemption)
        .where(Redemption.id == redemption.id)
        .values(state="rejected", reject_reason="No codes left for this reward.", fulfilled_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(redemption)
    _release(redemption, "No codes left")
    _record(redemption, "pending", None, "No codes left for this reward.")


def _record_many(redemptions: list[Redemption], from_state: str, codes: dict[int, str]) -> None:
    """``_record`` for moves the job made (actor NULL): the transitions in one INSERT, the
    webhook events in one batch, and the member's notification for each."""
    if not redemptions:
        return
    db.session.execute(insert(RedemptionTransition), [
        {"redemption_id": r.id, "from_state": from_state, "to_state": r.state, "actor_id": None, "reason": ""}
        for r in redemptions
    ])
    payloads = []
    for r in redemptions:
        payload = {"redemption_id": r.id, "reward_id": r.reward_id, "reward_name": r.reward.name, "state": r.state}
        if r.state == "fulfilled" and r.id in codes:
            payload["code"] = codes[r.id]
        notify(r.member_id, f"rewards.redemption_{r.state}", payload, dedupe_key=f"redemption:{r.id}:{r.state}")
        payloads.append((r, payload))
    webhooks.publish_many("redemption.state_changed", (
        {**{k: v for k, v in payload.items() if k != "code"}, "member_id": r.member_id, "from_state": from_state,
         "actor_id": None}
        for r, payload in payloads
    ))


def start_attempt(redemption_id: int) -> int | None:
    """Count one processing attempt (committed by the job before the work); returns the count."""
    return db.session.scalar(
        update(RedemptionJob)
        .where(RedemptionJob.redemption_id == redemption_id)
        .values(attempts=RedemptionJob.attempts + 1, status="running", started_at=utcnow())
        .returning(RedemptionJob.attempts)
    )


def claim_batch(limit: int) -> dict[int, int]:
    """Take up to ``limit`` redemptions that are ``pending`` and not yet attempted (job row
    ``queued``), oldest first: their job rows become ``running`` with one more attempt.
    Returns redemption id -> attempt number.

    The caller commits this before the work, as ``start_attempt``: a batch killed mid-way has
    its attempts counted, and its rows (``running``) are no longer claimed by other batches but
    left to the sweeper's one-by-one jobs.  On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets
    concurrent workers claim disjoint batches without waiting for each other.
    """
    fresh = (
        select(RedemptionJob.redemption_id)
        .join(Redemption, Redemption.id == RedemptionJob.redemption_id)
        .where(RedemptionJob.status == "queued", Redemption.state == "pending")
        .order_by(RedemptionJob.redemption_id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=RedemptionJob)
    )
    rows = db.session.execute(
        update(RedemptionJob)
        .where(RedemptionJob.redemption_id.in_(fresh))
        .values(attempts=RedemptionJob.attempts + 1, status="running", started_at=utcnow())
        .returning(RedemptionJob.redemption_id, RedemptionJob.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    return dict(sorted((int(rid), int(attempts)) for rid, attempts in rows))


def finish_attempt(redemption_id: int, error: str | None = None) -> None:
    finish_attempts([redemption_id], error)


def finish_attempts(redemption_ids: list[int], error: str | None = None) -> None:
    values: dict = {"status": "error", "last_error": error[:2000]} if error else {"status": "succeeded"}
    db.session.execute(
        update(RedemptionJob)
        .where(RedemptionJob.redemption_id.in_(list(redemption_ids)))
        .values(finished_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )


def stale_pending_ids(min_age_seconds: int = 60, limit: int = 1000) -> list[int]:
    """Pending redemptions older than ``min_age_seconds`` that the sweeper should re-enqueue."""
    cutoff = utcnow() - timedelta(seconds=min_age_seconds)
    return list(
        db.session.scalars(
            select(Redemption.id)
            .join(RedemptionJob, RedemptionJob.redemption_id == Redemption.id)
            .where(
                Redemption.state == "pending",
                Redemption.created_at <= cutoff,
                RedemptionJob.attempts < MAX_SWEEP_ATTEMPTS,
            )
            .order_by(Redemption.id)
            .limit(limit)
        )
    )


# --------------------------------------------------------------------------- staff side


def staff_queue_query(
    *, state: str | None = None, reward_id: int | None = None, member_id: int | None = None, kind: str | None = None
):
    """The redemption queue, oldest first."""
    query = select(Redemption).options(selectinload(Redemption.job)).order_by(Redemption.id)
    if state:
        query = query.where(Redemption.state == state)
    if reward_id is not None:
        query = query.where(Redemption.reward_id == reward_id)
    if member_id is not None:
        query = query.where(Redemption.member_id == member_id)
    if kind:
        if kind not in REWARD_KINDS:
            raise ValidationError("Unknown kind.", fields={"kind": [f"One of {', '.join(REWARD_KINDS)}."]})
        query = query.where(Redemption.reward_id.in_(select(Reward.id).where(Reward.kind == kind)))
    return query


def get_redemption(redemption_id: int) -> Redemption:
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None:
        raise NotFound("No such redemption.")
    return redemption


def _for_staff(actor: User, redemption_id: int, action: str) -> Redemption:
    """The redemption a staff member acts on: never their own (403 ``self_dealing``, audited):
    refunding one's own fulfilled coupon would hand the points back and keep the code."""
    redemption = get_redemption(redemption_id)
    if redemption.member_id == actor.id:
        refuse_self_dealing(actor, f"rewards.redemption.{action}", "redemption", redemption.id,
                            "You cannot act on your own redemption; another staff member must.")
    return redemption


def transitions_of(redemption_id: int) -> list[RedemptionTransition]:
    return list(
        db.session.scalars(
            select(RedemptionTransition)
            .where(RedemptionTransition.redemption_id == redemption_id)
            .order_by(RedemptionTransition.id)
        )
    )


def approve(actor: User, redemption_id: int) -> Redemption:
    """Staff accept a physical/experience request: the held points are spent."""
    redemption = _for_staff(actor, redemption_id, "approve")
    from_state = _transition(redemption, "approved", actor.id)
    _settle(redemption)
    _record(redemption, from_state, actor.id)
    db.session.flush()
    return redemption


def ship(actor: User, redemption_id: int, tracking_reference: str) -> Redemption:
    redemption = _for_staff(actor, redemption_id, "ship")
    if redemption.reward.kind != "physical":
        raise Conflict(
            "Only physical gifts are shipped.", code="illegal_transition", fields={"kind": [redemption.reward.kind]}
        )
    from_state = _transition(redemption, "shipped", actor.id)
    redemption.tracking_reference = tracking_reference
    db.session.flush()
    _record(redemption, from_state, actor.id)
    db.session.flush()
    return redemption


def complete(actor: User, redemption_id: int) -> Redemption:
    redemption = _for_staff(actor, redemption_id, "complete")
    from_state = _transition(redemption, "completed", actor.id)
    redemption.fulfilled_at = utcnow()
    _record(redemption, from_state, actor.id)
    db.session.flush()
    return redemption


def reject(actor: User, redemption_id: int, reason: str) -> Redemption:
    """Staff refuse a request not yet accepted: points released, stock restored."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    redemption = _for_staff(actor, redemption_id, "reject")
    from_state = _transition(redemption, "rejected", actor.id)
    redemption.reject_reason = reason
    _release(redemption, f"Redemption rejected: {reason}"[:200])
    _restore_stock(redemption.reward_id)
    _record(redemption, from_state, actor.id, reason)
    db.session.flush()
    return redemption


def refund(actor: User, redemption_id: int, reason: str) -> Redemption:
    """Staff undo a redemption already paid for: the points come back to the member.

    Allowed from ``approved``, ``shipped``, ``fulfilled`` and ``completed`` (``TRANSITIONS``);
    anything else is 409 ``illegal_transition``.  The guarded state change comes first, so of
    two staff refunding at once exactly one moves the redemption and reverses the settlement
    (``redemption:<id>:refund``, also unique in the ledger); the other gets 409.

    Stock: only a redemption refunded from ``approved`` gives its unit back, because the item
    has not left (a gift not yet shipped, an experience not yet held).  Shipped or completed
    items are gone (staff raise the stock by hand if a parcel comes back), and a fulfilled coupon
    keeps its code: the member has seen it, so it stays assigned to this redemption and is never
    handed out again.  A refunded redemption no longer counts against the per-member limit.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    redemption = _for_staff(actor, redemption_id, "refund")
    from_state = _transition(redemption, "refunded", actor.id)
    redemption.refund_reason = reason
    points = _refund_points(redemption, f"Redemption refunded: {reason}"[:200], actor.id)
    restocked = from_state == "approved"
    if restocked:
        _restore_stock(redemption.reward_id)
    _record(redemption, from_state, actor.id, reason, extra={"points_refunded": points})
    audit(
        actor.id, "rewards.redemption.refund", "redemption", redemption.id, reason=reason,
        details={"member_id": redemption.member_id, "from_state": from_state, "points_refunded": points,
                 "restocked": restocked},
    )
    db.session.flush()
    return redemption
