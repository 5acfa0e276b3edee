"""HTTP API of journeys (``/api/v1/journeys/…``): staff only.

Marketers and admins create and change journeys and templates (``journeys.manage``); staff
read them and their statistics (``journeys.view``) and work the tasks they create
(``journeys.work_tasks``).  Separation of duties: a journey that awards points or grants a
multiplier is activated by someone other than the author of its current version, its authors
never receive its points or multipliers, and nobody closes a task about themselves.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import select

from community.permissions import require
from contract.openapi import error_responses
from extensions import db
from pagination import PageArgs, page_schema, paginate

from . import services, stats
from .models import Journey, JourneyTask, JourneyTemplate, JourneyVersion
from .permissions import MANAGE, VIEW, WORK_TASKS
from .schemas import (
    JourneyDetailOut,
    JourneyIn,
    JourneyListArgs,
    JourneyOut,
    JourneyPatchIn,
    JourneyStatsOut,
    JourneyStatusIn,
    JourneyTaskListArgs,
    JourneyTaskOut,
    JourneyTemplateIn,
    JourneyTemplateOut,
    JourneyTemplatePatchIn,
    JourneyVersionOut,
)

blp = Blueprint("journeys", __name__, url_prefix="/api/v1/journeys",
                description="Staff: lifecycle journeys (triggers, steps, holdouts, statistics)")
blueprints = [blp]


def _detail(journey: Journey, migrated: int = 0) -> dict:
    out = {name: getattr(journey, name) for name in JourneyOut().fields}
    out["version"] = services.current_version(journey)
    out["migrated"] = migrated
    return out


@blp.route("")
class Journeys(MethodView):
    @require(VIEW)
    @blp.arguments(JourneyListArgs, location="query")
    @blp.response(200, page_schema(JourneyOut, "JourneyPage"))
    def get(self, args):
        """Journeys, newest first (optionally of one status)."""
        query = select(Journey).order_by(Journey.id.desc())
        if args.get("status"):
            query = query.where(Journey.status == args["status"])
        return paginate(query, args["page"], args["per_page"])

    @require(MANAGE)
    @blp.arguments(JourneyIn)
    @blp.response(201, JourneyDetailOut)
    @error_responses(409)
    def post(self, data):
        """Create a journey (a draft) with its first version; the definition is validated."""
        journey = services.create(current_user.id, data)
        db.session.commit()
        return _detail(journey)


@blp.route("/<int:journey_id>")
class JourneyView(MethodView):
    @require(VIEW)
    @blp.response(200, JourneyDetailOut)
    def get(self, journey_id):
        """One journey with its current version."""
        return _detail(services.get(journey_id))

    @require(MANAGE)
    @blp.arguments(JourneyPatchIn)
    @blp.response(200, JourneyDetailOut)
    @error_responses(409)
    def patch(self, data, journey_id):
        """Rename, or change the definition (a new version; ``migrate`` moves the members inside)."""
        journey, moved = services.revise(current_user.id, journey_id, data)
        db.session.commit()
        return _detail(journey, moved)


@blp.route("/<int:journey_id>/status")
class JourneyStatus(MethodView):
    @require(MANAGE)
    @blp.arguments(JourneyStatusIn)
    @blp.response(200, JourneyOut)
    @error_responses(409)
    def post(self, data, journey_id):
        """Activate (or resume), pause (stops new entries and sends at once) or archive."""
        action = {"active": "activate", "paused": "pause", "archived": "archive"}[data["status"]]
        journey = services.set_status(current_user.id, journey_id, action)
        db.session.commit()
        return journey


@blp.route("/<int:journey_id>/versions")
class JourneyVersions(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(JourneyVersionOut, "JourneyVersionPage"))
    def get(self, args, journey_id):
        """Every version of the journey, newest first."""
        services.get(journey_id)
        return paginate(select(JourneyVersion).where(JourneyVersion.journey_id == journey_id)
                        .order_by(JourneyVersion.number.desc()), args["page"], args["per_page"])


@blp.route("/<int:journey_id>/stats")
class JourneyStats(MethodView):
    @require(VIEW)
    @blp.response(200, JourneyStatsOut)
    def get(self, journey_id):
        """Entered, waiting, sent, skipped by reason, converted, per step and arm, and the
        holdout experiment's result."""
        journey = services.get(journey_id)
        out = stats.journey_stats(journey)
        out["experiment_id"] = journey.experiment_id
        out["experiment_results"] = None
        if journey.experiment_id is not None:
            from analytics.experiments import results

            out["experiment_results"] = results(journey.experiment_id, ["net_amount", "purchases", "retention"])
        return out


@blp.route("/templates")
class Templates(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(JourneyTemplateOut, "JourneyTemplatePage"))
    def get(self, args):
        """Message templates send steps use."""
        return paginate(select(JourneyTemplate).order_by(JourneyTemplate.key), args["page"], args["per_page"])

    @require(MANAGE)
    @blp.arguments(JourneyTemplateIn)
    @blp.response(201, JourneyTemplateOut)
    @error_responses(409)
    def post(self, data):
        """A message template in a messaging category, in en (required) and zh-CN."""
        tpl = services.create_template(current_user.id, data)
        db.session.commit()
        return tpl


@blp.route("/templates/<string:key>")
class TemplateView(MethodView):
    @require(VIEW)
    @blp.response(200, JourneyTemplateOut)
    def get(self, key):
        """One template."""
        return services.get_template(key)

    @require(MANAGE)
    @blp.arguments(JourneyTemplatePatchIn)
    @blp.response(200, JourneyTemplateOut)
    def patch(self, data, key):
        """Change a template (messages not yet rendered use the new text)."""
        tpl = services.update_template(current_user.id, key, data)
        db.session.commit()
        return tpl


@blp.route("/tasks")
class Tasks(MethodView):
    @require(WORK_TASKS)
    @blp.arguments(JourneyTaskListArgs, location="query")
    @blp.response(200, page_schema(JourneyTaskOut, "JourneyTaskPage"))
    def get(self, args):
        """Staff tasks journeys created, oldest first."""
        query = select(JourneyTask).order_by(JourneyTask.id)
        if args.get("status"):
            query = query.where(JourneyTask.status == args["status"])
        if args.get("journey_id"):
            query = query.where(JourneyTask.journey_id == args["journey_id"])
        return paginate(query, args["page"], args["per_page"])


@blp.route("/tasks/<int:task_id>/done")
class TaskDone(MethodView):
    @require(WORK_TASKS)
    @blp.response(200, JourneyTaskOut)
    @error_responses(409)
    def post(self, task_id):
        """Mark a task done (idempotent; not a task about yourself)."""
        task = services.complete_task(current_user.id, task_id)
        db.session.commit()
        return task


def init_app(app) -> None:
    from . import console, triggers

    triggers.connect()
    console.register_nav()
    app.register_blueprint(console.templates)
