"""Marketers: earning rules and campaigns, the rewards catalogue with code uploads, referral
review with the weekly funnel, four-eyes approval of large awards, and tier distribution and
movements."""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from community.models import TIERS, User, utcnow
from community.permissions import has_permission
from errors import ValidationError
from extensions import db
from pagination import paginate
from points import approvals as approvals_service
from points import referrals
from points import services as points_services
from points.models import Campaign, PendingAward, Referral
from points.permissions import MANAGE_RULES, REPORTS, REVIEW_AWARDS, REVIEW_REFERRALS
from points.schemas import EarningRuleIn, PointsCampaignIn, PointsReasonIn
from points.services import INTERACTION_KINDS
from rewards import services as rewards_services
from rewards.api import MAX_UPLOAD_BYTES
from rewards.models import REWARD_KINDS
from rewards.permissions import MANAGE_CATALOGUE
from rewards.schemas import RewardIn, RewardPatchIn
from tiers import services as tier_services
from tiers.permissions import VIEW_TIER_STATS

from . import charts, nav
from .web import arg_int, back, bp, form_int, form_str, page_args, staff_page, validated

nav.register(nav.NavItem("marketing", _l("Earning rules"), "console.rules", MANAGE_RULES, 10))
nav.register(nav.NavItem("marketing", _l("Campaigns"), "console.campaigns", MANAGE_RULES, 20))
nav.register(nav.NavItem("marketing", _l("Rewards catalogue"), "console.rewards", MANAGE_CATALOGUE, 30))
nav.register(nav.NavItem("marketing", _l("Referrals"), "console.referrals", REVIEW_REFERRALS, 40))
nav.register(nav.NavItem("marketing", _l("Award approvals"), "console.approvals", REVIEW_AWARDS, 45))
nav.register(nav.NavItem("marketing", _l("Tiers"), "console.tiers", VIEW_TIER_STATS, 50))

REFERRAL_STATUSES = ("held", "none", "rewarded", "rejected", "capped")
AWARD_STATUSES = ("pending", "approved", "rejected")


# --------------------------------------------------------------------------- earning rules


@bp.get("/rules")
@staff_page(MANAGE_RULES)
def rules():
    return render_template("console/rules.html", rules=points_services.list_rules())


@bp.post("/rules/<kind>")
@staff_page(MANAGE_RULES)
def rule_save(kind):
    raw = {name: form_int(name) for name in ("points", "daily_cap", "weekly_cap", "monthly_cap")}
    raw["points_per_unit"] = form_str("points_per_unit") or "0"
    raw["active"] = request.form.get("active") == "on"
    if raw["points"] is None:
        raw["points"] = 0
    data = validated(EarningRuleIn(), raw)
    points_services.set_rule(current_user.id, kind, data)
    db.session.commit()
    flash(_("Rule for %(kind)s saved.", kind=_(kind)), "success")
    return redirect(url_for("console.rules"), code=303)


# --------------------------------------------------------------------------- campaigns


@bp.get("/campaigns")
@staff_page(MANAGE_RULES)
def campaigns():
    page, per_page = page_args(25)
    result = paginate(select(Campaign).order_by(Campaign.id.desc()), page, per_page)
    return render_template("console/campaigns.html", result=result, kinds=INTERACTION_KINDS)


@bp.post("/campaigns")
@staff_page(MANAGE_RULES)
def campaign_create():
    kinds = request.form.getlist("kinds")
    data = validated(PointsCampaignIn(), {
        "name": form_str("name", ""), "multiplier": form_str("multiplier", ""),
        "starts_at": form_str("starts_at", ""), "ends_at": form_str("ends_at", ""),
        "kinds": kinds or None, "birthday_only": request.form.get("birthday_only") == "on",
    })
    points_services.create_campaign(current_user.id, data)
    db.session.commit()
    flash(_("Campaign created."), "success")
    return redirect(url_for("console.campaigns"), code=303)


@bp.post("/campaigns/<int:campaign_id>/toggle")
@staff_page(MANAGE_RULES)
def campaign_toggle(campaign_id):
    campaign = points_services.get_campaign(campaign_id)
    points_services.update_campaign(current_user.id, campaign_id, {"active": not campaign.active})
    db.session.commit()
    flash(_("Campaign updated."), "success")
    return redirect(url_for("console.campaigns"), code=303)


