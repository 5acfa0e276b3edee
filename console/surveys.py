"""Marketers: surveys (list, form-based builder with pages and skip logic, preview, publish,
close, new versions, results with charts, CSV) and focus groups (sessions, roster, attendance).

The builder edits the survey's working definition one question at a time; every edit is loaded
with the API's ``DefinitionIn`` schema and saved with ``surveys.services.update_survey``, so a
question edited on a published survey becomes a new version exactly as through the API.
"""

from __future__ import annotations

import copy

from flask import Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from community.models import TIERS
from csv_export import csv_response
from errors import NotFound, ValidationError
from extensions import db
from pagination import paginate
from points import approvals
from surveys import definition as defs
from surveys import focus_groups, services
from surveys.models import QUESTION_TYPES, Survey
from surveys.permissions import MANAGE_FOCUS_GROUPS, MANAGE_SURVEYS
from surveys.schemas import DefinitionIn, FocusSessionIn, QuestionIn, SurveyIn, SurveyPatchIn

from . import charts, nav
from .web import bp, form_int, form_lines, form_str, page_args, staff_page, validated

nav.register(nav.NavItem("surveys", _l("Surveys"), "console.surveys", MANAGE_SURVEYS, 10))
nav.register(nav.NavItem("surveys", _l("Focus groups"), "console.focus_groups", MANAGE_FOCUS_GROUPS, 20))


@bp.get("/surveys")
@staff_page(MANAGE_SURVEYS)
def surveys():
    page, per_page = page_args(25)
    result = paginate(select(Survey).order_by(Survey.id.desc()), page, per_page)
    return render_template("console/surveys.html", result=result)


def _survey_form() -> dict:
    data = {
        "title": form_str("title", ""), "description": form_str("description", ""),
        "audience_tiers": request.form.getlist("audience_tiers"),
        "opens_at": form_str("opens_at"), "closes_at": form_str("closes_at"),
        "max_responses": form_int("max_responses"),
    }
    return data


@bp.post("/surveys")
@staff_page(MANAGE_SURVEYS)
def survey_create():
    data = validated(SurveyIn(), _survey_form())
    survey = services.create_survey(current_user.id, data)
    db.session.commit()
    flash(_("Draft survey created."), "success")
    return redirect(url_for("console.survey", survey_id=survey.id), code=303)


@bp.get("/surveys/<int:survey_id>")
@staff_page(MANAGE_SURVEYS)
def survey(survey_id):
    s = services.get_survey(survey_id)
    pages = s.definition.get("pages") or []
    earlier = []  # per question: the questions before it that skip logic may refer to
    for question in defs.iter_questions(s.definition):
        earlier.append(question)
    return render_template(
        "console/survey.html", s=s, pages=pages, types=QUESTION_TYPES, tiers=TIERS,
        condition_questions=[q for q in earlier if q["type"] in defs.CONDITION_TYPES],
        edit=_question_to_edit(s, request.args.get("edit")),
    )


def _question_to_edit(s: Survey, qid: str | None) -> dict | None:
    if not qid:
        return None
    for page_no, page in enumerate(s.definition.get("pages") or []):
        for q in page.get("questions", []):
            if q["id"] == qid:
                return {"page": page_no, **q}
    return None


@bp.post("/surveys/<int:survey_id>")
@staff_page(MANAGE_SURVEYS)
def survey_update(survey_id):
    data = validated(SurveyPatchIn(), _survey_form())
    services.update_survey(current_user.id, survey_id, data)
    db.session.commit()
    flash(_("Survey saved."), "success")
    return redirect(url_for("console.survey", survey_id=survey_id), code=303)


def _save_definition(s: Survey, definition: dict, message: str):
    data = validated(DefinitionIn(), definition)
    services.update_survey(current_user.id, s.id, {"definition": data})
    db.session.commit()
    if s.status == "published":
        message += " " + _("Published as version %(n)s.", n=s.current_version)
    flash(message, "success")
    return redirect(url_for("console.survey", survey_id=s.id) + "#builder", code=303)


def _question_from_form(definition: dict) -> dict:
    qtype = request.form.get("type", "")
    q: dict = {"id": form_str("id", ""), "type": qtype, "text": form_str("text", ""),
               "required": request.form.get("required") == "on"}
    if form_str("help"):
        q["help"] = form_str("help")
    if qtype in defs.CHOICE_TYPES:
        q["options"] = form_lines("options")
    if qtype == "multiple_choice":
        for name in ("min_choices", "max_choices"):
            if form_int(name) is not None:
                q[name] = form_int(name)
    if qtype in defs.TEXT_LIMITS and form_int("max_length") is not None:
        q["max_length"] = form_int("max_length")
    if qtype == "matrix":
        q["rows"], q["scale"] = form_lines("rows"), form_lines("scale")
    target_id = form_str("show_if_question")
    if target_id:
        target = next((x for x in defs.iter_questions(definition) if x["id"] == target_id), None)
        values: list = form_lines("show_if_values")
        if target is not None and target["type"] in defs.NUMERIC_RANGES:
            values = [int(v) if v.lstrip("-").isdigit() else v for v in values]
        q["show_if"] = {"question": target_id, "in": values}
    loaded = validated(QuestionIn(), q)
    return loaded


