"""Authorization cases for every points route (run by tests/test_authz_matrix.py)."""

from tests.authz import LOGGED_IN, Case

# A suspended account is read-only (#13): its writes answer 403 account_suspended.
WRITERS = LOGGED_IN - {"suspended"}

MARKETING = frozenset({"marketer", "admin"})
LEDGER_READERS = frozenset({"redemption_staff", "admin"})
ADMIN = frozenset({"admin"})
# Integration events need an API token; cookie sessions (every matrix actor) are refused.
NOBODY_BY_COOKIE = frozenset()


def _member(ctx):
    return {"member_id": ctx.users["member"].id}


def _campaign(ctx):
    from datetime import datetime

    from extensions import db
    from points.models import Campaign

    campaign = Campaign(name="Matrix", multiplier=2, starts_at=datetime(2026, 1, 1), ends_at=datetime(2026, 2, 1))
    db.session.add(campaign)
    db.session.commit()
    return {"campaign_id": campaign.id}


def _entry(ctx):
    from extensions import db
    from points import ledger

    entry = ledger.award(ctx.users["member"].id, 10, key=f"matrix:{ctx.users['member'].id}", reason="matrix")
    db.session.commit()
    return {"entry_id": entry.id}


def _pending_award(ctx):
    """An attendance award requested by a staff member outside the matrix, to a fresh member."""
    from community.models import User, UserRole
    from extensions import db
    from points import approvals

    n = ctx.extra.setdefault("n", 0) + 1
    ctx.extra["n"] = n
    requester = User(email=f"req{id(ctx)}-{n}@example.com", display_name="Req", password_hash="x")
    requester.role_rows.append(UserRole(role="marketer"))
    recipient = User(email=f"rcp{id(ctx)}-{n}@example.com", display_name="Rcp", password_hash="x")
    db.session.add_all([requester, recipient])
    db.session.flush()
    pending = approvals.request_award(
        kind="interaction", key=f"matrix-pending:{recipient.id}", member_id=recipient.id, points=800,
        reason="matrix", requested_by_id=requester.id,
        request={"kind": "focus_group_attended", "key": f"matrix-fg:{recipient.id}", "value": 800},
    )
    db.session.commit()
    return {"pending_id": pending.id}


def _held_referral(ctx):
    from extensions import db
    from points.models import Referral

    referral = Referral(referrer_id=ctx.users["owner"].id, referee_id=ctx.users["member"].id,
                        status="converted", reward_status="held", flag_reason="matrix")
    db.session.add(referral)
    db.session.commit()
    return {"referral_id": referral.id}


_EVENT = {"event_id": "matrix-1", "type": "purchase", "member_id": 1, "amount": 10.00}

CASES = [
    Case("GET", "/api/v1/me/points", LOGGED_IN),
    Case("GET", "/api/v1/me/points/history", LOGGED_IN),
    Case("GET", "/api/v1/me/points/multipliers", LOGGED_IN),
    Case("POST", "/api/v1/me/visits", WRITERS),
    Case("GET", "/api/v1/me/referrals", LOGGED_IN),
    Case("POST", "/api/v1/me/referrals/invites", WRITERS, body={"email": "friend@example.com"}),
    Case("GET", "/api/v1/points/rules", LOGGED_IN),
    Case("POST", "/api/v1/points/events", NOBODY_BY_COOKIE, body=_EVENT,
         note="token only: the integration test covers the allowed path"),
    Case("POST", "/api/v1/points/events/batch", NOBODY_BY_COOKIE, body={"events": [_EVENT]}),
    Case("GET", "/api/v1/admin/points/rules", MARKETING),
    Case("PUT", "/api/v1/admin/points/rules/<string:kind>", MARKETING,
         setup=lambda ctx: {"kind": "post"}, body={"points": 12}),
    Case("GET", "/api/v1/admin/points/campaigns", MARKETING),
    Case("POST", "/api/v1/admin/points/campaigns", MARKETING,
         body={"name": "Double", "multiplier": 2, "starts_at": "2026-12-01T00:00:00Z",
               "ends_at": "2026-12-31T00:00:00Z"}),
    Case("PATCH", "/api/v1/admin/points/campaigns/<int:campaign_id>", MARKETING, setup=_campaign,
         body={"active": False}),
    Case("POST", "/api/v1/admin/points/adjustments", ADMIN,
         body=lambda ctx, p: {"member_id": ctx.users["member"].id, "delta": 5, "reason": "matrix"}),
    Case("POST", "/api/v1/admin/points/entries/<int:entry_id>/reversal", ADMIN, setup=_entry,
         body={"reason": "matrix"}),
    Case("GET", "/api/v1/admin/points/members/<int:member_id>", LEDGER_READERS, setup=_member),
    Case("GET", "/api/v1/admin/points/members/<int:member_id>/history", LEDGER_READERS, setup=_member),
    Case("GET", "/api/v1/admin/points/liability", MARKETING),
    Case("GET", "/api/v1/admin/points/referrals", MARKETING),
    Case("POST", "/api/v1/admin/points/referrals/<int:referral_id>/approve", MARKETING, setup=_held_referral,
         body={"reason": "looks fine"}),
    Case("POST", "/api/v1/admin/points/referrals/<int:referral_id>/reject", MARKETING, setup=_held_referral,
         body={"reason": "fraud"}),
    Case("GET", "/api/v1/admin/points/referrals/funnel", MARKETING),
    Case("GET", "/api/v1/admin/points/pending-awards", MARKETING),
    Case("POST", "/api/v1/admin/points/pending-awards/<int:pending_id>/approve", MARKETING, setup=_pending_award,
         body={"reason": "checked"}, note="the first allowed actor approves; the next gets 409 not_pending"),
    Case("POST", "/api/v1/admin/points/pending-awards/<int:pending_id>/reject", MARKETING, setup=_pending_award,
         body={"reason": "no"}),
]
