"""HTTP API of analytics (``/api/v1/analytics/…``): staff only.

Marketing reads everything (``analytics.view``); marketers and admins manage segments, tags,
experiments, reviews and runs (``analytics.manage``); admins change the configuration
(``analytics.configure``).
"""

from __future__ import annotations

from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint
from sqlalchemy import func, select

from community.permissions import require
from contract.openapi import error_responses
from csv_export import csv_response
from extensions import db
from pagination import PageArgs, page_of, page_schema, paginate

from . import experiments, kpis, segments, services, settings
from .models import Experiment, MemberScore, ReviewSnapshot, RfmClassChange, Segment, SegmentMember
from .permissions import CONFIGURE, MANAGE, VIEW
from .schemas import (
    AnalyticsRunIn,
    AnalyticsRunOut,
    AnalyticsSettingsIn,
    AnalyticsSettingsOut,
    BulkTagIn,
    ClassCountOut,
    ClassMovementArgs,
    ClassMovementOut,
    ExperimentIn,
    ExperimentOut,
    ExperimentPatchIn,
    ExperimentResultsOut,
    ExperimentStartOut,
    KpiMetricOut,
    KpiSeriesArgs,
    KpiSeriesOut,
    MemberAnalyticsOut,
    ResultsArgs,
    ReviewDetailOut,
    ReviewIn,
    ReviewListArgs,
    ReviewOut,
    SegmentIn,
    SegmentMemberOut,
    SegmentOut,
    SegmentPatchIn,
    SegmentPreviewIn,
    SegmentPreviewOut,
    StrategicIn,
    TagIn,
    TagResultOut,
)

blp = Blueprint("analytics", __name__, url_prefix="/api/v1/analytics",
                description="Staff: RFM, scores, segments, KPIs, reviews, experiments")
blueprints = [blp]


# --------------------------------------------------------------------------- settings and runs


@blp.route("/settings")
class Settings(MethodView):
    @require(VIEW)
    @blp.response(200, AnalyticsSettingsOut)
    def get(self):
        """The configuration in force (defaults overlaid with the latest stored version)."""
        return {"version": settings.version(), "settings": settings.current()}

    @require(CONFIGURE)
    @blp.arguments(AnalyticsSettingsIn)
    @blp.response(200, AnalyticsSettingsOut)
    def put(self, data):
        """Store a new configuration version (only the parts sent change); audited."""
        note = data.pop("note", "")
        saved = settings.save(current_user.id, data, note)
        db.session.commit()
        return saved


@blp.route("/runs")
class Runs(MethodView):
    @require(MANAGE)
    @blp.arguments(AnalyticsRunIn)
    @blp.response(202, AnalyticsRunOut)
    def post(self, data):
        """Recompute now: scores (then segments and assignment), segments, assignment or KPIs.
        Answers the pending run when one of that kind is already queued or running."""
        run, _ = services.start_run(data["kind"], current_user.id)
        db.session.commit()
        return run


@blp.route("/runs/<int:run_id>")
class RunView(MethodView):
    @require(VIEW)
    @blp.response(200, AnalyticsRunOut)
    def get(self, run_id):
        """One run's status and outcome."""
        return services.get_run(run_id)


# --------------------------------------------------------------------------- KPIs


@blp.route("/kpis")
class KpiCatalogue(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(KpiMetricOut, "KpiMetricPage"))
    def get(self, args):
        """Every KPI: how it aggregates over a period, what it means, its breakdowns."""
        return page_of([{"name": name, "aggregation": m.agg, "description": m.description, "breakdowns": list(m.dims)}
                        for name, m in sorted(kpis.METRICS.items())], args["page"], args["per_page"])


@blp.route("/kpis/<string:metric>")
class KpiSeries(MethodView):
    @require(VIEW)
    @blp.arguments(KpiSeriesArgs, location="query")
    @blp.response(200, KpiSeriesOut)
    def get(self, args, metric):
        """A KPI's time series by period with period-over-period change, optionally broken down."""
        return kpis.series(metric, args["period"], args["start"], args["end"], args["breakdown"], args["dim_value"])


