"""Daily KPIs: known values for a built day, incremental builds, series by period with change,
breakdowns, CSV, and stored reviews."""

import csv as csv_module
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from analytics import kpis, segments
from analytics.models import KpiDaily, KpiDay
from community.models import utcnow
from extensions import db
from points import ledger
from tests.analytics.helpers import err, interactions, members


def _value(day, metric, dim="", dim_value=""):
    row = db.session.scalar(select(KpiDaily).where(KpiDaily.day == day, KpiDaily.metric == metric,
                                                   KpiDaily.dim == dim, KpiDaily.dim_value == dim_value))
    return None if row is None else row.value


def test_a_built_day_has_the_known_values(app):
    day = utcnow().date() - timedelta(days=3)
    at = datetime.combine(day, datetime.min.time()) + timedelta(hours=12)
    loyal = members(2, tier="loyal", created_at=at - timedelta(days=100))
    aware = members(3, created_at=at - timedelta(days=100))
    interactions([
        (loyal[0], "purchase", 100, at - timedelta(days=50)),  # earlier purchase: a repeat buyer today
        (loyal[0], "purchase", 40, at), (loyal[0], "purchase", 20, at),
        (loyal[1], "purchase", 30, at), (loyal[1], "refund", 10, at),
        (aware[0], "post", None, at), (aware[1], "purchase", 10, at - timedelta(days=1)),
    ])
    kpis.build_day(day)
    db.session.commit()
    assert _value(day, "members") == 5
    assert _value(day, "active_members") == 3
    assert _value(day, "purchases") == 3 and _value(day, "purchasers") == 2
    assert _value(day, "net_revenue") == 80 and _value(day, "refunds") == 10
    assert _value(day, "average_order_value") == pytest.approx(80 / 3)
    assert _value(day, "purchase_frequency") == pytest.approx(1.5)
    assert _value(day, "net_revenue_per_member") == pytest.approx(16)
    assert _value(day, "repurchase_rate") == pytest.approx(0.5)
    assert _value(day, "net_revenue", "tier", "loyal") == 80 and _value(day, "net_revenue", "tier", "aware") == 0
    assert _value(day, "members", "tier", "aware") == 3
    assert _value(day, "active_members_30d") == 4
    assert _value(day, "profile_completeness") == 0


def test_points_liability_carries_forward_incrementally(app):
    today = utcnow().date()
    (m,) = members(1)
    ledger.award(m, 100, key="k1", reason="x")
    db.session.commit()
    kpis.build_pending(today)
    db.session.commit()
    assert _value(today, "points_issued") == 100 and _value(today, "liability") == 100
    assert _value(today - timedelta(days=1), "liability") == 0
    ledger.award(m, 50, key="k2", reason="x")
    db.session.commit()
    assert kpis.build_pending(today)["days"] == [today.isoformat()]  # yesterday is not rebuilt
    db.session.commit()
    assert _value(today, "liability") == 150 and _value(today, "points_issued") == 150
    assert db.session.scalar(select(KpiDay.day).order_by(KpiDay.day.desc()).limit(1)) == today


def _seed(day, metric, value, numerator=None, denominator=None, dim="", dim_value=""):
    db.session.add(KpiDaily(day=day, metric=metric, dim=dim, dim_value=dim_value, value=value,
                            numerator=numerator, denominator=denominator))


