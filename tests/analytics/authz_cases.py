from datetime import timedelta

from tests.authz import Case

MARKETING = frozenset({"marketer", "admin"})
ADMIN = frozenset({"admin"})
P = "/api/v1/analytics"
SEGMENT = {"name": "authz", "definition": {"conditions": [{"field": "tier", "op": "in", "value": ["aware"]}]}}


def _member(ctx):
    return {"member_id": ctx.users["member"].id}


def _tagged(ctx):
    from analytics.segments import tag_members
    from extensions import db

    tag_members(ctx.users["admin"].id, "t", [ctx.users["member"].id])
    db.session.commit()
    return {"member_id": ctx.users["member"].id, "tag": "t"}


def _segment(ctx):
    from analytics import segments
    from extensions import db

    segment = segments.create(ctx.users["admin"].id, SEGMENT)
    db.session.commit()
    return {"segment_id": segment.id}


def _experiment(ctx, start=False):
    from analytics import experiments
    from community.models import utcnow
    from extensions import db

    exp = experiments.create(ctx.users["admin"].id, {"name": "authz", "kind": "touch", "test_share": 0.5,
                                                      "starts_at": utcnow() - timedelta(days=1)})
    if start:
        experiments.start(ctx.users["admin"].id, exp.id)
    db.session.commit()
    return {"experiment_id": exp.id}


def _run(ctx):
    from analytics.models import AnalyticsRun
    from extensions import db

    run = AnalyticsRun(kind="kpis", status="done")
    db.session.add(run)
    db.session.commit()
    return {"run_id": run.id}


def _review(ctx):
    import datetime as dt

    from analytics.models import ReviewSnapshot
    from extensions import db

    review = ReviewSnapshot(period="month", period_start=dt.date(2026, 1, 1), period_end=dt.date(2026, 1, 31),
                            data={"metrics": {"purchases": {"value": 1}}})
    db.session.add(review)
    db.session.commit()
    return {"review_id": review.id}


SERIES = {"start": "2026-01-01", "end": "2026-03-31", "period": "month"}

CASES = [
    Case("GET", f"{P}/settings", MARKETING),
    Case("PUT", f"{P}/settings", ADMIN, body={"roi": {"cost_per_point": 0.02}}),
    Case("POST", f"{P}/runs", MARKETING, body={"kind": "kpis"}),
    Case("GET", f"{P}/runs/<int:run_id>", MARKETING, setup=_run),
    Case("GET", f"{P}/kpis", MARKETING),
    Case("GET", f"{P}/kpis/<string:metric>", MARKETING, setup=lambda ctx: {"metric": "purchases"}, query=SERIES),
    Case("GET", f"{P}/kpis/<string:metric>/export.csv", MARKETING, setup=lambda ctx: {"metric": "purchases"},
         query=SERIES),
    Case("GET", f"{P}/members/<int:member_id>", MARKETING, setup=_member),
    Case("PUT", f"{P}/members/<int:member_id>/strategic", MARKETING, setup=_member, body={"strategic": True}),
    Case("POST", f"{P}/members/<int:member_id>/tags", MARKETING, setup=_member, body={"tag": "vip"}),
    Case("DELETE", f"{P}/members/<int:member_id>/tags/<string:tag>", MARKETING, setup=_tagged),
    Case("POST", f"{P}/tags", MARKETING, setup=_member,
         body=lambda ctx, params: {"tag": "vip", "member_ids": [params["member_id"]]}),
    Case("GET", f"{P}/rfm/classes", MARKETING),
    Case("GET", f"{P}/rfm/movements", MARKETING, query={"since": "2026-01-01T00:00:00Z"}),
    Case("GET", f"{P}/segments", MARKETING),
    Case("POST", f"{P}/segments", MARKETING, body=lambda ctx, params: {**SEGMENT, "name": f"s{id(params)}"}),
    Case("POST", f"{P}/segments/preview", MARKETING, body={"definition": SEGMENT["definition"]}),
    Case("GET", f"{P}/segments/<int:segment_id>", MARKETING, setup=_segment),
    Case("PATCH", f"{P}/segments/<int:segment_id>", MARKETING, setup=_segment, body={"description": "x"}),
    Case("DELETE", f"{P}/segments/<int:segment_id>", MARKETING, setup=_segment),
    Case("GET", f"{P}/segments/<int:segment_id>/members", MARKETING, setup=_segment),
    Case("POST", f"{P}/segments/<int:segment_id>/materialise", MARKETING, setup=_segment),
    Case("GET", f"{P}/experiments", MARKETING),
    Case("POST", f"{P}/experiments", MARKETING,
         body=lambda ctx, params: {"name": f"e{id(params)}", "kind": "touch", "test_share": 0.5,
                                   "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"}),
    Case("GET", f"{P}/experiments/<int:experiment_id>", MARKETING, setup=_experiment),
    Case("PATCH", f"{P}/experiments/<int:experiment_id>", MARKETING, setup=_experiment, body={"description": "x"}),
    Case("POST", f"{P}/experiments/<int:experiment_id>/start", MARKETING, setup=_experiment),
    Case("POST", f"{P}/experiments/<int:experiment_id>/stop", MARKETING, setup=lambda ctx: _experiment(ctx, True)),
    Case("GET", f"{P}/experiments/<int:experiment_id>/results", MARKETING, setup=lambda ctx: _experiment(ctx, True)),
    Case("POST", f"{P}/experiments/<int:experiment_id>/refresh", MARKETING, setup=lambda ctx: _experiment(ctx, True)),
    Case("GET", f"{P}/reviews", MARKETING),
    Case("POST", f"{P}/reviews", MARKETING, body={"period": "month", "start": "2026-02-01"}),
    Case("GET", f"{P}/reviews/<int:review_id>", MARKETING, setup=_review),
    Case("GET", f"{P}/reviews/<int:review_id>/export.csv", MARKETING, setup=_review),
]
