"""Authorization cases for every journeys route (run by tests/test_authz_matrix.py)."""

from __future__ import annotations

import itertools

from tests.authz import Case

STAFF = frozenset({"marketer", "moderator", "redemption_staff", "admin"})
MARKETING = frozenset({"marketer", "admin"})
P = "/api/v1/journeys"
_n = itertools.count()


def _template(ctx):
    from extensions import db
    from journeys import services
    from journeys.models import JourneyTemplate

    if not db.session.query(JourneyTemplate).filter_by(key="authz").first():
        services.create_template(None, {"key": "authz", "category": "community", "subject": {"en": "Hi"},
                                        "body": {"en": "Hello"}})
        db.session.commit()
    return {"key": "authz"}


def _definition():
    return {"trigger": {"type": "event", "event": "member.registered"}, "audience": {"type": "everyone"},
            "entry": {"rule": "once"},
            "steps": [{"id": "send", "type": "action", "action": "send", "template": "authz", "next": "call"},
                      {"id": "call", "type": "action", "action": "task", "title": "Call"}]}


def _journey(ctx):
    from extensions import db
    from journeys import services

    _template(ctx)
    journey = services.create(None, {"name": f"authz {next(_n)}", "definition": _definition()})
    db.session.commit()
    return {"journey_id": journey.id}


def _task(ctx):
    from community.models import utcnow
    from extensions import db
    from journeys import engine, services

    params = _journey(ctx)
    journey = services.set_status(None, params["journey_id"], "activate")
    eid = engine.enrol(journey, ctx.users["owner"].id, "once", utcnow())
    db.session.commit()
    engine.advance([eid])
    from journeys.models import JourneyTask

    return {"task_id": db.session.query(JourneyTask.id).filter_by(enrolment_id=eid).scalar()}


def _new_journey(ctx, params):
    return {"name": f"authz new {next(_n)}", "definition": _definition()}


def _new_template(ctx, params):
    return {"key": f"authz-{next(_n)}", "category": "marketing", "subject": {"en": "S"}, "body": {"en": "B"}}


CASES = [
    Case("GET", P, STAFF),
    Case("POST", P, MARKETING, setup=_template, body=_new_journey),
    Case("GET", f"{P}/<int:journey_id>", STAFF, setup=_journey),
    Case("PATCH", f"{P}/<int:journey_id>", MARKETING, setup=_journey, body={"description": "changed"}),
    Case("POST", f"{P}/<int:journey_id>/status", MARKETING, setup=_journey, body={"status": "paused"},
         note="a draft cannot pause: 409 for those allowed"),
    Case("GET", f"{P}/<int:journey_id>/versions", STAFF, setup=_journey),
    Case("GET", f"{P}/<int:journey_id>/stats", STAFF, setup=_journey),
    Case("GET", f"{P}/templates", STAFF),
    Case("POST", f"{P}/templates", MARKETING, body=_new_template),
    Case("GET", f"{P}/templates/<string:key>", STAFF, setup=_template),
    Case("PATCH", f"{P}/templates/<string:key>", MARKETING, setup=_template, body={"subject": {"en": "New"}}),
    Case("GET", f"{P}/tasks", STAFF),
    Case("POST", f"{P}/tasks/<int:task_id>/done", STAFF, setup=_task),
]

# Console pages: anonymous visitors are sent to sign in (302), members get 404, staff without the
# permission 403; a POST without form fields ends in a flashed error and a 303 back.
CASES += [
    Case("GET", "/console/journeys", STAFF, anonymous_status=(302,)),
    Case("GET", "/console/journeys/<int:journey_id>", STAFF, setup=_journey, anonymous_status=(302,)),
    Case("POST", "/console/journeys/<int:journey_id>/status", MARKETING, setup=_journey, anonymous_status=(302,)),
]
