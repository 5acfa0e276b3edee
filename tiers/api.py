"""HTTP API of the tiers domain: the member's tier, the ladder, marketing views, admin tools.

``init_app`` connects the promotion trigger: every recorded interaction enqueues a
recomputation of that member once the interaction's transaction commits.
"""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from community.models import TIERS
from community.permissions import login_required, require
from community.services import get_user
from contract import fields as f
from contract.openapi import error_responses
from extensions import db
from jobs import enqueue_after_commit, enqueue_now
from pagination import PageArgs, page_of, page_schema, paginate

from . import jobs, services
from .benefits import benefits_for
from .models import MemberTierState
from .permissions import MANAGE_TIERS, VIEW_TIER_STATS
from .schemas import (
    BenefitsIn,
    BenefitsOut,
    DistributionOut,
    LadderOut,
    LeaderboardOut,
    MemberStateOut,
    MovementOut,
    MovementsArgs,
    MyTierOut,
    PinIn,
    RulesIn,
    RulesOut,
    RulesSaveIn,
    RuleVersionOut,
    RunArgs,
    RunOut,
    RunQueuedOut,
    TierChangeOut,
    UnpinIn,
    WhatIfOut,
)

me_blp = Blueprint("me_tier", __name__, url_prefix="/api/v1/me/tier", description="The member's tier")
tiers_blp = Blueprint("tiers", __name__, url_prefix="/api/v1/tiers", description="The loyalty ladder; marketing views")
admin_blp = Blueprint("admin_tiers", __name__, url_prefix="/api/v1/admin/tiers", description="Admin: tier rules")
blueprints = [me_blp, tiers_blp, admin_blp]


def _on_interaction(sender, **_):
    """Promotion as soon as a member qualifies: recompute them after the interaction commits."""
    enqueue_after_commit(jobs.recompute_member, sender.member_id, unique_key=f"tier:{sender.member_id}")


def _on_suspension_changed(member, **_):
    """A suspension starts or is lifted: recompute the member after the commit."""
    enqueue_after_commit(jobs.recompute_member, member.id, unique_key=f"tier:{member.id}")


def init_app(app) -> None:
    from community.services import member_suspension_changed
    from points.services import interaction_recorded

    interaction_recorded.connect(_on_interaction)
    member_suspension_changed.connect(_on_suspension_changed)


# --------------------------------------------------------------------------- member


@me_blp.route("")
class MyTier(MethodView):
    @login_required
    @me_blp.response(200, MyTierOut)
    def get(self):
        """My tier, its benefits, and what I still need for the next tier ("120 more points")."""
        return services.my_tier(current_user)


@me_blp.route("/history")
class MyTierHistory(MethodView):
    @login_required
    @me_blp.arguments(PageArgs, location="query")
    @me_blp.response(200, page_schema(TierChangeOut, "TierChangePage"))
    def get(self, args):
        """My tier changes, newest first, each with its reason."""
        return paginate(services.history_query(current_user.id), args["page"], args["per_page"])


# --------------------------------------------------------------------------- ladder and marketing


@tiers_blp.route("")
class Ladder(MethodView):
    @tiers_blp.response(200, LadderOut)
    def get(self):
        """The ladder: each tier's requirements (rules in force) and benefits."""
        rules = services.current_rules()
        return {
            "version": rules.version, "window_days": rules.window_days, "grace_days": rules.grace_days,
            "keep_percent": rules.keep_percent,
            "tiers": [{"tier": t, "requirements": rules.for_tier(t), "benefits": benefits_for(t)} for t in TIERS],
        }


@tiers_blp.route("/stats/distribution")
class Distribution(MethodView):
    @require(VIEW_TIER_STATS)
    @tiers_blp.response(200, DistributionOut)
    def get(self):
        """Members per tier now, and after each of the last periodic recomputations."""
        return {"current": services.distribution(), "history": services.distribution_history()}


@tiers_blp.route("/stats/movements")
class Movements(MethodView):
    @require(VIEW_TIER_STATS)
    @tiers_blp.arguments(MovementsArgs, location="query")
    @tiers_blp.response(200, page_schema(MovementOut, "TierMovementPage"))
    def get(self, args):
        """Promotions, demotions and pins per day, week or month, by (from, to) tier."""
        rows = services.movements(args["since"], args["until"], args["bucket"])
        return page_of(list(rows), args["page"], args["per_page"])


class LeaderboardArgs(PageArgs):
    tier = f.String(load_default="advocate", validate=ma.validate.OneOf(TIERS))


