"""A member withdraws their submitted response: results, quota, points, answering again, errors,
and two concurrent withdrawals (real threads, real database)."""

from __future__ import annotations

import csv
import io

from sqlalchemy import func, select

from community.models import User
from errors import Conflict
from extensions import db
from points import ledger
from points.models import Interaction, JournalEntry
from points.services import reverse_entry
from surveys import services
from surveys.models import Survey, SurveyAnswer, SurveyResponse, SurveyWithdrawal
from tests.conftest import in_threads
from tests.points.helpers import assert_ledger_consistent
from tests.surveys.helpers import answers, client_id, error, make_survey

SURVEY_POINTS = 50  # points' default earning rule for survey_completed at tier "aware"


def submit(client, survey_id, body=None):
    resp = client.post(f"/api/v1/surveys/{survey_id}/response",
                       json={"client_id": client_id(), "answers": body or answers()})
    return resp


def withdraw(client, survey_id):
    return client.delete(f"/api/v1/surveys/{survey_id}/response")


def _count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_withdrawal_reverses_points_and_leaves_the_results(marketer, make_member, login):
    staff_user, staff = marketer
    member, other = make_member(), make_member()
    client = login(member)
    survey = make_survey(staff_user.id)
    rid = submit(client, survey.id, answers(nps=2, why_low="slow")).get_json()["id"]
    assert submit(login(other), survey.id, answers(nps=10)).status_code == 201
    assert ledger.get_balance(member.id).available == SURVEY_POINTS
    assert staff.get(f"/api/v1/admin/surveys/{survey.id}/results").get_json()["responses"] == 2

    resp = withdraw(client, survey.id)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["survey_id"] == survey.id and body["response_id"] == rid
    assert body["points_reversed"] == SURVEY_POINTS and body["withdrawn_at"] and body["completed_at"]

    # Points: back to zero, through one reversal of the completion award under the withdrawal key.
    db.session.rollback()
    assert ledger.get_balance(member.id) == ledger.Balance(0, 0, 0)
    assert ledger.get_balance(other.id).available == SURVEY_POINTS
    award = db.session.scalar(select(JournalEntry).where(JournalEntry.key == f"earn:survey_response:{rid}"))
    reversal = db.session.scalar(select(JournalEntry).where(JournalEntry.related_id == award.id))
    assert reversal.kind == "reversal" and reversal.key == f"survey:{survey.id}:response:{rid}:withdraw"
    assert reversal.actor_id == member.id
    assert_ledger_consistent()
    # The interaction stays in history (append-only; tiers keep it).
    assert _count(Interaction, Interaction.member_id == member.id, Interaction.kind == "survey_completed") == 1

    # Results, export and the staff listing no longer count it.
    assert _count(SurveyResponse, SurveyResponse.member_id == member.id) == 0
    assert _count(SurveyAnswer, SurveyAnswer.response_id == rid) == 0
    assert db.session.get(Survey, survey.id).completed_count == 1
    results = staff.get(f"/api/v1/admin/surveys/{survey.id}/results").get_json()
    assert results["responses"] == 1
    q = {item["id"]: item for item in results["questions"]}
    assert q["why_low"]["answered"] == 0
    assert q["nps"]["nps"] == {"answered": 1, "promoters": 1, "passives": 0, "detractors": 0, "score": 100.0}
    rows = list(csv.reader(io.StringIO(staff.get(f"/api/v1/admin/surveys/{survey.id}/responses.csv")
                                       .get_data(as_text=True))))
    assert [r[1] for r in rows[1:]] == [str(other.id)]
    assert staff.get(f"/api/v1/admin/surveys/{survey.id}/responses").get_json()["meta"]["total"] == 1

    # The member sees no response any more.
    assert error(client.get(f"/api/v1/surveys/{survey.id}/response"), 404)
    assert client.get(f"/api/v1/surveys/{survey.id}").get_json()["response"] is None


def test_quota_place_is_freed(make_member, login):
    first, second = login(make_member()), login(make_member())
    survey = make_survey(max_responses=1)
    assert submit(first, survey.id).status_code == 201
    assert error(submit(second, survey.id), 409)["code"] == "survey_full"
    assert withdraw(first, survey.id).status_code == 200
    assert db.session.get(Survey, survey.id).completed_count == 0
    assert submit(second, survey.id).status_code == 201
    assert error(submit(first, survey.id), 409)["code"] == "survey_full"
    db.session.rollback()
    assert db.session.get(Survey, survey.id).completed_count == 1


