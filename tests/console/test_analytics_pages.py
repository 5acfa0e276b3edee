"""The analytics pages of the console: segments with members and hand tagging, the KPI dashboard
and a KPI's time series (period selector, breakdown, period-over-period change, CSV link), stored
reviews, experiment results with their intervals drawn, the SRM check and ROI; the member page's
segments.  The numbers shown are the analytics services' own (compared with the API)."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from extensions import db


def _form(client, url, data, **kw):
    return client.post(url, data={"csrf_token": client.csrf_token, **data}, **kw)


def seed_analytics(admin_id: int) -> dict:
    """A small programme: 40 members with purchases before and after an experiment's start, daily
    KPI rows for 120 days (total and by tier), a segment, a tag, a started experiment and a review."""
    from analytics import experiments, segments, services
    from analytics.models import KpiDaily
    from community.models import utcnow
    from tests.analytics.helpers import interactions, members

    now = utcnow()
    ids = members(20, tier="aware") + members(20, tier="loyal")
    today = now.date()
    for i in range(120):
        day = today - timedelta(days=i + 1)
        for metric, value in (("purchases", 3 + i % 5), ("members", 40), ("net_revenue", 30.0 + i),
                              ("points_issued", 100 + i), ("active_members", 10)):
            db.session.add(KpiDaily(day=day, metric=metric, dim="", dim_value="", value=value))
        for tier, value in (("aware", 1), ("loyal", 2 + i % 3)):
            db.session.add(KpiDaily(day=day, metric="purchases", dim="tier", dim_value=tier, value=value))
    db.session.commit()
    seg = segments.create(admin_id, {"name": "Loyal <b>members</b>", "description": "Everyone loyal",
                                     "definition": {"conditions": [{"field": "tier", "op": "in",
                                                                    "value": ["loyal"]}]}})
    segments.materialise(seg.id)
    segments.tag_members(admin_id, "vip", [ids[-1]])
    exp = experiments.create(admin_id, {"name": "Touch test", "kind": "touch", "test_share": 0.5,
                                        "starts_at": now - timedelta(days=20), "ends_at": now + timedelta(days=1),
                                        "pre_days": 30, "salt": "console"})
    experiments.start(admin_id, exp.id)
    draft = experiments.create(admin_id, {"name": "Draft test", "kind": "touch", "test_share": 0.5,
                                          "starts_at": now + timedelta(days=20)})
    db.session.commit()
    rows = []
    for n, m in enumerate(ids):
        rows.append((m, "purchase", 10 + n % 7, now - timedelta(days=25)))
        rows.append((m, "purchase", 12 + n % 5, now - timedelta(days=5)))
    interactions(rows)
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    review = services.create_review(admin_id, "month", last_month)
    db.session.commit()
    return {"members": ids, "segment": seg.id, "experiment": exp.id, "draft": draft.id, "review": review.id,
            "tagged": ids[-1]}


@pytest.fixture
def seeded(make_member, login):
    admin = make_member(roles=("admin",))
    client = login(admin)
    data = seed_analytics(admin.id)
    data["client"], data["admin"] = client, admin
    return data


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_segments_list_and_page_show_counts_definition_and_members_escaped(seeded):
    client = seeded["client"]
    html = client.get("/console/analytics/segments").get_data(as_text=True)
    assert "Loyal &lt;b&gt;members&lt;/b&gt;" in html and "<b>members</b>" not in html
    assert re.search(r"<td>20</td>", html)  # member count
    assert "<td>vip</td>" in html  # tags in use, with their member count
    page = client.get(f"/console/analytics/segments/{seeded['segment']}").get_data(as_text=True)
    assert '<dd id="member-count">20</dd>' in page
    assert "<td>tier</td>" in page and "<td>in</td>" in page and "<td>loyal</td>" in page
    assert page.count("/console/members/") >= 20  # admins get links to the member page
    small = client.get(f"/console/analytics/segments/{seeded['segment']}?per_page=5&page=2").get_data(as_text=True)
    assert "Page 2 of 4" in small and small.count("/console/members/") == 5


def test_staff_tag_and_untag_a_member_by_hand(seeded):
    from analytics.segments import member_tags

    client, member = seeded["client"], seeded["members"][0]
    resp = _form(client, "/console/analytics/tags", {"member_id": str(member), "tag": "champion"},
                 follow_redirects=True)
    assert "tagged “champion”" in resp.get_data(as_text=True)
    assert member_tags(member) == ["champion"]
    bad = _form(client, "/console/analytics/tags", {"member_id": str(member), "tag": ""}, follow_redirects=True)
    assert "The form has errors." in bad.get_data(as_text=True)
    page = client.get(f"/console/members/{member}").get_data(as_text=True)
    assert 'id="member-tags"' in page and "champion" in page
    resp = _form(client, f"/console/analytics/members/{member}/tags/champion/remove", {}, follow_redirects=True)
    assert resp.status_code == 200 and member_tags(member) == []


def test_member_page_shows_the_members_segments(seeded):
    html = seeded["client"].get(f"/console/members/{seeded['tagged']}").get_data(as_text=True)
    section = html.split('id="member-segments"')[1]
    assert "Loyal &lt;b&gt;members&lt;/b&gt;" in section and "vip" in html


def test_a_segment_saved_from_the_form_is_materialised_and_a_bad_definition_is_flashed(seeded):
    client = seeded["client"]
    resp = _form(client, "/console/analytics/segments", {
        "name": "Aware", "definition": '{"conditions": [{"field": "tier", "op": "in", "value": ["aware"]}]}'},
        follow_redirects=True)
    assert "saved: 21 members" in resp.get_data(as_text=True)  # the 20 synthetic ones and the admin
    for definition in ("{not json", '{"conditions": [{"field": "colour", "op": "in", "value": ["x"]}]}'):
        resp = _form(client, "/console/analytics/segments", {"name": "Bad", "definition": definition},
                     follow_redirects=True)
        assert resp.status_code == 200 and "flash-error" in resp.get_data(as_text=True)


def test_kpi_dashboard_and_series_match_the_api_with_change_breakdown_and_csv(seeded):
    client = seeded["client"]
    html = client.get("/console/analytics/kpis?period=month").get_data(as_text=True)
    assert html.count('<figure class="chart">') == 4  # the headline KPIs, each with its numbers
    assert 'id="kpi-table"' in html and "Net revenue" in html
    end = date.today() - timedelta(days=1)
    start = end - timedelta(days=80)
    args = {"period": "week", "start": start.isoformat(), "end": end.isoformat()}
    page = client.get("/console/analytics/kpis/purchases", query_string=args).get_data(as_text=True)
    api = client.get("/api/v1/analytics/kpis/purchases", query_string=args).get_json()
    points = api["series"][0]["points"]
    last = points[-1]
    assert f"<td>{last['period_start']}</td>" in page
    assert page.count('<figure class="chart">') == 1 and "data:image/svg+xml;base64," in page
    change = f"{last['change_pct']:+.1f} %"
    assert change in page  # period-over-period change as the service computes it
    assert '<option value="week" selected>' in page
    csv = re.search(r'href="(/api/v1/analytics/kpis/purchases/export.csv\?[^"]+)"', page).group(1)
    resp = client.get(csv.replace("&amp;", "&"))
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    by_tier = client.get("/console/analytics/kpis/purchases", query_string={**args, "breakdown": "tier"})
    text = by_tier.get_data(as_text=True)
    assert "<caption>aware</caption>" in text and "<caption>loyal</caption>" in text
    for period in ("day", "month", "quarter", "half_year"):
        assert client.get("/console/analytics/kpis/net_revenue", query_string={"period": period}).status_code == 200
    assert client.get("/console/analytics/kpis/happiness").status_code == 422


def test_reviews_list_page_and_store_once(seeded):
    client = seeded["client"]
    html = client.get("/console/analytics/reviews").get_data(as_text=True)
    assert f"/console/analytics/reviews/{seeded['review']}" in html
    page = client.get(f"/console/analytics/reviews/{seeded['review']}").get_data(as_text=True)
    assert 'id="review-metrics"' in page and 'id="review-tiers"' in page
    assert f"/api/v1/analytics/reviews/{seeded['review']}/export.csv" in page
    start = (date.today().replace(day=1) - timedelta(days=1)).replace(day=1)
    again = _form(client, "/console/analytics/reviews", {"period": "month", "start": start.isoformat()},
                  follow_redirects=True)
    assert "already stored" in again.get_data(as_text=True)
    older = (start - timedelta(days=1)).replace(day=1)
    resp = _form(client, "/console/analytics/reviews", {"period": "month", "start": older.isoformat()})
    assert resp.status_code == 303 and "/console/analytics/reviews/" in resp.headers["Location"]


def test_experiment_results_draw_intervals_with_numbers_srm_and_roi(seeded):
    from analytics import experiments

    client = seeded["client"]
    listing = client.get("/console/analytics/experiments").get_data(as_text=True)
    assert "Touch test" in listing and "Draft test" in listing
    html = client.get(f"/console/analytics/experiments/{seeded['experiment']}").get_data(as_text=True)
    result = experiments.results(seeded["experiment"])
    assert html.count('<figure class="chart">') == len(result["metrics"]) == 7
    assert 'id="srm"' in html and 'id="roi"' in html and "As planned" in html
    amount = result["metrics"]["net_amount"]["cuped"]
    section = html.split('id="metric-net_amount"')[1].split("</section>")[0]
    assert str(round(amount["ci_low"], 4)) in section and str(round(amount["ci_high"], 4)) in section
    # The drawn chart is an SVG image with the estimate and its interval (no inline script).
    assert "data:image/svg+xml;base64," in section
    draft = client.get(f"/console/analytics/experiments/{seeded['draft']}").get_data(as_text=True)
    assert "has not started" in draft
    resp = _form(client, f"/console/analytics/experiments/{seeded['draft']}/start", {}, follow_redirects=True)
    assert resp.status_code == 200 and "flash" in resp.get_data(as_text=True)


def test_marketers_read_and_manage_moderators_are_refused(make_member, login, seeded):
    marketer = login(make_member(roles=("marketer",)))
    html = marketer.get(f"/console/analytics/segments/{seeded['segment']}").get_data(as_text=True)
    assert "/console/members/" not in html  # marketers have no member page: no links to it
    assert marketer.get("/console/").get_data(as_text=True).count("/console/analytics/") == 4
    moderator = login(make_member(roles=("moderator",)))
    assert moderator.get("/console/analytics/kpis").status_code == 403
    assert "/console/analytics/" not in moderator.get("/console/").get_data(as_text=True)
    resp = moderator.get("/console/analytics/segments")
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert db.session.scalar(select(1)) == 1
