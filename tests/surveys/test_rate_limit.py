"""The per-member rate limit on survey answer writes (partial saves and submissions; Redis)."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from sqlalchemy import func, select

from community.services import create_token
from extensions import db
from surveys.models import SurveyResponse
from tests.conftest import unused_port
from tests.surveys.helpers import answers, client_id, make_survey


@pytest.fixture
def bearer(app):
    """``bearer(user)`` -> headers with a fresh API token (works while Redis is down)."""

    def make(user) -> dict:
        _, secret = create_token(user, "test")
        db.session.commit()
        return {"Authorization": f"Bearer {secret}"}

    return make


def _put(client, survey_id, headers, body=None):
    return client.put(f"/api/v1/surveys/{survey_id}/response", headers=headers,
                      json={"client_id": client_id(), "answers": body or {"nps": 5}})


def _post(client, survey_id, headers, cid=None):
    return client.post(f"/api/v1/surveys/{survey_id}/response", headers=headers,
                       json={"client_id": cid or client_id(), "answers": answers()})


def test_answer_writes_are_rate_limited_per_member(make_app, make_member, bearer):
    limited = make_app(SURVEY_SUBMIT_RATE_LIMIT=(3, 60))
    member, other = make_member(), make_member()
    headers, other_headers = bearer(member), bearer(other)
    first, second = make_survey().id, make_survey().id
    client = limited.test_client()

    # Partial saves and submissions share one budget, across surveys.
    assert _put(client, first, headers).status_code == 200
    cid = client_id()
    assert _post(client, first, headers, cid).status_code == 201
    assert _post(client, first, headers, cid).status_code == 200  # a retry counts too
    over = _post(client, second, headers)
    assert over.status_code == 429
    body = over.get_json()["error"]
    assert set(body) == {"code", "message", "fields"}
    assert body["code"] == "too_many_requests"
    retry_after = int(over.headers["Retry-After"])
    assert 1 <= retry_after <= 60 and body["fields"] == {"retry_after": retry_after}
    assert _put(client, second, headers).status_code == 429
    db.session.rollback()
    assert db.session.scalar(select(func.count()).where(SurveyResponse.member_id == member.id)) == 1

    # Another member's budget is their own.
    assert _post(client, second, other_headers).status_code == 201
    assert _post(client, first, other_headers).status_code == 201


def test_cookie_session_is_limited_too(make_app, make_member, login):
    limited = make_app(SURVEY_SUBMIT_RATE_LIMIT=(1, 60))
    member = make_member()
    client = login(member, limited.test_client())
    survey_id = make_survey().id
    assert client.put(f"/api/v1/surveys/{survey_id}/response",
                      json={"client_id": client_id(), "answers": {}}).status_code == 200
    over = client.post(f"/api/v1/surveys/{survey_id}/response", json={"client_id": client_id(), "answers": answers()})
    assert over.status_code == 429 and over.get_json()["error"]["code"] == "too_many_requests"


def test_default_is_30_a_minute(make_app, make_member, bearer):
    """Without ``SURVEY_SUBMIT_RATE_LIMIT`` in the config: 30 answer writes a minute per member."""
    other = make_app()
    other.config.pop("SURVEY_SUBMIT_RATE_LIMIT", None)
    headers = bearer(make_member())
    survey_id = make_survey().id
    client = other.test_client()
    codes = [_put(client, survey_id, headers).status_code for _ in range(31)]
    assert Counter(codes) == {200: 30, 429: 1} and codes[-1] == 429


def test_fails_open_when_redis_is_down(make_app, make_member, bearer, caplog):
    member = make_member()
    headers = bearer(member)
    survey_id = make_survey().id
    outage = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0", SURVEY_SUBMIT_RATE_LIMIT=(1, 60))
    client = outage.test_client()
    with caplog.at_level(logging.WARNING, logger="surveys.api"):
        assert _put(client, survey_id, headers).status_code == 200
        resp = _post(client, survey_id, headers)
    assert resp.status_code == 201, resp.get_json()
    assert [r.getMessage() for r in caplog.records if r.name == "surveys.api"] == [
        f"Redis unavailable; survey answers of member {member.id} not rate-limited"
    ] * 2
