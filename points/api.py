"""HTTP API of the points domain (blueprints are listed in ``blueprints``) and its CLI.

* ``/api/v1/me/points…``, ``/api/v1/me/visits``, ``/api/v1/me/referrals…``: the member's own views;
* ``/api/v1/points/…``: earning rules for members, and the integration endpoints for external
  purchase/refund events (API token of an account holding ``points.integrate`` only);
* ``/api/v1/admin/points/…``: rules and campaigns (marketing), adjustments and reversals (admin),
  member ledgers, the liability report, referral review and the programme funnel.
"""

from __future__ import annotations

import secrets

import click
import marshmallow as ma
from flask import Flask, g, jsonify
from flask.cli import AppGroup
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

import ratelimit
from community.models import utcnow
from community.permissions import login_required, require
from community.services import get_user
from contract import Schema
from contract import fields as f
from contract.fields import rfc3339
from contract.openapi import error_responses, token_only
from errors import Forbidden
from extensions import db
from pagination import PageArgs, page_of, page_schema, paginate

from . import approvals, referrals, reports, rules, services
from .models import Campaign, PendingAward, Referral
from .permissions import ADJUST, INTEGRATE, MANAGE_RULES, READ_LEDGER, REPORTS, REVIEW_AWARDS, REVIEW_REFERRALS
from .schemas import (
    DailyVisitOut,
    EarningRuleIn,
    EarningRuleOut,
    LedgerEntryOut,
    LiabilityOut,
    MyMultiplierOut,
    PendingAwardOut,
    PointsAdjustmentIn,
    PointsBalanceOut,
    PointsCampaignIn,
    PointsCampaignOut,
    PointsCampaignPatchIn,
    PointsEventBatchIn,
    PointsEventBatchOut,
    PointsEventIn,
    PointsEventResultOut,
    PointsReasonIn,
    ReferralInviteIn,
    ReferralInviteOut,
    ReferralOverviewOut,
    StaffLedgerEntryOut,
    StaffPointsBalanceOut,
    StaffReferralOut,
    WeeklyFunnelOut,
)

me_blp = Blueprint("points_me", __name__, url_prefix="/api/v1/me", description="The member's points and referrals")
points_blp = Blueprint("points", __name__, url_prefix="/api/v1/points", description="Earning rules and integrations")
admin_blp = Blueprint(
    "points_admin", __name__, url_prefix="/api/v1/admin/points", description="Staff: rules, ledgers, reports"
)
blueprints = [me_blp, points_blp, admin_blp]

INVITES_PER_DAY = 50


def _balance_view(member_id: int) -> dict:
    return reports.balance_view(member_id)


def _history_page(member_id: int, args: dict) -> dict:
    page = paginate(reports.history_query(member_id), args["page"], args["per_page"])
    page["items"] = reports.with_deltas(page["items"])
    return page


# --------------------------------------------------------------------------- member


@me_blp.route("/points")
class MyPoints(MethodView):
    @login_required
    @me_blp.response(200, PointsBalanceOut)
    def get(self):
        """My balance: available, held (pending redemptions), lifetime earned, and what expires soon."""
        # Serialised by hand (what PointsBalanceOut documents, kept in step by a test): the
        # marshmallow dump cost as much as the query.
        return jsonify(balance_out(_balance_view(current_user.id)))


def balance_out(view: dict) -> dict:
    """``PointsBalanceOut`` of ``reports.balance_view``."""
    return {
        "available": view["available"], "owed": view["owed"], "held": view["held"],
        "lifetime_earned": view["lifetime_earned"], "expiring_soon_total": view["expiring_soon_total"],
        "expiring_soon": [{"points": lot["points"], "expires_at": rfc3339(lot["expires_at"])}
                          for lot in view["expiring_soon"]],
    }


@me_blp.route("/points/multipliers")
class MyMultipliers(MethodView):
    @login_required
    @me_blp.arguments(PageArgs, location="query")
    @me_blp.response(200, page_schema(MyMultiplierOut, "MyMultipliersPage"))
    def get(self, args):
        """What multiplies my earning: running campaigns that reach me, and my own windows (running
        or still to come, e.g. a birthday's double points), soonest end first. The highest one that
        covers an interaction's kind applies; they do not add up."""
        return page_of(rules.multipliers_for(current_user, utcnow()), args["page"], args["per_page"])


@me_blp.route("/points/history")
class MyHistory(MethodView):
    @login_required
    @me_blp.arguments(PageArgs, location="query")
    @me_blp.response(200, page_schema(LedgerEntryOut, "PointsHistoryPage"))
    def get(self, args):
        """My ledger entries, newest first, with the reason of each."""
        return _history_page(current_user.id, args)


