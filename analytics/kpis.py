"""Daily KPI aggregates and their time series.

``build_day(day)`` computes every metric of ``METRICS`` for one UTC day with a handful of
set-based statements over that day's rows (plus the level metrics: membership, tiers, profile
completeness, trailing-30-day activity per cohort) and replaces that day's rows of ``kpi_daily``.
``build_pending`` is the incremental job: every day after the last built one up to yesterday,
then today so far.  Liability and cohort LTV are carried forward from the previous day's row
(previous value + the day's movement), so a day never rescans history once built.

Each metric aggregates over a longer period (week, month, quarter, half-year) as declared:
``sum`` adds days, ``ratio`` is sum(numerator) / sum(denominator) × scale, ``last`` takes the
period's last day, ``mean`` averages days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import delete, func, insert, select

from community.models import utcnow
from errors import ValidationError
from extensions import db

from . import sql
from .models import KpiDaily, KpiDay

PERIODS = ("day", "week", "month", "quarter", "half_year")
BREAKDOWNS = ("tier", "segment", "cohort", "survey")
MAX_BACKFILL_DAYS = 400


@dataclass(frozen=True)
class Metric:
    agg: str
    description: str
    scale: float = 1.0
    dims: tuple[str, ...] = ("tier", "segment")


METRICS: dict[str, Metric] = {
    "active_members": Metric("mean", "Members with any interaction that day (a period's value is the daily mean)."),
    "active_members_30d": Metric("last", "Members with any interaction in the 30 days up to the day.", dims=()),
    "members": Metric("last", "Active accounts at the end of the day.", dims=("tier", "segment")),
    "new_members": Metric("sum", "Accounts created.", dims=()),
    "purchases": Metric("sum", "Purchase events."),
    "purchasers": Metric("mean", "Members who purchased that day (daily mean over a period)."),
    "net_revenue": Metric("sum", "Purchases minus refunds."),
    "refunds": Metric("sum", "Refunded amount."),
    "average_order_value": Metric("ratio", "Net revenue / purchases."),
    "purchase_frequency": Metric("ratio", "Purchases per purchasing member."),
    "net_revenue_per_member": Metric("ratio", "Net revenue / members."),
    "repurchase_rate": Metric("ratio", "Share of purchasers who had purchased before."),
    "points_issued": Metric("sum", "Points earned (issued to members), net of clawed-back awards."),
    "points_redeemed": Metric("sum", "Points spent on settled redemptions, net of refunds."),
    "points_expired": Metric("sum", "Points that expired."),
    "redemption_rate": Metric("ratio", "Points redeemed / points issued."),
    "breakage": Metric("ratio", "Points expired / points issued."),
    "liability": Metric("last", "Outstanding points (available + held) at the end of the day.", dims=()),
    "nps": Metric("ratio", "Net promoter score of the NPS answers completed (-100..100).", scale=100.0,
                  dims=("tier", "survey")),
    "survey_responses": Metric("sum", "Survey responses completed.", dims=("tier", "survey")),
    "survey_response_rate": Metric("ratio", "Responses completed / responses started.", dims=("survey",)),
    "threads": Metric("sum", "Forum threads started.", dims=()),
    "replies": Metric("sum", "Forum replies.", dims=()),
    "likes": Metric("sum", "Likes given.", dims=()),
    "flag_resolution_hours": Metric("ratio", "Mean hours from flag to resolution, for flags resolved.", dims=()),
    "flags_resolved": Metric("sum", "Flags resolved.", dims=()),
    "referral_signups": Metric("sum", "Members who signed up with a referral code.", dims=()),
    "referral_conversions": Metric("sum", "Referred members who made their first purchase.", dims=()),
    "referral_rate": Metric("ratio", "Referred sign-ups / all sign-ups.", dims=()),
    "referral_conversion": Metric("ratio", "Referral conversions / referral sign-ups.", dims=()),
    "profile_completeness": Metric("last", "Share of active members with a birthday and a bio.", dims=("tier",)),
    "cohort_retention_30d": Metric("last", "Share of a sign-up month's cohort purchasing in the last 30 days.",
                                   dims=("cohort",)),
    "cohort_ltv": Metric("last", "Net revenue per cohort member since sign-up (historical LTV).", dims=("cohort",)),
}


def check_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValidationError("Unknown metric.", fields={"metric": [f"One of {', '.join(sorted(METRICS))}."]})
    return METRICS[name]


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time())
    return start, start + timedelta(days=1)


class _Rows:
    """Collects (metric, dim, dim_value) -> (value, numerator, denominator) for one day."""

    def __init__(self):
        self.rows: dict[tuple[str, str, str], tuple] = {}

    def put(self, metric, value, dim="", dim_value="", numerator=None, denominator=None):
        self.rows[(metric, dim, str(dim_value))] = (
            None if value is None else float(value),
            None if numerator is None else float(numerator),
            None if denominator is None else float(denominator),
        )

    def ratio(self, metric, numerator, denominator, dim="", dim_value=""):
        scale = METRICS[metric].scale
        num, den = float(numerator or 0), float(denominator or 0)
        self.put(metric, scale * num / den if den else None, dim, dim_value, num, den)


# Breakdowns use membership as of the end of the day (``:end``), not today's:
# * tier: the ``from_tier`` of the member's first tier change at or after ``:end`` (the tier they
#   held until then), else their current tier (no change since: they held it already);
# * segment: the stay in ``analytics_segment_history`` covering ``:end`` (members of a segment's
#   first materialisation count from before it: the earliest membership known).
_TIER_AS_OF = ("LEFT JOIN (SELECT member_id, from_tier FROM (SELECT member_id, from_tier, ROW_NUMBER() OVER "
               "(PARTITION BY member_id ORDER BY created_at, id) AS rn FROM tier_changes WHERE created_at >= :end) tx "
               "WHERE rn = 1) tn ON tn.member_id = u.id")
TIER_EXPR = "COALESCE(tn.from_tier, u.tier)"
_DIMS = {
    "": ("''", ""),
    "tier": (TIER_EXPR, _TIER_AS_OF),
    "segment": ("sh.segment_id", "JOIN analytics_segment_history sh ON sh.member_id = u.id "
                "AND (sh.joined_at IS NULL OR sh.joined_at < :end) AND (sh.left_at IS NULL OR sh.left_at >= :end)"),
}


def _last_30_days(end: datetime) -> dict[str, tuple[int, int]]:
    """Per sign-up cohort: members with any interaction, and members with a purchase, in the 30
    days up to ``end``; one pass over those days' rows for both ``active_members_30d`` and
    ``cohort_retention_30d`` (GROUP BY, not COUNT(DISTINCT): a hash aggregate of the members,
    then their cohorts, the join reading one row per member)."""
    cohort = sql.year_month("u.created_at")
    return {key: (int(active), int(purchasers or 0)) for key, active, purchasers in sql.run(f"""
        SELECT {cohort}, COUNT(*), SUM(i.purchased) FROM (
          SELECT member_id, MAX(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END) AS purchased FROM interactions
          WHERE occurred_at >= :s AND occurred_at < :end GROUP BY member_id) i
        JOIN users u ON u.id = i.member_id GROUP BY 1""", s=end - timedelta(days=30), end=end).all()}


def _membership(end: datetime) -> dict:
    """One pass over the members (not one per breakdown): per tier as of ``end`` and sign-up
    cohort, the active accounts, those with a complete profile and all accounts created before
    ``end``; rolled up here into the whole programme, each tier and each cohort.  Only groups
    with at least one member are reported (what a ``GROUP BY`` of each alone gives)."""
    cohort = sql.year_month("u.created_at")
    rows = sql.run(
        f"SELECT {TIER_EXPR} AS tier, {cohort} AS cohort, "
        "SUM(CASE WHEN u.is_active_account = :t THEN 1 ELSE 0 END) AS members, "
        "SUM(CASE WHEN u.is_active_account = :t AND u.birthday IS NOT NULL AND u.bio <> '' THEN 1 ELSE 0 END) "
        f"AS complete, COUNT(*) AS accounts FROM users u {_TIER_AS_OF} WHERE u.created_at < :end GROUP BY 1, 2",
        t=True, end=end).all()
    members: dict[tuple[str, str], int] = {}
    complete: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for tier, key, n, c, accounts in rows:
        sizes[key] = sizes.get(key, 0) + int(accounts)
        if n:
            members[("", "")] = members.get(("", ""), 0) + int(n)
            members[("tier", str(tier))] = members.get(("tier", str(tier)), 0) + int(n)
            complete[str(tier)] = complete.get(str(tier), 0) + int(c or 0)
    return {"members": members, "complete": complete, "sizes": sizes}


def _member_activity(out: _Rows, start: datetime, end: datetime, last30: dict, membership: dict) -> int:
    """Member and purchase KPIs of the day; returns the day's new members (``_community`` needs them)."""
    members = {}
    for dim, (expr, join) in _DIMS.items():
        if dim == "segment":
            rows = sql.run(
                f"SELECT {expr} AS dv, COUNT(*) AS n FROM users u {join} WHERE u.is_active_account = :t "
                f"AND u.created_at < :end GROUP BY 1", t=True, end=end).all()
        else:
            rows = [(dv, n) for (d, dv), n in membership["members"].items() if d == dim]
        for dv, n in rows:
            members[(dim, str(dv))] = n
            out.put("members", n, dim, dv)
        rows = sql.run(f"""
            SELECT {expr} AS dv, COUNT(DISTINCT i.member_id) AS active,
              SUM(CASE WHEN i.kind = 'purchase' THEN 1 ELSE 0 END) AS purchases,
              COUNT(DISTINCT CASE WHEN i.kind = 'purchase' THEN i.member_id END) AS purchasers,
              SUM(CASE WHEN i.kind = 'purchase' THEN COALESCE(i.value, 0)
                       WHEN i.kind = 'refund' THEN -COALESCE(i.value, 0) ELSE 0 END) AS net,
              SUM(CASE WHEN i.kind = 'refund' THEN COALESCE(i.value, 0) ELSE 0 END) AS refunds,
              COUNT(DISTINCT CASE WHEN i.kind = 'purchase' AND EXISTS (
                  SELECT 1 FROM interactions e WHERE e.member_id = i.member_id AND e.kind = 'purchase'
                  AND e.occurred_at < :start) THEN i.member_id END) AS repeat_buyers
            FROM interactions i JOIN users u ON u.id = i.member_id {join}
            WHERE i.occurred_at >= :start AND i.occurred_at < :end GROUP BY 1""",
            start=start, end=end).mappings().all()
        seen = set()
        for r in rows:
            dv = str(r["dv"])
            seen.add(dv)
            out.put("active_members", r["active"], dim, dv)
            out.put("purchases", r["purchases"], dim, dv)
            out.put("purchasers", r["purchasers"], dim, dv)
            out.put("net_revenue", r["net"], dim, dv)
            out.put("refunds", r["refunds"], dim, dv)
            out.ratio("average_order_value", r["net"], r["purchases"], dim, dv)
            out.ratio("purchase_frequency", r["purchases"], r["purchasers"], dim, dv)
            out.ratio("net_revenue_per_member", r["net"], members.get((dim, dv), 0), dim, dv)
            out.ratio("repurchase_rate", r["repeat_buyers"], r["purchasers"], dim, dv)
        for (d, dv), n in members.items():
            if d == dim and dv not in seen:
                for metric in ("active_members", "purchases", "purchasers", "net_revenue", "refunds"):
                    out.put(metric, 0, dim, dv)
                out.ratio("net_revenue_per_member", 0, n, dim, dv)
    out.put("active_members_30d", sum(active for active, _ in last30.values()))
    new = sql.run("SELECT COUNT(*) FROM users WHERE created_at >= :start AND created_at < :end",
                  start=start, end=end).scalar()
    out.put("new_members", new)
    complete = [(tier, n, membership["complete"][tier]) for (d, tier), n in membership["members"].items()
                if d == "tier"]
    for tier, n, c in complete:
        out.ratio("profile_completeness", c, n, "tier", tier)
    out.ratio("profile_completeness", sum(c for _, _, c in complete), sum(n for _, n, _ in complete))
    return int(new or 0)