@blp.route("/kpis/<string:metric>/export.csv")
class KpiSeriesCsv(MethodView):
    @require(VIEW)
    @blp.arguments(KpiSeriesArgs, location="query")
    @blp.response(200, content_type="text/csv")
    def get(self, args, metric):
        """The same series as CSV."""
        data = kpis.series(metric, args["period"], args["start"], args["end"], args["breakdown"], args["dim_value"])
        rows = [(metric, data["breakdown"] or "", line["dim_value"], p["period_start"].isoformat(),
                 p["period_end"].isoformat(), p["value"], p["change"], p["change_pct"])
                for line in data["series"] for p in line["points"]]
        return csv_response(f"kpi-{metric}-{args['period']}.csv",
                            ["metric", "breakdown", "dim_value", "period_start", "period_end", "value", "change",
                             "change_pct"], rows)


# --------------------------------------------------------------------------- members and RFM


@blp.route("/members/<int:member_id>")
class MemberView(MethodView):
    @require(VIEW)
    @blp.response(200, MemberAnalyticsOut)
    def get(self, member_id):
        """A member's RFM, value score, health index with each component's contribution, tags
        and class history."""
        return services.member_profile(member_id)


@blp.route("/members/<int:member_id>/strategic")
class MemberStrategic(MethodView):
    @require(MANAGE)
    @blp.arguments(StrategicIn)
    @blp.response(200, MemberAnalyticsOut)
    @error_responses(409)
    def put(self, data, member_id):
        """Set or clear the strategic flag (the value score's strategic part from the next run)."""
        out = services.set_strategic(current_user.id, member_id, data["strategic"], data["note"])
        db.session.commit()
        return out


@blp.route("/members/<int:member_id>/tags")
class MemberTags(MethodView):
    @require(MANAGE)
    @blp.arguments(TagIn)
    @blp.response(201, TagResultOut)
    def post(self, data, member_id):
        """Tag a member by hand."""
        tagged = segments.tag_members(current_user.id, data["tag"], [member_id])
        db.session.commit()
        return {"tag": data["tag"], "tagged": tagged}


@blp.route("/members/<int:member_id>/tags/<string:tag>")
class MemberTag(MethodView):
    @require(MANAGE)
    @blp.response(204)
    def delete(self, member_id, tag):
        """Remove a tag from a member."""
        segments.untag_member(current_user.id, member_id, tag)
        db.session.commit()


@blp.route("/tags")
class BulkTags(MethodView):
    @require(MANAGE)
    @blp.arguments(BulkTagIn)
    @blp.response(201, TagResultOut)
    @error_responses(404)
    def post(self, data):
        """Tag many members at once (all or none: an unknown member id tags nobody)."""
        tagged = segments.tag_members(current_user.id, data["tag"], data["member_ids"])
        db.session.commit()
        return {"tag": data["tag"], "tagged": tagged}


@blp.route("/rfm/classes")
class RfmClasses(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(ClassCountOut, "RfmClassCountPage"))
    def get(self, args):
        """Members per RFM class with their mean value score and health index."""
        rows = db.session.execute(
            select(MemberScore.rfm_class, func.count(), func.avg(MemberScore.value_score), func.avg(MemberScore.health))
            .group_by(MemberScore.rfm_class).order_by(MemberScore.rfm_class))
        return page_of([{"class": c, "members": n, "avg_value": v, "avg_health": h} for c, n, v, h in rows],
                       args["page"], args["per_page"])


@blp.route("/rfm/movements")
class RfmMovements(MethodView):
    @require(VIEW)
    @blp.arguments(ClassMovementArgs, location="query")
    @blp.response(200, page_schema(ClassMovementOut, "RfmClassMovementPage"))
    def get(self, args):
        """Movements between RFM classes in a window (from-class NULL: first classification)."""
        query = (select(RfmClassChange.from_class, RfmClassChange.to_class, func.count())
                 .where(RfmClassChange.changed_at >= args["since"]))
        if args.get("until"):
            query = query.where(RfmClassChange.changed_at < args["until"])
        rows = db.session.execute(query.group_by(RfmClassChange.from_class, RfmClassChange.to_class)
                                  .order_by(RfmClassChange.from_class, RfmClassChange.to_class))
        return page_of([{"from_class": f, "to_class": t, "members": n} for f, t, n in rows],
                       args["page"], args["per_page"])


