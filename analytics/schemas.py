"""What staff send to and see of analytics (all routes are staff-only)."""

from __future__ import annotations

import marshmallow as ma
from webargs.fields import DelimitedList

from points.schemas import NaiveUTCDateTime

from .experiments import METRICS as EXPERIMENT_METRICS
from .kpis import BREAKDOWNS, PERIODS
from .models import EXPERIMENT_KINDS, HEALTH_COMPONENTS, REVIEW_PERIODS, RFM_CLASSES
from .services import RUN_KINDS

_ID = ma.validate.Range(min=1, max=2**31 - 1)
_TAG = ma.validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9 _.:\-]{0,63}$", error="1-64 letters, digits, space, _ . : -")


def _int(**kw):
    return ma.fields.Integer(strict=True, **kw)


# --------------------------------------------------------------------------- settings


class ClassRuleIn(ma.Schema):
    rfm_class = ma.fields.String(data_key="class", required=True, validate=ma.validate.OneOf(RFM_CLASSES))
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


class RfmSettingsIn(ma.Schema):
    window_days = _int(validate=ma.validate.Range(min=7, max=3650))
    classes = ma.fields.List(ma.fields.Nested(ClassRuleIn), validate=ma.validate.Length(min=1, max=20))
    default_class = ma.fields.String(validate=ma.validate.OneOf(RFM_CLASSES))


def _weights(names):
    return ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.OneOf(names)),
                          values=ma.fields.Float(validate=ma.validate.Range(min=0, max=1000)))


class ValueSettingsIn(ma.Schema):
    weights = _weights(("historical", "potential", "strategic"))


class HealthSettingsIn(ma.Schema):
    weights = _weights(HEALTH_COMPONENTS)
    recency_full_days = _int(validate=ma.validate.Range(min=0, max=3650))
    recency_zero_days = _int(validate=ma.validate.Range(min=1, max=3650))
    trend_days = _int(validate=ma.validate.Range(min=7, max=730))
    community_days = _int(validate=ma.validate.Range(min=1, max=730))
    community_full = _int(validate=ma.validate.Range(min=1, max=10_000))
    survey_days = _int(validate=ma.validate.Range(min=1, max=730))
    survey_full = _int(validate=ma.validate.Range(min=1, max=1000))
    flag_penalty = ma.fields.Float(validate=ma.validate.Range(min=0, max=100))


class RoiSettingsIn(ma.Schema):
    cost_per_point = ma.fields.Float(validate=ma.validate.Range(min=0, max=1000))
    reward_cost_per_point = ma.fields.Float(validate=ma.validate.Range(min=0, max=1000))


class AnalyticsSettingsIn(ma.Schema):
    rfm = ma.fields.Nested(RfmSettingsIn)
    value = ma.fields.Nested(ValueSettingsIn)
    health = ma.fields.Nested(HealthSettingsIn)
    roi = ma.fields.Nested(RoiSettingsIn)
    note = ma.fields.String(load_default="", validate=ma.validate.Length(max=500))

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


class AnalyticsSettingsOut(ma.Schema):
    version = ma.fields.Integer()
    settings = ma.fields.Dict()


# --------------------------------------------------------------------------- KPIs


class KpiMetricOut(ma.Schema):
    name = ma.fields.String()
    aggregation = ma.fields.String()
    description = ma.fields.String()
    breakdowns = ma.fields.List(ma.fields.String())


class KpiSeriesArgs(ma.Schema):
    period = ma.fields.String(load_default="day", validate=ma.validate.OneOf(PERIODS))
    start = ma.fields.Date(required=True)
    end = ma.fields.Date(required=True)
    breakdown = ma.fields.String(load_default=None, validate=ma.validate.OneOf(BREAKDOWNS))
    dim_value = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=64))


class KpiPointOut(ma.Schema):
    period_start = ma.fields.Date()
    period_end = ma.fields.Date()
    days = ma.fields.Integer()
    value = ma.fields.Float(allow_none=True)
    numerator = ma.fields.Float(allow_none=True)
    denominator = ma.fields.Float(allow_none=True)
    change = ma.fields.Float(allow_none=True)
    change_pct = ma.fields.Float(allow_none=True)