def _points(out: _Rows, start: datetime, end: datetime, previous_liability: float | None) -> None:
    for dim, (expr, join) in _DIMS.items():
        rows = sql.run(f"""
            SELECT {expr} AS dv,
              SUM(CASE WHEN jl.account = 'issued' THEN -jl.amount ELSE 0 END) AS issued,
              SUM(CASE WHEN jl.account = 'redeemed' THEN jl.amount ELSE 0 END) AS redeemed,
              SUM(CASE WHEN jl.account = 'expired' THEN jl.amount ELSE 0 END) AS expired,
              SUM(CASE WHEN jl.account IN ('available', 'held') THEN jl.amount ELSE 0 END) AS outstanding
            FROM journal_entries je JOIN journal_lines jl ON jl.entry_id = je.id
            JOIN users u ON u.id = jl.member_id {join}
            WHERE je.created_at >= :start AND je.created_at < :end GROUP BY 1""",
            start=start, end=end).mappings().all()
        delta = 0
        for r in rows:
            dv = str(r["dv"])
            out.put("points_issued", r["issued"], dim, dv)
            out.put("points_redeemed", r["redeemed"], dim, dv)
            out.put("points_expired", r["expired"], dim, dv)
            out.ratio("redemption_rate", r["redeemed"], r["issued"], dim, dv)
            out.ratio("breakage", r["expired"], r["issued"], dim, dv)
            delta += r["outstanding"] or 0
        if dim == "":
            if not rows:
                for metric in ("points_issued", "points_redeemed", "points_expired"):
                    out.put(metric, 0)
            if previous_liability is None:
                previous_liability = sql.run(
                    "SELECT COALESCE(SUM(jl.amount), 0) FROM journal_lines jl JOIN journal_entries je "
                    "ON je.id = jl.entry_id WHERE jl.account IN ('available', 'held') AND je.created_at < :start",
                    start=start).scalar()
            out.put("liability", float(previous_liability or 0) + float(delta))