def test_series_by_period_with_change_breakdown_and_csv(app, marketer):
    _, client = marketer
    for i in range(60):  # 2026-01-01 .. 2026-03-01
        d = date(2026, 1, 1) + timedelta(days=i)
        _seed(d, "purchases", 1 if d.month == 1 else 2)
        _seed(d, "average_order_value", 10.0, numerator=10 * (i + 1), denominator=i + 1)
        _seed(d, "members", i)
        _seed(d, "purchases", 3, dim="tier", dim_value="loyal")
    db.session.commit()
    body = client.get("/api/v1/analytics/kpis/purchases",
                      query_string={"start": "2026-01-01", "end": "2026-02-28", "period": "month"}).get_json()
    (line,) = body["series"]
    assert [(p["period_start"], p["value"]) for p in line["points"]] == [("2026-01-01", 31), ("2026-02-01", 56)]
    assert line["points"][1]["change"] == 25 and line["points"][1]["change_pct"] == pytest.approx(25 / 31 * 100)
    quarter = client.get("/api/v1/analytics/kpis/average_order_value",
                         query_string={"start": "2026-01-01", "end": "2026-03-31", "period": "quarter"}).get_json()
    assert quarter["series"][0]["points"][0]["value"] == pytest.approx(10.0)
    last = client.get("/api/v1/analytics/kpis/members",
                      query_string={"start": "2026-01-05", "end": "2026-01-20", "period": "week"}).get_json()
    assert [p["value"] for p in last["series"][0]["points"]] == [10, 17, 24]  # the last day of each ISO week (Sunday)
    tier = client.get("/api/v1/analytics/kpis/purchases", query_string={
        "start": "2026-01-01", "end": "2026-01-31", "period": "half_year", "breakdown": "tier"}).get_json()
    assert tier["series"] == [{"dim_value": "loyal", "points": [pytest.approx(tier["series"][0]["points"][0])]}]
    assert tier["series"][0]["points"][0]["value"] == 3 * 60
    csv = client.get("/api/v1/analytics/kpis/purchases/export.csv",
                     query_string={"start": "2026-01-01", "end": "2026-02-28", "period": "month"})
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    first = next(csv_module.reader(csv.get_data(as_text=True).splitlines()[1:2]))
    assert first[:5] == ["purchases", "", "", "2026-01-01", "2026-01-31"] and float(first[5]) == 31, first
    for query, field in (({"period": "fortnight"}, "period"), ({"breakdown": "colour"}, "breakdown"),
                         ({"end": "2025-01-01"}, "end"), ({"breakdown": "cohort"}, "breakdown")):
        args = {"start": "2026-01-01", "end": "2026-02-28", **query}
        body = err(client.get("/api/v1/analytics/kpis/purchases", query_string=args), 422)
        assert field in body["fields"], body
    err(client.get("/api/v1/analytics/kpis/happiness", query_string={"start": "2026-01-01", "end": "2026-01-02"}), 422)


def test_segment_breakdown(app, marketer):
    user, client = marketer
    a, b = members(2)
    segments.tag_members(user.id, "x", [a])
    db.session.commit()
    seg = client.post("/api/v1/analytics/segments", json={
        "name": "x", "definition": {"conditions": [{"field": "tag", "op": "has_any", "value": ["x"]}]}}).get_json()
    today = utcnow().date()
    interactions([(a, "purchase", 7, utcnow() - timedelta(minutes=1)),
                  (b, "purchase", 5, utcnow() - timedelta(minutes=1))])
    kpis.build_day(today)
    db.session.commit()
    body = client.get("/api/v1/analytics/kpis/net_revenue", query_string={
        "start": today.isoformat(), "end": today.isoformat(), "breakdown": "segment",
        "dim_value": str(seg["id"])}).get_json()
    assert body["series"][0]["points"][0]["value"] == 7


def test_reviews_are_stored_once_and_not_rewritten(app, marketer):
    _, client = marketer
    for i in range(59):
        _seed(date(2026, 1, 1) + timedelta(days=i), "purchases", 1)
    db.session.commit()
    resp = client.post("/api/v1/analytics/reviews", json={"period": "month", "start": "2026-02-10"})
    assert resp.status_code == 201, resp.get_json()
    review = resp.get_json()
    assert review["period_start"] == "2026-02-01" and review["period_end"] == "2026-02-28"
    purchases = review["data"]["metrics"]["purchases"]
    assert (purchases["value"], purchases["previous"], purchases["change"]) == (28, 31, -3)
    # A later correction of the data does not change the stored review.
    db.session.execute(KpiDaily.__table__.update().where(KpiDaily.metric == "purchases").values(value=100))
    db.session.commit()
    again = client.get(f"/api/v1/analytics/reviews/{review['id']}").get_json()
    assert again["data"]["metrics"]["purchases"]["value"] == 28
    err(client.post("/api/v1/analytics/reviews", json={"period": "month", "start": "2026-02-01"}), 409, "review_exists")
    err(client.post("/api/v1/analytics/reviews", json={"period": "week", "start": "2026-02-01"}), 422)
    listing = client.get("/api/v1/analytics/reviews?period=month").get_json()
    assert listing["meta"]["total"] == 1
    csv = client.get(f"/api/v1/analytics/reviews/{review['id']}/export.csv").get_data(as_text=True)
    row = next(r for r in csv_module.reader(csv.splitlines()) if "purchases" in r)
    assert row[:3] == ["month", "2026-02-01", "purchases"] and [float(v) for v in row[3:6]] == [28, 31, -3], row


