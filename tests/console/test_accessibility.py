"""axe-core (shipped by axe-playwright-python) on every console page: labels, headings, contrast.

An admin holds every permission, so one session reaches every page; the data set has one of
each object so detail pages render with content.
"""

from __future__ import annotations

import pytest

from extensions import db
from tests.console.conftest import needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]


def _seed(make_member):
    from points import approvals
    from tests.console.test_browser import _awaiting_redemption, _flagged_post
    from tests.surveys.helpers import make_session, make_survey

    flag, post = _flagged_post(make_member)
    redemption = _awaiting_redemption(make_member)
    survey = make_survey()
    session = make_session()
    requester, recipient = make_member(roles=("marketer",)), make_member()
    approvals.request_award(kind="interaction", key="axe-pending", member_id=recipient.id, points=800,
                            reason="attended", requested_by_id=requester.id,
                            request={"kind": "focus_group_attended", "key": "axe-fg", "value": 800})
    db.session.commit()
    return {"post": post, "redemption": redemption, "survey": survey, "session": session}


def test_every_console_page_passes_axe(console, make_member):
    from axe_playwright_python.sync_playwright import Axe

    from tests.console.test_analytics_pages import seed_analytics

    seeded = _seed(make_member)
    admin = make_member(roles=("admin",))
    analytics = seed_analytics(admin.id)
    pages = [
        "/console/", "/console/moderation/flags", f"/console/moderation/threads/{seeded['post'].thread_id}",
        f"/console/moderation/members/{seeded['post'].author_id}/sanctions", "/console/moderation/audit",
        "/console/redemptions", f"/console/redemptions/{seeded['redemption'].id}", "/console/redemptions/stock",
        "/console/surveys", f"/console/surveys/{seeded['survey'].id}",
        f"/console/surveys/{seeded['survey'].id}/preview", f"/console/surveys/{seeded['survey'].id}/results",
        "/console/focus-groups",
        f"/console/focus-groups/{seeded['session'].id}", "/console/rules", "/console/campaigns", "/console/rewards",
        f"/console/rewards/{seeded['redemption'].reward_id}", "/console/referrals", "/console/approvals",
        "/console/tiers",
        "/console/members", f"/console/members/{admin.id}", "/console/audit", "/console/jobs",
        "/console/analytics/segments", f"/console/analytics/segments/{analytics['segment']}",
        "/console/analytics/kpis", "/console/analytics/kpis/purchases?period=week&breakdown=tier",
        "/console/analytics/reviews", f"/console/analytics/reviews/{analytics['review']}",
        "/console/analytics/experiments", f"/console/analytics/experiments/{analytics['experiment']}",
        f"/console/analytics/experiments/{analytics['draft']}", f"/console/members/{analytics['tagged']}",
    ]
    axe = Axe()
    console.goto("/console/login")
    assert axe.run(console.page).violations_count == 0
    console.login(admin)
    problems = {}
    for path in pages:
        response = console.goto(path)
        assert response.status == 200, path
        console.shot(path.strip("/").replace("/", "-") or "root")
        result = axe.run(console.page)
        if result.violations_count:
            problems[path] = result.generate_report()
    assert not problems, "\n".join(f"{p}:\n{r}" for p, r in problems.items())


def test_language_switch_and_landing_page(console, make_member):
    admin = make_member(roles=("admin",))
    console.login(admin)
    page = console.page
    page.select_option("#lang-select", "zh_CN")  # submits on change (console.js)
    page.wait_for_selector("html[lang=zh-CN]")
    assert "待办工作" in page.inner_text("main h1")
    console.shot("zh-CN-home")
    page.select_option("#lang-select", "en")
    page.wait_for_selector("html[lang=en]")
    assert "Waiting work" in page.inner_text("main h1")
    console.goto("/")
    assert "Staff console" in page.inner_text("main")