@me_blp.route("/visits")
class MyVisits(MethodView):
    @login_required
    @me_blp.response(200, DailyVisitOut)
    def post(self):
        """Record today's visit (earns the daily-visit points at most once per UTC day).

        Takes no request body."""
        interaction, created = services.record_daily_visit(current_user.id)
        db.session.commit()
        return {"recorded": created, "points": interaction.points if created else 0,
                "date": interaction.occurred_at.date()}


@me_blp.route("/referrals")
class MyReferrals(MethodView):
    @login_required
    @me_blp.response(200, ReferralOverviewOut)
    def get(self):
        """My referral code and link, my funnel (invited, signed up, converted) and my referrals."""
        code = current_user.referral_code
        mine = db.session.scalars(
            select(Referral).where(Referral.referrer_id == current_user.id).order_by(Referral.id.desc()).limit(100)
        )
        return {
            "referral_code": code,
            "referral_link": referrals.referral_link(code),
            "funnel": referrals.member_funnel(current_user.id),
            "referrals": list(mine),
        }


@me_blp.route("/referrals/invites")
class MyInvites(MethodView):
    @login_required
    @me_blp.arguments(ReferralInviteIn)
    @me_blp.response(201, ReferralInviteOut)
    @error_responses(429)
    def post(self, data):
        """Record that I invited someone (the address is kept only as a keyed hash, never mailed)."""
        ratelimit.hit(f"points:invite:{current_user.id}", INVITES_PER_DAY, 86400, "Too many invitations today.")
        _, created = referrals.record_invite(current_user.id, data["email"])
        db.session.commit()
        return {"created": created, "invited": referrals.member_funnel(current_user.id)["invited"]}


# --------------------------------------------------------------------------- rules, integrations


@points_blp.route("/rules")
class Rules(MethodView):
    @login_required
    @points_blp.arguments(PageArgs, location="query")
    @points_blp.response(200, page_schema(EarningRuleOut, "EarningRulePage"))
    def get(self, args):
        """How points are earned: the effective rule of every interaction kind."""
        return page_of(list(services.list_rules()), args["page"], args["per_page"])


def _require_token() -> None:
    if getattr(g, "auth_method", None) != "token":
        raise Forbidden("Integration events must be sent with an API token.", code="token_required")


@points_blp.route("/events")
class Events(MethodView):
    @require(INTEGRATE)
    @points_blp.arguments(PointsEventIn)
    @points_blp.response(200, PointsEventResultOut)
    @token_only
    @error_responses(404, 409)
    def post(self, data):
        """Apply one purchase or refund event; ``event_id`` is its idempotency key."""
        _require_token()
        result = services.ingest_event(data)
        db.session.commit()
        return result


@points_blp.route("/events/batch")
class EventBatch(MethodView):
    @require(INTEGRATE)
    @points_blp.arguments(PointsEventBatchIn)
    @points_blp.response(200, PointsEventBatchOut)
    @token_only
    def post(self, data):
        """Apply up to 1,000 events in one transaction; each event reports its own outcome."""
        _require_token()
        results = services.ingest_batch(data["events"])
        db.session.commit()
        count = {s: sum(1 for r in results if r["status"] == s) for s in ("processed", "duplicate", "error")}
        return {"processed": count["processed"], "duplicates": count["duplicate"], "errors": count["error"],
                "results": results}


# --------------------------------------------------------------------------- staff


@admin_blp.route("/rules")
class AdminRules(MethodView):
    @require(MANAGE_RULES)
    @admin_blp.arguments(PageArgs, location="query")
    @admin_blp.response(200, page_schema(EarningRuleOut, "StaffEarningRulePage"))
    def get(self, args):
        """Every interaction kind's effective rule (``custom`` = set by marketing)."""
        return page_of(list(services.list_rules()), args["page"], args["per_page"])


@admin_blp.route("/rules/<string:kind>")
class AdminRule(MethodView):
    @require(MANAGE_RULES)
    @admin_blp.arguments(EarningRuleIn)
    @admin_blp.response(200, EarningRuleOut)
    @error_responses(409)
    def put(self, data, kind):
        """Set the rule of one kind (omitted fields keep their current value); audited."""
        rule = services.set_rule(current_user.id, kind, data)
        db.session.commit()
        return rule


