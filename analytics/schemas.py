"""What staff send to and see of analytics (all routes are staff-only)."""

from __future__ import annotations

import marshmallow as ma
from webargs.fields import DelimitedList

from contract import PatchSchema, Schema
from contract import fields as cf
from pagination import PageArgs

from .experiments import METRICS as EXPERIMENT_METRICS
from .kpis import BREAKDOWNS, PERIODS
from .models import EXPERIMENT_KINDS, HEALTH_COMPONENTS, REVIEW_PERIODS, RFM_CLASSES
from .services import RUN_KINDS

_ID = ma.validate.Range(min=1, max=2**31 - 1)
_TAG = ma.validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9 _.:\-]{0,63}$", error="1-64 letters, digits, space, _ . : -")


def _int(**kw):
    return cf.Integer(**kw)


# --------------------------------------------------------------------------- settings


class ClassRuleIn(Schema):
    rfm_class = cf.String(data_key="class", required=True, validate=ma.validate.OneOf(RFM_CLASSES))
    r_min = _int(validate=ma.validate.Range(min=1, max=5))
    r_max = _int(validate=ma.validate.Range(min=1, max=5))
    f_min = _int(validate=ma.validate.Range(min=1, max=5))
    f_max = _int(validate=ma.validate.Range(min=1, max=5))
    m_min = _int(validate=ma.validate.Range(min=1, max=5))
    m_max = _int(validate=ma.validate.Range(min=1, max=5))

    @ma.post_load
    def _key(self, data, **kwargs):
        data["class"] = data.pop("rfm_class")
        return data


class RfmSettingsIn(Schema):
    window_days = _int(validate=ma.validate.Range(min=7, max=3650))
    classes = ma.fields.List(ma.fields.Nested(ClassRuleIn), validate=ma.validate.Length(min=1, max=20))
    default_class = cf.String(validate=ma.validate.OneOf(RFM_CLASSES))


def _weights(names):
    return ma.fields.Dict(keys=cf.String(validate=ma.validate.OneOf(names)),
                          values=ma.fields.Float(validate=ma.validate.Range(min=0, max=1000)))


class ValueSettingsIn(Schema):
    weights = _weights(("historical", "potential", "strategic"))


class HealthSettingsIn(Schema):
    weights = _weights(HEALTH_COMPONENTS)
    recency_full_days = _int(validate=ma.validate.Range(min=0, max=3650))
    recency_zero_days = _int(validate=ma.validate.Range(min=1, max=3650))
    trend_days = _int(validate=ma.validate.Range(min=7, max=730))
    community_days = _int(validate=ma.validate.Range(min=1, max=730))
    community_full = _int(validate=ma.validate.Range(min=1, max=10_000))
    survey_days = _int(validate=ma.validate.Range(min=1, max=730))
    survey_full = _int(validate=ma.validate.Range(min=1, max=1000))
    flag_penalty = ma.fields.Float(validate=ma.validate.Range(min=0, max=100))


class RoiSettingsIn(Schema):
    cost_per_point = ma.fields.Float(validate=ma.validate.Range(min=0, max=1000))
    reward_cost_per_point = ma.fields.Float(validate=ma.validate.Range(min=0, max=1000))


class AnalyticsSettingsIn(Schema):
    rfm = ma.fields.Nested(RfmSettingsIn)
    value = ma.fields.Nested(ValueSettingsIn)
    health = ma.fields.Nested(HealthSettingsIn)
    roi = ma.fields.Nested(RoiSettingsIn)
    note = cf.String(load_default="", validate=ma.validate.Length(max=500))

    @ma.validates_schema
    def _coherent(self, data, **kwargs):
        for part, names in (("value", ("historical", "potential", "strategic")), ("health", HEALTH_COMPONENTS)):
            weights = (data.get(part) or {}).get("weights")
            if weights is not None and (set(weights) != set(names) or sum(weights.values()) <= 0):
                raise ma.ValidationError({part: {"weights": [f"All of {', '.join(names)}, not all zero."]}})
        health = data.get("health") or {}
        if ("recency_full_days" in health) != ("recency_zero_days" in health):
            raise ma.ValidationError({"health": ["recency_full_days and recency_zero_days go together."]})
        if health.get("recency_full_days", 0) >= health.get("recency_zero_days", 10**9):
            raise ma.ValidationError({"health": {"recency_zero_days": ["Greater than recency_full_days."]}})


class AnalyticsSettingsOut(Schema):
    version = cf.Integer()
    settings = ma.fields.Dict()


# --------------------------------------------------------------------------- KPIs


class KpiMetricOut(Schema):
    name = cf.String()
    aggregation = cf.String()
    description = cf.String()
    breakdowns = ma.fields.List(cf.String())


