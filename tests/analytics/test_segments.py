"""Segments: definitions are validated data, materialised by the job, queryable, and usable as
audiences (``is_member_in`` / ``members_of``); staff tag members by hand."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from analytics import scores, segments
from analytics.models import Segment, SegmentMember
from community.models import utcnow
from extensions import db
from surveys.models import FocusGroupSession, FocusGroupSignup, Survey, SurveyResponse, SurveyVersion
from tests.analytics.helpers import err, interactions, members


def _define(client, name, *conditions, match="all"):
    resp = client.post("/api/v1/analytics/segments",
                       json={"name": name, "definition": {"match": match, "conditions": list(conditions)}})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _members(segment_id) -> set[int]:
    return set(db.session.scalars(segments.members_of(segment_id)))


def _nps(member_id, score, at):
    survey = Survey(title="nps", status="published", definition={})
    db.session.add(survey)
    db.session.flush()
    version = SurveyVersion(survey_id=survey.id, number=1, definition={})
    db.session.add(version)
    db.session.flush()
    db.session.add(SurveyResponse(survey_id=survey.id, version_id=version.id, member_id=member_id, client_id="c",
                                  status="complete", nps_score=score, completed_at=at))
    db.session.commit()


def test_conditions_select_the_right_members(app, marketer):
    user, client = marketer
    now = utcnow()
    loyal = members(3, tier="loyal")
    aware = members(3, birthday=date(1990, 5, 17))
    interactions([(loyal[0], "purchase", 500, now - timedelta(days=1)),
                  (aware[0], "post", None, now - timedelta(days=2)),
                  (aware[1], "post", None, now - timedelta(days=200))])
    _nps(loyal[1], 3, now - timedelta(days=5))
    _nps(loyal[2], 10, now - timedelta(days=5))
    session = FocusGroupSession(title="fg", starts_at=now - timedelta(days=3), ends_at=now - timedelta(days=2))
    db.session.add(session)
    db.session.flush()
    db.session.add(FocusGroupSignup(session_id=session.id, member_id=aware[2], status="attended"))
    db.session.commit()
    segments.tag_members(user.id, "press", [aware[1], loyal[0]])
    db.session.commit()
    scores.recompute()
    db.session.commit()
    cases = [
        ([{"field": "tier", "op": "in", "value": ["loyal"]}], set(loyal)),
        ([{"field": "tier", "op": "not_in", "value": ["loyal", "aware"]}], set()),
        ([{"field": "birthday_month", "op": "in", "value": [5]}], set(aware)),
        ([{"field": "tag", "op": "has_any", "value": ["press"]}], {aware[1], loyal[0]}),
        ([{"field": "nps_detractor", "op": "is", "value": True}], {loyal[1]}),
        ([{"field": "nps_promoter", "op": "is", "value": True}], {loyal[2]}),
        ([{"field": "focus_group_attended", "op": "is", "value": True}], {aware[2]}),
        ([{"field": "last_activity_days", "op": "lte", "value": 30}], {loyal[0], aware[0]}),
        ([{"field": "tier", "op": "in", "value": ["loyal"]}, {"field": "tag", "op": "has_none", "value": ["press"]}],
         {loyal[1], loyal[2]}),
    ]
    for i, (conditions, expected) in enumerate(cases):
        seg = _define(client, f"s{i}", *conditions)
        assert _members(seg["id"]) - {user.id} == expected, conditions
        assert seg["member_count"] == len(_members(seg["id"]))
    either = _define(client, "either", {"field": "nps_detractor", "op": "is", "value": True},
                     {"field": "focus_group_attended", "op": "is", "value": True}, match="any")
    assert _members(either["id"]) == {loyal[1], aware[2]}
    assert segments.is_member_in(either["id"], aware[2]) and not segments.is_member_in(either["id"], loyal[0])
    high = _define(client, "healthy", {"field": "health", "op": "gte", "value": 0},
                   {"field": "value_score", "op": "lte", "value": 100})
    assert _members(high["id"]) >= set(loyal + aware)
    preview = client.post("/api/v1/analytics/segments/preview",
                          json={"definition": {"conditions": [{"field": "tier", "op": "in", "value": ["loyal"]}]}})
    assert preview.get_json() == {"members": 3}
    page = client.get(f"/api/v1/analytics/segments/{either['id']}/members?per_page=1").get_json()
    assert page["meta"]["total"] == 2 and page["items"][0]["member_id"] == min(loyal[1], aware[2])


def test_materialisation_follows_the_data(app, marketer, run_jobs):
    user, client = marketer
    a, b = members(2)
    seg = _define(client, "tagged", {"field": "tag", "op": "has_any", "value": ["x"]})
    assert _members(seg["id"]) == set()
    client.post("/api/v1/analytics/tags", json={"tag": "x", "member_ids": [a, b]})
    assert _members(seg["id"]) == set()  # materialised by the job, not on every read
    client.post("/api/v1/analytics/runs", json={"kind": "segments"})
    run_jobs()
    assert _members(seg["id"]) == {a, b}
    assert client.delete(f"/api/v1/analytics/members/{b}/tags/x").status_code == 204
    err(client.delete(f"/api/v1/analytics/members/{b}/tags/x"), 404)
    assert client.post(f"/api/v1/analytics/segments/{seg['id']}/materialise").get_json()["member_count"] == 1
    assert _members(seg["id"]) == {a}
    patched = client.patch(f"/api/v1/analytics/segments/{seg['id']}", json={
        "definition": {"conditions": [{"field": "tag", "op": "has_none", "value": ["x"]}]}})
    assert patched.status_code == 200 and b in _members(seg["id"]) and a not in _members(seg["id"])
    assert client.delete(f"/api/v1/analytics/segments/{seg['id']}").status_code == 204
    assert _members(seg["id"]) == set()
    err(client.get(f"/api/v1/analytics/segments/{seg['id']}"), 404)


@pytest.mark.parametrize("definition, field", [
    ({"conditions": []}, "definition.conditions"),
    ({}, "definition.conditions"),
    ({"conditions": [{"field": "shoe_size", "op": "in", "value": [42]}]}, "definition.conditions.0.field"),
    ({"conditions": [{"field": "tier", "op": "gte", "value": ["loyal"]}]}, "definition.conditions.0.op"),
    ({"conditions": [{"field": "tier", "op": "in", "value": ["gold"]}]}, "definition.conditions.0.value"),
    ({"conditions": [{"field": "tier", "op": "in", "value": []}]}, "definition.conditions.0.value"),
    ({"conditions": [{"field": "health", "op": "gte", "value": 101}]}, "definition.conditions.0.value"),
    ({"conditions": [{"field": "health", "op": "gte", "value": "50"}]}, "definition.conditions.0.value"),
    ({"conditions": [{"field": "birthday_month", "op": "in", "value": [13]}]}, "definition.conditions.0.value"),
    ({"conditions": [{"field": "nps_detractor", "op": "is", "value": 1}]}, "definition.conditions.0.value"),
    ({"conditions": [{"field": "tier", "op": "in", "value": ["loyal"], "extra": 1}]}, "definition.conditions.0"),
    ({"match": "some", "conditions": [{"field": "tier", "op": "in", "value": ["loyal"]}]}, "definition.match"),
    ({"conditions": [{"field": "tier", "op": "in", "value": ["loyal"]}], "limit": 5}, "definition"),
])
def test_bad_definitions_are_refused(app, marketer, definition, field):
    _, client = marketer
    body = err(client.post("/api/v1/analytics/segments", json={"name": "bad", "definition": definition}), 422)
    assert field in body["fields"], body
    err(client.post("/api/v1/analytics/segments/preview", json={"definition": definition}), 422)
    assert db.session.scalar(select(func.count()).select_from(Segment)) == 0
    assert db.session.scalar(select(func.count()).select_from(SegmentMember)) == 0


def test_names_are_unique_and_tags_need_real_members(app, marketer):
    _, client = marketer
    (m,) = members(1)
    _define(client, "one", {"field": "tier", "op": "in", "value": ["aware"]})
    err(client.post("/api/v1/analytics/segments", json={"name": "one", "definition": {
        "conditions": [{"field": "tier", "op": "in", "value": ["aware"]}]}}), 409)
    err(client.post("/api/v1/analytics/tags", json={"tag": "x", "member_ids": [m, 999999]}), 404)
    err(client.post("/api/v1/analytics/tags", json={"tag": "=cmd", "member_ids": [m]}), 422)
    assert segments.member_tags(m) == []
    assert client.post(f"/api/v1/analytics/members/{m}/tags", json={"tag": "vip"}).get_json()["tagged"] == 1
    assert client.post(f"/api/v1/analytics/members/{m}/tags", json={"tag": "vip"}).get_json()["tagged"] == 0


def test_a_segment_as_a_survey_audience(app, marketer, make_member, login):
    from tests.surveys.helpers import make_survey

    user, client = marketer
    inside, outside = make_member(), make_member()
    segments.tag_members(user.id, "panel", [inside.id])
    db.session.commit()
    seg = _define(client, "panel", {"field": "tag", "op": "has_any", "value": ["panel"]})
    survey = make_survey(audience_segment_id=seg["id"])
    assert [s["id"] for s in login(inside).get("/api/v1/surveys").get_json()["items"]] == [survey.id]
    assert login(outside).get("/api/v1/surveys").get_json()["items"] == []
    assert login(outside).get(f"/api/v1/surveys/{survey.id}").status_code == 404
    err(client.post("/api/v1/admin/surveys", json={"title": "x", "audience_segment_id": 999}), 404)
