"""Property-based contract test: schemathesis against the app's own served OpenAPI document.

Every operation of ``/api/v1/openapi.json`` is exercised in-process (WSGI) with all of
schemathesis' checks, in all its phases (examples, coverage, fuzzing and stateful: chains of
calls linked by the ids responses return), as a member and as an admin, on whichever backend
the suite runs on (the embedded default or ``DATABASE_URL`` / ``REDIS_URL``).  Zero failures is
the bar: no 5xx, no response outside its schema, no undocumented status or content type, no
invalid input accepted, no valid input rejected.

The data is the demo data (``flask demo-data``); the member is alice, the admin is the demo
admin, both with an API token.  Before each call the two actors are made usable again (token not
revoked, not suspended, roles as loaded): fuzzing may revoke, suspend or demote them, which would
otherwise turn the rest of the run into 401s.

Budget: ``KINSHIP_CONTRACT_EXAMPLES`` examples per operation in the fuzzing phase (default 3)
and ``KINSHIP_CONTRACT_STEPS`` stateful scenarios (default 5).  A long run::

    KINSHIP_CONTRACT_EXAMPLES=200 KINSHIP_CONTRACT_STEPS=300 make test PYTEST_ARGS="tests/contract -x"
"""

from __future__ import annotations

import os
import secrets

import hypothesis
import pytest
import schemathesis
from sqlalchemy import delete, update

from extensions import db, get_redis
from tests.conftest import _empty_all_tables, make_config

EXAMPLES = int(os.environ.get("KINSHIP_CONTRACT_EXAMPLES", "3"))
STEPS = int(os.environ.get("KINSHIP_CONTRACT_STEPS", "5"))
SEED = int(os.environ.get("KINSHIP_CONTRACT_SEED", "12"))

# Operations whose input rules go beyond what JSON Schema can say (a rule about two fields
# together, or one that needs the database): a request valid by the document may still get a
# 422 naming the field.  For these alone, ``positive_data_acceptance`` (which forbids that) is
# off; every other check still runs on them.
CROSS_FIELD_RULES = {
    "POST /api/v1/auth/register": "password strength (distinct characters), beyond its length",
    "POST /api/v1/me/password": "the current password must be the right one",
    "POST /api/v1/points/events": "a purchase needs an amount, a refund the purchase it refunds",
    "POST /api/v1/points/events/batch": "the same, per event",
    "POST /api/v1/admin/points/adjustments": "the delta is not zero",
    "POST /api/v1/admin/points/campaigns": "a campaign ends after it starts",
    "PATCH /api/v1/admin/points/campaigns/{campaign_id}": "the same, against the stored dates",
    "POST /api/v1/threads/{thread_id}/posts": "a quoted post must be a visible post of the thread",
    "PATCH /api/v1/posts/{post_id}": "only a thread's first post has a title",
    "PUT /api/v1/surveys/{survey_id}/response": "answers must fit the survey's own questions",
    "POST /api/v1/surveys/{survey_id}/response": "the same, and every required question answered",
    "POST /api/v1/admin/surveys": "a survey closes after it opens; a definition's questions are consistent",
    "PATCH /api/v1/admin/surveys/{survey_id}": "the same, against the stored survey",
    "POST /api/v1/admin/focus-groups": "a session ends after it starts; deadlines fall before the start",
    "PATCH /api/v1/admin/focus-groups/{session_id}": "the same, against the stored session",
    "POST /api/v1/admin/rewards/{reward_id}/codes": "the uploaded file is UTF-8 text",
    "POST /api/v1/admin/rewards": "a reward's window ends after it starts",
    "PATCH /api/v1/admin/rewards/{reward_id}": "the same, against the stored reward",
    "GET /api/v1/tiers/stats/movements": "until is after since, at most ten years",
    "GET /api/v1/posts/search": "q holds at least one word (letters or digits of any script)",
    "PUT /api/v1/admin/tiers/rules": "every tier above aware has a requirement, and harder tiers ask more",
    "POST /api/v1/admin/tiers/what-if": "the same",
    "POST /api/v1/me/tokens": "the password must be the account's current one",
    "PATCH /api/v1/me/notification-preferences": "the time zone must be an IANA zone name",
    "POST /api/v1/auth/verify-email": "the token must be one the server emailed, unexpired",
    "POST /api/v1/me/email": "the password must be right and the address a new one",
    "POST /api/v1/auth/password-reset/confirm": "the token must be one the server emailed; password strength",
    "POST /api/v1/admin/webhooks/endpoints": "the URL must be http(s) and reach an allowed host",
    "PATCH /api/v1/admin/webhooks/endpoints/{endpoint_id}": "the same",
    "PUT /api/v1/analytics/settings": "the thresholds must be consistent (each minimum below its maximum)",
    "GET /api/v1/analytics/kpis/{metric}": "the breakdown must be one of the metric's; end after start",
    "GET /api/v1/analytics/kpis/{metric}/export.csv": "the same",
    "POST /api/v1/analytics/segments": "the definition's conditions must name known fields and operators",
    "PATCH /api/v1/analytics/segments/{segment_id}": "the same",
    "POST /api/v1/analytics/segments/preview": "the same",
    "POST /api/v1/analytics/experiments": "an experiment ends after it starts; its target fits its kind",
    "PATCH /api/v1/analytics/experiments/{experiment_id}": "the same, against the stored experiment",
    "GET /api/v1/analytics/rfm/movements": "until is after since",
    "POST /api/v1/journeys": "the definition's steps form a valid graph of known steps, templates, segments, surveys",
    "PATCH /api/v1/journeys/{journey_id}": "the same",
    "POST /api/v1/journeys/templates": "every template has an English text",
    "PATCH /api/v1/journeys/templates/{key}": "the same",
}


