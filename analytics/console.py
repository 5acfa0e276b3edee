"""Analytics pages of the staff console (``/console/analytics``): segments with their members and
hand tagging, KPI dashboards with time-series charts and period-over-period change, stored
reviews, and experiment results with their confidence intervals drawn.

Views are thin: numbers come from the analytics services the API calls (``kpis.series``,
``experiments.results``, ``segments.*``, ``services.create_review``), with the API's named
permissions (``analytics.view`` to read, ``analytics.manage`` to change) and its schemas.  The
console wires this module in (``console.api.init_app``) so the analytics package needs no hook.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from community.models import TIERS, User, utcnow
from community.permissions import ADMIN_USERS, has_permission
from console import charts, nav
from console.vocabulary import N_
from console.web import back, console_blueprint, form_str, page_args, staff_page, validated
from errors import ValidationError
from extensions import db
from pagination import paginate

from . import experiments, kpis, segments, services
from .models import REVIEW_PERIODS, Experiment, MemberTag, ReviewSnapshot, Segment, SegmentMember
from .permissions import MANAGE, VIEW
from .schemas import ReviewIn, SegmentIn, TagIn

bp = console_blueprint("analytics_console", __name__, "/console/analytics", template_folder="templates")

nav.register(nav.NavItem("analytics", _l("Segments"), "analytics_console.segments_list", VIEW, 10))
nav.register(nav.NavItem("analytics", _l("KPI dashboard"), "analytics_console.kpis_dashboard", VIEW, 20))
nav.register(nav.NavItem("analytics", _l("Reviews"), "analytics_console.reviews", VIEW, 30))
nav.register(nav.NavItem("analytics", _l("Experiments"), "analytics_console.experiments_list", VIEW, 40))

METRIC_LABELS = {
    "active_members": _l("Active members (daily)"), "active_members_30d": _l("Active members (30 days)"),
    "members": _l("Members"), "new_members": _l("New members"), "purchases": _l("Purchases"),
    "purchasers": _l("Purchasers (daily)"), "net_revenue": _l("Net revenue"), "refunds": _l("Refunds"),
    "average_order_value": _l("Average order value"), "purchase_frequency": _l("Purchase frequency"),
    "net_revenue_per_member": _l("Net revenue per member"), "repurchase_rate": _l("Repurchase rate"),
    "points_issued": _l("Points issued"), "points_redeemed": _l("Points redeemed"),
    "points_expired": _l("Points expired"), "redemption_rate": _l("Redemption rate"), "breakage": _l("Breakage"),
    "liability": _l("Points liability"), "nps": _l("NPS"), "survey_responses": _l("Survey responses"),
    "survey_response_rate": _l("Survey response rate"), "threads": _l("Forum threads"),
    "replies": _l("Forum replies"), "likes": _l("Likes"), "flag_resolution_hours": _l("Flag resolution (hours)"),
    "flags_resolved": _l("Flags resolved"), "referral_signups": _l("Referral sign-ups"),
    "referral_conversions": _l("Referral conversions"), "referral_rate": _l("Referral rate"),
    "referral_conversion": _l("Referral conversion"), "profile_completeness": _l("Profile completeness"),
    "cohort_retention_30d": _l("Cohort 30-day retention"), "cohort_ltv": _l("Cohort LTV"),
}
EXPERIMENT_METRIC_LABELS = {
    "net_amount": _l("Net amount"), "purchases": _l("Purchases"), "distinct_products": _l("Distinct products"),
    "distinct_categories": _l("Distinct categories"), "retention": _l("Retention"),
    "points_earned": _l("Points earned"), "points_redeemed": _l("Points redeemed"),
}
ESTIMATORS = (("difference", _l("Test − control")), ("diff_in_diff", _l("Difference in differences")),
              ("cuped", _l("CUPED-adjusted")))
HEADLINE = ("members", "active_members", "net_revenue", "points_issued")
# How many periods a dashboard shows by default.
SPAN = {"day": 30, "week": 12, "month": 12, "quarter": 8, "half_year": 6}
VOCABULARY = (
    N_("day"), N_("week"), N_("month"), N_("quarter"), N_("half_year"), N_("tier"), N_("segment"), N_("cohort"),
    N_("survey"), N_("running"), N_("stopped"), N_("holdout"), N_("campaign"), N_("reward"), N_("touch"),
    N_("test"), N_("control"), N_("all"), N_("any"), N_("sum"), N_("ratio"), N_("last"), N_("mean"),
)


def metric_label(name: str) -> str:
    return str(METRIC_LABELS.get(name, name))


# --------------------------------------------------------------------------- segments


@bp.get("/segments")
@staff_page(VIEW)
def segments_list():
    page, per_page = page_args(25)
    result = paginate(select(Segment).where(Segment.archived.is_(False)).order_by(Segment.id.desc()), page, per_page)
    tags = db.session.execute(select(MemberTag.tag, func.count()).group_by(MemberTag.tag)
                              .order_by(func.count().desc(), MemberTag.tag).limit(50)).all()
    return render_template("analytics/console/segments.html", result=result, tags=tags,
                           can_manage=has_permission(current_user, MANAGE), fields=sorted(segments.FIELDS))


@bp.post("/segments")
@staff_page(MANAGE)
def segment_create():
    raw = form_str("definition", "")
    try:
        definition = json.loads(raw) if raw else None
    except ValueError as exc:
        raise ValidationError(_("The form has errors."), fields={"definition": [_("Not valid JSON.")]}) from exc
    data = validated(SegmentIn(), {"name": form_str("name", ""), "description": form_str("description", ""),
                                   "definition": definition})
    segment = segments.create(current_user.id, data)
    count = segments.materialise(segment.id)
    db.session.commit()
    flash(_("Segment “%(name)s” saved: %(n)s members.", name=segment.name, n=count), "success")
    return redirect(url_for("analytics_console.segment", segment_id=segment.id), code=303)


@bp.get("/segments/<int:segment_id>")
@staff_page(VIEW)
def segment(segment_id):
    seg = segments.require_segment(segment_id)
    page, per_page = page_args(50)
    # The API's page of the segment's members (its count needs no join), then their users.
    members = paginate(select(SegmentMember.member_id).where(SegmentMember.segment_id == segment_id)
                       .order_by(SegmentMember.member_id), page, per_page)
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(members["items"])))}
    members["items"] = [users[i] for i in members["items"] if i in users]
    return render_template("analytics/console/segment.html", segment=seg, members=members,
                           can_manage=has_permission(current_user, MANAGE),
                           can_open_members=has_permission(current_user, ADMIN_USERS))


@bp.post("/segments/<int:segment_id>/materialise")
@staff_page(MANAGE)
def segment_materialise(segment_id):
    count = segments.materialise(segment_id)
    db.session.commit()
    flash(_("Segment recomputed: %(n)s members.", n=count), "success")
    return back("analytics_console.segment", segment_id=segment_id)


@bp.post("/tags")
@staff_page(MANAGE)
def tag_member():
    """Tag one member by hand (the member id comes from the form)."""
    tag = validated(TagIn(), {"tag": form_str("tag", "")})["tag"]
    raw = form_str("member_id", "")
    if not raw or not raw.isdigit():
        raise ValidationError(_("The form has errors."), fields={"member_id": [_("A member number.")]})
    segments.tag_members(current_user.id, tag, [int(raw)])
    db.session.commit()
    flash(_("Member #%(id)s tagged “%(tag)s”.", id=raw, tag=tag), "success")
    return back("analytics_console.segments_list")


@bp.post("/members/<int:member_id>/tags/<tag>/remove")
@staff_page(MANAGE)
def untag_member(member_id, tag):
    segments.untag_member(current_user.id, member_id, tag)
    db.session.commit()
    flash(_("Tag “%(tag)s” removed from member #%(id)s.", id=member_id, tag=tag), "success")
    return back("analytics_console.segments_list")


def _member_section(member, viewer):
    """The member page's segments and tags (for staff who may read analytics)."""
    if not has_permission(viewer, VIEW):
        return None
    rows = db.session.execute(
        select(Segment.id, Segment.name, Segment.member_count)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.member_id == member.id, Segment.archived.is_(False)).order_by(Segment.name)).all()
    return nav.MemberSection("analytics/console/member_section.html", {
        "member": member, "segments": rows, "tags": segments.member_tags(member.id),
        "can_manage": has_permission(viewer, MANAGE)})


