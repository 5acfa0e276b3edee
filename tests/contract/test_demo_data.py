"""The demo data tells the truth about itself (issue 12)."""

from __future__ import annotations

from surveys.demo import DEFINITION, SURVEY_DESCRIPTION

NUMBERS = {"five": 5, "six": 6, "seven": 7, "eight": 8}


def test_demo_survey_says_how_many_questions_it_has():
    count = sum(len(page["questions"]) for page in DEFINITION["pages"])
    (said,) = [n for word, n in NUMBERS.items() if f"{word} questions" in SURVEY_DESCRIPTION]
    assert said == count


def test_demo_tier_metrics_are_backed_by_the_members_own_views(app, login):
    from community.models import User
    from demo import load_demo
    from extensions import db
    from tests.conftest import FAST_HASH

    ctx = load_demo()
    load_demo()  # still idempotent
    alice = ctx["members"]["alice"]
    db.session.get(User, alice.id).password_hash = FAST_HASH  # log in with the suite's password
    db.session.commit()
    client = login(alice)
    tier = client.get("/api/v1/me/tier").get_json()
    assert tier["tier"] == "advocate", tier
    metrics = tier["metrics"]

    surveys = client.get("/api/v1/surveys", query_string={"per_page": 100}).get_json()["items"]
    assert sum(s["my_status"] == "complete" for s in surveys) == metrics["surveys_completed"] == 3
    referrals = client.get("/api/v1/me/referrals").get_json()
    assert referrals["funnel"]["converted"] == metrics["referrals_converted"] == 1
    history = client.get("/api/v1/me/points/history", query_string={"per_page": 100}).get_json()["items"]
    attended = [e for e in history if e["source_type"] == "focus_group_signup"]
    assert len(attended) == metrics["focus_groups_attended"] == 1