@bp.post("/surveys/<int:survey_id>/pages")
@staff_page(MANAGE_SURVEYS)
def survey_add_page(survey_id):
    s = services.get_survey(survey_id)
    definition = copy.deepcopy(s.definition) or {"pages": []}
    definition.setdefault("pages", []).append({"title": form_str("title", ""), "questions": []})
    return _save_definition(s, definition, _("Page added."))


@bp.post("/surveys/<int:survey_id>/questions")
@staff_page(MANAGE_SURVEYS)
def survey_save_question(survey_id):
    """Add a question, or replace the one named by ``original_id`` (possibly moving its page)."""
    s = services.get_survey(survey_id)
    definition = copy.deepcopy(s.definition) or {"pages": []}
    pages = definition.setdefault("pages", [])
    if not pages:
        pages.append({"title": "", "questions": []})
    question = _question_from_form(definition)
    page_no = form_int("page") or 0
    if not isinstance(page_no, int) or not 0 <= page_no < len(pages):
        raise ValidationError(_("No such page."), fields={"page": [str(page_no)]})
    original = form_str("original_id")
    position = None
    if original:
        for p_no, page in enumerate(pages):
            for i, q in enumerate(page["questions"]):
                if q["id"] == original:
                    position = (p_no, i)
        if position is None:
            raise NotFound(_("No such question."))
        del pages[position[0]]["questions"][position[1]]
    if any(q["id"] == question["id"] for q in defs.iter_questions(definition)):
        raise ValidationError(_("Question ids must be unique."), fields={"id": [question["id"]]})
    if position is not None and position[0] == page_no:
        pages[page_no]["questions"].insert(position[1], question)
    else:
        pages[page_no]["questions"].append(question)
    return _save_definition(s, definition, _("Question %(id)s saved.", id=question["id"]))


@bp.post("/surveys/<int:survey_id>/questions/<qid>")
@staff_page(MANAGE_SURVEYS)
def survey_question_action(survey_id, qid):
    """Move a question up or down within its page, or delete it."""
    s = services.get_survey(survey_id)
    definition = copy.deepcopy(s.definition)
    action = request.form.get("action")
    for page in definition.get("pages", []):
        questions = page["questions"]
        for i, q in enumerate(questions):
            if q["id"] != qid:
                continue
            if action == "delete":
                del questions[i]
            elif action == "up" and i > 0:
                questions[i - 1], questions[i] = questions[i], questions[i - 1]
            elif action == "down" and i < len(questions) - 1:
                questions[i + 1], questions[i] = questions[i], questions[i + 1]
            return _save_definition(s, definition, _("Question %(id)s: %(action)s.", id=qid, action=_(action or "")))
    raise NotFound(_("No such question."))


@bp.get("/surveys/<int:survey_id>/preview")
@staff_page(MANAGE_SURVEYS)
def survey_preview(survey_id):
    s = services.get_survey(survey_id)
    return render_template("console/survey_preview.html", s=s, pages=s.definition.get("pages") or [])


@bp.post("/surveys/<int:survey_id>/<any(publish, close):action>")
@staff_page(MANAGE_SURVEYS)
def survey_state(survey_id, action):
    if action == "publish":
        services.publish_survey(current_user.id, survey_id)
        message = _("Survey published.")
    else:
        services.close_survey(current_user.id, survey_id)
        message = _("Survey closed.")
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("console.survey", survey_id=survey_id), code=303)


