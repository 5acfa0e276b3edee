"""Console pages of journeys: the list with status and pause / resume, and one journey's
per-step counts (a chart with its numbers table) and its A/B sends' variants compared.

The routes join the console's blueprint (its sign-in, CSRF, error pages and security headers
apply) when ``journeys.api`` is imported, which the app does before it registers the console;
the templates live in this package (``journeys/templates/journeys``) and extend the console's
base layout.
"""

from __future__ import annotations

from flask import Blueprint, flash, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from console import charts, nav
from console.web import back, bp, form_str, page_args, staff_page
from extensions import db
from pagination import paginate

from . import services, stats
from .models import Journey
from .permissions import MANAGE, VIEW

# Only a template folder: the pages' templates, found by the app's loader.
templates = Blueprint("journeys_templates", __name__, template_folder="templates")

STATUS_ACTIONS = {"active": "activate", "paused": "pause"}


def register_nav() -> None:
    nav.register(nav.NavItem("journeys", _l("Journeys"), "console.journeys", VIEW, 10))


@bp.get("/journeys")
@staff_page(VIEW)
def journeys():
    page, per_page = page_args(25)
    result = paginate(select(Journey).where(Journey.status != "archived").order_by(Journey.id.desc()),
                      page, per_page)
    return render_template("journeys/list.html", result=result)


@bp.post("/journeys/<int:journey_id>/status")
@staff_page(MANAGE)
def journey_status(journey_id):
    status = form_str("status", "")
    if status not in STATUS_ACTIONS:
        flash(_("Choose active or paused."), "error")
        return back("console.journeys")
    services.set_status(current_user.id, journey_id, STATUS_ACTIONS[status])
    db.session.commit()
    flash(_("Journey paused.") if status == "paused" else _("Journey active."), "success")
    return back("console.journeys")


@bp.get("/journeys/<int:journey_id>")
@staff_page(VIEW)
def journey(journey_id):
    j = services.get(journey_id)
    version = services.current_version(j)
    numbers = stats.journey_stats(j)
    by_step = {s["step_id"]: s for s in numbers["steps"]}
    order = [s["id"] for s in version.steps] + [sid for sid in by_step if sid not in {s["id"] for s in version.steps}]
    rows = [by_step.get(sid, {"step_id": sid, "executed": 0, "sent": 0, "done": 0, "skipped": 0, "failed": 0,
                              "waiting": 0, "skipped_by_reason": {}, "branches": {}, "email": {}, "variants": [],
                              "variant_sample_ratio": None}) for sid in order]
    chart = charts.bar(_("Members per step"), _("Step"), [r["step_id"] for r in rows], {
        _("Sent"): [r["sent"] for r in rows], _("Done"): [r["done"] for r in rows],
        _("Skipped"): [r["skipped"] for r in rows], _("Waiting"): [r["waiting"] for r in rows],
    }, stacked=True)
    return render_template("journeys/journey.html", journey=j, version=version, stats=numbers, rows=rows,
                           chart=chart)