def _surveys(out: _Rows, start: datetime, end: datetime) -> None:
    for dim, expr in (("", "''"), ("tier", "COALESCE(r.member_tier, 'aware')"), ("survey", "r.survey_id")):
        rows = sql.run(f"""
            SELECT {expr} AS dv, COUNT(*) AS completed,
              SUM(CASE WHEN r.nps_score IS NOT NULL THEN 1 ELSE 0 END) AS answers,
              SUM(CASE WHEN r.nps_score >= 9 THEN 1 WHEN r.nps_score <= 6 THEN -1 ELSE 0 END) AS net
            FROM survey_responses r
            WHERE r.status = 'complete' AND r.completed_at >= :start AND r.completed_at < :end GROUP BY 1""",
            start=start, end=end).mappings().all()
        for r in rows:
            out.put("survey_responses", r["completed"], dim, r["dv"])
            if r["answers"]:
                out.ratio("nps", r["net"], r["answers"], dim, r["dv"])
        if dim == "" and not rows:
            out.put("survey_responses", 0)
        if dim == "tier":
            continue
        started = sql.run(f"""
            SELECT {expr} AS dv, COUNT(*) AS started, SUM(CASE WHEN r.status = 'complete' THEN 1 ELSE 0 END) AS done
            FROM survey_responses r WHERE r.started_at >= :start AND r.started_at < :end GROUP BY 1""",
            start=start, end=end).all()
        for dv, n, done in started:
            out.ratio("survey_response_rate", done, n, dim, dv)


