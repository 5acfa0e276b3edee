"""Each role's main task end to end in Chromium, asserted on the page and in the database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from extensions import db
from tests.console.conftest import needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]


def _fresh():
    db.session.commit()  # end the test's snapshot: see what the live server committed
    db.session.expire_all()


def _flagged_post(make_member):
    from forums import services
    from forums.models import Board, Post

    author = make_member(display_name="Author <script>alert(1)</script>")
    flagger = make_member(display_name="Flagger")
    board = Board(slug="general", name="General", flag_threshold=1000)
    db.session.add(board)
    db.session.commit()
    thread = services.create_thread(author, board.id, "Bad thread", "<p>buy cheap pills now</p>")
    db.session.flush()
    post = db.session.get(Post, thread.last_post_id)
    flag = services.flag_post(flagger, post.id, "spam", "<b>obvious</b> spam")
    db.session.commit()
    return flag, post


def test_moderator_resolves_a_flag_with_the_keyboard(console, make_member):
    from forums.models import Flag, Post

    flag, post = _flagged_post(make_member)
    moderator = make_member(roles=("moderator",), display_name="Mod")
    console.login(moderator)
    assert "Open flags" in console.page.inner_text("main")
    console.shot("home")
    console.goto("/console/moderation/flags")
    page = console.page
    text = page.inner_text("main")
    assert "buy cheap pills now" in text
    assert "<b>obvious</b> spam" in text  # member-supplied text is escaped, shown literally
    console.shot("review-queue")
    page.keyboard.press("j")
    page.keyboard.press("a")
    page.wait_for_selector(".flash-success")
    assert f"Flag #{flag.id}" in console.flash()
    console.shot("after-agree")
    _fresh()
    assert db.session.get(Flag, flag.id).status == "agreed"
    assert db.session.get(Post, post.id).hidden_at is not None  # agreeing hides the post
    # On second thoughts: restore it from the resolved flags (keyboard again), then lock the thread.
    console.goto("/console/moderation/flags?status=agreed")
    page.keyboard.press("j")
    page.keyboard.press("r")
    page.wait_for_selector(".flash-success")
    _fresh()
    assert db.session.get(Post, post.id).hidden_at is None
    console.goto(f"/console/moderation/threads/{post.thread_id}")
    page.select_option("#t-action", "lock")
    page.fill("#t-reason", "cooling off")
    page.click("form.row button.primary")
    page.wait_for_selector(".flash-success")
    console.shot("thread")
    console.goto("/console/moderation/audit")
    assert "forums.flag.agree" in page.inner_text("main")
    console.shot("moderation-log")


def _awaiting_redemption(make_member):
    from points import ledger
    from rewards import services
    from rewards.models import Reward

    member = make_member(display_name="Rita")
    reward = Reward(name="Mug", kind="physical", cost=10, stock=5)
    db.session.add(reward)
    db.session.commit()
    ledger.award(member.id, 100, key=f"browser:{member.id}", reason="test")
    redemption, _ = services.request_redemption(member, reward.id, "browser-1")
    db.session.commit()
    services.process(redemption.id)
    db.session.commit()
    return redemption


def test_redemption_staff_ship_and_complete(console, make_member):
    from rewards.models import Redemption

    redemption = _awaiting_redemption(make_member)
    staff = make_member(roles=("redemption_staff",))
    console.login(staff)
    page = console.page
    console.goto("/console/redemptions")
    assert "Mug" in page.inner_text("table")
    console.shot("queue")
    page.click(f"a[href$='/console/redemptions/{redemption.id}']")
    page.click("text=Approve")
    page.wait_for_selector(".flash-success")
    assert page.inner_text("#state") == "approved"
    page.fill("#f-tracking_reference", "TRACK-123")
    # A double click ships once: the second submit is swallowed, and the server would refuse it.
    page.dblclick("text=Mark shipped")
    page.wait_for_selector(".flash-success")
    assert page.inner_text("#tracking") == "TRACK-123"
    console.shot("shipped")
    page.click("text=Complete")
    page.wait_for_selector(".flash-success")
    assert page.inner_text("#state") == "completed"
    assert [c.strip() for c in page.locator("#history tbody tr td:nth-child(3)").all_inner_texts()] == [
        "pending", "awaiting_fulfilment", "approved", "shipped", "completed"]
    console.shot("completed")
    _fresh()
    r = db.session.get(Redemption, redemption.id)
    assert (r.state, r.tracking_reference) == ("completed", "TRACK-123")
    csv = page.request.get(console.base + "/console/redemptions/shipped.csv")
    assert csv.ok and "TRACK-123" in csv.text()
    console.goto("/console/redemptions/stock")
    assert "Mug" in page.inner_text("table")
    console.shot("stock")


def _add_question(page, qid, qtype, text, *, options=(), show_if=None, values=()):
    page.select_option("#f-type", qtype)
    page.fill("#f-id", qid)
    page.fill("#f-text", text)
    page.fill("#f-options", "\n".join(options))
    if show_if:
        page.select_option("#f-show_if_question", show_if)
        page.fill("#f-show_if_values", "\n".join(values))
    page.click("#question-form button.primary")
    page.wait_for_selector(".flash-success")


def test_marketer_builds_publishes_and_reads_a_survey_with_skip_logic(console, make_member):
    from surveys import services
    from surveys.models import Survey

    marketer = make_member(roles=("marketer",))
    console.login(marketer)
    page = console.page
    console.goto("/console/surveys")
    page.fill("#f-title", "Coffee <survey>")
    page.fill("#f-description", "How was it?")
    page.click("text=Create draft")
    page.wait_for_selector(".flash-success")
    assert "Coffee <survey>" in page.inner_text("h1")
    _add_question(page, "drink", "single_choice", "Do you drink coffee?", options=["Yes", "No"])
    _add_question(page, "how", "short_text", "How do you take it?", show_if="drink", values=["Yes"])
    page.fill("#f-page-title", "Recommend")
    page.click("text=Add page")
    page.wait_for_selector(".flash-success")
    _add_question(page, "nps", "nps", "Would you recommend us?")
    assert "Shown only if drink is one of: Yes" in page.inner_text("#q-how")
    console.shot("builder")
    console.goto(page.url.split("#")[0].replace(console.base, "") + "/preview")
    assert "How do you take it?" in page.inner_text("main")
    console.shot("preview")
    page.go_back()
    page.click("text=Publish")
    page.wait_for_selector(".flash-success")
    assert page.inner_text("#survey-status") == "published"
    _fresh()
    survey = db.session.scalar(select(Survey).where(Survey.title == "Coffee <survey>"))
    assert survey.status == "published" and survey.current_version == 1
    questions = [q for p in survey.definition["pages"] for q in p["questions"]]
    assert [q["id"] for q in questions] == ["drink", "how", "nps"]
    assert questions[1]["show_if"] == {"question": "drink", "in": ["Yes"]}
    assert len(survey.definition["pages"]) == 2
    # Members answer through the services (what the member API calls).
    for n, (drink, nps) in enumerate([("Yes", 10), ("No", 3), ("Yes", 8)]):
        member = make_member(tier="loyal" if n else "aware")
        answers = {"drink": drink, "nps": nps, **({"how": "black"} if drink == "Yes" else {})}
        services.submit_response(member, survey.id, f"c{n}", answers)
    db.session.commit()
    console.goto(f"/console/surveys/{survey.id}/results")
    text = page.inner_text("main")
    assert "3 completed responses" in text
    assert "NPS 0.0: 1 promoters, 1 passives, 1 detractors" in text
    assert page.locator("figure.chart img").count() >= 3  # drink, nps groups, by tier
    console.shot("results")
    csv = page.request.get(console.base + f"/console/surveys/{survey.id}/responses.csv")
    assert csv.ok and csv.text().count("\n") == 4
    # Editing a published survey's questions makes version 2.
    console.goto(f"/console/surveys/{survey.id}?edit=how")
    page.fill("#f-text", "How do you take your coffee?")
    page.click("#question-form button.primary")
    page.wait_for_selector(".flash-success")
    assert "version 2" in console.flash()
    page.once("dialog", lambda dialog: dialog.accept())  # the button asks first (data-confirm)
    with page.expect_navigation():
        page.click("text=Close")
    assert "Survey closed." in console.flash()
    _fresh()
    assert db.session.get(Survey, survey.id).status == "closed"


def test_admin_grants_a_role_and_adjusts_points(console, make_member):
    from community.models import AuditLog, User
    from points import ledger
    from points.models import JournalEntry

    admin = make_member(roles=("admin",))
    member = make_member(display_name="Carol <i>", email="carol@example.com")
    console.login(admin)
    page = console.page
    console.goto("/console/members?q=carol")
    assert "Carol <i>" in page.inner_text("table")
    console.shot("members")
    page.click("text=Carol <i>")
    page.select_option("#grant-role", "moderator")
    page.get_by_role("button", name="Grant", exact=True).click()
    page.wait_for_selector(".flash-success")
    assert "moderator" in page.inner_text("#roles")
    page.fill("#f-delta", "50")
    page.fill("#f-reason", "goodwill")
    page.dblclick("text=Adjust points")  # nothing doubled on a double click
    page.wait_for_selector(".flash-success")
    assert "Available 50" in page.inner_text("#balance")
    assert "goodwill" in page.inner_text("#points-history")
    console.shot("member")
    _fresh()
    assert "moderator" in db.session.get(User, member.id).roles
    assert ledger.get_balance(member.id).available == 50
    assert db.session.scalar(select(JournalEntry.id).where(JournalEntry.reason == "goodwill")) is not None
    assert len(list(db.session.scalars(select(JournalEntry).where(JournalEntry.reason == "goodwill")))) == 1
    console.goto("/console/audit?action=community.role")
    assert "role" in page.inner_text("table")
    console.shot("audit")
    csv = page.request.get(console.base + "/console/audit.csv")
    assert csv.ok and "points" in csv.text()
    assert db.session.scalar(select(AuditLog.id).where(AuditLog.action.contains("role")))


def test_marketer_reads_kpis_and_an_experiment_and_tags_a_member(console, make_member):
    from analytics.segments import member_tags
    from tests.console.test_analytics_pages import seed_analytics

    marketer = make_member(roles=("marketer",), display_name="Marketer")
    seeded = seed_analytics(marketer.id)
    console.login(marketer)
    page = console.page
    page.click("nav.side >> text=KPI dashboard")
    page.wait_for_selector("#kpi-table")
    assert page.locator("figure.chart img").count() == 4
    console.shot("kpi-dashboard")
    page.select_option("#f-period", "week")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#f-period >> option[value=week][selected]", state="attached")
    page.click("#kpi-table >> text=Purchases")
    page.wait_for_selector("figure.chart img")
    page.select_option("#f-breakdown", "tier")
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("caption:text('loyal')")
    assert "Download CSV" in page.inner_text("main")
    console.shot("kpi-purchases-by-tier")
    console.goto(f"/console/analytics/experiments/{seeded['experiment']}")
    assert page.locator("section.metric figure.chart img").count() == 7
    assert "As planned" in page.inner_text("#srm")
    # Each drawn chart has loaded (a real SVG image, not a broken one).
    width = page.eval_on_selector("#metric-net_amount figure.chart img", "img => img.naturalWidth")
    assert width > 0
    console.shot("experiment-results")
    console.goto("/console/analytics/segments")
    page.fill("#f-member_id", str(seeded["members"][3]))
    page.fill("#f-tag", "early-adopter")
    page.dblclick("form[action$='/analytics/tags'] button[type=submit]")  # one tag, however often clicked
    page.wait_for_selector(".flash-success")
    assert "early-adopter" in console.flash()
    console.shot("segments-after-tag")
    _fresh()
    assert member_tags(seeded["members"][3]) == ["early-adopter"]