class KpiLineOut(ma.Schema):
    dim_value = ma.fields.String()
    points = ma.fields.List(ma.fields.Nested(KpiPointOut))


class KpiSeriesOut(ma.Schema):
    metric = ma.fields.String()
    aggregation = ma.fields.String()
    period = ma.fields.String()
    breakdown = ma.fields.String(allow_none=True)
    series = ma.fields.List(ma.fields.Nested(KpiLineOut))


# --------------------------------------------------------------------------- runs


class AnalyticsRunIn(ma.Schema):
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(RUN_KINDS))


class AnalyticsRunOut(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    status = ma.fields.String()
    stats = ma.fields.Dict()
    error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


# --------------------------------------------------------------------------- members


class RfmOut(ma.Schema):
    recency_days = ma.fields.Float(allow_none=True)
    frequency = ma.fields.Integer()
    monetary = ma.fields.Float()
    r = ma.fields.Integer()
    f = ma.fields.Integer()
    m = ma.fields.Integer()
    rfm_class = ma.fields.String(data_key="class", attribute="class")


class ValueOut(ma.Schema):
    score = ma.fields.Float()
    historical = ma.fields.Float()
    potential = ma.fields.Float()
    strategic = ma.fields.Float()


class HealthOut(ma.Schema):
    index = ma.fields.Float()
    contributions = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Float())


class ScoreOut(ma.Schema):
    computed_at = ma.fields.DateTime()
    rfm = ma.fields.Nested(RfmOut)
    value = ma.fields.Nested(ValueOut)
    health = ma.fields.Nested(HealthOut)
    last_activity_at = ma.fields.DateTime(allow_none=True)
    latest_nps = ma.fields.Integer(allow_none=True)
    open_flags = ma.fields.Integer()


class ClassChangeOut(ma.Schema):
    from_class = ma.fields.String(allow_none=True)
    to_class = ma.fields.String()
    changed_at = ma.fields.DateTime()


class MemberAnalyticsOut(ma.Schema):
    member_id = ma.fields.Integer()
    score = ma.fields.Nested(ScoreOut, allow_none=True)
    strategic = ma.fields.Boolean()
    strategic_note = ma.fields.String()
    tags = ma.fields.List(ma.fields.String())
    class_history = ma.fields.List(ma.fields.Nested(ClassChangeOut))


class StrategicIn(ma.Schema):
    strategic = ma.fields.Boolean(required=True)
    note = ma.fields.String(load_default="", validate=ma.validate.Length(max=500))


class TagIn(ma.Schema):
    tag = ma.fields.String(required=True, validate=_TAG)


class BulkTagIn(TagIn):
    member_ids = ma.fields.List(_int(validate=_ID), required=True, validate=ma.validate.Length(min=1, max=10_000))


class TagResultOut(ma.Schema):
    tag = ma.fields.String()
    tagged = ma.fields.Integer()


class ClassCountOut(ma.Schema):
    rfm_class = ma.fields.String(data_key="class", attribute="class")
    members = ma.fields.Integer()
    avg_value = ma.fields.Float(allow_none=True)
    avg_health = ma.fields.Float(allow_none=True)


class ClassMovementArgs(ma.Schema):
    since = NaiveUTCDateTime(required=True)
    until = NaiveUTCDateTime(load_default=None)


class ClassMovementOut(ma.Schema):
    from_class = ma.fields.String(allow_none=True)
    to_class = ma.fields.String()
    members = ma.fields.Integer()


# --------------------------------------------------------------------------- segments


class SegmentIn(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))
    definition = ma.fields.Dict(required=True)


class SegmentPatchIn(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=120))
    description = ma.fields.String(validate=ma.validate.Length(max=2000))
    definition = ma.fields.Dict()


class SegmentPreviewIn(ma.Schema):
    definition = ma.fields.Dict(required=True)


class SegmentPreviewOut(ma.Schema):
    members = ma.fields.Integer()


class SegmentOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    description = ma.fields.String()
    definition = ma.fields.Dict()
    member_count = ma.fields.Integer()
    materialised_at = ma.fields.DateTime(allow_none=True)
    created_by_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class SegmentMemberOut(ma.Schema):
    member_id = ma.fields.Integer()


# --------------------------------------------------------------------------- experiments


class ExperimentIn(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(EXPERIMENT_KINDS))
    test_share = ma.fields.Float(required=True, validate=ma.validate.Range(min=0.0001, max=0.9999))
    stratify_by = ma.fields.String(load_default=None, allow_none=True,
                                   validate=ma.validate.OneOf(("tier", "rfm_class")))
    salt = ma.fields.String(load_default=None, allow_none=True,
                            validate=[ma.validate.Length(min=1, max=64), ma.validate.Regexp(r"^[A-Za-z0-9._\-]+$")])
    campaign_id = _int(load_default=None, allow_none=True, validate=_ID)
    reward_id = _int(load_default=None, allow_none=True, validate=_ID)
    segment_id = _int(load_default=None, allow_none=True, validate=_ID)
    starts_at = NaiveUTCDateTime(load_default=None)
    ends_at = NaiveUTCDateTime(load_default=None, allow_none=True)
    pre_days = _int(load_default=90, validate=ma.validate.Range(min=1, max=730))

    @ma.post_load
    def _drop_none_start(self, data, **kwargs):
        if data.get("starts_at") is None:
            data.pop("starts_at", None)
        return data


class ExperimentPatchIn(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=120))
    description = ma.fields.String(validate=ma.validate.Length(max=2000))
    test_share = ma.fields.Float(validate=ma.validate.Range(min=0.0001, max=0.9999))
    stratify_by = ma.fields.String(allow_none=True, validate=ma.validate.OneOf(("tier", "rfm_class")))
    segment_id = _int(allow_none=True, validate=_ID)
    starts_at = NaiveUTCDateTime()
    ends_at = NaiveUTCDateTime(allow_none=True)
    pre_days = _int(validate=ma.validate.Range(min=1, max=730))


class ExperimentOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    description = ma.fields.String()
    kind = ma.fields.String()
    status = ma.fields.String()
    salt = ma.fields.String()
    test_share = ma.fields.Float()
    stratify_by = ma.fields.String(allow_none=True)
    campaign_id = ma.fields.Integer(allow_none=True)
    reward_id = ma.fields.Integer(allow_none=True)
    segment_id = ma.fields.Integer(allow_none=True)
    starts_at = ma.fields.DateTime()
    ends_at = ma.fields.DateTime(allow_none=True)
    pre_days = ma.fields.Integer()
    started_at = ma.fields.DateTime(allow_none=True)
    stopped_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()


class ExperimentStartOut(ExperimentOut):
    assigned = ma.fields.Integer()


class ResultsArgs(ma.Schema):
    metrics = DelimitedList(ma.fields.String(validate=ma.validate.OneOf(EXPERIMENT_METRICS)),
                            metadata={"description": "Comma-separated; default: every metric."})


class ExperimentResultsOut(ma.Schema):
    experiment_id = ma.fields.Integer()
    kind = ma.fields.String()
    status = ma.fields.String()
    pre_period = ma.fields.Dict()
    post_period = ma.fields.Dict()
    assignment = ma.fields.Dict()
    metrics = ma.fields.Dict()
    roi = ma.fields.Dict()


# --------------------------------------------------------------------------- reviews


class ReviewIn(ma.Schema):
    period = ma.fields.String(required=True, validate=ma.validate.OneOf(REVIEW_PERIODS))
    start = ma.fields.Date(required=True)
    note = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))


class ReviewListArgs(ma.Schema):
    period = ma.fields.String(load_default=None, validate=ma.validate.OneOf(REVIEW_PERIODS))
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


class ReviewOut(ma.Schema):
    id = ma.fields.Integer()
    period = ma.fields.String()
    period_start = ma.fields.Date()
    period_end = ma.fields.Date()
    note = ma.fields.String()
    created_by_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()


class ReviewDetailOut(ReviewOut):
    data = ma.fields.Dict()
