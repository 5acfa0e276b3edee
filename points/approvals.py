"""Four-eyes approval of large staff-caused awards.

An award that a staff member causes — focus-group attendance points, a manual credit — and that
is above ``AWARD_APPROVAL_THRESHOLD`` points is not posted: it becomes a ``PendingAward`` that a
*second* staff member approves (the award is then posted exactly as it would have been) or
rejects.  The requester can never decide their own request, nor can the member who would get
the points (both: 403 ``self_dealing``, audited).  Who may decide depends on what is pending:
attendance awards need ``points.review_awards`` (marketers, admins), manual credits need
``points.adjust`` (admins).  Deciding is a guarded update, so of two staff deciding at once
exactly one wins; the other gets 409 ``not_pending``.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from community.models import User, utcnow
from community.permissions import has_permission
from community.services import audit, refuse
from errors import Conflict, NotFound, ValidationError
from extensions import db

from .models import PendingAward

# What each kind of pending award needs from the one who decides it.
DECIDE_PERMISSION = {"interaction": "points.review_awards", "adjustment": "points.adjust"}


def threshold() -> int:
    return int(current_app.config.get("AWARD_APPROVAL_THRESHOLD", 500))


def needs_approval(points: int) -> bool:
    return points > threshold()


def request_award(
    *, kind: str, key: str, member_id: int, points: int, reason: str, request: dict, requested_by_id: int | None
) -> PendingAward:
    """Queue an award for a second pair of eyes; idempotent on ``key``."""
    existing = db.session.scalar(select(PendingAward).where(PendingAward.key == key))
    if existing is not None:
        return existing
    pending = PendingAward(
        key=key, kind=kind, member_id=member_id, points=points, reason=reason or "", request=request,
        status="pending", requested_by_id=requested_by_id, decision_reason="", created_at=utcnow(),
    )
    try:
        with db.session.begin_nested():
            db.session.add(pending)
            db.session.flush()
    except IntegrityError:  # a concurrent identical request won: same outcome
        return db.session.scalar(select(PendingAward).where(PendingAward.key == key))
    audit(requested_by_id, "points.award.request", "pending_award", pending.id, reason=reason or "",
          details={"kind": kind, "member_id": member_id, "points": points, "threshold": threshold()})
    return pending


def list_pending(status: str = "pending"):
    return select(PendingAward).where(PendingAward.status == status).order_by(PendingAward.id)


def decide(pending_id: int, *, approve: bool, actor: User, reason: str) -> PendingAward:
    if not (reason or "").strip():
        raise ValidationError("A reason is required.", fields={"reason": ["Required."]})
    pending = db.session.get(PendingAward, pending_id)
    if pending is None:
        raise NotFound("No such pending award.")
    action = "points.award.approve" if approve else "points.award.reject"
    if actor.id == pending.requested_by_id:
        refuse(actor, action, "pending_award", pending.id,
               "A second staff member must decide an award you requested.", code="self_dealing")
    if actor.id == pending.member_id:
        refuse(actor, action, "pending_award", pending.id, "You cannot decide an award to yourself.",
               code="self_dealing")
    if not has_permission(actor, DECIDE_PERMISSION[pending.kind]):
        refuse(actor, action, "pending_award", pending.id,
               "You do not have permission to decide this award.", code="forbidden")
    decided = db.session.execute(
        update(PendingAward)
        .where(PendingAward.id == pending.id, PendingAward.status == "pending")
        .values(status="approved" if approve else "rejected", decided_by_id=actor.id, decided_at=utcnow(),
                decision_reason=reason.strip())
        .execution_options(synchronize_session=False)
    ).rowcount
    if decided != 1:
        raise Conflict("This award was already decided.", code="not_pending")
    db.session.refresh(pending)
    if approve:
        _post(pending)
    audit(actor.id, action, "pending_award", pending.id, reason=reason.strip(),
          details={"kind": pending.kind, "member_id": pending.member_id, "points": pending.points,
                   "requested_by_id": pending.requested_by_id})
    return pending


def _post(pending: PendingAward) -> None:
    from . import ledger
    from .services import record_interaction

    req = dict(pending.request)
    if pending.kind == "interaction":
        record_interaction(
            pending.member_id, req["kind"], key=req["key"], source_type=req.get("source_type"),
            source_id=req.get("source_id"), value=req.get("value"), meta=req.get("meta") or {},
        )
    else:
        entry = ledger.adjust(
            pending.member_id, int(req["delta"]), key=req["key"], reason=req["reason"],
            actor_id=pending.requested_by_id,
        )
        audit(pending.requested_by_id, "points.member.adjust", "member", pending.member_id, reason=entry.reason,
              details={"delta": int(req["delta"]), "entry_id": entry.id, "pending_award_id": pending.id})
