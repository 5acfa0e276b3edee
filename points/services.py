"""Interactions and the earning rules applied to them; the entry point other domains call.

Functions only flush; the caller commits once.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from blinker import Namespace
from flask import current_app
from sqlalchemy import bindparam, exists, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from community.models import User, utcnow
from community.services import audit, member_registered, refuse_self_dealing
from errors import Conflict, NotFound, ValidationError
from extensions import db, dialect_insert

from . import approvals, ledger, referrals, rules
from .models import Campaign, EarningRule, Interaction, JournalEntry, MemberMultiplier, PurchaseLineItem, Referral

INTERACTION_KINDS = (
    "post",
    "reply",
    "reaction_received",
    "survey_completed",
    "focus_group_attended",
    "referral_signup",
    "referral_converted",
    "purchase",
    "refund",
    "profile_completed",
    "daily_visit",
)

signals = Namespace()
# Sent inside the recording transaction (sender = the Interaction): receivers write in the same one.
interaction_recorded = signals.signal("interaction-recorded")

_REASONS = {
    "post": "New thread",
    "reply": "Reply",
    "reaction_received": "Reaction received",
    "survey_completed": "Survey completed",
    "focus_group_attended": "Focus group attended",
    "referral_signup": "Referral signed up",
    "referral_converted": "Referral converted",
    "purchase": "Purchase",
    "refund": "Refund",
    "profile_completed": "Profile completed",
    "daily_visit": "Daily visit",
}


# Connected at import (once: blinker keys receivers by identity, so re-imports are harmless).
member_registered.connect(referrals.on_member_registered)


_INSERTS: dict[str, object] = {}
_SET_ENTRY = (
    update(Interaction.__table__)
    .where(Interaction.__table__.c.id == bindparam("b_id"))
    .values(entry_id=bindparam("entry_id"))
)


def _insert_interaction():
    """``INSERT … ON CONFLICT DO NOTHING RETURNING`` for interactions, built once per dialect."""
    name = db.session.get_bind().dialect.name
    stmt = _INSERTS.get(name)
    if stmt is None:
        ins = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt = _INSERTS[name] = ins(Interaction).on_conflict_do_nothing().returning(Interaction)
    return stmt


def _replayed(
    interaction: Interaction, member_id: int, kind: str, source_type, source_id, value: Decimal | None = None
) -> Interaction:
    same = (interaction.member_id, interaction.kind, interaction.source_type, interaction.source_id) == (
        member_id, kind, source_type, source_id,
    )
    if value is not None and interaction.value is not None:
        same = same and Decimal(interaction.value) == value
    if not same:
        raise Conflict(
            "This idempotency key was already used for a different interaction.",
            code="idempotency_conflict",
            fields={"key": [interaction.key]},
        )
    return interaction


def _find(key: str) -> Interaction | None:
    return db.session.scalar(select(Interaction).where(Interaction.key == key))


def _as_decimal(value) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValidationError("The value must be a number.", fields={"value": ["Not a number."]}) from exc
    if not number.is_finite() or abs(number) >= Decimal("1e12"):
        raise ValidationError("The value is out of range.", fields={"value": ["Out of range."]})
    return number.quantize(Decimal("0.01"))


def record_interaction(
    member_id: int,
    kind: str,
    *,
    key: str,
    source_type: str | None = None,
    source_id: int | None = None,
    value=None,
    occurred_at: datetime | None = None,
    meta: dict | None = None,
) -> Interaction:
    """Record an interaction and, in the same transaction, award what the earning rules give.

    Idempotent on ``key``: a replay returns the recorded interaction and changes nothing (and
    sends no signal).  The award's ledger key is ``earn:<key>``; its source is the interaction's
    source, or ``("interaction", interaction.id)`` when it has none, so ``reverse_source``
    finds it.  ``interaction_recorded`` is sent after the row is written.
    """
    if kind not in INTERACTION_KINDS:
        raise ValidationError("Unknown interaction kind.", fields={"kind": [f"One of {', '.join(INTERACTION_KINDS)}."]})
    if not isinstance(key, str) or not key or len(key) > 190:
        raise ValidationError("An idempotency key of 1-190 characters is required.", fields={"key": ["Required."]})
    number = _as_decimal(value)
    # One round trip for what the rules need: the member's tier and birthday (not the User
    # entity, which would also load its roles), the kind's earning rule (an outer join: no row
    # means the default rule) and, for a purchase, whether a referral waits for it to convert.
    pending = (
        exists().where(Referral.referee_id == User.id, Referral.status == "signed_up")
        if kind == "purchase" else literal(False)
    )
    member = db.session.execute(
        select(User.id, User.tier, User.birthday, User.birthday_set_at, pending.label("referral_pending"),
               *rules.RULE_COLUMNS)
        .select_from(User).outerjoin(EarningRule, EarningRule.kind == kind)
        .where(User.id == member_id)
    ).first()
    if member is None:
        raise NotFound("No such member.", fields={"member_id": [member_id]})
    at = occurred_at or utcnow()
    rule = rules.rule_from_row(kind, member)
    points = rules.points_for(rule, member, number, at)
    if points > 0 and rule.has_caps:
        # Caps read what was earned so far: serialise this member's earning first.
        ledger.lock_member(member_id)
        points = rules.apply_caps(rule, member_id, points, at)

    # No lookup first: the ON CONFLICT insert finds a replay (or a concurrent twin) by itself, and
    # only the recording that inserted the row goes on to award.
    interaction = db.session.scalars(
        _insert_interaction(),
        [{
            "member_id": member_id, "kind": kind, "source_type": source_type, "source_id": source_id,
            "value": number, "occurred_at": at, "key": key, "points": points, "meta": meta or {},
            "created_at": utcnow(), "entry_id": None,
        }],
    ).first()
    if interaction is None:
        return _replayed(_find(key), member_id, kind, source_type, source_id, number)
    if points > 0:
        entry = ledger.award(
            member_id, points, key=f"earn:{key}", reason=_REASONS[kind],
            source_type=source_type or "interaction",
            source_id=source_id if source_type else interaction.id,
        )
        db.session.execute(
            _SET_ENTRY, {"b_id": interaction.id, "entry_id": entry.id},
            execution_options={"synchronize_session": False},
        )
        set_committed_value(interaction, "entry_id", entry.id)
    if member.referral_pending:  # a purchase by a referee whose referral has not converted yet
        referrals.on_purchase(member_id, at, interaction.id)
    interaction_recorded.send(interaction)
    return interaction


def reverse_source(
    source_type: str, source_id: int, *, reason: str, actor_id: int | None = None
) -> list[JournalEntry]:
    """Reverse every award linked to ``(source_type, source_id)``; returns the reversal entries.

    Idempotent: awards already reversed contribute their existing reversal, so calling it twice
    returns the same list and posts nothing new.  See ``ledger.reverse`` for how points already
    spent are treated (a balance never goes negative).
    """
    awards = db.session.scalars(
        select(JournalEntry)
        .where(JournalEntry.kind == "award", JournalEntry.source_type == source_type,
               JournalEntry.source_id == source_id)
        .order_by(JournalEntry.id)
    ).all()
    reversals = []
    for entry in awards:
        done = db.session.scalar(
            select(JournalEntry).where(JournalEntry.related_id == entry.id, JournalEntry.kind == "reversal")
        )
        reversals.append(
            done or ledger.reverse(entry.id, key=f"reverse:{entry.id}", reason=reason, actor_id=actor_id)
        )
    return reversals


# --------------------------------------------------------------------------- integration events

EVENT_TYPES = ("purchase", "refund")
EVENT_CLOCK_SKEW = timedelta(minutes=5)


def ingest_event(event: dict) -> dict:
    """Apply one external purchase/refund event; the event id is the idempotency key.

    A purchase records a ``purchase`` interaction (points per the purchase rule; the first one
    converts a pending referral).  A refund records a ``refund`` interaction and reverses the
    award of the purchase it names (``refund_of``) once: any refund, partial or not, reverses
    that purchase's points (clawing back only what is still unspent, see ``ledger.reverse``).
    """
    event_id = event["event_id"]
    key = f"event:{event_id}"
    kind = event["type"]
    member_id = event["member_id"]
    occurred_at = event.get("occurred_at")
    # A future date would land in future cap windows and campaigns; allow only clock skew.
    if occurred_at is not None and occurred_at > utcnow() + EVENT_CLOCK_SKEW:
        raise ValidationError("The event cannot be in the future.", fields={"occurred_at": ["In the future."]})
    source_type = source_id = None
    if kind == "refund":
        purchase = _find(f"event:{event['refund_of']}") if event.get("refund_of") else None
        if purchase is None or purchase.kind != "purchase" or purchase.member_id != member_id:
            raise NotFound(
                "The refunded purchase event is unknown for this member.",
                fields={"refund_of": ["No purchase event with this id for this member."]},
            )
        source_type, source_id = "interaction", purchase.id
    existing = _find(key)
    interaction = record_interaction(
        member_id, kind, key=key, source_type=source_type, source_id=source_id, value=event.get("amount"),
        occurred_at=occurred_at, meta={"event_id": event_id, "refund_of": event.get("refund_of")},
    )
    if existing is None and event.get("line_items"):
        _store_line_items(interaction, event["line_items"], refunded=source_id if kind == "refund" else None)
    reversed_points = 0
    if kind == "refund":
        reversed_points = apply_refund(purchase, interaction, reason=f"Refund (event {event_id})")
    return {
        "event_id": event_id,
        "status": "duplicate" if existing is not None else "processed",
        "interaction_id": interaction.id,
        "points": interaction.points,
        "reversed_points": reversed_points,
    }


def _store_line_items(interaction: Interaction, lines: list[dict], *, refunded: int | None) -> None:
    """Store an event's line items with its interaction (``ON CONFLICT DO NOTHING``: a concurrent
    twin of the event stores them once).  A refund's lines must name products of the refunded
    purchase, and all refunds together never return more of a product than was bought."""
    if refunded is not None:
        bought: dict[str, int] = {}
        for product, quantity in db.session.execute(
            select(PurchaseLineItem.product_id, PurchaseLineItem.quantity)
            .where(PurchaseLineItem.interaction_id == refunded)
        ):
            bought[product] = bought.get(product, 0) + quantity
        returned: dict[str, int] = {}
        for product, quantity in db.session.execute(
            select(PurchaseLineItem.product_id, PurchaseLineItem.quantity)
            .join(Interaction, Interaction.id == PurchaseLineItem.interaction_id)
            .where(Interaction.kind == "refund", Interaction.source_type == "interaction",
                   Interaction.source_id == refunded, Interaction.id != interaction.id)
        ):
            returned[product] = returned.get(product, 0) + quantity
        for line in lines:
            returned[line["product_id"]] = returned.get(line["product_id"], 0) + line["quantity"]
        over = sorted(p for p, q in returned.items() if q > bought.get(p, 0))
        if over:
            raise ValidationError(
                "A refund can only return products of the refunded purchase, at most as many as were bought.",
                fields={"line_items": over},
            )
    name = db.session.get_bind().dialect.name
    ins = postgresql.insert if name == "postgresql" else sqlite.insert
    db.session.execute(
        ins(PurchaseLineItem).on_conflict_do_nothing(),
        [{"interaction_id": interaction.id, "line_no": n, "member_id": interaction.member_id,
          "kind": interaction.kind, "product_id": line["product_id"], "category": line.get("category"),
          "quantity": line["quantity"], "amount": line.get("amount"), "occurred_at": interaction.occurred_at}
         for n, line in enumerate(lines, start=1)],
    )
def refunded_fraction(purchase: Interaction) -> Decimal:
    """How much of ``purchase`` its refunds so far give back: 0 … 1.  A refund without an
    amount, or refunds adding up to the purchase amount (or a purchase without one), is full."""
    refunds = db.session.scalars(
        select(Interaction.value).where(
            Interaction.kind == "refund", Interaction.source_type == "interaction",
            Interaction.source_id == purchase.id,
        )
    ).all()
    if not refunds:
        return Decimal(0)
    total = purchase.value
    if total is None or total <= 0 or any(v is None for v in refunds):
        return Decimal(1)
    return min(Decimal(1), sum(Decimal(v) for v in refunds) / Decimal(total))


def _claw_to(award: JournalEntry, fraction: Decimal, *, key: str, reason: str) -> int:
    """Bring what is taken back of ``award`` up to ``fraction`` of it; returns the points taken now."""
    target = award.amount if fraction >= 1 else int(award.amount * fraction)  # floor: never over-claw
    missing = target - ledger.reversed_total(award.id)
    if missing <= 0:
        return 0
    if target == award.amount and ledger.clawed_back(award.id) == 0:
        return ledger.reverse(award.id, key=key, reason=reason).amount
    entry = ledger.claw_back(award.id, missing, key=key, reason=reason)
    return entry.amount if entry is not None else 0


def apply_refund(purchase: Interaction, refund: Interaction, *, reason: str) -> int:
    """Reverse ``purchase``'s award in proportion to what its refunds gave back so far, and
    likewise the referral rewards it converted (both sides); a full refund takes everything
    back and rejects a referral reward still held for review.  Cumulative and idempotent:
    a replayed refund changes nothing.  Returns the points this refund took back from the
    purchasing member (for a replay: what it took back the first time); the referrer's clawback
    is in their own ledger."""
    fraction = refunded_fraction(purchase)
    prefix = f"refund:{refund.id}:"
    awards = list(db.session.scalars(
        select(JournalEntry).where(
            JournalEntry.kind == "award", JournalEntry.source_type == "interaction",
            JournalEntry.source_id == purchase.id,
        ).order_by(JournalEntry.id)
    ))
    referral = db.session.scalar(select(Referral).where(Referral.conversion_interaction_id == purchase.id))
    if referral is not None:
        if fraction >= 1 and referral.reward_status == "held":
            referral.reward_status = "rejected"
            audit(None, "points.referral.reject", "referral", referral.id,
                  reason="The converting purchase was refunded in full.", details={"purchase_id": purchase.id})
        awards += list(db.session.scalars(
            select(JournalEntry).where(
                JournalEntry.kind == "award", JournalEntry.source_type == "referral",
                JournalEntry.source_id == referral.id,
            ).order_by(JournalEntry.id)
        ))
    for award in awards:
        _claw_to(award, fraction, key=f"{prefix}{award.id}", reason=reason)
    return int(db.session.scalar(
        select(func.coalesce(func.sum(JournalEntry.amount), 0)).where(
            JournalEntry.key.startswith(prefix), JournalEntry.member_id == purchase.member_id,
        )
    ) or 0)


def sync_referral_clawback(referral: Referral, *, reason: str) -> None:
    """A reward granted after its purchase was (partly) refunded is taken back in proportion."""
    if referral.conversion_interaction_id is None:
        return
    purchase = db.session.get(Interaction, referral.conversion_interaction_id)
    fraction = refunded_fraction(purchase) if purchase is not None else Decimal(0)
    if fraction <= 0:
        return
    for award in db.session.scalars(
        select(JournalEntry).where(
            JournalEntry.kind == "award", JournalEntry.source_type == "referral", JournalEntry.source_id == referral.id,
        )
    ).all():
        _claw_to(award, fraction, key=f"referral-refunded:{award.id}:{fraction}", reason=reason)


def ingest_batch(events: list[dict]) -> list[dict]:
    """Apply many events in one transaction; each runs in a savepoint so one bad event is reported,
    not fatal, and the others still apply."""
    results = []
    for event in events:
        try:
            with db.session.begin_nested():
                results.append(ingest_event(event))
        except (ValidationError, NotFound, Conflict) as exc:
            results.append(
                {"event_id": event["event_id"], "status": "error",
                 "error": {"code": exc.code, "message": exc.message, "fields": exc.fields}}
            )
    return results


# --------------------------------------------------------------------------- staff operations

RULE_FIELDS = ("points", "points_per_unit", "daily_cap", "weekly_cap", "monthly_cap", "active")


def list_rules() -> list[dict]:
    """The effective rule of every interaction kind; ``custom`` says whether marketing set it."""
    rows = {r.kind: r for r in db.session.scalars(select(EarningRule))}
    out = []
    for kind in INTERACTION_KINDS:
        rule = rules.rule_for(kind) if kind in rows else rules.DEFAULT_RULES.get(kind, rules.Rule(kind, 0))
        row = rows.get(kind)
        out.append(
            {
                "kind": kind, "points": rule.points, "points_per_unit": rule.points_per_unit,
                "daily_cap": rule.daily_cap, "weekly_cap": rule.weekly_cap, "monthly_cap": rule.monthly_cap,
                "active": rule.active, "custom": row is not None,
                "updated_at": row.updated_at if row else None, "updated_by_id": row.updated_by_id if row else None,
            }
        )
    return out


def check_rule_caps(data: dict) -> None:
    """Staff-configured awards have documented upper bounds (``MAX_RULE_POINTS``,
    ``MAX_POINTS_PER_UNIT``): a rule cannot mint points wholesale."""
    config = current_app.config
    errors = {}
    if data.get("points") is not None and data["points"] > config["MAX_RULE_POINTS"]:
        errors["points"] = [f"At most {config['MAX_RULE_POINTS']} (MAX_RULE_POINTS)."]
    if data.get("points_per_unit") is not None and data["points_per_unit"] > config["MAX_POINTS_PER_UNIT"]:
        errors["points_per_unit"] = [f"At most {config['MAX_POINTS_PER_UNIT']} (MAX_POINTS_PER_UNIT)."]
    if errors:
        raise ValidationError("The rule exceeds the configured limits.", fields=errors)


def set_rule(actor_id: int, kind: str, data: dict) -> dict:
    """Create or replace the rule of ``kind`` (fields missing from ``data`` keep their value)."""
    if kind not in INTERACTION_KINDS:
        raise NotFound("Unknown interaction kind.", fields={"kind": [f"One of {', '.join(INTERACTION_KINDS)}."]})
    check_rule_caps(data)
    row = db.session.scalar(select(EarningRule).where(EarningRule.kind == kind).with_for_update())
    if row is None:
        default = rules.DEFAULT_RULES.get(kind, rules.Rule(kind, 0))
        row = EarningRule(kind=kind, **{f: getattr(default, f) for f in RULE_FIELDS})
        db.session.add(row)
    before = {f: _jsonable(getattr(row, f)) for f in RULE_FIELDS}
    for field in RULE_FIELDS:
        if field in data:
            setattr(row, field, data[field])
    row.updated_by_id = actor_id
    row.updated_at = utcnow()
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # another marketer created this kind's row at the same moment
        raise Conflict("The rule was changed concurrently; try again.", code="concurrent_update") from exc
    audit(actor_id, "points.rule.set", "earning_rule", row.id,
          details={"kind": kind, "before": before, "after": {f: _jsonable(getattr(row, f)) for f in RULE_FIELDS}})
    return next(r for r in list_rules() if r["kind"] == kind)


def _jsonable(value):
    return str(value) if isinstance(value, Decimal) else value


def _check_campaign(data: dict) -> None:
    if data.get("segment_id") is not None:
        from analytics.segments import require_segment

        require_segment(data["segment_id"])
    kinds = data.get("kinds")
    if kinds is not None:
        unknown = sorted(set(kinds) - set(INTERACTION_KINDS))
        if unknown:
            raise ValidationError("Unknown interaction kinds.", fields={"kinds": unknown})


def create_campaign(actor_id: int, data: dict) -> Campaign:
    _check_campaign(data)
    if data["ends_at"] <= data["starts_at"]:
        raise ValidationError("The campaign must end after it starts.", fields={"ends_at": ["After starts_at."]})
    campaign = Campaign(created_by_id=actor_id, created_at=utcnow(), **data)
    db.session.add(campaign)
    db.session.flush()
    audit(actor_id, "points.campaign.create", "campaign", campaign.id, details={"name": campaign.name})
    return campaign


def get_campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("No such campaign.")
    return campaign


def update_campaign(actor_id: int, campaign_id: int, data: dict) -> Campaign:
    campaign = get_campaign(campaign_id)
    _check_campaign(data)
    starts = data.get("starts_at", campaign.starts_at)
    ends = data.get("ends_at", campaign.ends_at)
    if ends <= starts:
        raise ValidationError("The campaign must end after it starts.", fields={"ends_at": ["After starts_at."]})
    for field, value in data.items():
        setattr(campaign, field, value)
    db.session.flush()
    audit(actor_id, "points.campaign.update", "campaign", campaign.id,
          details={k: _jsonable(v) if not isinstance(v, datetime) else v.isoformat() + "Z" for k, v in data.items()})
    return campaign


MAX_MULTIPLIER = Decimal(10)  # as a campaign's


def grant_multiplier(member_id: int, multiplier: Decimal, starts_at: datetime, ends_at: datetime, *, key: str,
                     source_type: str, source_id: int | None = None, kinds: list[str] | None = None) -> int:
    """Give one member an earning multiplier for ``[starts_at, ends_at)`` (a campaign of one; the
    highest of it and the campaigns applies, see ``rules``).  Idempotent on ``key``: a replay
    returns the row written the first time and changes nothing.  Returns its id.

    Nothing is posted to the ledger here: the points come later, each through the ledger with
    the interaction's own key, when the member earns within the window.
    """
    multiplier = Decimal(multiplier)
    if not Decimal(1) <= multiplier <= MAX_MULTIPLIER:
        raise ValidationError("The multiplier is out of range.", fields={"multiplier": ["From 1 to 10."]})
    if ends_at <= starts_at:
        raise ValidationError("The window must end after it starts.", fields={"ends_at": ["After starts_at."]})
    unknown = sorted(set(kinds or ()) - set(INTERACTION_KINDS))
    if unknown:
        raise ValidationError("Unknown interaction kinds.", fields={"kinds": unknown})
    table = MemberMultiplier.__table__
    new_id = db.session.execute(
        dialect_insert(table).values(
            member_id=member_id, multiplier=multiplier, starts_at=starts_at, ends_at=ends_at, kinds=kinds, key=key,
            source_type=source_type, source_id=source_id, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)
    ).scalar()
    if new_id is None:
        new_id = db.session.scalar(select(table.c.id).where(table.c.key == key))
    return new_id


def adjust_points(actor_id: int, member_id: int, delta: int, reason: str, request_key: str):
    """A staff adjustment with a mandatory reason, recorded in the ledger and the audit log.

    Nobody adjusts their own balance (403 ``self_dealing``, audited).  A credit above
    ``AWARD_APPROVAL_THRESHOLD`` is not posted but returned as a ``PendingAward`` for another
    admin to approve (``points.approvals``).
    """
    if db.session.get(User, member_id) is None:
        raise NotFound("No such member.", fields={"member_id": [member_id]})
    if actor_id == member_id:
        refuse_self_dealing(actor_id, "points.member.adjust", "member", member_id, "You cannot adjust your own points.",
                            details={"delta": delta})
    key = f"adjust:{request_key}"
    replay = db.session.scalar(select(JournalEntry.id).where(JournalEntry.key == key))
    if replay is None and delta > 0 and approvals.needs_approval(delta):
        if not (reason or "").strip():
            raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
        return approvals.request_award(
            kind="adjustment", key=key, member_id=member_id, points=delta, reason=reason.strip(),
            request={"delta": delta, "key": key, "reason": reason.strip()}, requested_by_id=actor_id,
        )
    entry = ledger.adjust(member_id, delta, key=key, reason=reason, actor_id=actor_id)
    if replay is None:
        audit(actor_id, "points.member.adjust", "member", member_id, reason=entry.reason,
              details={"delta": delta, "entry_id": entry.id})
    return entry


def reverse_entry(actor_id: int, entry_id: int, reason: str) -> JournalEntry:
    """Staff reversal of one entry (audited); see ``ledger.reverse`` for what can be reversed."""
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    key = f"staff-reverse:{entry_id}"
    original = db.session.get(JournalEntry, entry_id)
    if original is not None and original.member_id == actor_id:
        refuse_self_dealing(actor_id, "points.entry.reverse", "journal_entry", entry_id,
                            "You cannot reverse entries of your own points.")
    replay = db.session.scalar(select(JournalEntry.id).where(JournalEntry.key == key))
    entry = ledger.reverse(entry_id, key=key, reason=reason.strip(), actor_id=actor_id)
    if replay is None:
        audit(actor_id, "points.entry.reverse", "journal_entry", entry_id, reason=reason.strip(),
              details={"reversal_id": entry.id, "member_id": entry.member_id})
    return entry


def record_daily_visit(member_id: int, today: date | None = None) -> tuple[Interaction, bool]:
    """At most one ``daily_visit`` per member per UTC day (the date is in the key)."""
    today = today or utcnow().date()
    key = f"daily_visit:{member_id}:{today.isoformat()}"
    existed = _find(key) is not None
    interaction = record_interaction(member_id, "daily_visit", key=key)
    return interaction, not existed