def test_answer_again_after_withdrawing_but_withdraw_only_once(make_member, login):
    member = make_member()
    client = login(member)
    survey = make_survey()
    old = submit(client, survey.id).get_json()["id"]
    assert withdraw(client, survey.id).status_code == 200
    assert error(withdraw(client, survey.id), 409)["code"] == "already_withdrawn"  # twice

    # Answering again: a new response (a new id) that earns again.
    again = submit(client, survey.id, answers(nps=7))
    assert again.status_code == 201, again.get_json()
    assert again.get_json()["id"] != old
    assert client.get(f"/api/v1/surveys/{survey.id}/response").get_json()["answers"]["nps"] == 7
    db.session.rollback()
    assert ledger.get_balance(member.id).available == SURVEY_POINTS
    assert db.session.get(Survey, survey.id).completed_count == 1
    assert_ledger_consistent()
    # That answer is final: one withdrawal per member and survey.
    assert error(withdraw(client, survey.id), 409)["code"] == "already_withdrawn"
    assert _count(SurveyWithdrawal) == 1
    assert _count(Interaction, Interaction.kind == "survey_completed") == 2


def test_withdrawal_errors(marketer, make_member, login):
    staff_user, staff = marketer
    member, other = make_member(), make_member()
    client, other_client = login(member), login(other)

    survey = make_survey(staff_user.id)
    assert error(withdraw(client, survey.id), 404)["message"] == "You have not answered this survey."
    client.put(f"/api/v1/surveys/{survey.id}/response", json={"client_id": client_id(), "answers": {"nps": 3}})
    assert error(withdraw(client, survey.id), 409)["code"] == "not_completed"
    assert submit(client, survey.id).status_code == 201
    # Another member cannot reach it: the route only ever addresses the caller's own response.
    assert error(withdraw(other_client, survey.id), 404)
    assert error(withdraw(client, 999), 404)
    assert error(withdraw(client, make_survey(publish=False).id), 404)
    assert error(withdraw(client, make_survey(audience_roles=["marketer"]).id), 404)

    assert staff.post(f"/api/v1/admin/surveys/{survey.id}/close").status_code == 200
    assert error(withdraw(client, survey.id), 409)["code"] == "survey_not_open"
    db.session.rollback()
    assert ledger.get_balance(member.id).available == SURVEY_POINTS
    assert _count(SurveyResponse, SurveyResponse.member_id == member.id, SurveyResponse.status == "complete") == 1
    assert _count(SurveyWithdrawal) == 0


def test_spent_points_are_owed_not_free(make_member):
    """The clawback policy (#13): what the award's lot still holds comes back, the spent part is
    owed (redemptions wait; new points repay it); the balance itself never goes negative."""
    member = make_member()
    staff = make_member(roles=("admin",))
    survey = make_survey()
    services.submit_response(member, survey.id, client_id(), answers())
    db.session.commit()
    ledger.adjust(member.id, -30, key="spend", reason="spent elsewhere", actor_id=staff.id)
    db.session.commit()
    withdrawal = services.withdraw_response(member, survey.id)
    db.session.commit()
    assert withdrawal.points_reversed == SURVEY_POINTS
    assert ledger.get_balance(member.id) == ledger.Balance(0, 0, 0, owed=30)
    assert_ledger_consistent()


def test_award_already_reversed_by_staff_is_left_alone(make_member):
    member = make_member()
    staff = make_member(roles=("admin",))
    survey = make_survey()
    response, _ = services.submit_response(member, survey.id, client_id(), answers())
    db.session.commit()
    award = db.session.scalar(select(JournalEntry).where(JournalEntry.key == f"earn:survey_response:{response.id}"))
    reverse_entry(staff.id, award.id, "goodwill mistake")
    db.session.commit()
    withdrawal = services.withdraw_response(member, survey.id)
    db.session.commit()
    assert withdrawal.points_reversed == 0
    assert _count(JournalEntry, JournalEntry.kind == "reversal") == 1
    assert db.session.get(Survey, survey.id).completed_count == 0
    assert_ledger_consistent()


def test_concurrent_withdrawals_reverse_once(app, make_member):
    member_id = make_member().id
    other_id = make_member().id
    survey = make_survey(max_responses=5)
    survey_id = survey.id
    for uid in (member_id, other_id):
        services.submit_response(db.session.get(User, uid), survey_id, client_id(), answers())
        db.session.commit()

    def run(_):
        with app.app_context():
            try:
                withdrawal = services.withdraw_response(db.session.get(User, member_id), survey_id)
                db.session.commit()
                return ("withdrawn", withdrawal.points_reversed)
            except Conflict as exc:
                db.session.rollback()
                return exc.code

    results = in_threads(2, run)
    assert sorted(results, key=str) == [("withdrawn", SURVEY_POINTS), "already_withdrawn"], results
    db.session.rollback()  # end the test's snapshot from before the threads ran
    assert _count(JournalEntry, JournalEntry.kind == "reversal") == 1
    assert _count(SurveyWithdrawal) == 1
    assert ledger.get_balance(member_id) == ledger.Balance(0, 0, 0)
    assert ledger.get_balance(other_id).available == SURVEY_POINTS
    assert db.session.get(Survey, survey_id).completed_count == 1
    assert_ledger_consistent()
