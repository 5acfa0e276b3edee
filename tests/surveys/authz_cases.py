"""Every surveys and focus-groups route, with who may call it (see tests/authz.py)."""

from __future__ import annotations

from tests.authz import LOGGED_IN, Case
from tests.surveys.helpers import answers, client_id, definition, make_session, make_survey

# A suspended account is read-only (#13): its writes answer 403 account_suspended.
WRITERS = LOGGED_IN - {"suspended"}

MARKETING = frozenset({"marketer", "admin"})


def _survey(ctx):
    return {"survey_id": make_survey().id}


def _draft(ctx):
    return {"survey_id": make_survey(publish=False).id}


def _answered(ctx):
    from extensions import db
    from surveys import services

    survey = make_survey()
    response, _ = services.submit_response(ctx.users["owner"], survey.id, client_id(), answers())
    db.session.commit()
    return {"survey_id": survey.id, "response_id": response.id}


def _session(ctx):
    from extensions import db
    from surveys import focus_groups

    session = make_session()
    focus_groups.sign_up(ctx.users["owner"], session.id)
    db.session.commit()
    return {"session_id": session.id}


def _answer_body(ctx, params):
    return {"client_id": client_id(), "answers": answers()}


def _new_session_body(ctx, params):
    from datetime import timedelta

    from community.models import utcnow

    start = utcnow() + timedelta(days=5)
    return {"title": "Session", "starts_at": start.isoformat() + "Z",
            "ends_at": (start + timedelta(hours=1)).isoformat() + "Z", "location": "HQ"}


S = "/api/v1/surveys/<int:survey_id>"
A = "/api/v1/admin/surveys"
F = "/api/v1/focus-groups/<int:session_id>"
FA = "/api/v1/admin/focus-groups"

CASES = [
    # Members answer surveys (suspension restricts posting, not answering).
    Case("GET", "/api/v1/surveys", LOGGED_IN),
    Case("GET", S, LOGGED_IN, setup=_survey),
    Case("GET", f"{S}/response", LOGGED_IN, setup=_answered,
         note="members without a response get 404, never 401/403"),
    Case("PUT", f"{S}/response", WRITERS, setup=_survey,
         body=lambda ctx, p: {"client_id": client_id(), "answers": {"nps": 5}}),
    Case("POST", f"{S}/response", WRITERS, setup=_survey, body=_answer_body),
    Case("DELETE", f"{S}/response", WRITERS, setup=_answered,
         note="withdraws the caller's own response; members without one get 404, never 401/403"),
    # Marketing builds surveys and reads results.
    Case("GET", A, MARKETING),
    Case("POST", A, MARKETING, body={"title": "New survey", "definition": definition()}),
    Case("GET", f"{A}/<int:survey_id>", MARKETING, setup=_survey),
    Case("PATCH", f"{A}/<int:survey_id>", MARKETING, setup=_survey, body={"description": "edited"}),
    Case("POST", f"{A}/<int:survey_id>/publish", MARKETING, setup=_draft),
    Case("POST", f"{A}/<int:survey_id>/close", MARKETING, setup=_survey),
    Case("GET", f"{A}/<int:survey_id>/results", MARKETING, setup=_answered),
    Case("GET", f"{A}/<int:survey_id>/responses", MARKETING, setup=_answered),
    Case("GET", f"{A}/<int:survey_id>/responses.csv", MARKETING, setup=_answered),
    Case("DELETE", f"{A}/<int:survey_id>/responses/<int:response_id>", MARKETING, setup=_answered,
         body={"reason": "test"}),
    # Members sign up for focus groups.
    Case("GET", "/api/v1/focus-groups", LOGGED_IN),
    Case("GET", F, LOGGED_IN, setup=_session),
    Case("GET", f"{F}/signup", LOGGED_IN, setup=_session, note="members not signed up get 404"),
    Case("POST", f"{F}/signup", WRITERS, setup=_session),
    Case("DELETE", f"{F}/signup", WRITERS, setup=_session, note="members not signed up get 404"),
    Case("GET", f"{F}/calendar.ics", LOGGED_IN, setup=_session),
    # Marketing runs them.
    Case("GET", FA, MARKETING),
    Case("POST", FA, MARKETING, body=_new_session_body),
    Case("GET", f"{FA}/<int:session_id>", MARKETING, setup=_session),
    Case("PATCH", f"{FA}/<int:session_id>", MARKETING, setup=_session, body={"capacity": 10}),
    Case("GET", f"{FA}/<int:session_id>/signups", MARKETING, setup=_session),
    Case("POST", f"{FA}/<int:session_id>/cancel", MARKETING, setup=_session, body={"reason": "venue closed"}),
    Case("POST", f"{FA}/<int:session_id>/attendance", MARKETING, setup=_session, body={"attended": []},
         note="answers 409 before the start; only 401/403 matter here"),
]