# --------------------------------------------------------------------------- rewards catalogue


def _reward_form(partial: bool) -> dict:
    raw = {
        "name": form_str("name"), "description": form_str("description", ""), "kind": form_str("kind"),
        "cost": form_int("cost"), "stock": form_int("stock"), "per_member_limit": form_int("per_member_limit"),
        "min_tier": form_str("min_tier"), "image_url": form_str("image_url"),
        "starts_at": form_str("starts_at"), "ends_at": form_str("ends_at"),
    }
    data = {k: v for k, v in raw.items() if v is not None}
    if partial:
        data["is_active"] = request.form.get("is_active") == "on"
        for nullable in ("stock", "per_member_limit", "image_url", "starts_at", "ends_at"):
            data.setdefault(nullable, None)
    return data


@bp.get("/rewards")
@staff_page(MANAGE_CATALOGUE)
def rewards():
    page, per_page = page_args(25)
    result = paginate(rewards_services.staff_rewards_query(), page, per_page)
    return render_template("console/rewards.html", result=result, kinds=REWARD_KINDS, tiers=TIERS)


@bp.post("/rewards")
@staff_page(MANAGE_CATALOGUE)
def reward_create():
    data = validated(RewardIn(), _reward_form(partial=False))
    reward = rewards_services.create_reward(current_user, data)
    db.session.commit()
    flash(_("Reward created."), "success")
    return redirect(url_for("console.reward", reward_id=reward.id), code=303)


@bp.get("/rewards/<int:reward_id>")
@staff_page(MANAGE_CATALOGUE)
def reward(reward_id):
    r = rewards_services.get_reward(reward_id)
    return render_template("console/reward.html", r=r, pool=rewards_services.code_counts(r.id), kinds=REWARD_KINDS,
                           tiers=TIERS)


@bp.post("/rewards/<int:reward_id>")
@staff_page(MANAGE_CATALOGUE)
def reward_update(reward_id):
    data = validated(RewardPatchIn(), _reward_form(partial=True))
    rewards_services.update_reward(current_user, reward_id, data)
    db.session.commit()
    flash(_("Reward saved."), "success")
    return redirect(url_for("console.reward", reward_id=reward_id), code=303)


@bp.post("/rewards/<int:reward_id>/codes")
@staff_page(MANAGE_CATALOGUE)
def reward_codes(reward_id):
    """Codes from an uploaded CSV file or pasted text, parsed by the rewards service."""
    rewards_services.get_reward(reward_id)
    upload = request.files.get("file")
    raw = upload.read(MAX_UPLOAD_BYTES + 1) if upload and upload.filename else request.form.get("codes", "").encode()
    if len(raw) > MAX_UPLOAD_BYTES:
        too_large = _("At most %(n)s bytes.", n=MAX_UPLOAD_BYTES)
        raise ValidationError(_("The file is too large."), fields={"file": [too_large]})
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(_("The file is not UTF-8 text."), fields={"file": [_("Not UTF-8.")]}) from exc
    result = rewards_services.add_codes(current_user, reward_id, rewards_services.parse_codes(text))
    db.session.commit()
    flash(_("Codes uploaded: %(result)s", result=", ".join(f"{k} {v}" for k, v in result.items())), "success")
    return redirect(url_for("console.reward", reward_id=reward_id), code=303)


# --------------------------------------------------------------------------- referrals


@bp.get("/referrals", endpoint="referrals")
@staff_page(REVIEW_REFERRALS)
def referrals_page():
    status = request.args.get("reward_status", "held")
    status = status if status in REFERRAL_STATUSES else ""
    page, per_page = page_args(25)
    query = select(Referral).order_by(Referral.id.desc())
    if status:
        query = query.where(Referral.reward_status == status)
    result = paginate(query, page, per_page)
    funnel = None
    if has_permission(current_user, REPORTS):
        weeks = referrals.weekly_funnel(arg_int("weeks", 8, hi=52))
        ordered = list(reversed(weeks))
        labels = [str(w["week_start"]) for w in ordered]
        funnel = charts.bar(_("Referral funnel per week"), _("Week starting"), labels, {
            _("Invited"): [w["invited"] for w in ordered], _("Signed up"): [w["signed_up"] for w in ordered],
            _("Converted"): [w["converted"] for w in ordered],
        })
    return render_template("console/referrals.html", result=result, status=status, statuses=REFERRAL_STATUSES,
                           funnel=funnel)


