"""HTTP API of the surveys domain: surveys and focus groups, for members and for marketing.

Members: ``/api/v1/surveys`` and ``/api/v1/focus-groups``.  Marketing (role marketer, and
admins): ``/api/v1/admin/surveys`` and ``/api/v1/admin/focus-groups``.
"""

from __future__ import annotations

import logging

from flask import Response
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

import ratelimit
from community.permissions import login_required, require
from contract.openapi import error_responses
from csv_export import csv_response
from errors import Conflict, NotFound, ValidationError
from extensions import db
from pagination import PageArgs, all_items, page_of, page_schema, paginate
from security.http import public_host

from . import focus_groups as fg
from . import services
from .models import FocusGroupSession, Survey, SurveyResponse
from .permissions import MANAGE_FOCUS_GROUPS, MANAGE_SURVEYS
from .schemas import (
    AnswersIn,
    AttendanceIn,
    FocusSessionIn,
    FocusSessionOut,
    FocusSessionPatchIn,
    FocusSessionStaffOut,
    ReasonIn,
    ResponseFilterArgs,
    ResponseOut,
    ResponseStaffOut,
    ResultsOut,
    SignupOut,
    SignupStaffOut,
    SurveyIn,
    SurveyMemberOut,
    SurveyPatchIn,
    SurveyStaffOut,
    SurveySummaryOut,
    WithdrawalOut,
)

surveys_blp = Blueprint("surveys", __name__, url_prefix="/api/v1/surveys", description="Answering surveys")
admin_surveys_blp = Blueprint(
    "admin_surveys", __name__, url_prefix="/api/v1/admin/surveys", description="Marketing: surveys and results"
)
focus_blp = Blueprint("focus_groups", __name__, url_prefix="/api/v1/focus-groups", description="Focus-group sign-up")
admin_focus_blp = Blueprint(
    "admin_focus_groups", __name__, url_prefix="/api/v1/admin/focus-groups", description="Marketing: focus groups"
)
blueprints = [surveys_blp, admin_surveys_blp, focus_blp, admin_focus_blp]

# Answer writes (partial saves and submissions) per member and window (seconds); over it: 429.
DEFAULT_SURVEY_SUBMIT_RATE_LIMIT = (30, 60)

log = logging.getLogger(__name__)


def _limit_answer_writes(member_id: int) -> None:
    """Count one answer write of the member (a partial save or a submission, on any survey):
    429 once over ``SURVEY_SUBMIT_RATE_LIMIT``.

    Fails open: with Redis unreachable the request goes on (unlimited for that while), because
    answering needs only the database.
    """
    ratelimit.hit_or_pass(f"surveys:answers:member:{member_id}", "SURVEY_SUBMIT_RATE_LIMIT",
                          DEFAULT_SURVEY_SUBMIT_RATE_LIMIT, "Too many survey answers; slow down.", logger=log,
                          what=f"survey answers of member {member_id}")


# --------------------------------------------------------------------------- members: surveys


@surveys_blp.route("")
class OpenSurveys(MethodView):
    @login_required
    @surveys_blp.arguments(PageArgs, location="query")
    @surveys_blp.response(200, page_schema(SurveySummaryOut, "SurveySummaryPage"))
    def get(self, args):
        """Surveys open now for the logged-in member, with how far they got."""
        return page_of([
            {"id": s.id, "title": s.title, "description": s.description, "closes_at": s.closes_at,
             "my_status": r.status if r else None}
            for s, r in services.open_surveys_for(current_user)
        ], args["page"], args["per_page"])


@surveys_blp.route("/<int:survey_id>")
class MemberSurvey(MethodView):
    @login_required
    @surveys_blp.response(200, SurveyMemberOut)
    def get(self, survey_id):
        """A survey's questions (the version the member answers) and the member's saved answers."""
        survey, version, response = services.survey_for_member(current_user, survey_id)
        return {
            "id": survey.id, "title": survey.title, "description": survey.description,
            "version": version.number, "definition": version.definition, "open": services.is_open(survey),
            "closes_at": survey.closes_at, "response": response,
        }