nav.register_member_section(_member_section)


# --------------------------------------------------------------------------- KPIs


def _period_args() -> tuple[str, date, date]:
    period = request.args.get("period", "month")
    if period not in kpis.PERIODS:
        period = "month"
    today = utcnow().date()
    end = _date_arg("end") or today
    start = _date_arg("start")
    if start is None:
        start = kpis.period_start(end, period)
        for _i in range(SPAN[period] - 1):
            start = kpis.period_start(start - timedelta(days=1), period)
    return period, start, end


def _date_arg(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _total(series: dict) -> list[dict]:
    return next((s["points"] for s in series["series"] if s["dim_value"] == ""), [])


@bp.get("/kpis")
@staff_page(VIEW)
def kpis_dashboard():
    """Every KPI's latest period against the one before; charts of the headline KPIs."""
    period, start, end = _period_args()
    rows, headline = [], []
    for name in sorted(kpis.METRICS, key=metric_label):
        points = _total(kpis.series(name, period, start, end))
        last = points[-1] if points else None
        rows.append({"name": name, "label": metric_label(name), "aggregation": kpis.METRICS[name].agg,
                     "period": last["period_start"] if last else None, "value": last["value"] if last else None,
                     "change": last["change"] if last else None, "change_pct": last["change_pct"] if last else None})
        if name in HEADLINE:
            labels = [p["period_start"].isoformat() for p in points]
            headline.append((name, charts.line(metric_label(name), _("Period starting"), labels,
                                               {metric_label(name): [p["value"] for p in points]})))
    headline.sort(key=lambda pair: HEADLINE.index(pair[0]))
    return render_template("analytics/console/kpis.html", rows=rows, headline=headline, period=period,
                           start=start, end=end, periods=kpis.PERIODS)


@bp.get("/kpis/<metric>")
@staff_page(VIEW)
def kpi(metric):
    definition = kpis.check_metric(metric)
    period, start, end = _period_args()
    breakdown = request.args.get("breakdown") or None
    if breakdown not in definition.dims:
        breakdown = None
    data = kpis.series(metric, period, start, end, breakdown)
    names = _dim_names(breakdown, [s["dim_value"] for s in data["series"]])
    labels = sorted({p["period_start"] for s in data["series"] for p in s["points"]})
    by_series = {names[s["dim_value"]]: {p["period_start"]: p["value"] for p in s["points"]} for s in data["series"]}
    chart = charts.line(metric_label(metric), _("Period starting"), [d.isoformat() for d in labels],
                        {name: [values.get(d) for d in labels] for name, values in by_series.items()})
    tables = [(names[s["dim_value"]], s["points"]) for s in data["series"]]
    csv_args = {"period": period, "start": start.isoformat(), "end": end.isoformat()}
    if breakdown:
        csv_args["breakdown"] = breakdown
    return render_template("analytics/console/kpi.html", metric=metric, label=metric_label(metric),
                           definition=definition, series_chart=chart, tables=tables, period=period, start=start,
                           end=end, breakdown=breakdown, periods=kpis.PERIODS, csv_args=csv_args)


def _dim_names(breakdown: str | None, values: list[str]) -> dict[str, str]:
    """Readable names of a breakdown's values: translated tiers, segment names (one query)."""
    if breakdown == "segment":
        ids = [int(v) for v in values if v.isdigit()]
        known = dict(db.session.execute(select(Segment.id, Segment.name).where(Segment.id.in_(ids)))) if ids else {}
        return {v: known.get(int(v), f"#{v}") if v.isdigit() else v for v in values}
    if breakdown == "tier":
        return {v: _(v) if v in TIERS else v for v in values}
    return {v: (v or _("all members")) for v in values}


# --------------------------------------------------------------------------- reviews


@bp.get("/reviews")
@staff_page(VIEW)
def reviews():
    page, per_page = page_args(20)
    period = request.args.get("period") or None
    query = select(ReviewSnapshot).order_by(ReviewSnapshot.period_start.desc(), ReviewSnapshot.id.desc())
    if period in REVIEW_PERIODS:
        query = query.where(ReviewSnapshot.period == period)
    return render_template("analytics/console/reviews.html", result=paginate(query, page, per_page), period=period,
                           periods=REVIEW_PERIODS, can_manage=has_permission(current_user, MANAGE))


@bp.post("/reviews")
@staff_page(MANAGE)
def review_create():
    data = validated(ReviewIn(), {"period": form_str("period", ""), "start": form_str("start", ""),
                                  "note": form_str("note", "")})
    review = services.create_review(current_user.id, data["period"], data["start"], data["note"])
    db.session.commit()
    flash(_("Review stored."), "success")
    return redirect(url_for("analytics_console.review", review_id=review.id), code=303)


@bp.get("/reviews/<int:review_id>")
@staff_page(VIEW)
def review(review_id):
    snapshot = services.get_review(review_id)
    metrics = snapshot.data.get("metrics", {})
    keys = ("value", "previous", "change", "change_pct", "by_tier")
    rows = [{"name": name, "label": metric_label(name), **{k: m.get(k) for k in keys}}
            for name, m in sorted(metrics.items(), key=lambda kv: metric_label(kv[0]))]
    tiers = sorted({t for m in metrics.values() for t in (m.get("by_tier") or {})},
                   key=lambda t: TIERS.index(t) if t in TIERS else len(TIERS))
    return render_template("analytics/console/review.html", review=snapshot, rows=rows, tiers=tiers)


# --------------------------------------------------------------------------- experiments


@bp.get("/experiments")
@staff_page(VIEW)
def experiments_list():
    page, per_page = page_args(25)
    result = paginate(select(Experiment).order_by(Experiment.id.desc()), page, per_page)
    return render_template("analytics/console/experiments.html", result=result)


@bp.get("/experiments/<int:experiment_id>")
@staff_page(VIEW)
def experiment(experiment_id):
    exp = experiments.get(experiment_id)
    results, forests = None, []
    if exp.status != "draft":
        results = experiments.results(experiment_id)
        for name, m in results["metrics"].items():
            rows = [(label, m[key]["effect"], m[key]["ci_low"], m[key]["ci_high"]) for key, label in ESTIMATORS]
            label = EXPERIMENT_METRIC_LABELS.get(name, name)
            forests.append((name, label, m, charts.forest(
                _("%(metric)s: effect with 95 %% interval", metric=label), _("Effect (test − control)"), rows,
                _("Estimate"), [_("Effect"), _("Low"), _("High")])))
    return render_template("analytics/console/experiment.html", exp=exp, results=results, forests=forests,
                           estimators=ESTIMATORS, can_manage=has_permission(current_user, MANAGE))


@bp.post("/experiments/<int:experiment_id>/<any(start, stop):action>")
@staff_page(MANAGE)
def experiment_action(experiment_id, action):
    if action == "start":
        _exp, assigned = experiments.start(current_user.id, experiment_id)
        db.session.commit()
        flash(_("Experiment started: %(n)s members assigned.", n=assigned), "success")
    else:
        experiments.stop(current_user.id, experiment_id)
        db.session.commit()
        flash(_("Experiment stopped."), "success")
    return back("analytics_console.experiment", experiment_id=experiment_id)


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals.setdefault("kpi_label", metric_label)