class KpiSeriesArgs(Schema):
    period = cf.String(load_default="day", validate=ma.validate.OneOf(PERIODS))
    start = ma.fields.Date(required=True)
    end = ma.fields.Date(required=True)
    breakdown = cf.String(load_default=None, validate=ma.validate.OneOf(BREAKDOWNS))
    dim_value = cf.String(load_default=None, validate=ma.validate.Length(min=1, max=64))


class KpiPointOut(Schema):
    period_start = ma.fields.Date()
    period_end = ma.fields.Date()
    days = cf.Integer()
    value = ma.fields.Float(allow_none=True)
    numerator = ma.fields.Float(allow_none=True)
    denominator = ma.fields.Float(allow_none=True)
    change = ma.fields.Float(allow_none=True)
    change_pct = ma.fields.Float(allow_none=True)


class KpiLineOut(Schema):
    dim_value = cf.String()
    points = ma.fields.List(ma.fields.Nested(KpiPointOut))


class KpiSeriesOut(Schema):
    metric = cf.String()
    aggregation = cf.String()
    period = cf.String()
    breakdown = cf.String(allow_none=True)
    series = ma.fields.List(ma.fields.Nested(KpiLineOut))


# --------------------------------------------------------------------------- runs


class AnalyticsRunIn(Schema):
    kind = cf.String(required=True, validate=ma.validate.OneOf(RUN_KINDS))


class AnalyticsRunOut(Schema):
    id = cf.Integer()
    kind = cf.String()
    status = cf.String()
    stats = ma.fields.Dict()
    error = cf.String(allow_none=True)
    created_at = cf.DateTime()
    started_at = cf.DateTime(allow_none=True)
    finished_at = cf.DateTime(allow_none=True)


# --------------------------------------------------------------------------- members


class RfmOut(Schema):
    recency_days = ma.fields.Float(allow_none=True)
    frequency = cf.Integer()
    monetary = ma.fields.Float()
    r = cf.Integer()
    f = cf.Integer()
    m = cf.Integer()
    rfm_class = cf.String(data_key="class", attribute="class")


class ValueOut(Schema):
    score = ma.fields.Float()
    historical = ma.fields.Float()
    potential = ma.fields.Float()
    strategic = ma.fields.Float()


class HealthOut(Schema):
    index = ma.fields.Float()
    contributions = ma.fields.Dict(keys=cf.String(), values=ma.fields.Float())


class ScoreOut(Schema):
    computed_at = cf.DateTime()
    rfm = ma.fields.Nested(RfmOut)
    value = ma.fields.Nested(ValueOut)
    health = ma.fields.Nested(HealthOut)
    last_activity_at = cf.DateTime(allow_none=True)
    latest_nps = cf.Integer(allow_none=True)
    open_flags = cf.Integer()


class ClassChangeOut(Schema):
    from_class = cf.String(allow_none=True)
    to_class = cf.String()
    changed_at = cf.DateTime()


class MemberAnalyticsOut(Schema):
    member_id = cf.Integer()
    score = ma.fields.Nested(ScoreOut, allow_none=True)
    strategic = ma.fields.Boolean()
    strategic_note = cf.String()
    tags = ma.fields.List(cf.String())
    class_history = ma.fields.List(ma.fields.Nested(ClassChangeOut))


class StrategicIn(Schema):
    strategic = cf.Boolean(required=True)
    note = cf.String(load_default="", validate=ma.validate.Length(max=500))


class TagIn(Schema):
    tag = cf.String(required=True, validate=_TAG)


class BulkTagIn(TagIn):
    member_ids = ma.fields.List(_int(validate=_ID), required=True, validate=ma.validate.Length(min=1, max=10_000))


class TagResultOut(Schema):
    tag = cf.String()
    tagged = cf.Integer()


class ClassCountOut(Schema):
    rfm_class = cf.String(data_key="class", attribute="class")
    members = cf.Integer()
    avg_value = ma.fields.Float(allow_none=True)
    avg_health = ma.fields.Float(allow_none=True)


class ClassMovementArgs(PageArgs):
    since = cf.DateTime(required=True)
    until = cf.DateTime(load_default=None)


class ClassMovementOut(Schema):
    from_class = cf.String(allow_none=True)
    to_class = cf.String()
    members = cf.Integer()


# --------------------------------------------------------------------------- segments


class SegmentIn(Schema):
    name = cf.String(required=True, validate=ma.validate.Length(min=1, max=120))
    description = cf.String(load_default="", validate=ma.validate.Length(max=2000))
    definition = ma.fields.Dict(required=True)


class SegmentPatchIn(PatchSchema):
    name = cf.String(validate=ma.validate.Length(min=1, max=120))
    description = cf.String(validate=ma.validate.Length(max=2000))
    definition = ma.fields.Dict()


class SegmentPreviewIn(Schema):
    definition = ma.fields.Dict(required=True)


class SegmentPreviewOut(Schema):
    members = cf.Integer()


