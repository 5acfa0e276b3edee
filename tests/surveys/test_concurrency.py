"""Quota and capacity under real concurrent requests (threads, each with its own session)."""

from __future__ import annotations

from sqlalchemy import func, select

from community.models import User
from errors import Conflict
from extensions import db
from points.models import Interaction
from surveys import focus_groups, services
from surveys.models import FocusGroupSession, FocusGroupSignup, Survey, SurveyResponse
from tests.conftest import in_threads
from tests.surveys.helpers import answers, client_id, make_session, make_survey


def _in_app(app, fn):
    def run(i):
        with app.app_context():
            try:
                result = fn(i)
                db.session.commit()
                return result
            except Conflict as exc:
                db.session.rollback()
                return exc.code

    return run


def test_quota_never_overshoots(app, make_member):
    survey = make_survey(max_responses=5)
    survey_id = survey.id  # threads must not touch the test's ORM objects
    ids = [make_member().id for _ in range(12)]

    def submit(i):
        _, created = services.submit_response(db.session.get(User, ids[i]), survey_id, client_id(), answers())
        return "created" if created else "replayed"

    results = in_threads(12, _in_app(app, submit))
    assert sorted(results) == ["created"] * 5 + ["survey_full"] * 7, results
    db.session.rollback()  # end the test's snapshot from before the threads ran
    assert db.session.get(Survey, survey.id).completed_count == 5
    assert db.session.scalar(select(func.count()).select_from(SurveyResponse)) == 5
    assert db.session.scalar(select(func.count()).where(Interaction.kind == "survey_completed")) == 5


def test_double_submit_of_one_member_awards_once(app, make_member):
    survey = make_survey()
    survey_id = survey.id
    member_id = make_member().id
    cid = client_id()

    def submit(_):
        _, created = services.submit_response(db.session.get(User, member_id), survey_id, cid, answers())
        return "created" if created else "replayed"

    results = in_threads(4, _in_app(app, submit))
    assert results.count("created") == 1, results
    assert all(r in ("created", "replayed", "conflict", "already_completed") for r in results), results
    db.session.rollback()  # end the test's snapshot from before the threads ran
    assert db.session.get(Survey, survey.id).completed_count == 1
    assert db.session.scalar(select(func.count()).where(Interaction.kind == "survey_completed")) == 1


def test_capacity_never_exceeded(app, make_member):
    session = make_session(capacity=3)
    session_id = session.id
    ids = [make_member().id for _ in range(10)]

    def sign_up(i):
        return focus_groups.sign_up(db.session.get(User, ids[i]), session_id).status

    results = in_threads(10, _in_app(app, sign_up))
    assert sorted(results) == ["confirmed"] * 3 + ["waitlisted"] * 7, results
    db.session.rollback()  # end the test's snapshot from before the threads ran
    assert db.session.get(FocusGroupSession, session.id).confirmed_count == 3


def test_concurrent_cancellations_promote_distinct_members(app, make_member):
    session = make_session(capacity=2)
    session_id = session.id
    ids = [make_member().id for _ in range(6)]
    for member_id in ids:
        focus_groups.sign_up(db.session.get(User, member_id), session_id)
        db.session.commit()

    def cancel(i):
        return focus_groups.cancel_signup(db.session.get(User, ids[i]), session_id).status

    assert in_threads(2, _in_app(app, cancel)) == ["cancelled", "cancelled"]
    db.session.rollback()  # end the test's snapshot from before the threads ran
    statuses = dict(db.session.execute(select(FocusGroupSignup.member_id, FocusGroupSignup.status)).all())
    assert [statuses[m] for m in ids] == ["cancelled", "cancelled", "confirmed", "confirmed", "waitlisted",
                                          "waitlisted"]
    assert db.session.get(FocusGroupSession, session.id).confirmed_count == 2
