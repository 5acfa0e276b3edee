"""What members and staff see of tiers, and what admins may send."""

from __future__ import annotations

import marshmallow as ma

from community.models import TIERS

from .rules import UPPER_TIERS


class RulesIn(ma.Schema):
    """A proposed rule set.  Each requirement's key and value is checked by ``tiers.rules.validate``."""

    requirements = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.OneOf(UPPER_TIERS)),
        values=ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=64)), values=ma.fields.Raw()),
        required=True,
    )
    window_days = ma.fields.Integer(required=True, validate=ma.validate.Range(min=7, max=3650))
    grace_days = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=365))
    keep_percent = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=100))


class RulesSaveIn(RulesIn):
    expected_version = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0))
    note = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))


class RulesOut(ma.Schema):
    version = ma.fields.Integer()
    requirements = ma.fields.Dict()
    window_days = ma.fields.Integer()
    grace_days = ma.fields.Integer()
    keep_percent = ma.fields.Integer()
    note = ma.fields.String()


class RuleVersionOut(RulesOut):
    created_by_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()


class TierCounts(ma.Schema):
    aware = ma.fields.Integer()
    engaged = ma.fields.Integer()
    satisfied = ma.fields.Integer()
    loyal = ma.fields.Integer()
    advocate = ma.fields.Integer()


class WhatIfOut(ma.Schema):
    current = ma.fields.Nested(TierCounts)
    proposed = ma.fields.Nested(TierCounts)
    metrics_as_of = ma.fields.DateTime(allow_none=True)


class ProgressItem(ma.Schema):
    requirement = ma.fields.String()
    required = ma.fields.Integer()
    current = ma.fields.Integer()
    missing = ma.fields.Integer()
    met = ma.fields.Boolean()
    text = ma.fields.String()


class ProgressOut(ma.Schema):
    tier = ma.fields.String()
    requirements = ma.fields.List(ma.fields.Nested(ProgressItem))
    summary = ma.fields.String()


class MyTierOut(ma.Schema):
    tier = ma.fields.String()
    benefits = ma.fields.Dict()
    pinned = ma.fields.Boolean()
    metrics = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    window_days = ma.fields.Integer()
    rule_version = ma.fields.Integer()
    next = ma.fields.Nested(ProgressOut, allow_none=True)
    below_bar_since = ma.fields.DateTime(allow_none=True)
    demotion_after = ma.fields.DateTime(allow_none=True)


class TierChangeOut(ma.Schema):
    id = ma.fields.Integer()
    from_tier = ma.fields.String()
    to_tier = ma.fields.String()
    kind = ma.fields.String()
    reason = ma.fields.String()
    created_at = ma.fields.DateTime()


class StaffTierChangeOut(TierChangeOut):
    member_id = ma.fields.Integer()
    actor_id = ma.fields.Integer(allow_none=True)
    run_id = ma.fields.Integer(allow_none=True)
    rule_version = ma.fields.Integer()


class MemberStateOut(ma.Schema):
    member_id = ma.fields.Integer()
    tier = ma.fields.String()
    points_earned = ma.fields.Integer()
    active_weeks = ma.fields.Integer()
    surveys_completed = ma.fields.Integer()
    nps_promoter = ma.fields.Integer()
    focus_groups_attended = ma.fields.Integer()
    referrals_converted = ma.fields.Integer()
    accepted_posts = ma.fields.Integer()
    no_suspension = ma.fields.Integer()
    qualified_tier = ma.fields.String()
    below_since = ma.fields.DateTime(allow_none=True)
    pinned_tier = ma.fields.String(allow_none=True)
    pin_reason = ma.fields.String(allow_none=True)
    pinned_by_id = ma.fields.Integer(allow_none=True)
    pinned_at = ma.fields.DateTime(allow_none=True)
    rule_version = ma.fields.Integer()
    changed_at = ma.fields.DateTime(allow_none=True)
    history = ma.fields.List(ma.fields.Nested(StaffTierChangeOut))