@surveys_blp.route("/<int:survey_id>/response")
class MyResponse(MethodView):
    @login_required
    @surveys_blp.response(200, ResponseOut)
    def get(self, survey_id):
        """The member's response (partial or complete), to resume or review it."""
        services.survey_for_member(current_user, survey_id)
        response = services.my_response(current_user, survey_id)
        if response is None:
            raise NotFound("You have not started this survey.")
        return response

    @login_required
    @surveys_blp.arguments(AnswersIn)
    @surveys_blp.response(200, ResponseOut)
    @error_responses(409, 429)
    def put(self, data, survey_id):
        """Save a partial response (answers so far); no points until it is submitted.
        Answer writes per member are rate-limited (429 with ``Retry-After``)."""
        _limit_answer_writes(current_user.id)
        response = services.save_partial(current_user, survey_id, data["client_id"], data["answers"])
        db.session.commit()
        return response

    @login_required
    @surveys_blp.arguments(AnswersIn)
    @surveys_blp.response(201, ResponseOut)
    @error_responses(409, 429)
    def post(self, data, survey_id):
        """Submit the response.  Retrying with the same ``client_id`` answers 200 with the stored
        response; incomplete or tampered answers get 422 with a message per question.
        Answer writes per member are rate-limited (429 with ``Retry-After``; retries count too)."""
        _limit_answer_writes(current_user.id)
        response, created = services.submit_response(current_user, survey_id, data["client_id"], data["answers"])
        db.session.commit()
        return response, 201 if created else 200

    @login_required
    @surveys_blp.response(200, WithdrawalOut)
    @error_responses(409)
    def delete(self, survey_id):
        """Withdraw the member's submitted response while the survey is open: it no longer counts
        in results, its quota place is freed and its completion points are reversed; the member
        may answer again.  Once per survey (409 ``already_withdrawn``); a closed survey: 409
        ``survey_not_open``; nothing submitted: 404 (a partial response: 409 ``not_completed``)."""
        withdrawal = services.withdraw_response(current_user, survey_id)
        db.session.commit()
        return withdrawal


# --------------------------------------------------------------------------- marketing: surveys