@admin_blp.route("/campaigns")
class AdminCampaigns(MethodView):
    @require(MANAGE_RULES)
    @admin_blp.arguments(PageArgs, location="query")
    @admin_blp.response(200, page_schema(PointsCampaignOut, "PointsCampaignPage"))
    def get(self, args):
        """Campaign multipliers, newest first."""
        return paginate(select(Campaign).order_by(Campaign.id.desc()), args["page"], args["per_page"])

    @require(MANAGE_RULES)
    @admin_blp.arguments(PointsCampaignIn)
    @admin_blp.response(201, PointsCampaignOut)
    @error_responses(404)
    def post(self, data):
        """Create a campaign (a multiplier for a window; optionally only some kinds, or birthdays)."""
        campaign = services.create_campaign(current_user.id, data)
        db.session.commit()
        return campaign


@admin_blp.route("/campaigns/<int:campaign_id>")
class AdminCampaign(MethodView):
    @require(MANAGE_RULES)
    @admin_blp.arguments(PointsCampaignPatchIn)
    @admin_blp.response(200, PointsCampaignOut)
    def patch(self, data, campaign_id):
        """Change a campaign (set ``active: false`` to stop it)."""
        campaign = services.update_campaign(current_user.id, campaign_id, data)
        db.session.commit()
        return campaign


@admin_blp.route("/adjustments")
class AdminAdjustments(MethodView):
    @require(ADJUST)
    @admin_blp.arguments(PointsAdjustmentIn)
    @admin_blp.response(201, StaffLedgerEntryOut)
    @admin_blp.alt_response(202, schema=PendingAwardOut, description="A credit above AWARD_APPROVAL_THRESHOLD "
                            "waits for a second admin (four-eyes).")
    @error_responses(404, 409)
    def post(self, data):
        """Credit or debit a member by hand, with a mandatory reason (ledger entry + audit log).

        Never your own balance (403 ``self_dealing``).  A credit above ``AWARD_APPROVAL_THRESHOLD``
        answers 202 with a pending award that another admin approves."""
        result = services.adjust_points(
            current_user.id, data["member_id"], data["delta"], data["reason"],
            data.get("request_id") or secrets.token_hex(16),
        )
        db.session.commit()
        if isinstance(result, PendingAward):
            response = jsonify(PendingAwardOut().dump(result))
            response.status_code = 202
            return response
        return reports.with_deltas([result])[0]


@admin_blp.route("/entries/<int:entry_id>/reversal")
class AdminReversal(MethodView):
    @require(ADJUST)
    @admin_blp.arguments(PointsReasonIn)
    @admin_blp.response(201, StaffLedgerEntryOut)
    @error_responses(409)
    def post(self, data, entry_id):
        """Reverse one ledger entry (award, hold, settlement, adjustment), with a reason; audited."""
        entry = services.reverse_entry(current_user.id, entry_id, data["reason"])
        db.session.commit()
        return reports.with_deltas([entry])[0]


@admin_blp.route("/members/<int:member_id>")
class AdminMemberPoints(MethodView):
    @require(READ_LEDGER)
    @admin_blp.response(200, StaffPointsBalanceOut)
    def get(self, member_id):
        """A member's balance, what expires soon, and their referral funnel."""
        get_user(member_id)
        return {**_balance_view(member_id), "referral_funnel": referrals.member_funnel(member_id)}


@admin_blp.route("/members/<int:member_id>/history")
class AdminMemberHistory(MethodView):
    @require(READ_LEDGER)
    @admin_blp.arguments(PageArgs, location="query")
    @admin_blp.response(200, page_schema(StaffLedgerEntryOut, "StaffPointsHistoryPage"))
    def get(self, args, member_id):
        """A member's ledger entries with keys, links and actors, newest first."""
        get_user(member_id)
        return _history_page(member_id, args)


@admin_blp.route("/liability")
class AdminLiability(MethodView):
    @require(REPORTS)
    @admin_blp.response(200, LiabilityOut)
    def get(self):
        """Points liability: outstanding points, by age of their lot, and what expires soon."""
        return reports.liability()


class PendingAwardArgs(PageArgs):
    status = f.String(load_default="pending", validate=ma.validate.OneOf(("pending", "approved", "rejected")))


@admin_blp.route("/pending-awards")
class AdminPendingAwards(MethodView):
    @require(REVIEW_AWARDS)
    @admin_blp.arguments(PendingAwardArgs, location="query")
    @admin_blp.response(200, page_schema(PendingAwardOut, "PendingAwardPage"))
    def get(self, args):
        """Awards above ``AWARD_APPROVAL_THRESHOLD`` waiting for a second staff member (four-eyes)."""
        return paginate(approvals.list_pending(args["status"]), args["page"], args["per_page"])


