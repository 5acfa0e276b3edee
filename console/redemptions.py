"""Redemption staff: the queue with filters and bulk actions, a redemption's detail and state
history, stock and code-pool levels, and the CSV of what was shipped."""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from community.models import User, utcnow
from csv_export import csv_response
from errors import AppError, ValidationError
from extensions import db
from pagination import paginate
from rewards import services
from rewards.models import REWARD_KINDS, STATES, Redemption, RedemptionTransition, Reward, RewardCode
from rewards.permissions import FULFIL_REDEMPTIONS
from rewards.schemas import RefundIn, RejectIn, ShipIn

from . import nav
from .web import arg_int, back, bp, form_str, page_args, staff_page, validated

nav.register(nav.NavItem("redemptions", _l("Redemption queue"), "console.redemptions", FULFIL_REDEMPTIONS, 10))
nav.register(nav.NavItem("redemptions", _l("Stock & code pools"), "console.stock", FULFIL_REDEMPTIONS, 20))

BULK_ACTIONS = ("approve", "complete", "reject", "refund")


def _apply(action: str, redemption_id: int) -> Redemption:
    """One staff action through the rewards services (the state machine lives there)."""
    if action == "approve":
        return services.approve(current_user, redemption_id)
    if action == "complete":
        return services.complete(current_user, redemption_id)
    if action == "ship":
        data = validated(ShipIn(), {"tracking_reference": form_str("tracking_reference", "")})
        return services.ship(current_user, redemption_id, data["tracking_reference"])
    if action == "reject":
        data = validated(RejectIn(), {"reason": form_str("reason", "")})
        return services.reject(current_user, redemption_id, data["reason"])
    if action == "refund":
        data = validated(RefundIn(), {"reason": form_str("reason", "")})
        return services.refund(current_user, redemption_id, data["reason"])
    raise ValidationError(_("Unknown action."), fields={"action": [action]})


def _queue_query(state, kind, min_age_days):
    query = services.staff_queue_query(state=state or None, kind=kind or None)
    if min_age_days:
        query = query.where(Redemption.created_at <= utcnow() - timedelta(days=min_age_days))
    return query


@bp.get("/redemptions")
@staff_page(FULFIL_REDEMPTIONS)
def redemptions():
    state = request.args.get("state", "awaiting_fulfilment")
    state = state if state in STATES or state == "" else "awaiting_fulfilment"
    kind = request.args.get("kind", "")
    kind = kind if kind in REWARD_KINDS else ""
    min_age = arg_int("min_age_days", 0, lo=0, hi=3650)
    page, per_page = page_args(25)
    result = paginate(_queue_query(state, kind, min_age), page, per_page)
    members = dict(db.session.execute(
        select(User.id, User.display_name).where(User.id.in_({r.member_id for r in result["items"]}))
    ).all()) if result["items"] else {}
    return render_template(
        "console/redemptions.html", result=result, members=members, states=STATES, kinds=REWARD_KINDS,
        current={"state": state, "kind": kind, "min_age_days": min_age or ""}, bulk_actions=BULK_ACTIONS,
        now=utcnow(),
    )


@bp.post("/redemptions/bulk")
@staff_page(FULFIL_REDEMPTIONS)
def redemptions_bulk():
    """One action on a selection: each redemption in its own savepoint, so one that moved on
    (409) does not undo the others; a summary says which."""
    action = request.form.get("action", "")
    if action not in BULK_ACTIONS:
        raise ValidationError(_("Choose an action."), fields={"action": [action]})
    ids = sorted({int(i) for i in request.form.getlist("ids") if i.isdigit()})
    if not ids:
        raise ValidationError(_("Select at least one redemption."), fields={"ids": [_("Empty.")]})
    done, failed = [], []
    for rid in ids:
        try:
            with db.session.begin_nested():
                _apply(action, rid)
            done.append(rid)
        except AppError as exc:
            if isinstance(exc, ValidationError) and action in ("reject", "refund") and "reason" in exc.fields:
                raise
            failed.append(f"#{rid}: {exc.message}")
    db.session.commit()
    if done:
        flash(_("%(action)s: %(n)s done (%(ids)s).", action=_(action), n=len(done),
                ids=", ".join(f"#{i}" for i in done)), "success")
    if failed:
        flash(_("Not changed: %(list)s", list="; ".join(failed)), "error")
    return back("console.redemptions")


@bp.get("/redemptions/<int:redemption_id>")
@staff_page(FULFIL_REDEMPTIONS)
def redemption(redemption_id):
    r = services.get_redemption(redemption_id)
    transitions = services.transitions_of(r.id)
    ids = {t.actor_id for t in transitions} | {r.member_id}
    names = dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())
    allowed = services.TRANSITIONS[r.state]
    return render_template("console/redemption.html", r=r, transitions=transitions, names=names, allowed=allowed)


@bp.post("/redemptions/<int:redemption_id>/<any(approve, ship, complete, reject, refund):action>")
@staff_page(FULFIL_REDEMPTIONS)
def redemption_action(redemption_id, action):
    r = _apply(action, redemption_id)
    db.session.commit()
    flash(_("Redemption #%(id)s is now %(state)s.", id=r.id, state=_(r.state)), "success")
    return redirect(url_for("console.redemption", redemption_id=redemption_id), code=303)


@bp.get("/redemptions/stock")
@staff_page(FULFIL_REDEMPTIONS)
def stock():
    """Stock left per reward and, for coupons, the code pool (one grouped query for all)."""
    page, per_page = page_args(50)
    result = paginate(services.staff_rewards_query(), page, per_page)
    ids = [r.id for r in result["items"]]
    pools = {
        rid: {"codes_total": total, "codes_assigned": assigned}
        for rid, total, assigned in db.session.execute(
            select(RewardCode.reward_id, func.count(RewardCode.id), func.count(RewardCode.redemption_id))
            .where(RewardCode.reward_id.in_(ids)).group_by(RewardCode.reward_id)
        )
    } if ids else {}
    return render_template("console/stock.html", result=result, pools=pools)


@bp.get("/redemptions/shipped.csv")
@staff_page(FULFIL_REDEMPTIONS)
def shipped_csv():
    """Every redemption that was shipped, with when, by whom and its tracking reference."""
    query = (
        select(Redemption.id, Redemption.member_id, User.email, Reward.name, Redemption.tracking_reference,
               RedemptionTransition.created_at, RedemptionTransition.actor_id, Redemption.state)
        .join(RedemptionTransition, RedemptionTransition.redemption_id == Redemption.id)
        .join(Reward, Reward.id == Redemption.reward_id)
        .join(User, User.id == Redemption.member_id)
        .where(RedemptionTransition.to_state == "shipped")
        .order_by(RedemptionTransition.created_at, Redemption.id)
        .execution_options(yield_per=500)
    )

    def rows():
        for rid, member_id, email, reward, tracking, shipped_at, actor_id, state in db.session.execute(query):
            yield [rid, member_id, email, reward, tracking, shipped_at.isoformat(), actor_id, state]

    return csv_response(
        "shipped.csv",
        ["redemption_id", "member_id", "email", "reward", "tracking_reference", "shipped_at", "shipped_by", "state"],
        rows(),
    )