# Text bodies: whatever schemathesis generates as "not a string" is sent as text, which is a
# valid CSV; ``negative_data_rejection`` cannot tell, so it is off for this one operation.
TEXT_BODIES = {"POST /api/v1/admin/rewards/{reward_id}/codes": "a text/csv body is text whatever it holds"}


# Each actor's API token, chosen now (the documents are loaded before any fixture runs) and
# stored by ``contract_app``; schemathesis sends it as configured auth.
SECRETS = {actor: f"kin_contract_{actor}_{secrets.token_urlsafe(16)}" for actor in ("member", "admin")}


def _config() -> schemathesis.Config:
    operations = [
        {"include-name": name, "checks": {"positive_data_acceptance": {"enabled": False},
                                          **({"negative_data_rejection": {"enabled": False}}
                                             if name in TEXT_BODIES else {})}}
        for name in CROSS_FIELD_RULES
    ]
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "allow-x00": False, "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": True, "max-steps": 10}},
        "checks": {"enabled": True},
        "operations": operations,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    })


def _build_app():
    from app import create_app

    return create_app(make_config(
        LOGIN_RATE_LIMIT=(10_000, 60), REGISTER_RATE_LIMIT=(10_000, 3600),
        REDEMPTION_RATE_LIMIT=(10_000, 60), SURVEY_SUBMIT_RATE_LIMIT=(10_000, 60),
    ))


# The document needs no database: it is read once, when the tests are collected.
APP = _build_app()
member_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", APP, config=_config())
admin_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", APP, config=_config())
SCHEMAS = {"member": member_schema, "admin": admin_schema}


def _token_auth(actor: str):
    """The actor's API token as schemathesis auth (so its auth checks know it is the real one)."""

    class Token:
        def get(self, case, context):
            return SECRETS[actor]

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return Token


for _actor, _schema_of_actor in SCHEMAS.items():
    _schema_of_actor.auth(refresh_interval=None, retry_on=[])(_token_auth(_actor))


@pytest.fixture(scope="module")
def contract_app(_schema):
    """The app with the demo data and an API token per actor; emptied afterwards."""
    from community.auth import hash_token
    from community.models import ApiToken
    from demo import load_demo

    app = APP
    with app.app_context():
        ctx = load_demo()
        actors = {"member": ctx["members"]["alice"], "admin": ctx["members"]["admin"]}
        state = {}
        for name, user in actors.items():
            secret = SECRETS[name]
            token = ApiToken(user_id=user.id, name=f"contract-{name}", token_hash=hash_token(secret),
                             prefix=secret[:10])
            db.session.add(token)
            db.session.flush()
            state[name] = {"user_id": user.id, "token_id": token.id, "roles": set(user.roles)}
        db.session.commit()
        db.session.remove()
    app.extensions["contract_actors"] = state
    yield app
    with app.app_context():
        db.session.remove()
        _empty_all_tables(_schema)
        get_redis(app).flushdb()
        db.session.remove()
        db.engine.dispose()


def _restore_actors(app) -> None:
    """Undo what fuzzing may have done to the two actors (revoked token, suspension, roles)."""
    from community.models import ApiToken, User, UserRole

    with app.app_context():
        for actor in app.extensions["contract_actors"].values():
            db.session.execute(update(ApiToken).where(ApiToken.id == actor["token_id"]).values(revoked_at=None))
            db.session.execute(update(User).where(User.id == actor["user_id"])
                               .values(suspended_until=None, silenced_until=None))
            user = db.session.get(User, actor["user_id"])
            if set(user.roles) != actor["roles"]:
                db.session.execute(delete(UserRole).where(UserRole.user_id == user.id))
                for role in actor["roles"] - {"member"}:
                    db.session.add(UserRole(user_id=user.id, role=role))
        db.session.commit()
        db.session.remove()


def _bearer_only(case) -> None:
    """Drop the cookie-session credentials schemathesis generates for the other security scheme:
    the actor authenticates with its configured token alone (the auth checks test the rest)."""
    if case.headers:
        case.headers.pop("X-CSRF-Token", None)
    if case.cookies:
        case.cookies.pop("session", None)


@member_schema.parametrize()
def test_every_operation_keeps_its_contract_as_a_member(case, contract_app):
    _restore_actors(contract_app)
    _bearer_only(case)
    case.call_and_validate()


@admin_schema.parametrize()
def test_every_operation_keeps_its_contract_as_an_admin(case, contract_app):
    _restore_actors(contract_app)
    _bearer_only(case)
    case.call_and_validate()


@pytest.mark.parametrize("actor", ["member", "admin"])
def test_stateful_sequences_keep_the_contract(actor, contract_app):
    class Machine(SCHEMAS[actor].as_state_machine()):
        def before_call(self, case):
            _restore_actors(contract_app)
            _bearer_only(case)

    Machine.run(settings=hypothesis.settings(
        max_examples=STEPS, stateful_step_count=10, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    ))
