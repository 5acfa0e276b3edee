"""Admin pins: they win over the rules until removed, are audited, and notify the member."""

from sqlalchemy import select

from community.models import AuditLog, Notification, User, utcnow
from extensions import db
from tiers import engine, services
from tiers.models import TierChange

from .helpers import award, rules


def _tier(member_id):
    return db.session.get(User, member_id, populate_existing=True).tier


def test_pin_sets_the_tier_with_history_audit_and_notification(app, make_member):
    admin, m = make_member(roles=("admin",)), make_member()
    services.pin(admin.id, m.id, "advocate", "keynote speaker at our event")
    db.session.commit()
    assert _tier(m.id) == "advocate"
    change = db.session.scalars(select(TierChange)).one()
    assert (change.kind, change.to_tier, change.actor_id) == ("pin", "advocate", admin.id)
    assert "keynote speaker" in change.reason
    log = db.session.scalars(select(AuditLog).where(AuditLog.action == "tiers.member.pin")).one()
    assert (log.actor_id, log.target_id, log.reason) == (admin.id, m.id, "keynote speaker at our event")
    note = db.session.scalars(select(Notification).where(Notification.member_id == m.id)).one()
    assert note.payload["kind"] == "pin"


def test_recomputation_keeps_a_pin(app, make_member):
    admin, m = make_member(roles=("admin",)), make_member()
    award(m, 500)
    services.pin(admin.id, m.id, "aware", "under review")
    db.session.commit()
    engine.recompute_members(m.id, m.id, utcnow(), rules(points_earned=100, grace_days=0))
    db.session.commit()
    assert _tier(m.id) == "aware"
    assert db.session.scalar(select(db.func.count()).select_from(TierChange)) == 0  # pinned at the same tier


def test_unpin_applies_the_rules_again_with_grace(app, make_member):
    admin, m = make_member(roles=("admin",)), make_member()
    services.pin(admin.id, m.id, "loyal", "founding member")
    db.session.commit()
    state = services.unpin(admin.id, m.id, "programme relaunch")
    db.session.commit()
    # below every bar, but a demotion still waits for the grace period
    assert _tier(m.id) == "loyal"
    assert state.pinned_tier is None and state.below_since is not None
    unpin = "tiers.member.unpin"
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == unpin)) == unpin


def test_unpin_promotes_at_once_when_qualified(app, make_member):
    from tiers.rules import DEFAULT_RULES

    admin, m = make_member(roles=("admin",)), make_member()
    services.pin(admin.id, m.id, "aware", "paused")
    db.session.commit()
    award(m, DEFAULT_RULES.requirements["engaged"]["points_earned"])
    for week in range(2):
        from datetime import timedelta

        from .helpers import interact

        interact(m, "daily_visit", at=utcnow() - timedelta(days=7 * week))
    services.unpin(admin.id, m.id, "back")
    db.session.commit()
    assert _tier(m.id) == "engaged"