# --------------------------------------------------------------------------- segments


@blp.route("/segments")
class Segments(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(SegmentOut, "AnalyticsSegmentPage"))
    def get(self, args):
        """Saved segments, newest first."""
        return paginate(select(Segment).where(Segment.archived.is_(False)).order_by(Segment.id.desc()),
                        args["page"], args["per_page"])

    @require(MANAGE)
    @blp.arguments(SegmentIn)
    @blp.response(201, SegmentOut)
    @error_responses(409)
    def post(self, data):
        """Save a segment definition and materialise it now."""
        segment = segments.create(current_user.id, data)
        segments.materialise(segment.id)
        db.session.commit()
        return segment


@blp.route("/segments/preview")
class SegmentPreview(MethodView):
    @require(VIEW)
    @blp.arguments(SegmentPreviewIn)
    @blp.response(200, SegmentPreviewOut)
    def post(self, data):
        """How many members a definition selects now (nothing is saved)."""
        return {"members": segments.preview_count(data["definition"])}


@blp.route("/segments/<int:segment_id>")
class SegmentView(MethodView):
    @require(VIEW)
    @blp.response(200, SegmentOut)
    def get(self, segment_id):
        """One segment."""
        return segments.require_segment(segment_id)

    @require(MANAGE)
    @blp.arguments(SegmentPatchIn)
    @blp.response(200, SegmentOut)
    @error_responses(409)
    def patch(self, data, segment_id):
        """Change a segment (a new definition is materialised at once)."""
        segment = segments.update_segment(current_user.id, segment_id, data)
        segments.materialise(segment.id)
        db.session.commit()
        return segment

    @require(MANAGE)
    @blp.response(204)
    @error_responses(409)
    def delete(self, segment_id):
        """Archive a segment (refused while a live experiment uses it)."""
        segments.archive(current_user.id, segment_id)
        db.session.commit()


@blp.route("/segments/<int:segment_id>/members")
class SegmentMembers(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(SegmentMemberOut, "AnalyticsSegmentMemberPage"))
    def get(self, args, segment_id):
        """The segment's members as of its last materialisation."""
        segments.require_segment(segment_id)
        query = select(SegmentMember).where(SegmentMember.segment_id == segment_id).order_by(SegmentMember.member_id)
        return paginate(query, args["page"], args["per_page"])


@blp.route("/segments/<int:segment_id>/materialise")
class SegmentMaterialise(MethodView):
    @require(MANAGE)
    @blp.response(200, SegmentOut)
    def post(self, segment_id):
        """Re-materialise one segment now."""
        segments.materialise(segment_id)
        db.session.commit()
        return segments.require_segment(segment_id)


# --------------------------------------------------------------------------- experiments


@blp.route("/experiments")
class Experiments(MethodView):
    @require(VIEW)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(ExperimentOut, "AnalyticsExperimentPage"))
    def get(self, args):
        """Experiments, newest first."""
        return paginate(select(Experiment).order_by(Experiment.id.desc()), args["page"], args["per_page"])

    @require(MANAGE)
    @blp.arguments(ExperimentIn)
    @blp.response(201, ExperimentOut)
    @error_responses(404, 409)
    def post(self, data):
        """Create an experiment (a draft: it assigns members when it starts)."""
        exp = experiments.create(current_user.id, data)
        db.session.commit()
        return exp


@blp.route("/experiments/<int:experiment_id>")
class ExperimentView(MethodView):
    @require(VIEW)
    @blp.response(200, ExperimentOut)
    def get(self, experiment_id):
        """One experiment."""
        return experiments.get(experiment_id)

    @require(MANAGE)
    @blp.arguments(ExperimentPatchIn)
    @blp.response(200, ExperimentOut)
    @error_responses(409)
    def patch(self, data, experiment_id):
        """Change an experiment; its split, population and start are fixed once it started (409)."""
        exp = experiments.update(current_user.id, experiment_id, data)
        db.session.commit()
        return exp