def _community(out: _Rows, start: datetime, end: datetime, new: int) -> None:
    def count(statement):
        return sql.run(statement, start=start, end=end, f=False).scalar() or 0

    out.put("threads", count("SELECT COUNT(*) FROM forum_threads WHERE created_at >= :start AND created_at < :end"))
    out.put("replies", count("SELECT COUNT(*) FROM forum_posts WHERE is_first = :f AND created_at >= :start "
                             "AND created_at < :end"))
    out.put("likes", count("SELECT COUNT(*) FROM forum_reactions WHERE created_at >= :start AND created_at < :end"))
    hours = sql.run(
        f"SELECT COUNT(*), COALESCE(SUM({sql.days_between('created_at', 'resolved_at')}), 0) * 24 FROM forum_flags "
        "WHERE resolved_at >= :start AND resolved_at < :end", start=start, end=end).one()
    out.put("flags_resolved", hours[0])
    out.ratio("flag_resolution_hours", hours[1], hours[0])
    signups = count("SELECT COUNT(*) FROM referrals WHERE signed_up_at >= :start AND signed_up_at < :end")
    conversions = count("SELECT COUNT(*) FROM referrals WHERE converted_at >= :start AND converted_at < :end")
    out.put("referral_signups", signups)
    out.put("referral_conversions", conversions)
    out.ratio("referral_rate", signups, new)
    out.ratio("referral_conversion", conversions, signups)


