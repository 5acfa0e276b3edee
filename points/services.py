"""Interactions and the earning rules applied to them; the entry point other domains call.

Functions only flush; the caller commits once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from blinker import Namespace
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from community.models import User, utcnow
from errors import Conflict, NotFound, ValidationError
from extensions import db

from . import ledger, rules
from .models import Interaction, JournalEntry

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


def _dialect_insert(model):
    name = db.session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(model)


def _replayed(interaction: Interaction, member_id: int, kind: str, source_type, source_id) -> Interaction:
    if (interaction.member_id, interaction.kind, interaction.source_type, interaction.source_id) != (
        member_id, kind, source_type, source_id,
    ):
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
    existing = _find(key)
    if existing is not None:
        return _replayed(existing, member_id, kind, source_type, source_id)
    member = db.session.get(User, member_id)
    if member is None:
        raise NotFound("No such member.", fields={"member_id": [member_id]})
    number = _as_decimal(value)
    at = occurred_at or utcnow()
    rule = rules.rule_for(kind)
    points = rules.points_for(rule, member, number, at)
    if points > 0 and rule.has_caps:
        # Caps read what was earned so far: serialise this member's earning, then look again.
        ledger.lock_member(member_id)
        existing = _find(key)
        if existing is not None:
            return _replayed(existing, member_id, kind, source_type, source_id)
        points = rules.apply_caps(rule, member_id, points, at)

    interaction = db.session.scalars(
        _dialect_insert(Interaction)
        .values(
            member_id=member_id, kind=kind, source_type=source_type, source_id=source_id, value=number,
            occurred_at=at, key=key, points=points, meta=meta or {}, created_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(Interaction)
    ).first()
    if interaction is None:  # a concurrent recording of the same key won
        return _replayed(_find(key), member_id, kind, source_type, source_id)
    if points > 0:
        entry = ledger.award(
            member_id, points, key=f"earn:{key}", reason=_REASONS[kind],
            source_type=source_type or "interaction",
            source_id=source_id if source_type else interaction.id,
        )
        interaction.entry_id = entry.id
        db.session.flush()
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
