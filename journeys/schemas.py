"""What staff send to and see of journeys (every route is staff-only)."""

from __future__ import annotations

import marshmallow as ma

from contract import PatchSchema, Schema
from contract import fields as cf
from pagination import PageArgs

from .models import STATUSES, TASK_STATUSES

_KEY = ma.validate.Regexp(r"^[a-z0-9][a-z0-9_.-]{0,63}$", error="1-64 lower-case letters, digits, _ . -")
_CATEGORIES = ("points_redemptions", "tiers", "community", "research", "marketing")
_DEFINITION_DOC = ("{trigger, audience, entry, goal, steps}: see docs/journeys.md. Validated at save time; "
                   "errors name the field, e.g. definition.steps.2.next.")


def _texts(required: bool):
    return ma.fields.Dict(keys=cf.String(validate=ma.validate.OneOf(("en", "zh-CN"))),
                          values=cf.String(validate=ma.validate.Length(min=1, max=4000)), required=required,
                          metadata={"description": "Per locale: en (required) and zh-CN."})


class JourneyTemplateIn(Schema):
    key = cf.String(required=True, validate=_KEY)
    category = cf.String(required=True, validate=ma.validate.OneOf(_CATEGORIES))
    subject = _texts(True)
    body = _texts(True)


class JourneyTemplatePatchIn(PatchSchema):
    category = cf.String(validate=ma.validate.OneOf(_CATEGORIES))
    subject = _texts(False)
    body = _texts(False)


class JourneyTemplateOut(Schema):
    id = cf.Integer()
    key = cf.String()
    category = cf.String()
    subject = ma.fields.Dict(keys=cf.String(), values=cf.String())
    body = ma.fields.Dict(keys=cf.String(), values=cf.String())
    created_at = cf.DateTime()
    updated_at = cf.DateTime()


class JourneyIn(Schema):
    name = cf.String(required=True, validate=ma.validate.Length(min=1, max=120))
    description = cf.String(load_default="", validate=ma.validate.Length(max=4000))
    holdout_share = ma.fields.Float(load_default=0.0, validate=ma.validate.Range(min=0, max=0.5),
                                    metadata={"description": "Share of entrants held out (0-0.5)."})
    definition = ma.fields.Dict(required=True, metadata={"description": _DEFINITION_DOC})


class JourneyPatchIn(PatchSchema):
    name = cf.String(validate=ma.validate.Length(min=1, max=120))
    description = cf.String(validate=ma.validate.Length(max=4000))
    holdout_share = ma.fields.Float(validate=ma.validate.Range(min=0, max=0.5))
    definition = ma.fields.Dict(metadata={"description": _DEFINITION_DOC + " Writes a new version."})
    migrate = cf.Boolean(metadata={"description": "Move members inside to the new version (default: they "
                                                  "finish on theirs)."})


class JourneyStatusIn(Schema):
    status = cf.String(required=True, validate=ma.validate.OneOf(("active", "paused", "archived")))


class JourneyVersionOut(Schema):
    id = cf.Integer()
    number = cf.Integer()
    trigger = ma.fields.Dict()
    audience = ma.fields.Dict()
    entry = ma.fields.Dict()
    goal = ma.fields.Dict(allow_none=True)
    steps = ma.fields.List(ma.fields.Dict())
    created_by_id = cf.Integer(allow_none=True)
    created_at = cf.DateTime()


class JourneyOut(Schema):
    id = cf.Integer()
    name = cf.String()
    description = cf.String()
    status = cf.String(validate=ma.validate.OneOf(STATUSES))
    holdout_share = ma.fields.Float()
    experiment_id = cf.Integer(allow_none=True)
    current_version_id = cf.Integer(allow_none=True)
    created_by_id = cf.Integer(allow_none=True)
    created_at = cf.DateTime()
    updated_at = cf.DateTime()


class JourneyDetailOut(JourneyOut):
    version = ma.fields.Nested(JourneyVersionOut)
    migrated = cf.Integer(metadata={"description": "Members moved to the new version by this change."})


