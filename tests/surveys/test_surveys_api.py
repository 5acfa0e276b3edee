"""Surveys end to end through the API: building, versions, answering, points, results, export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from sqlalchemy import func, select

from community.models import utcnow
from extensions import db
from points.ledger import get_balance
from points.models import Interaction
from surveys.models import Survey, SurveyAnswer, SurveyResponse
from tests.surveys.helpers import answers, client_id, definition, error, make_survey

SURVEY_POINTS = 50  # points' default earning rule for survey_completed at tier "aware"


def submit(client, survey_id, body=None, cid=None):
    return client.post(f"/api/v1/surveys/{survey_id}/response",
                       json={"client_id": cid or client_id(), "answers": body if body is not None else answers()})


# --------------------------------------------------------------------------- building


def test_marketer_builds_and_publishes_a_survey(marketer):
    _, staff = marketer
    resp = staff.post("/api/v1/admin/surveys", json={"title": "NPS Q4", "definition": definition(),
                                                      "max_responses": 100})
    assert resp.status_code == 201, resp.get_json()
    survey = resp.get_json()
    assert survey["status"] == "draft" and survey["current_version"] == 0
    published = staff.post(f"/api/v1/admin/surveys/{survey['id']}/publish").get_json()
    assert published["status"] == "published" and published["current_version"] == 1
    assert [v["number"] for v in published["versions"]] == [1]
    assert error(staff.post(f"/api/v1/admin/surveys/{survey['id']}/publish"), 409)
    closed = staff.post(f"/api/v1/admin/surveys/{survey['id']}/close").get_json()
    assert closed["status"] == "closed"
    assert error(staff.patch(f"/api/v1/admin/surveys/{survey['id']}", json={"title": "x"}), 409)


def test_survey_input_errors(marketer):
    _, staff = marketer
    body = error(staff.post("/api/v1/admin/surveys", json={"title": "x", "is_admin": True}), 422)
    assert "is_admin" in body["fields"]
    bad_type = {"pages": [{"questions": [{"id": "q", "type": "essay", "text": "?"}]}]}
    assert error(staff.post("/api/v1/admin/surveys", json={"title": "x", "definition": bad_type}), 422)
    assert error(staff.post("/api/v1/admin/surveys", json={"title": "x", "audience_tiers": ["gold"]}), 422)
    times = {"title": "x", "opens_at": "2030-01-02T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"}
    assert "closes_at" in error(staff.post("/api/v1/admin/surveys", json=times), 422)["fields"]
    # A draft may be incomplete, but it cannot be published so.
    draft = staff.post("/api/v1/admin/surveys", json={"title": "empty"}).get_json()
    assert error(staff.post(f"/api/v1/admin/surveys/{draft['id']}/publish"), 409)["fields"] == {
        "definition": ["No questions."]
    }
    for path in ("", "/publish", "/close", "/results", "/responses", "/responses.csv"):
        method = "post" if path in ("/publish", "/close") else "get"
        assert error(getattr(staff, method)(f"/api/v1/admin/surveys/999{path}"), 404)
    assert error(staff.patch("/api/v1/admin/surveys/999", json={"title": "x"}), 404)
    assert error(staff.get("/api/v1/admin/surveys", query_string={"per_page": 0}), 422)
    assert error(staff.delete("/api/v1/admin/surveys/999/responses/1", json={"reason": "x"}), 404)
    assert error(staff.delete("/api/v1/admin/surveys/999/responses/1", json={}), 422)


def test_editing_a_published_survey_creates_a_version(marketer, make_member, login):
    staff_user, staff = marketer
    survey = make_survey(staff_user.id)
    early = login(make_member())
    assert early.put(f"/api/v1/surveys/{survey.id}/response",
                     json={"client_id": client_id(), "answers": {"nps": 3}}).status_code == 200

    new_definition = definition()
    new_definition["pages"][0]["questions"].append(
        {"id": "age", "type": "single_choice", "text": "Age band", "required": True, "options": ["<30", "30+"]}
    )
    resp = staff.patch(f"/api/v1/admin/surveys/{survey.id}", json={"definition": new_definition})
    assert resp.get_json()["current_version"] == 2
    # Re-sending the same definition freezes nothing new.
    resp = staff.patch(f"/api/v1/admin/surveys/{survey.id}", json={"definition": new_definition})
    assert [v["number"] for v in resp.get_json()["versions"]] == [1, 2]

    # The member who started on version 1 finishes on version 1 (no "age" question there).
    done = submit(early, survey.id, answers(nps=3, why_low="slow"))
    assert done.status_code == 201 and done.get_json()["version"] == 1
    assert error(submit(early, survey.id, answers(age="30+")), 409)
    # A newcomer answers version 2, where "age" is required.
    late = login(make_member())
    assert late.get(f"/api/v1/surveys/{survey.id}").get_json()["version"] == 2
    assert error(submit(late, survey.id), 422)["fields"] == {"age": ["This question is required."]}
    assert submit(late, survey.id, answers(age="<30")).get_json()["version"] == 2


def test_invalid_edit_of_published_survey_is_rejected(marketer):
    staff_user, staff = marketer
    survey = make_survey(staff_user.id)
    broken = definition()
    broken["pages"][0]["questions"][2]["options"] = ["one"]
    body = error(staff.patch(f"/api/v1/admin/surveys/{survey.id}", json={"definition": broken}), 422)
    assert body["fields"] == {"channel": ["A choice question needs at least two options."]}
    assert db.session.get(Survey, survey.id).current_version == 1


# --------------------------------------------------------------------------- answering


def test_submit_awards_points_once_and_retry_is_harmless(make_member, login):
    member = make_member()
    client = login(member)
    survey = make_survey()
    cid = client_id()
    first = submit(client, survey.id, cid=cid)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["status"] == "complete"
    retry = submit(client, survey.id, cid=cid)
    assert retry.status_code == 200 and retry.get_json()["id"] == first.get_json()["id"]
    assert error(submit(client, survey.id, cid=client_id()), 409)["code"] == "already_completed"
    assert get_balance(member.id).available == SURVEY_POINTS
    interaction = db.session.scalar(select(Interaction).where(Interaction.member_id == member.id))
    assert interaction.key == f"survey_response:{first.get_json()['id']}"
    assert interaction.kind == "survey_completed" and int(interaction.value) == 9
    assert db.session.get(Survey, survey.id).completed_count == 1


def test_partial_response_is_saved_and_resumed_without_points(make_member, login):
    member = make_member()
    client = login(member)
    survey = make_survey()
    cid = client_id()
    saved = client.put(f"/api/v1/surveys/{survey.id}/response", json={"client_id": cid, "answers": {"nps": 4}})
    assert saved.status_code == 200 and saved.get_json()["status"] == "partial"
    again = client.put(f"/api/v1/surveys/{survey.id}/response",
                       json={"client_id": cid, "answers": {"nps": 4, "channel": "shop"}})
    assert again.get_json()["id"] == saved.get_json()["id"]
    resumed = client.get(f"/api/v1/surveys/{survey.id}").get_json()
    assert resumed["response"]["answers"] == {"nps": 4, "channel": "shop"}
    assert client.get("/api/v1/surveys").get_json()["items"][0]["my_status"] == "partial"
    assert get_balance(member.id).available == 0
    assert db.session.scalar(select(func.count()).select_from(SurveyAnswer)) == 0
    # A partial save still rejects malformed answers.
    bad = client.put(f"/api/v1/surveys/{survey.id}/response", json={"client_id": cid, "answers": {"nps": 12}})
    assert error(bad, 422)["fields"] == {"nps": ["Give a whole number from 0 to 10."]}

    done = submit(client, survey.id, answers(nps=4, why_low="queues"), cid=cid)
    assert done.status_code == 201 and done.get_json()["id"] == saved.get_json()["id"]
    assert get_balance(member.id).available == SURVEY_POINTS
    assert error(client.put(f"/api/v1/surveys/{survey.id}/response",
                            json={"client_id": cid, "answers": {}}), 409)["code"] == "already_completed"


def test_tampered_submission_gets_per_question_messages(make_member, login):
    client = login(make_member())
    survey = make_survey()
    body = error(submit(client, survey.id, answers(nps=10, why_low="x", channel="fax", rating=None, bogus=1)), 422)
    assert body["fields"] == {"channel": ["Choose one of the options."], "bogus": ["This survey has no such question."]}
    body = error(submit(client, survey.id, answers(nps=10, why_low="x", rating=None)), 422)
    assert body["fields"] == {
        "why_low": ["This question was not shown for your earlier answers; leave it unanswered."],
        "rating": ["This question is required."],
    }
    assert error(client.post(f"/api/v1/surveys/{survey.id}/response", json={"answers": {}}), 422)["fields"] == {
        "client_id": ["Missing data for required field."]
    }
    assert error(client.post(f"/api/v1/surveys/{survey.id}/response", json={"client_id": "x" * 8,
                                                                          "answers": []}), 422)
    assert db.session.scalar(select(func.count()).select_from(SurveyResponse)) == 0


def test_audience_window_and_quota(make_member, login):
    loyal = login(make_member(tier="loyal"))
    aware = login(make_member(tier="aware"))
    targeted = make_survey(audience_tiers=["loyal", "advocate"])
    assert [s["id"] for s in loyal.get("/api/v1/surveys").get_json()["items"]] == [targeted.id]
    assert aware.get("/api/v1/surveys").get_json()["items"] == []
    assert error(aware.get(f"/api/v1/surveys/{targeted.id}"), 404)
    assert error(submit(aware, targeted.id), 404)

    staff_only = make_survey(audience_roles=["marketer"])
    assert error(loyal.get(f"/api/v1/surveys/{staff_only.id}"), 404)

    later = make_survey(opens_at=utcnow() + timedelta(days=1))
    assert error(submit(loyal, later.id), 409)["code"] == "survey_not_open"
    draft = make_survey(publish=False)
    assert error(loyal.get(f"/api/v1/surveys/{draft.id}"), 404)
    assert error(loyal.get("/api/v1/surveys/999"), 404)
    assert error(loyal.get(f"/api/v1/surveys/{targeted.id}/response"), 404)

    quota = make_survey(max_responses=1)
    assert submit(loyal, quota.id).status_code == 201
    assert error(submit(aware, quota.id), 409)["code"] == "survey_full"
    assert db.session.get(Survey, quota.id).completed_count == 1


def test_deleting_a_response_reverses_points_and_frees_quota(marketer, make_member, login):
    staff_user, staff = marketer
    member = make_member()
    client = login(member)
    survey = make_survey(staff_user.id, max_responses=1)
    rid = submit(client, survey.id).get_json()["id"]
    assert get_balance(member.id).available == SURVEY_POINTS
    resp = staff.delete(f"/api/v1/admin/surveys/{survey.id}/responses/{rid}", json={"reason": "duplicate account"})
    assert resp.status_code == 204
    assert get_balance(member.id).available == 0
    assert db.session.get(Survey, survey.id).completed_count == 0
    assert db.session.scalar(select(func.count()).select_from(SurveyAnswer)) == 0
    assert error(staff.delete(f"/api/v1/admin/surveys/{survey.id}/responses/{rid}", json={"reason": "x"}), 404)
    # The member may answer again, and earns again for the new response.
    assert submit(client, survey.id).status_code == 201
    assert get_balance(member.id).available == SURVEY_POINTS


# --------------------------------------------------------------------------- results and export


def test_results_counts_percentages_averages_nps_and_tiers(marketer, make_member, login):
    staff_user, staff = marketer
    survey = make_survey(staff_user.id)
    given = [
        ("aware", answers(nps=10, rating=5, features=["points"])),
        ("aware", answers(nps=9, rating=4, channel="shop", grid={"fast": "disagree", "friendly": "agree"})),
        ("loyal", answers(nps=7, rating=3, features=None)),
        ("loyal", answers(nps=2, why_low="slow", rating=1, features=["points", "rewards"])),
    ]
    for tier, body in given:
        assert submit(login(make_member(tier=tier)), survey.id, body).status_code == 201
    # A partial response is not counted anywhere.
    login(make_member()).put(f"/api/v1/surveys/{survey.id}/response",
                             json={"client_id": client_id(), "answers": {"nps": 0}})

    results = staff.get(f"/api/v1/admin/surveys/{survey.id}/results").get_json()
    assert results["responses"] == 4
    q = {item["id"]: item for item in results["questions"]}
    assert q["nps"]["nps"] == {"answered": 4, "promoters": 2, "passives": 1, "detractors": 1, "score": 25.0}
    assert q["nps"]["average"] == 7.0
    assert q["why_low"]["answered"] == 1
    assert q["rating"]["average"] == 3.25
    assert {o["value"]: o["count"] for o in q["rating"]["options"]} == {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1}
    channel = {o["value"]: (o["count"], o["percent"]) for o in q["channel"]["options"]}
    assert channel == {"shop": (1, 25.0), "web": (3, 75.0), "phone": (0, 0.0)}
    # Multiple choice: percentages of the 3 members who answered it.
    assert q["features"]["answered"] == 3
    features = {o["value"]: (o["count"], o["percent"]) for o in q["features"]["options"]}
    assert features == {"points": (3, 100.0), "forums": (1, 33.3), "rewards": (1, 33.3)}
    fast = q["grid"]["rows"][0]
    assert fast["row"] == "fast" and fast["answered"] == 4 and fast["average"] == 2.5  # 3,1,3,3
    tiers = {t["tier"]: t for t in results["tiers"]}
    assert tiers["aware"]["responses"] == 2 and tiers["aware"]["nps"]["score"] == 100.0
    assert tiers["loyal"]["nps"]["score"] == -50.0 and tiers["loyal"]["averages"]["rating"] == 2.0
    assert tiers["advocate"]["responses"] == 0 and tiers["advocate"]["nps"]["score"] is None


def test_nps_excludes_skipped_answers(make_member, login, marketer):
    _, staff = marketer
    optional = definition()
    optional["pages"][0]["questions"][0]["required"] = False
    optional["pages"][0]["questions"].pop(1)  # the follow-up depends on the score
    survey = make_survey(definition=optional)
    submit(login(make_member()), survey.id, answers(nps=None))
    submit(login(make_member()), survey.id, answers(nps=10))
    q = {i["id"]: i for i in staff.get(f"/api/v1/admin/surveys/{survey.id}/results").get_json()["questions"]}
    assert q["nps"]["nps"] == {"answered": 1, "promoters": 1, "passives": 0, "detractors": 0, "score": 100.0}


def test_csv_export_streams_one_row_per_completed_response(marketer, make_member, login):
    staff_user, staff = marketer
    survey = make_survey(staff_user.id)
    member = make_member(tier="engaged")
    submit(login(member), survey.id, answers(nick="=cmd()"))
    resp = staff.get(f"/api/v1/admin/surveys/{survey.id}/responses.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert rows[0][:5] == ["response_id", "member_id", "tier", "version", "completed_at"]
    assert "grid: fast" in rows[0] and "features" in rows[0]
    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["member_id"] == str(member.id) and record["tier"] == "engaged"
    assert record["features"] == "points; forums" and record["grid: friendly"] == "neutral"
    assert record["nick"] == "'=cmd()"  # formula injection neutralised
    assert len(rows) == 2

    listing = staff.get(f"/api/v1/admin/surveys/{survey.id}/responses", query_string={"status": "complete"})
    assert listing.get_json()["meta"]["total"] == 1
    assert error(staff.get(f"/api/v1/admin/surveys/{survey.id}/responses", query_string={"status": "x"}), 422)