@blp.route("/experiments/<int:experiment_id>/start")
class ExperimentStart(MethodView):
    @require(MANAGE)
    @blp.response(200, ExperimentStartOut)
    @error_responses(409)
    def post(self, experiment_id):
        """Start: assign the population (stratified when configured); members joining later are
        assigned by the periodic job."""
        exp, assigned = experiments.start(current_user.id, experiment_id)
        db.session.commit()
        exp.assigned = assigned  # reported once, not stored
        return exp


@blp.route("/experiments/<int:experiment_id>/stop")
class ExperimentStop(MethodView):
    @require(MANAGE)
    @blp.response(200, ExperimentOut)
    @error_responses(409)
    def post(self, experiment_id):
        """Stop: the post-period ends now; assignments are kept."""
        exp = experiments.stop(current_user.id, experiment_id)
        db.session.commit()
        return exp


@blp.route("/experiments/<int:experiment_id>/results")
class ExperimentResults(MethodView):
    @require(VIEW)
    @blp.arguments(ResultsArgs, location="query")
    @blp.response(200, ExperimentResultsOut)
    @error_responses(409)
    def get(self, args, experiment_id):
        """Per metric: test − control, difference-in-differences, CUPED, relative lift with 95 %
        intervals; the sample-ratio check; ROI.  From the per-member values the daily job stores
        (``as_of`` says until when), or computed now with ``live=true``."""
        return experiments.results(experiment_id, args.get("metrics"), live=args["live"])


@blp.route("/experiments/<int:experiment_id>/refresh")
class ExperimentRefresh(MethodView):
    @require(MANAGE)
    @blp.response(202, ExperimentOut)
    @error_responses(409)
    def post(self, experiment_id):
        """Rebuild the stored per-member values of a started experiment now (in the background)."""
        exp = experiments.request_refresh(experiment_id)
        db.session.commit()
        return exp


# --------------------------------------------------------------------------- reviews


@blp.route("/reviews")
class Reviews(MethodView):
    @require(VIEW)
    @blp.arguments(ReviewListArgs, location="query")
    @blp.response(200, page_schema(ReviewOut, "AnalyticsReviewPage"))
    def get(self, args):
        """Stored reviews, latest period first."""
        query = select(ReviewSnapshot).order_by(ReviewSnapshot.period_start.desc(), ReviewSnapshot.id.desc())
        if args.get("period"):
            query = query.where(ReviewSnapshot.period == args["period"])
        return paginate(query, args["page"], args["per_page"])

    @require(MANAGE)
    @blp.arguments(ReviewIn)
    @blp.response(201, ReviewDetailOut)
    @error_responses(409)
    def post(self, data):
        """Store the review of a month, quarter or half-year (once: 409 if it exists)."""
        review = services.create_review(current_user.id, data["period"], data["start"], data["note"])
        db.session.commit()
        return review


@blp.route("/reviews/<int:review_id>")
class ReviewView(MethodView):
    @require(VIEW)
    @blp.response(200, ReviewDetailOut)
    def get(self, review_id):
        """One stored review with every KPI, its change and its tier breakdown."""
        return services.get_review(review_id)


@blp.route("/reviews/<int:review_id>/export.csv")
class ReviewCsv(MethodView):
    @require(VIEW)
    @blp.response(200, content_type="text/csv")
    def get(self, review_id):
        """A stored review as CSV (one row per KPI)."""
        review = services.get_review(review_id)
        metrics = review.data.get("metrics", {})
        rows = [(review.period, review.period_start.isoformat(), name, m.get("value"), m.get("previous"),
                 m.get("change"), m.get("change_pct")) for name, m in sorted(metrics.items())]
        return csv_response(f"review-{review.period}-{review.period_start.isoformat()}.csv",
                            ["period", "period_start", "metric", "value", "previous", "change", "change_pct"], rows)