@admin_surveys_blp.route("")
class AdminSurveys(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.arguments(PageArgs, location="query")
    @admin_surveys_blp.response(200, page_schema(SurveyStaffOut, "SurveyStaffPage"))
    def get(self, args):
        """Every survey, newest first."""
        return paginate(select(Survey).order_by(Survey.id.desc()), args["page"], args["per_page"])

    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.arguments(SurveyIn)
    @admin_surveys_blp.response(201, SurveyStaffOut)
    @error_responses(404)
    def post(self, data):
        """Create a draft survey."""
        survey = services.create_survey(current_user.id, data)
        db.session.commit()
        return survey


@admin_surveys_blp.route("/<int:survey_id>")
class AdminSurvey(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.response(200, SurveyStaffOut)
    def get(self, survey_id):
        """A survey with its working definition and its versions."""
        return services.get_survey(survey_id)

    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.arguments(SurveyPatchIn)
    @admin_surveys_blp.response(200, SurveyStaffOut)
    @error_responses(409)
    def patch(self, data, survey_id):
        """Edit a survey; new questions on a published survey become a new version."""
        survey = services.update_survey(current_user.id, survey_id, data)
        db.session.commit()
        return survey


@admin_surveys_blp.route("/<int:survey_id>/publish")
class PublishSurvey(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.response(200, SurveyStaffOut)
    @error_responses(409)
    def post(self, survey_id):
        """Publish a draft: its questions are frozen as a version.

        A draft whose stored definition is incomplete cannot be published: 409
        ``incomplete_definition`` (the request itself has no body to fault), ``fields`` says why."""
        try:
            survey = services.publish_survey(current_user.id, survey_id)
        except ValidationError as exc:
            raise Conflict(exc.message, fields=exc.fields, code="incomplete_definition") from exc
        db.session.commit()
        return survey


@admin_surveys_blp.route("/<int:survey_id>/close")
class CloseSurvey(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.response(200, SurveyStaffOut)
    @error_responses(409)
    def post(self, survey_id):
        """Close a published survey to further responses."""
        survey = services.close_survey(current_user.id, survey_id)
        db.session.commit()
        return survey


@admin_surveys_blp.route("/<int:survey_id>/results")
class SurveyResults(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.response(200, ResultsOut)
    def get(self, survey_id):
        """Counts, percentages, averages, NPS and a breakdown by tier of completed responses."""
        return services.compute_results(survey_id)


@admin_surveys_blp.route("/<int:survey_id>/responses")
class SurveyResponses(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.arguments(ResponseFilterArgs, location="query")
    @admin_surveys_blp.response(200, page_schema(ResponseStaffOut, "SurveyResponsePage"))
    def get(self, args, survey_id):
        """Responses of a survey, oldest first, optionally only partial or complete ones."""
        services.get_survey(survey_id)
        query = select(SurveyResponse).where(SurveyResponse.survey_id == survey_id).order_by(SurveyResponse.id)
        if args.get("status"):
            query = query.where(SurveyResponse.status == args["status"])
        return paginate(query, args["page"], args["per_page"])


@admin_surveys_blp.route("/<int:survey_id>/responses.csv")
class SurveyExport(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.response(200, content_type="text/csv")
    def get(self, survey_id):
        """Completed responses as CSV (one column per question, per row for a matrix), streamed."""
        header, columns = services.export_columns(survey_id)
        return csv_response(f"survey-{survey_id}.csv", header, services.export_rows(survey_id, columns))


@admin_surveys_blp.route("/<int:survey_id>/responses/<int:response_id>")
class SurveyResponseItem(MethodView):
    @require(MANAGE_SURVEYS)
    @admin_surveys_blp.arguments(ReasonIn)
    @admin_surveys_blp.response(204)
    @error_responses(409)
    def delete(self, data, survey_id, response_id):
        """Delete a response: its quota place is freed and its points are reversed."""
        services.delete_response(current_user.id, survey_id, response_id, data["reason"])
        db.session.commit()


# --------------------------------------------------------------------------- members: focus groups


def _member_session(session: FocusGroupSession, signup) -> dict:
    out = {c: getattr(session, c) for c in FocusSessionOut._declared_fields if c != "my_status"}
    out["my_status"] = signup.status if signup else None
    return out


def _signup_out(signup, position: int | None) -> dict:
    return {
        "id": signup.id, "session_id": signup.session_id, "status": signup.status,
        "signed_up_at": signup.signed_up_at, "confirmed_at": signup.confirmed_at,
        "waitlist_position": position,
    }


def _staff_signup_out(signup, position: int | None) -> dict:
    return {**_signup_out(signup, position), "member_id": signup.member_id, "priority": signup.priority,
            "cancelled_at": signup.cancelled_at, "marked_at": signup.marked_at}


@focus_blp.route("")
class UpcomingSessions(MethodView):
    @login_required
    @focus_blp.arguments(PageArgs, location="query")
    @focus_blp.response(200, page_schema(FocusSessionOut, "FocusSessionPage"))
    def get(self, args):
        """Upcoming focus-group sessions, soonest first, with the member's sign-up status."""
        page = page_of(list(fg.upcoming_sessions()), args["page"], args["per_page"])
        mine = fg.my_signups(current_user.id, [s.id for s in page["items"]])
        page["items"] = [_member_session(s, mine.get(s.id)) for s in page["items"]]
        return page


@focus_blp.route("/<int:session_id>")
class MemberSession(MethodView):
    @login_required
    @focus_blp.response(200, FocusSessionOut)
    def get(self, session_id):
        """One session, with the member's sign-up status."""
        session = fg.get_session(session_id)
        return _member_session(session, fg.my_signups(current_user.id, [session_id]).get(session_id))


@focus_blp.route("/<int:session_id>/signup")
class Signup(MethodView):
    @login_required
    @focus_blp.response(200, SignupOut)
    def get(self, session_id):
        """The member's sign-up (with waitlist position while waiting)."""
        signup = fg.my_signups(current_user.id, [session_id]).get(session_id)
        if signup is None:
            raise NotFound("You are not signed up for this session.")
        return _signup_out(signup, fg.waitlist_position(signup))

    @login_required
    @focus_blp.response(201, SignupOut)
    @error_responses(409)
    def post(self, session_id):
        """Sign up: confirmed while places are free, else waitlisted (priority by tier)."""
        signup = fg.sign_up(current_user, session_id)
        db.session.commit()
        return _signup_out(signup, fg.waitlist_position(signup))

    @login_required
    @focus_blp.response(200, SignupOut)
    @error_responses(409)
    def delete(self, session_id):
        """Cancel before the cutoff; the first waiting member takes the place."""
        signup = fg.cancel_signup(current_user, session_id)
        db.session.commit()
        return _signup_out(signup, fg.waitlist_position(signup))


@focus_blp.route("/<int:session_id>/calendar.ics")
class SessionCalendar(MethodView):
    @login_required
    @focus_blp.response(200, content_type="text/calendar")
    def get(self, session_id):
        """The session as an iCalendar (.ics) file."""
        body = fg.calendar_file(session_id, public_host())
        return Response(
            body, mimetype="text/calendar",
            headers={"Content-Disposition": f"attachment; filename=focus-group-{session_id}.ics"},
        )


# --------------------------------------------------------------------------- marketing: focus groups


def _staff_session(session: FocusGroupSession) -> FocusGroupSession:
    session.waitlisted_count = fg.waitlisted_count(session.id)
    return session


@admin_focus_blp.route("")
class AdminSessions(MethodView):
    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.arguments(PageArgs, location="query")
    @admin_focus_blp.response(200, page_schema(FocusSessionStaffOut, "SessionStaffPage"))
    def get(self, args):
        """Every session, latest start first."""
        page = paginate(select(FocusGroupSession).order_by(FocusGroupSession.starts_at.desc()),
                        args["page"], args["per_page"])
        page["items"] = [_staff_session(s) for s in page["items"]]
        return page

    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.arguments(FocusSessionIn)
    @admin_focus_blp.response(201, FocusSessionStaffOut)
    @error_responses(404)
    def post(self, data):
        """Create a session (capacity 30 unless given)."""
        session = fg.create_session(current_user.id, data)
        db.session.commit()
        return _staff_session(session)


@admin_focus_blp.route("/<int:session_id>")
class AdminSession(MethodView):
    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.response(200, FocusSessionStaffOut)
    def get(self, session_id):
        """A session with staff-only fields."""
        return _staff_session(fg.get_session(session_id))

    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.arguments(FocusSessionPatchIn)
    @admin_focus_blp.response(200, FocusSessionStaffOut)
    @error_responses(409)
    def patch(self, data, session_id):
        """Edit a session; a larger capacity promotes waiting members."""
        session = fg.update_session(current_user.id, session_id, data)
        db.session.commit()
        return _staff_session(session)


@admin_focus_blp.route("/<int:session_id>/cancel")
class CancelSession(MethodView):
    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.arguments(ReasonIn)
    @admin_focus_blp.response(200, FocusSessionStaffOut)
    @error_responses(409)
    def post(self, data, session_id):
        """Cancel a session; confirmed and waiting members are notified."""
        session = fg.cancel_session(current_user.id, session_id, data["reason"])
        db.session.commit()
        return _staff_session(session)


@admin_focus_blp.route("/<int:session_id>/signups")
class AdminSignups(MethodView):
    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.arguments(PageArgs, location="query")
    @admin_focus_blp.response(200, page_schema(SignupStaffOut, "SignupStaffPage"))
    def get(self, args, session_id):
        """The roster: every sign-up, in waitlist order, with each waiting member's position."""
        signups = fg.list_signups(session_id)  # in waitlist order: positions are counted along it
        waiting = [s.id for s in signups if s.status == "waitlisted"]
        positions = {signup_id: n for n, signup_id in enumerate(waiting, start=1)}
        page = page_of(signups, args["page"], args["per_page"])
        page["items"] = [_staff_signup_out(s, positions.get(s.id)) for s in page["items"]]
        return page


@admin_focus_blp.route("/<int:session_id>/attendance")
class Attendance(MethodView):
    @require(MANAGE_FOCUS_GROUPS)
    @admin_focus_blp.arguments(AttendanceIn)
    @admin_focus_blp.response(200, page_schema(SignupStaffOut, "MarkedSignupPage"))
    @error_responses(409)
    def post(self, data, session_id):
        """Mark members (by id) as attended (points, once) or no-show; returns the changed sign-ups."""
        marked = fg.mark_attendance(current_user.id, session_id, data["attended"], data["no_show"])
        db.session.commit()
        return all_items([_staff_signup_out(s, fg.waitlist_position(s)) for s in marked])