@tiers_blp.route("/leaderboard")
class Leaderboard(MethodView):
    @require(VIEW_TIER_STATS)
    @tiers_blp.arguments(LeaderboardArgs, location="query")
    @tiers_blp.response(200, page_schema(LeaderboardOut, "TierLeaderboardPage"))
    def get(self, args):
        """Advocates (or another tier) ranked by converted referrals, then points earned."""
        return paginate(services.leaderboard_query(args["tier"]), args["page"], args["per_page"], scalars=False)


# --------------------------------------------------------------------------- admin


def _rules_out(rules) -> dict:
    return {"version": rules.version, "requirements": {t: rules.for_tier(t) for t in TIERS[1:]},
            "window_days": rules.window_days, "grace_days": rules.grace_days,
            "keep_percent": rules.keep_percent, "note": rules.note}


@admin_blp.route("/rules")
class Rules(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.response(200, RulesOut)
    def get(self):
        """The rule set in force (the shipped defaults until an admin saves one)."""
        return _rules_out(services.current_rules())

    @require(MANAGE_TIERS)
    @admin_blp.arguments(RulesSaveIn)
    @admin_blp.response(200, RulesOut)
    @error_responses(409)
    def put(self, data):
        """Save a new version of the rules (send the version you edited as expected_version)."""
        rules = services.save_rules(current_user.id, data)
        db.session.commit()
        return _rules_out(rules)


@admin_blp.route("/rules/versions")
class RuleVersions(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.arguments(PageArgs, location="query")
    @admin_blp.response(200, page_schema(RuleVersionOut, "TierRuleVersionPage"))
    def get(self, args):
        """Every saved version of the rules, newest first."""
        return page_of(list(services.rule_versions()), args["page"], args["per_page"])


@admin_blp.route("/benefits/<string:tier>")
class Benefits(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.arguments(BenefitsIn)
    @admin_blp.response(200, BenefitsOut)
    def put(self, data, tier):
        """Change one tier's benefits (used by the ledger, the forums and focus groups); audited."""
        out = services.set_benefits(current_user.id, tier, data)
        db.session.commit()
        return out


@admin_blp.route("/what-if")
class WhatIf(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.arguments(RulesIn)
    @admin_blp.response(200, WhatIfOut)
    def post(self, data):
        """How many members a proposed rule set would put in each tier; nothing is saved."""
        return services.what_if(data)


@admin_blp.route("/runs")
class Runs(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.arguments(PageArgs, location="query")
    @admin_blp.response(200, page_schema(RunOut, "TierRunPage"))
    def get(self, args):
        """Periodic recomputations (full or incremental) with their progress (processed of total), newest first."""
        return paginate(services.runs_query(), args["page"], args["per_page"])

    @require(MANAGE_TIERS)
    @admin_blp.arguments(RunArgs, location="query")
    @admin_blp.response(202, RunQueuedOut)
    def post(self, args):
        """Queue a recomputation of every member now (at most one is pending or running at a time)."""
        queued = enqueue_now(jobs.recompute_all, args["full"], unique_key="tiers:full-run") is not None
        return {"queued": queued}


@admin_blp.route("/runs/<int:run_id>")
class Run(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.response(200, RunOut)
    def get(self, run_id):
        """One run's progress."""
        return services.get_run(run_id)


def _member_out(member_id: int) -> dict:
    member = get_user(member_id)
    state = services.member_state(member_id)
    columns = [c.key for c in MemberTierState.__table__.columns]
    out = {c: getattr(state, c) for c in columns} if state is not None else {}
    out.update(member_id=member.id, tier=member.tier,
               history=db.session.scalars(services.history_query(member_id).limit(50)).all())
    return out


@admin_blp.route("/members/<int:member_id>")
class MemberTier(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.response(200, MemberStateOut)
    def get(self, member_id):
        """A member's tier state: stored metrics, grace clock, pin, and the last 50 changes."""
        return _member_out(member_id)


@admin_blp.route("/members/<int:member_id>/pin")
class Pin(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.arguments(PinIn)
    @admin_blp.response(200, MemberStateOut)
    @error_responses(409)
    def post(self, data, member_id):
        """Pin a member's tier (with a reason, audited); recomputations keep it until unpinned."""
        services.pin(current_user.id, member_id, data["tier"], data["reason"])
        db.session.commit()
        return _member_out(member_id)


@admin_blp.route("/members/<int:member_id>/unpin")
class Unpin(MethodView):
    @require(MANAGE_TIERS)
    @admin_blp.arguments(UnpinIn)
    @admin_blp.response(200, MemberStateOut)
    @error_responses(409)
    def post(self, data, member_id):
        """Remove a pin (with a reason, audited); the rules apply again at once."""
        services.unpin(current_user.id, member_id, data["reason"])
        db.session.commit()
        return _member_out(member_id)