@bp.post("/referrals/<int:referral_id>/<any(approve, reject):decision>")
@staff_page(REVIEW_REFERRALS)
def referral_review(referral_id, decision):
    data = validated(PointsReasonIn(), {"reason": form_str("reason", "")})
    referrals.review(referral_id, approve=decision == "approve", actor_id=current_user.id, reason=data["reason"])
    db.session.commit()
    flash(_("Referral #%(id)s: %(d)s.", id=referral_id, d=_(decision)), "success")
    return back("console.referrals")


# --------------------------------------------------------------------------- four-eyes approvals


def _why_not(pending: PendingAward) -> str | None:
    """Why the viewer may not decide this award (the service's own rules), or None."""
    if pending.status != "pending":
        return None
    if current_user.id == pending.requested_by_id:
        return _("You requested it: a second staff member decides.")
    if current_user.id == pending.member_id:
        return _("It is an award to you.")
    if not has_permission(current_user, approvals_service.DECIDE_PERMISSION[pending.kind]):
        return _("A manual credit needs an admin.")
    return None


@bp.get("/approvals")
@staff_page(REVIEW_AWARDS)
def approvals():
    """Awards above the approval threshold (focus-group attendance, manual credits) waiting for
    a second staff member, as ``GET /api/v1/admin/points/pending-awards``."""
    status = request.args.get("status", "pending")
    status = status if status in AWARD_STATUSES else "pending"
    page, per_page = page_args(25)
    result = paginate(approvals_service.list_pending(status), page, per_page)
    ids = {i for p in result["items"] for i in (p.member_id, p.requested_by_id, p.decided_by_id) if i}
    names = dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all()) if ids else {}
    return render_template("console/approvals.html", result=result, status=status, statuses=AWARD_STATUSES,
                           names=names, why_not={p.id: _why_not(p) for p in result["items"]},
                           threshold=approvals_service.threshold())


@bp.post("/approvals/<int:pending_id>/<any(approve, reject):decision>")
@staff_page(REVIEW_AWARDS)
def approval_decide(pending_id, decision):
    data = validated(PointsReasonIn(), {"reason": form_str("reason", "")})
    pending = approvals_service.decide(pending_id, approve=decision == "approve", actor=current_user,
                                       reason=data["reason"])
    db.session.commit()
    if pending.status == "approved":
        flash(_("Award #%(id)s approved: %(n)s points posted.", id=pending.id, n=pending.points), "success")
    else:
        flash(_("Award #%(id)s rejected: nothing posted.", id=pending.id), "success")
    return back("console.approvals")


# --------------------------------------------------------------------------- tiers


@bp.get("/tiers")
@staff_page(VIEW_TIER_STATS)
def tiers():
    counts = tier_services.distribution()
    distribution = charts.bar(_("Members per tier"), _("Tier"), [_(t) for t in TIERS],
                              {_("Members"): [counts[t] for t in TIERS]})
    weeks = arg_int("weeks", 12, hi=104)
    now = utcnow()
    rows = tier_services.movements(now - timedelta(weeks=weeks), now + timedelta(seconds=1), "week")
    periods = sorted({r["period"] for r in rows})
    kinds = ("promotion", "demotion", "pin")
    per_kind = {k: dict.fromkeys(periods, 0) for k in kinds}
    for r in rows:
        per_kind[r["kind"]][r["period"]] += r["count"]
    movements = charts.bar(_("Tier movements per week"), _("Week starting"), periods,
                           {_(k): [per_kind[k][p] for p in periods] for k in kinds})
    return render_template("console/tiers.html", distribution=distribution, movements=movements, rows=rows,
                           weeks=weeks)