def test_breakdowns_use_membership_as_of_the_day(app, marketer):
    """A past day rebuilt today is broken down by the tier and segments members had then."""
    from tiers.models import TierChange

    user, _ = marketer
    today = utcnow().date()
    d1, d3 = today - timedelta(days=5), today - timedelta(days=2)  # before and after the moves
    moved_at = datetime.combine(today - timedelta(days=4), datetime.min.time()) + timedelta(hours=10)
    a, b = members(2, tier="loyal", created_at=utcnow() - timedelta(days=100))
    # a was aware until moved_at (promoted); b was loyal throughout.
    db.session.add(TierChange(member_id=a, from_tier="aware", to_tier="loyal", kind="promotion", reason="test",
                              created_at=moved_at))
    segments.tag_members(user.id, "vip", [a])
    db.session.commit()
    seg = segments.create(user.id, {"name": "vips", "definition": {
        "conditions": [{"field": "tag", "op": "has_any", "value": ["vip"]}]}})
    segments.materialise(seg.id, now=moved_at - timedelta(days=3))  # first: a, from before history
    segments.untag_member(user.id, a, "vip")
    segments.tag_members(user.id, "vip", [b])
    segments.materialise(seg.id, now=moved_at)  # a leaves, b joins
    db.session.commit()
    noon = timedelta(hours=12)
    interactions([(a, "purchase", 7, datetime.combine(d1, datetime.min.time()) + noon),
                  (b, "purchase", 5, datetime.combine(d1, datetime.min.time()) + noon),
                  (a, "purchase", 11, datetime.combine(d3, datetime.min.time()) + noon),
                  (b, "purchase", 13, datetime.combine(d3, datetime.min.time()) + noon)])
    for day in (d1, d3):
        kpis.build_day(day)
    db.session.commit()
    seg_id = str(seg.id)
    assert _value(d1, "net_revenue", "tier", "aware") == 7 and _value(d1, "net_revenue", "tier", "loyal") == 5
    assert _value(d1, "members", "tier", "aware") == 1
    assert _value(d3, "net_revenue", "tier", "loyal") == 24 and _value(d3, "members", "tier", "aware") is None
    assert _value(d1, "net_revenue", "segment", seg_id) == 7 and _value(d1, "members", "segment", seg_id) == 1
    assert _value(d3, "net_revenue", "segment", seg_id) == 13 and _value(d3, "members", "segment", seg_id) == 1
    # Archiving ends every stay; the days already built keep what they said.
    segments.archive(user.id, seg.id)
    kpis.build_day(today)
    db.session.commit()
    assert _value(today, "members", "segment", seg_id) is None and _value(d1, "members", "segment", seg_id) == 1


def test_one_pass_membership_equals_a_group_by_per_breakdown(app):
    """``_membership`` (one pass over the members, rolled up in Python) gives what a GROUP BY of
    each breakdown alone gives: active accounts overall and per tier as of the day (a later tier
    change counts the tier held until then), complete profiles per tier, and every account
    (inactive ones too) per sign-up cohort; a tier with only inactive accounts is absent."""
    from datetime import date as date_

    from analytics import sql
    from tiers.models import TierChange

    end = datetime.combine(utcnow().date(), datetime.min.time())
    jan, mar = datetime(2026, 1, 15), datetime(2026, 3, 2)
    members(3, tier="loyal", created_at=jan)
    members(2, tier="loyal", created_at=mar, bio="hi", birthday=date_(1990, 5, 1))
    members(2, tier="advocate", created_at=mar, is_active_account=False)  # inactive only: no advocate row
    members(1, tier="aware", created_at=end + timedelta(hours=1))  # after the day: not counted
    promoted = members(1, tier="engaged", created_at=jan, bio="x", birthday=date_(1991, 1, 1))[0]
    db.session.add(TierChange(member_id=promoted, from_tier="aware", to_tier="engaged", kind="promotion",
                              reason="t", created_at=end + timedelta(hours=2)))  # after the day: aware then
    db.session.commit()
    got = kpis._membership(end)
    cohort = sql.year_month("u.created_at")
    where = "u.is_active_account = :t AND u.created_at < :end"
    by_tier = {str(k): n for k, n in sql.run(
        f"SELECT {kpis.TIER_EXPR}, COUNT(*) FROM users u {kpis._TIER_AS_OF} WHERE {where} GROUP BY 1",
        t=True, end=end).all()}
    overall = dict(sql.run(f"SELECT '', COUNT(*) FROM users u WHERE {where} GROUP BY 1", t=True, end=end).all())
    complete = {str(k): c for k, c in sql.run(
        f"SELECT {kpis.TIER_EXPR}, SUM(CASE WHEN u.birthday IS NOT NULL AND u.bio <> '' THEN 1 ELSE 0 END) "
        f"FROM users u {kpis._TIER_AS_OF} WHERE {where} GROUP BY 1", t=True, end=end).all()}
    sizes = dict(sql.run(f"SELECT {cohort}, COUNT(*) FROM users u WHERE u.created_at < :end GROUP BY 1",
                         end=end).all())
    assert got["members"] == {("", ""): overall[""], **{("tier", k): n for k, n in by_tier.items()}}
    assert got["complete"] == complete and got["sizes"] == sizes
    assert by_tier["aware"] >= 1 and "advocate" not in by_tier and "engaged" not in by_tier
    assert complete["loyal"] == 2 and sizes["2026-03"] == 4
