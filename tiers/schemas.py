"""What members and staff see of tiers, and what admins may send."""

from __future__ import annotations

import marshmallow as ma

from community.models import TIERS
from contract import Schema
from contract import fields as f
from pagination import PageArgs

from .rules import UPPER_TIERS


class RulesIn(Schema):
    """A proposed rule set.  Each requirement's key and value is checked by ``tiers.rules.validate``."""

    requirements = ma.fields.Dict(
        keys=f.String(validate=ma.validate.OneOf(UPPER_TIERS)),
        values=ma.fields.Dict(keys=f.String(validate=ma.validate.Length(max=64)), values=ma.fields.Raw()),
        required=True,
    )
    window_days = f.Integer(required=True, validate=ma.validate.Range(min=7, max=3650))
    grace_days = f.Integer(required=True, validate=ma.validate.Range(min=0, max=365))
    keep_percent = f.Integer(required=True, validate=ma.validate.Range(min=1, max=100))


class RulesSaveIn(RulesIn):
    expected_version = f.Integer(required=True, validate=ma.validate.Range(min=0))
    note = f.String(load_default="", validate=ma.validate.Length(max=2000))


class RulesOut(Schema):
    version = f.Integer()
    requirements = ma.fields.Dict()
    window_days = f.Integer()
    grace_days = f.Integer()
    keep_percent = f.Integer()
    note = f.String()


class RuleVersionOut(RulesOut):
    created_by_id = f.Integer(allow_none=True)
    created_at = f.DateTime()


class TierCounts(Schema):
    aware = f.Integer()
    engaged = f.Integer()
    satisfied = f.Integer()
    loyal = f.Integer()
    advocate = f.Integer()


class WhatIfOut(Schema):
    current = ma.fields.Nested(TierCounts)
    proposed = ma.fields.Nested(TierCounts)
    metrics_as_of = f.DateTime(allow_none=True)


class ProgressItem(Schema):
    requirement = f.String()
    required = f.Integer()
    current = f.Integer()
    missing = f.Integer()
    met = ma.fields.Boolean()
    text = f.String()


class ProgressOut(Schema):
    tier = f.String()
    requirements = ma.fields.List(ma.fields.Nested(ProgressItem))
    summary = f.String()


class MyTierOut(Schema):
    tier = f.String()
    benefits = ma.fields.Dict()
    pinned = ma.fields.Boolean()
    metrics = ma.fields.Dict(keys=f.String(), values=f.Integer())
    window_days = f.Integer()
    rule_version = f.Integer()
    next = ma.fields.Nested(ProgressOut, allow_none=True)
    below_bar_since = f.DateTime(allow_none=True)
    demotion_after = f.DateTime(allow_none=True)


class TierChangeOut(Schema):
    id = f.Integer()
    from_tier = f.String()
    to_tier = f.String()
    kind = f.String()
    reason = f.String()
    created_at = f.DateTime()


class StaffTierChangeOut(TierChangeOut):
    member_id = f.Integer()
    actor_id = f.Integer(allow_none=True)
    run_id = f.Integer(allow_none=True)
    rule_version = f.Integer()


class MemberStateOut(Schema):
    member_id = f.Integer()
    tier = f.String()
    points_earned = f.Integer()
    active_weeks = f.Integer()
    surveys_completed = f.Integer()
    nps_promoter = f.Integer()
    focus_groups_attended = f.Integer()
    referrals_converted = f.Integer()
    accepted_posts = f.Integer()
    no_suspension = f.Integer()
    qualified_tier = f.String()
    below_since = f.DateTime(allow_none=True)
    pinned_tier = f.String(allow_none=True)
    pin_reason = f.String(allow_none=True)
    pinned_by_id = f.Integer(allow_none=True)
    pinned_at = f.DateTime(allow_none=True)
    rule_version = f.Integer()
    changed_at = f.DateTime(allow_none=True)
    history = ma.fields.List(ma.fields.Nested(StaffTierChangeOut))


class PinIn(Schema):
    tier = f.String(required=True, validate=ma.validate.OneOf(TIERS))
    reason = f.String(required=True, validate=ma.validate.Length(min=3, max=2000))


class UnpinIn(Schema):
    reason = f.String(required=True, validate=ma.validate.Length(min=3, max=2000))


class RunOut(Schema):
    id = f.Integer()
    status = f.String()
    mode = f.String(metadata={"description": "full: everyone re-aggregated; incremental: only the "
                                                     "members whose inputs changed (total counts those)"})
    rule_version = f.Integer()
    total = f.Integer()
    processed = f.Integer()
    promoted = f.Integer()
    demoted = f.Integer()
    distribution = ma.fields.Dict()
    error = f.String(allow_none=True)
    started_at = f.DateTime()
    finished_at = f.DateTime(allow_none=True)


class RunArgs(Schema):
    full = ma.fields.Boolean(
        load_default=None,
        metadata={"description": "true: re-aggregate every member's history; false: only members whose inputs "
                                 "changed; absent: as the schedule decides (full after a rules change)"})


class RunQueuedOut(Schema):
    queued = ma.fields.Boolean()


class DistributionOut(Schema):
    current = ma.fields.Nested(TierCounts)
    history = ma.fields.List(ma.fields.Nested(Schema.from_dict(
        {"run_id": f.Integer(attribute="id"), "at": f.DateTime(attribute="finished_at"),
         "distribution": ma.fields.Dict()}, name="TierDistributionPoint")))


class MovementsArgs(PageArgs):
    since = f.DateTime(required=True)
    until = f.DateTime(required=True)
    bucket = f.String(load_default="week", validate=ma.validate.OneOf(("day", "week", "month")))

    @ma.validates_schema
    def _order(self, data, **kwargs):
        if data["until"] <= data["since"]:
            raise ma.ValidationError("Must be after since.", field_name="until")
        if (data["until"] - data["since"]).days > 3660:
            raise ma.ValidationError("At most ten years at a time.", field_name="until")


class MovementOut(Schema):
    period = f.String()
    from_tier = f.String()
    to_tier = f.String()
    kind = f.String()
    count = f.Integer()


class LeaderboardOut(Schema):
    id = f.Integer()
    display_name = f.String()
    tier = f.String()
    referrals_converted = f.Integer()
    points_earned = f.Integer()
    accepted_posts = f.Integer()
    focus_groups_attended = f.Integer()


class PostingLimits(Schema):
    threads_per_day = f.Integer(required=True, allow_none=True, validate=ma.validate.Range(min=0))
    replies_per_day = f.Integer(required=True, allow_none=True, validate=ma.validate.Range(min=0))
    min_seconds_between_posts = f.Integer(required=True, validate=ma.validate.Range(min=0, max=86400))


class BenefitsIn(Schema):
    earning_multiplier = f.Decimal(required=True, places=2, validate=ma.validate.Range(min=0, max=10))
    posting_limits = ma.fields.Nested(PostingLimits, required=True)
    focus_group_priority = f.Integer(required=True, validate=ma.validate.Range(min=0, max=100))
    note = f.String(load_default="", validate=ma.validate.Length(max=2000))


class BenefitsOut(Schema):
    earning_multiplier = ma.fields.Float()
    posting_limits = ma.fields.Dict()
    focus_group_priority = f.Integer()


class LadderTierOut(Schema):
    tier = f.String()
    requirements = ma.fields.Dict()
    benefits = ma.fields.Dict()


class LadderOut(Schema):
    version = f.Integer()
    window_days = f.Integer()
    grace_days = f.Integer()
    keep_percent = f.Integer()
    tiers = ma.fields.List(ma.fields.Nested(LadderTierOut))