class JourneyListArgs(PageArgs):
    status = cf.String(validate=ma.validate.OneOf(STATUSES))


class JourneyArmStatsOut(Schema):
    entered = cf.Integer()
    converted = cf.Integer()
    conversion_rate = ma.fields.Float(allow_none=True)


class JourneyVariantComparisonOut(Schema):
    difference = ma.fields.Float(metadata={"description": "Conversion rate of this variant minus the first's."})
    ci_low = ma.fields.Float(metadata={"description": "95 % interval of the difference (unpooled Wald)."})
    ci_high = ma.fields.Float()
    p_value = ma.fields.Float(allow_none=True, metadata={
        "description": "Two-sided, pooled two-proportion z-test; null when neither variant converted or all did."})


class JourneyVariantStatsOut(Schema):
    variant_id = cf.String()
    weight = cf.Integer(allow_none=True, metadata={"description": "In the current version (null: no longer in it)."})
    assigned = cf.Integer(metadata={"description": "Members the step ran for with this variant (holdout arm "
                                                   "excluded)."})
    sent = cf.Integer()
    skipped = cf.Integer()
    failed = cf.Integer()
    skipped_by_reason = ma.fields.Dict(keys=cf.String(), values=cf.Integer())
    converted = cf.Integer(metadata={"description": "Members it was sent to who reached the journey's goal within "
                                                    "its window."})
    conversion_rate = ma.fields.Float(allow_none=True, metadata={"description": "converted / sent."})
    vs_first = ma.fields.Nested(JourneyVariantComparisonOut, allow_none=True, metadata={
        "description": "Against the first variant (null for the first, or when either was sent to nobody)."})


class JourneySampleRatioOut(Schema):
    p_value = ma.fields.Float()
    mismatch = cf.Boolean(metadata={"description": "p < 0.001: the split does not follow the weights."})


class JourneyStepStatsOut(Schema):
    step_id = cf.String()
    executed = cf.Integer()
    sent = cf.Integer()
    done = cf.Integer()
    failed = cf.Integer()
    skipped = cf.Integer()
    waiting = cf.Integer()
    skipped_by_reason = ma.fields.Dict(keys=cf.String(), values=cf.Integer())
    branches = ma.fields.Dict(keys=cf.String(), values=cf.Integer())
    email = ma.fields.Dict(keys=cf.String(), values=cf.Integer(),
                           metadata={"description": "Delivery states (state or state:reason) of the emails sent."})
    variants = ma.fields.List(ma.fields.Nested(JourneyVariantStatsOut), metadata={
        "description": "An A/B send's variants, the first (the one the others are compared with) first; else empty."})
    variant_sample_ratio = ma.fields.Nested(JourneySampleRatioOut, allow_none=True, metadata={
        "description": "Chi-square of the variants' assigned counts against the current weights."})


class JourneyStatsOut(Schema):
    entered = cf.Integer()
    active = cf.Integer()
    waiting = cf.Integer()
    done = cf.Integer()
    exited = cf.Integer()
    converted = cf.Integer()
    conversion_lift = ma.fields.Float(allow_none=True)
    arms = ma.fields.Dict(keys=cf.String(), values=ma.fields.Nested(JourneyArmStatsOut))
    steps = ma.fields.List(ma.fields.Nested(JourneyStepStatsOut))
    experiment_id = cf.Integer(allow_none=True)
    experiment_results = ma.fields.Dict(allow_none=True, metadata={
        "description": "GET /api/v1/analytics/experiments/{id}/results of the journey's holdout experiment."})


class JourneyTaskListArgs(PageArgs):
    status = cf.String(validate=ma.validate.OneOf(TASK_STATUSES))
    journey_id = cf.QueryId()


class JourneyTaskOut(Schema):
    id = cf.Integer()
    journey_id = cf.Integer()
    member_id = cf.Integer()
    title = cf.String()
    note = cf.String()
    status = cf.String()
    created_at = cf.DateTime()
    done_at = cf.DateTime(allow_none=True)
    done_by_id = cf.Integer(allow_none=True)