def _cohorts(out: _Rows, start: datetime, end: datetime, previous: dict[str, tuple], last30: dict,
             sizes: dict[str, int]) -> None:
    cohort = sql.year_month("u.created_at")
    active = {key: purchasers for key, (_, purchasers) in last30.items()}
    revenue = dict(sql.run(f"""
        SELECT {cohort}, SUM(CASE WHEN i.kind = 'purchase' THEN COALESCE(i.value, 0) ELSE -COALESCE(i.value, 0) END)
        FROM interactions i JOIN users u ON u.id = i.member_id
        WHERE i.kind IN ('purchase', 'refund') AND i.occurred_at >= :start AND i.occurred_at < :end
        GROUP BY 1""", start=start, end=end).all())
    history: dict = {}
    missing = sorted(key for key in sizes if key not in previous)
    if missing and len(missing) == len(sizes):  # the first build: every cohort's revenue so far, once,
        history = dict(sql.run(f"""
            SELECT {cohort}, SUM(i.net) FROM (
              SELECT member_id, SUM(CASE WHEN kind = 'purchase' THEN COALESCE(value, 0) ELSE -COALESCE(value, 0) END)
                AS net
              FROM interactions WHERE kind IN ('purchase', 'refund') AND occurred_at < :start GROUP BY member_id) i
            JOIN users u ON u.id = i.member_id GROUP BY 1""",
            start=start).all())  # for every such cohort in one pass (not one scan per cohort)
    elif missing:
        # A cohort new since the previous day (the first sign-ups of a month): only its members'
        # purchases, by member through the (member_id, kind, occurred_at) index, not every
        # member's history (6 s at a million members, once a month).
        names = {f"c{i}": key for i, key in enumerate(missing)}
        history = dict(sql.run(f"""
            SELECT {cohort}, SUM(CASE WHEN i.kind = 'purchase' THEN COALESCE(i.value, 0) ELSE -COALESCE(i.value, 0) END)
            FROM users u JOIN interactions i ON i.member_id = u.id
            WHERE {cohort} IN ({', '.join(':' + n for n in names)}) AND u.created_at < :end
              AND i.kind IN ('purchase', 'refund') AND i.occurred_at < :start
            GROUP BY 1""", start=start, end=end, **names).all())
    for key, size in sizes.items():
        out.ratio("cohort_retention_30d", active.get(key, 0), size, "cohort", key)
        prior = previous.get(key)
        total = history.get(key, 0) if prior is None else prior[1]
        total = float(total or 0) + float(revenue.get(key, 0) or 0)
        out.put("cohort_ltv", total / size if size else None, "cohort", key, total, size)


def build_day(day: date) -> int:
    """Compute and store every metric of ``day`` (replacing that day's rows); returns the row count."""
    start, end = _day_bounds(day)
    prev_day = day - timedelta(days=1)
    prev = {(r.metric, r.dim_value): r for r in db.session.scalars(
        select(KpiDaily).where(KpiDaily.day == prev_day, KpiDaily.metric.in_(("liability", "cohort_ltv"))))}
    liability = prev.get(("liability", ""))
    sql.tune()
    sql.cached_scans()
    out = _Rows()
    last30 = _last_30_days(end)
    membership = _membership(end)
    new = _member_activity(out, start, end, last30, membership)
    _points(out, start, end, liability.value if liability is not None else None)
    _surveys(out, start, end)
    _community(out, start, end, new)
    _cohorts(out, start, end, {dv: (r.value, r.numerator, r.denominator)
                               for (m, dv), r in prev.items() if m == "cohort_ltv"}, last30, membership["sizes"])
    db.session.execute(delete(KpiDaily).where(KpiDaily.day == day))
    if out.rows:
        db.session.execute(insert(KpiDaily), [
            {"day": day, "metric": m, "dim": d, "dim_value": dv, "value": v, "numerator": n, "denominator": den}
            for (m, d, dv), (v, n, den) in out.rows.items()])
    db.session.execute(delete(KpiDay).where(KpiDay.day == day))
    db.session.add(KpiDay(day=day, built_at=utcnow()))
    db.session.flush()
    return len(out.rows)


def build_pending(today: date | None = None) -> dict:
    """Every day after the last complete build up to yesterday, then today so far (incremental)."""
    today = today or utcnow().date()
    last = db.session.scalar(select(func.max(KpiDay.day)).where(KpiDay.day < today))
    first = (last + timedelta(days=1)) if last else today - timedelta(days=1)
    first = max(first, today - timedelta(days=MAX_BACKFILL_DAYS))
    built = []
    day = first
    while day <= today:
        build_day(day)
        built.append(day.isoformat())
        day += timedelta(days=1)
    return {"days": built}


# --------------------------------------------------------------------------- series


def period_start(day: date, period: str) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if period == "half_year":
        return day.replace(month=1 if day.month <= 6 else 7, day=1)
    raise ValidationError("Unknown period.", fields={"period": [f"One of {', '.join(PERIODS)}."]})