@admin_blp.route("/pending-awards/<int:pending_id>/approve")
class AdminPendingAwardApprove(MethodView):
    @require(REVIEW_AWARDS)
    @admin_blp.arguments(PointsReasonIn)
    @admin_blp.response(200, PendingAwardOut)
    @error_responses(409)
    def post(self, data, pending_id):
        """Approve: the award is posted now.  Not your own request, not an award to yourself;
        manual credits need an admin."""
        pending = approvals.decide(pending_id, approve=True, actor=current_user, reason=data["reason"])
        db.session.commit()
        return pending


@admin_blp.route("/pending-awards/<int:pending_id>/reject")
class AdminPendingAwardReject(MethodView):
    @require(REVIEW_AWARDS)
    @admin_blp.arguments(PointsReasonIn)
    @admin_blp.response(200, PendingAwardOut)
    @error_responses(409)
    def post(self, data, pending_id):
        """Reject: nothing is posted."""
        pending = approvals.decide(pending_id, approve=False, actor=current_user, reason=data["reason"])
        db.session.commit()
        return pending


class PointsReferralArgs(PageArgs):
    reward_status = f.String(
        load_default=None, validate=ma.validate.OneOf(("none", "rewarded", "held", "rejected", "capped"))
    )


@admin_blp.route("/referrals")
class AdminReferrals(MethodView):
    @require(REVIEW_REFERRALS)
    @admin_blp.arguments(PointsReferralArgs, location="query")
    @admin_blp.response(200, page_schema(StaffReferralOut, "StaffReferralPage"))
    def get(self, args):
        """Referrals, newest first; ``reward_status=held`` lists the ones waiting for review."""
        query = select(Referral).order_by(Referral.id.desc())
        if args.get("reward_status"):
            query = query.where(Referral.reward_status == args["reward_status"])
        return paginate(query, args["page"], args["per_page"])


@admin_blp.route("/referrals/<int:referral_id>/approve")
class AdminReferralApprove(MethodView):
    @require(REVIEW_REFERRALS)
    @admin_blp.arguments(PointsReasonIn)
    @admin_blp.response(200, StaffReferralOut)
    @error_responses(409)
    def post(self, data, referral_id):
        """Release a held referral reward: both sides are rewarded now."""
        referral = referrals.review(referral_id, approve=True, actor_id=current_user.id, reason=data["reason"])
        db.session.commit()
        return referral


@admin_blp.route("/referrals/<int:referral_id>/reject")
class AdminReferralReject(MethodView):
    @require(REVIEW_REFERRALS)
    @admin_blp.arguments(PointsReasonIn)
    @admin_blp.response(200, StaffReferralOut)
    @error_responses(409)
    def post(self, data, referral_id):
        """Reject a held referral reward: nobody is rewarded for it."""
        referral = referrals.review(referral_id, approve=False, actor_id=current_user.id, reason=data["reason"])
        db.session.commit()
        return referral


class PointsFunnelArgs(Schema):
    weeks = f.QueryInteger(load_default=8, validate=ma.validate.Range(min=1, max=104))


@admin_blp.route("/referrals/funnel")
class AdminFunnel(MethodView):
    @require(REPORTS)
    @admin_blp.arguments(PointsFunnelArgs, location="query")
    @admin_blp.response(200, WeeklyFunnelOut)
    def get(self, args):
        """Programme-wide referral funnel per week: invited, signed up, converted, days to conversion."""
        return {"weeks": referrals.weekly_funnel(args["weeks"])}


# --------------------------------------------------------------------------- CLI

cli = AppGroup("points", help="Points ledger maintenance.")


@cli.command("verify")
def verify_command():
    """Rebuild every balance from the journal lines and report drift (exit status 1 if any)."""
    drifts = reports.verify()
    db.session.rollback()
    for d in drifts:
        click.echo(f"DRIFT {d.kind} member={d.member_id}: {d.detail}")
    if drifts:
        raise SystemExit(1)
    click.echo("ledger verified: every entry balances and every stored balance matches its lines")


@cli.command("expire")
def expire_command():
    """Post the expiry of every due lot now (the periodic job does this hourly)."""
    from .jobs import expire_due_lots

    click.echo(f"{expire_due_lots()} expiry entries posted")


def init_app(app: Flask) -> None:
    """Adds ``flask points …``.  (The referral receiver is connected when ``services`` is imported.)"""
    if "points" not in app.cli.commands:
        app.cli.add_command(cli)