class PinIn(ma.Schema):
    tier = ma.fields.String(required=True, validate=ma.validate.OneOf(TIERS))
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=3, max=2000))


class UnpinIn(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=3, max=2000))


class RunOut(ma.Schema):
    id = ma.fields.Integer()
    status = ma.fields.String()
    mode = ma.fields.String(metadata={"description": "full: everyone re-aggregated; incremental: only the "
                                                     "members whose inputs changed (total counts those)"})
    rule_version = ma.fields.Integer()
    total = ma.fields.Integer()
    processed = ma.fields.Integer()
    promoted = ma.fields.Integer()
    demoted = ma.fields.Integer()
    distribution = ma.fields.Dict()
    error = ma.fields.String(allow_none=True)
    started_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)


class RunArgs(ma.Schema):
    full = ma.fields.Boolean(
        load_default=None,
        metadata={"description": "true: re-aggregate every member's history; false: only members whose inputs "
                                 "changed; absent: as the schedule decides (full after a rules change)"})


class RunQueuedOut(ma.Schema):
    queued = ma.fields.Boolean()


class DistributionOut(ma.Schema):
    current = ma.fields.Nested(TierCounts)
    history = ma.fields.List(ma.fields.Nested(ma.Schema.from_dict(
        {"run_id": ma.fields.Integer(attribute="id"), "at": ma.fields.DateTime(attribute="finished_at"),
         "distribution": ma.fields.Dict()}, name="TierDistributionPoint")))


class MovementsArgs(ma.Schema):
    since = ma.fields.DateTime(required=True)
    until = ma.fields.DateTime(required=True)
    bucket = ma.fields.String(load_default="week", validate=ma.validate.OneOf(("day", "week", "month")))

    @ma.validates_schema
    def _order(self, data, **kwargs):
        if data["until"] <= data["since"]:
            raise ma.ValidationError("Must be after since.", field_name="until")
        if (data["until"] - data["since"]).days > 3660:
            raise ma.ValidationError("At most ten years at a time.", field_name="until")


class MovementOut(ma.Schema):
    period = ma.fields.String()
    from_tier = ma.fields.String()
    to_tier = ma.fields.String()
    kind = ma.fields.String()
    count = ma.fields.Integer()


class LeaderboardOut(ma.Schema):
    id = ma.fields.Integer()
    display_name = ma.fields.String()
    tier = ma.fields.String()
    referrals_converted = ma.fields.Integer()
    points_earned = ma.fields.Integer()
    accepted_posts = ma.fields.Integer()
    focus_groups_attended = ma.fields.Integer()


class PostingLimits(ma.Schema):
    threads_per_day = ma.fields.Integer(required=True, allow_none=True, validate=ma.validate.Range(min=0))
    replies_per_day = ma.fields.Integer(required=True, allow_none=True, validate=ma.validate.Range(min=0))
    min_seconds_between_posts = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=86400))


class BenefitsIn(ma.Schema):
    earning_multiplier = ma.fields.Decimal(required=True, places=2, validate=ma.validate.Range(min=0, max=10))
    posting_limits = ma.fields.Nested(PostingLimits, required=True)
    focus_group_priority = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=100))
    note = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))


class BenefitsOut(ma.Schema):
    earning_multiplier = ma.fields.Float()
    posting_limits = ma.fields.Dict()
    focus_group_priority = ma.fields.Integer()


class LadderTierOut(ma.Schema):
    tier = ma.fields.String()
    requirements = ma.fields.Dict()
    benefits = ma.fields.Dict()


class LadderOut(ma.Schema):
    version = ma.fields.Integer()
    window_days = ma.fields.Integer()
    grace_days = ma.fields.Integer()
    keep_percent = ma.fields.Integer()
    tiers = ma.fields.List(ma.fields.Nested(LadderTierOut))