def period_end(start: date, period: str) -> date:
    """The first day after the period starting at ``start``."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    months = {"month": 1, "quarter": 3, "half_year": 6}[period]
    month = start.month - 1 + months
    return date(start.year + month // 12, month % 12 + 1, 1)


def _aggregate(metric: Metric, rows: list[tuple]) -> dict:
    """rows: (day, value, numerator, denominator) of one period, ordered by day."""
    if metric.agg == "sum":
        value = sum(r[1] or 0 for r in rows)
        return {"value": value}
    if metric.agg == "mean":
        return {"value": sum(r[1] or 0 for r in rows) / len(rows)}
    if metric.agg == "last":
        last = rows[-1]
        return {"value": last[1], "numerator": last[2], "denominator": last[3]}
    num = sum(r[2] or 0 for r in rows)
    den = sum(r[3] or 0 for r in rows)
    return {"value": metric.scale * num / den if den else None, "numerator": num, "denominator": den}


def series(name: str, period: str, start: date, end: date, breakdown: str | None = None,
           dim_value: str | None = None) -> dict:
    """Periods of ``name`` between ``start`` and ``end`` (inclusive days), with period-over-period
    change; ``breakdown`` splits by tier, segment, cohort or survey (``dim_value`` picks one)."""
    metric = check_metric(name)
    period_start(start, period)  # validates the period
    if breakdown is not None and breakdown not in metric.dims:
        raise ValidationError("This metric has no such breakdown.",
                              fields={"breakdown": [f"One of {', '.join(metric.dims) or 'none'}."]})
    if end < start:
        raise ValidationError("The range ends before it starts.", fields={"end": ["After start."]})
    if (end - start).days > 3660:
        raise ValidationError("At most ten years at once.", fields={"end": ["Range too long."]})
    # Whole periods: from the start of the first to the end of the last.
    lo, hi = period_start(start, period), period_end(period_start(end, period), period) - timedelta(days=1)
    query = (select(KpiDaily.dim_value, KpiDaily.day, KpiDaily.value, KpiDaily.numerator, KpiDaily.denominator)
             .where(KpiDaily.metric == name, KpiDaily.dim == (breakdown or ""), KpiDaily.day >= lo,
                    KpiDaily.day <= hi)
             .order_by(KpiDaily.dim_value, KpiDaily.day))
    if dim_value is not None:
        query = query.where(KpiDaily.dim_value == dim_value)
    groups: dict[str, dict[date, list]] = {}
    for dv, day, value, num, den in db.session.execute(query):
        groups.setdefault(dv, {}).setdefault(period_start(day, period), []).append((day, value, num, den))
    out = []
    for dv, by_period in groups.items():
        points, previous = [], None
        for ps in sorted(by_period):
            point = {"period_start": ps, "period_end": period_end(ps, period) - timedelta(days=1),
                     "days": len(by_period[ps]), **_aggregate(metric, by_period[ps])}
            value = point["value"]
            if previous is not None and value is not None and previous is not None:
                point["change"] = value - previous
                point["change_pct"] = (value - previous) / abs(previous) * 100 if previous else None
            else:
                point["change"] = point["change_pct"] = None
            previous = value
            points.append(point)
        out.append({"dim_value": dv, "points": points})
    return {"metric": name, "aggregation": metric.agg, "period": period, "breakdown": breakdown,
            "series": out}


def period_summary(start: date, period: str) -> dict:
    """Every metric's value for one period and the change against the period before (reviews)."""
    start = period_start(start, period)
    end = period_end(start, period) - timedelta(days=1)
    prev_start = period_start(start - timedelta(days=1), period)
    out = {}
    for name, metric in METRICS.items():
        data = series(name, period, prev_start, end)
        total = next((s for s in data["series"] if s["dim_value"] == ""), {"points": []})
        by_start = {p["period_start"]: p for p in total["points"]}
        current = by_start.get(start)
        entry = {"value": current["value"] if current else None,
                 "previous": by_start[prev_start]["value"] if prev_start in by_start else None}
        entry["change"] = current.get("change") if current else None
        entry["change_pct"] = current.get("change_pct") if current else None
        if "tier" in metric.dims:
            tiers = series(name, period, start, end, breakdown="tier")
            entry["by_tier"] = {s["dim_value"]: s["points"][-1]["value"] for s in tiers["series"] if s["points"]}
        out[name] = entry
    return {"period": period, "start": start.isoformat(), "end": end.isoformat(), "metrics": out}