@bp.get("/surveys/<int:survey_id>/results")
@staff_page(MANAGE_SURVEYS)
def survey_results(survey_id):
    s = services.get_survey(survey_id)
    results = services.compute_results(survey_id)
    question_charts = []
    for q in results["questions"]:
        chart = None
        if q.get("options") is not None:
            chart = charts.bar(q["text"] or q["id"], _("Answer"), [o["value"] for o in q["options"]],
                               {_("Responses"): [o["count"] for o in q["options"]]},
                               horizontal=q["type"] in defs.CHOICE_TYPES)
        elif q.get("rows"):
            labels = [r["row"] for r in q["rows"]]
            scale = [o["value"] for o in q["rows"][0]["options"]] if q["rows"] else []
            chart = charts.bar(q["text"] or q["id"], _("Statement"), labels,
                               {label: [r["options"][i]["count"] for r in q["rows"]] for i, label in enumerate(scale)},
                               stacked=True)
        nps_chart = None
        if q.get("nps"):
            n = q["nps"]
            nps_chart = charts.pie(_("NPS: promoters, passives, detractors"), _("Group"),
                                   {_("Promoters (9-10)"): n["promoters"], _("Passives (7-8)"): n["passives"],
                                    _("Detractors (0-6)"): n["detractors"]}, _("Responses"))
        question_charts.append({"q": q, "chart": chart, "nps_chart": nps_chart})
    tier_chart = charts.bar(_("Responses by tier"), _("Tier"), [_(t["tier"]) for t in results["tiers"]],
                            {_("Responses"): [t["responses"] for t in results["tiers"]]})
    nps_by_tier = None
    if any("nps" in t for t in results["tiers"]):
        nps_by_tier = charts.bar(_("NPS by tier"), _("Tier"), [_(t["tier"]) for t in results["tiers"]],
                                 {_("NPS"): [t["nps"]["score"] for t in results["tiers"]]})
    return render_template("console/survey_results.html", s=s, results=results, question_charts=question_charts,
                           tier_chart=tier_chart, nps_by_tier=nps_by_tier)


@bp.get("/surveys/<int:survey_id>/responses.csv")
@staff_page(MANAGE_SURVEYS)
def survey_csv(survey_id):
    header, columns = services.export_columns(survey_id)
    return csv_response(f"survey-{survey_id}.csv", header, services.export_rows(survey_id, columns))


# --------------------------------------------------------------------------- focus groups


@bp.get("/focus-groups", endpoint="focus_groups")
@staff_page(MANAGE_FOCUS_GROUPS)
def focus_groups_list():
    from surveys.models import FocusGroupSession

    page, per_page = page_args(25)
    result = paginate(select(FocusGroupSession).order_by(FocusGroupSession.starts_at.desc()), page, per_page)
    return render_template("console/focus_groups.html", result=result)


@bp.post("/focus-groups")
@staff_page(MANAGE_FOCUS_GROUPS)
def focus_group_create():
    raw = {
        "title": form_str("title", ""), "description": form_str("description", ""),
        "starts_at": form_str("starts_at", ""), "ends_at": form_str("ends_at", ""),
        "location": form_str("location"), "capacity": form_int("capacity"),
        "attendance_points": form_int("attendance_points"),
    }
    data = validated(FocusSessionIn(), {k: v for k, v in raw.items() if v is not None})
    session = focus_groups.create_session(current_user.id, data)
    db.session.commit()
    flash(_("Session created."), "success")
    return redirect(url_for("console.focus_group", session_id=session.id), code=303)


@bp.get("/focus-groups/<int:session_id>")
@staff_page(MANAGE_FOCUS_GROUPS)
def focus_group(session_id):
    session = focus_groups.get_session(session_id)
    signups = focus_groups.list_signups(session_id)
    positions = {s.id: focus_groups.waitlist_position(s) for s in signups if s.status == "waitlisted"}
    return render_template("console/focus_group.html", session=session, signups=signups, positions=positions)


@bp.post("/focus-groups/<int:session_id>/attendance")
@staff_page(MANAGE_FOCUS_GROUPS)
def focus_group_attendance(session_id):
    attended, no_show = [], []
    for key, value in request.form.items():
        if key.startswith("member-") and key[7:].isdigit():
            (attended if value == "attended" else no_show if value == "no_show" else []).append(int(key[7:]))
    focus_groups.mark_attendance(current_user.id, session_id, attended, no_show)
    db.session.commit()
    message = _("Attendance saved: %(a)s attended, %(n)s no-shows.", a=len(attended), n=len(no_show))
    points = focus_groups.get_session(session_id).attendance_points
    if attended and approvals.needs_approval(points):  # four-eyes: the points are not posted yet
        message += " " + _("Their %(n)s points each wait for a second staff member in Award approvals.", n=points)
    flash(message, "success")
    return redirect(url_for("console.focus_group", session_id=session_id), code=303)


@bp.get("/focus-groups/<int:session_id>/calendar.ics")
@staff_page(MANAGE_FOCUS_GROUPS)
def focus_group_ics(session_id):
    body = focus_groups.calendar_file(session_id, request.host)
    return Response(body, mimetype="text/calendar",
                    headers={"Content-Disposition": f"attachment; filename=session-{session_id}.ics"})