class SegmentOut(Schema):
    id = cf.Integer()
    name = cf.String()
    description = cf.String()
    definition = ma.fields.Dict()
    member_count = cf.Integer()
    materialised_at = cf.DateTime(allow_none=True)
    created_by_id = cf.Integer(allow_none=True)
    created_at = cf.DateTime()
    updated_at = cf.DateTime()


class SegmentMemberOut(Schema):
    member_id = cf.Integer()


# --------------------------------------------------------------------------- experiments


class ExperimentIn(Schema):
    name = cf.String(required=True, validate=ma.validate.Length(min=1, max=120))
    description = cf.String(load_default="", validate=ma.validate.Length(max=2000))
    kind = cf.String(required=True, validate=ma.validate.OneOf(EXPERIMENT_KINDS))
    test_share = ma.fields.Float(required=True, validate=ma.validate.Range(min=0.0001, max=0.9999))
    stratify_by = cf.String(load_default=None, allow_none=True,
                                   validate=ma.validate.OneOf(("tier", "rfm_class")))
    salt = cf.String(load_default=None, allow_none=True,
                            validate=[ma.validate.Length(min=1, max=64), ma.validate.Regexp(r"^[A-Za-z0-9._\-]+$")])
    campaign_id = _int(load_default=None, allow_none=True, validate=_ID)
    reward_id = _int(load_default=None, allow_none=True, validate=_ID)
    segment_id = _int(load_default=None, allow_none=True, validate=_ID)
    starts_at = cf.DateTime(load_default=None)
    ends_at = cf.DateTime(load_default=None, allow_none=True)
    pre_days = _int(load_default=90, validate=ma.validate.Range(min=1, max=730))

    @ma.post_load
    def _drop_none_start(self, data, **kwargs):
        if data.get("starts_at") is None:
            data.pop("starts_at", None)
        return data


class ExperimentPatchIn(PatchSchema):
    name = cf.String(validate=ma.validate.Length(min=1, max=120))
    description = cf.String(validate=ma.validate.Length(max=2000))
    test_share = ma.fields.Float(validate=ma.validate.Range(min=0.0001, max=0.9999))
    stratify_by = cf.String(allow_none=True, validate=ma.validate.OneOf(("tier", "rfm_class")))
    segment_id = _int(allow_none=True, validate=_ID)
    starts_at = cf.DateTime()
    ends_at = cf.DateTime(allow_none=True)
    pre_days = _int(validate=ma.validate.Range(min=1, max=730))


class ExperimentOut(Schema):
    id = cf.Integer()
    name = cf.String()
    description = cf.String()
    kind = cf.String()
    status = cf.String()
    salt = cf.String()
    test_share = ma.fields.Float()
    stratify_by = cf.String(allow_none=True)
    campaign_id = cf.Integer(allow_none=True)
    reward_id = cf.Integer(allow_none=True)
    segment_id = cf.Integer(allow_none=True)
    starts_at = cf.DateTime()
    ends_at = cf.DateTime(allow_none=True)
    pre_days = cf.Integer()
    started_at = cf.DateTime(allow_none=True)
    stopped_at = cf.DateTime(allow_none=True)
    created_at = cf.DateTime()


class ExperimentStartOut(ExperimentOut):
    assigned = cf.Integer()


class ResultsArgs(Schema):
    metrics = DelimitedList(cf.String(validate=ma.validate.OneOf(EXPERIMENT_METRICS)),
                            metadata={"description": "Comma-separated; default: every metric."})
    live = ma.fields.Boolean(load_default=False, metadata={
        "description": "Compute from the purchases and the ledger now instead of the stored per-member "
                       "values (slow for a large population)."})


class ExperimentResultsOut(Schema):
    experiment_id = cf.Integer()
    kind = cf.String()
    status = cf.String()
    source = cf.String(metadata={"description": "stored (per-member values as of as_of) or live"})
    as_of = cf.DateTime(metadata={"description": "End of the post-period the numbers cover."})
    pre_period = ma.fields.Dict()
    post_period = ma.fields.Dict()
    assignment = ma.fields.Dict()
    metrics = ma.fields.Dict()
    roi = ma.fields.Dict()


# --------------------------------------------------------------------------- reviews


class ReviewIn(Schema):
    period = cf.String(required=True, validate=ma.validate.OneOf(REVIEW_PERIODS))
    start = ma.fields.Date(required=True)
    note = cf.String(load_default="", validate=ma.validate.Length(max=2000))


class ReviewListArgs(Schema):
    period = cf.String(load_default=None, validate=ma.validate.OneOf(REVIEW_PERIODS))
    page = cf.QueryInteger(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = cf.QueryInteger(load_default=20, validate=ma.validate.Range(min=1, max=100))


class ReviewOut(Schema):
    id = cf.Integer()
    period = cf.String()
    period_start = ma.fields.Date()
    period_end = ma.fields.Date()
    note = cf.String()
    created_by_id = cf.Integer(allow_none=True)
    created_at = cf.DateTime()


class ReviewDetailOut(ReviewOut):
    data = ma.fields.Dict()
