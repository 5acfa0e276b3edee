"""What members, staff and integrations send to and see of the points domain."""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma

from .services import EVENT_TYPES, INTERACTION_KINDS

MAX_BATCH = 1000


class NaiveUTCDateTime(ma.fields.DateTime):
    """Accepts ISO 8601 with or without an offset; stores naive UTC like the rest of the schema."""

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed


# --------------------------------------------------------------------------- member views


class ExpiringPointsOut(ma.Schema):
    points = ma.fields.Integer()
    expires_at = ma.fields.DateTime()


class PointsBalanceOut(ma.Schema):
    available = ma.fields.Integer()
    owed = ma.fields.Integer(metadata={
        "description": "Points clawed back after they were spent (a withdrawn or refunded reward): "
                       "repaid from new points first; redemptions wait until it is 0."
    })
    held = ma.fields.Integer()
    lifetime_earned = ma.fields.Integer()
    expiring_soon_total = ma.fields.Integer()
    expiring_soon = ma.fields.List(ma.fields.Nested(ExpiringPointsOut))


class LedgerEntryOut(ma.Schema):
    """One ledger entry as the member sees it: what it did to their balances, and why."""

    id = ma.fields.Integer()
    kind = ma.fields.String()
    amount = ma.fields.Integer()
    available_change = ma.fields.Integer()
    held_change = ma.fields.Integer()
    reason = ma.fields.String()
    source_type = ma.fields.String(allow_none=True)
    source_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()


class StaffLedgerEntryOut(LedgerEntryOut):
    related_id = ma.fields.Integer(allow_none=True)
    actor_id = ma.fields.Integer(allow_none=True)
    key = ma.fields.String()




class DailyVisitIn(ma.Schema):
    """No fields: the visit is today's, for the logged-in member (unknown fields are rejected)."""


class DailyVisitOut(ma.Schema):
    recorded = ma.fields.Boolean(metadata={"description": "False when today's visit was already recorded."})
    points = ma.fields.Integer()
    date = ma.fields.Date()


class ReferralFunnelOut(ma.Schema):
    invited = ma.fields.Integer()
    signed_up = ma.fields.Integer()
    converted = ma.fields.Integer()
    rewarded = ma.fields.Integer()
    avg_days_to_conversion = ma.fields.Float(allow_none=True)


class StaffPointsBalanceOut(PointsBalanceOut):
    member_id = ma.fields.Integer()
    referral_funnel = ma.fields.Nested(ReferralFunnelOut)


class MyReferralOut(ma.Schema):
    id = ma.fields.Integer()
    status = ma.fields.String()
    reward_status = ma.fields.String()
    signed_up_at = ma.fields.DateTime()
    converted_at = ma.fields.DateTime(allow_none=True)


class ReferralOverviewOut(ma.Schema):
    referral_code = ma.fields.String()
    referral_link = ma.fields.String()
    funnel = ma.fields.Nested(ReferralFunnelOut)
    referrals = ma.fields.List(ma.fields.Nested(MyReferralOut))


class ReferralInviteIn(ma.Schema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(min=3, max=254))


class ReferralInviteOut(ma.Schema):
    created = ma.fields.Boolean()
    invited = ma.fields.Integer(metadata={"description": "Invitations this member has recorded in total."})


class EarningRuleOut(ma.Schema):
    kind = ma.fields.String()
    points = ma.fields.Integer()
    points_per_unit = ma.fields.Decimal(as_string=True)
    daily_cap = ma.fields.Integer(allow_none=True)
    weekly_cap = ma.fields.Integer(allow_none=True)
    monthly_cap = ma.fields.Integer(allow_none=True)
    active = ma.fields.Boolean()
    custom = ma.fields.Boolean()
    updated_at = ma.fields.DateTime(allow_none=True)
    updated_by_id = ma.fields.Integer(allow_none=True)


# --------------------------------------------------------------------------- integration


MAX_LINE_ITEMS = 200
_PRODUCT_ID = [ma.validate.Length(min=1, max=100), ma.validate.Regexp(r"^[A-Za-z0-9._:/#\-]+$")]


class LineItemIn(ma.Schema):
    """One line of a purchase, or of a refund (which names products of the refunded purchase)."""

    product_id = ma.fields.String(required=True, validate=_PRODUCT_ID)
    category = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=100))
    quantity = ma.fields.Integer(load_default=1, strict=True, validate=ma.validate.Range(min=1, max=100_000))
    amount = ma.fields.Decimal(
        load_default=None, allow_none=True, places=2, validate=ma.validate.Range(min=0, max=10**9)
    )


class PointsEventIn(ma.Schema):
    event_id = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=100), ma.validate.Regexp(r"^[A-Za-z0-9._:\-]+$")],
    )
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(EVENT_TYPES))
    member_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**31 - 1))
    amount = ma.fields.Decimal(
        load_default=None, allow_none=True, places=2, validate=ma.validate.Range(min=0, max=10**9)
    )
    occurred_at = NaiveUTCDateTime(load_default=None, allow_none=True)
    refund_of = ma.fields.String(
        load_default=None, allow_none=True,
        validate=[ma.validate.Length(min=1, max=100), ma.validate.Regexp(r"^[A-Za-z0-9._:\-]+$")],
    )
    line_items = ma.fields.List(
        ma.fields.Nested(LineItemIn), load_default=None, allow_none=True,
        validate=ma.validate.Length(min=1, max=MAX_LINE_ITEMS),
        metadata={"description": "Optional: what was bought (or, on a refund, returned)."},
    )

    @ma.validates_schema
    def _line_amounts(self, data, **kwargs):
        lines = data.get("line_items") or []
        total = sum((line["amount"] for line in lines if line.get("amount") is not None), start=0)
        if data.get("amount") is not None and total > data["amount"]:
            raise ma.ValidationError({"line_items": ["The line amounts exceed the event amount."]})

    @ma.validates_schema
    def _by_type(self, data, **kwargs):
        if data["type"] == "purchase" and data.get("amount") is None:
            raise ma.ValidationError({"amount": ["Required for a purchase."]})
        if data["type"] == "refund" and not data.get("refund_of"):
            raise ma.ValidationError({"refund_of": ["Required for a refund: the purchase event id."]})
        if data["type"] == "purchase" and data.get("refund_of"):
            raise ma.ValidationError({"refund_of": ["Only refunds refer to a purchase."]})


class PointsEventBatchIn(ma.Schema):
    events = ma.fields.List(
        ma.fields.Nested(PointsEventIn), required=True, validate=ma.validate.Length(min=1, max=MAX_BATCH)
    )


class PointsEventErrorOut(ma.Schema):
    code = ma.fields.String()
    message = ma.fields.String()
    fields = ma.fields.Dict()


class PointsEventResultOut(ma.Schema):
    event_id = ma.fields.String()
    status = ma.fields.String(metadata={"description": "processed, duplicate or error"})
    interaction_id = ma.fields.Integer()
    points = ma.fields.Integer()
    reversed_points = ma.fields.Integer()
    error = ma.fields.Nested(PointsEventErrorOut)


class PointsEventBatchOut(ma.Schema):
    processed = ma.fields.Integer()
    duplicates = ma.fields.Integer()
    errors = ma.fields.Integer()
    results = ma.fields.List(ma.fields.Nested(PointsEventResultOut))


# --------------------------------------------------------------------------- staff


class EarningRuleIn(ma.Schema):
    points = ma.fields.Integer(validate=ma.validate.Range(min=0, max=1_000_000))
    points_per_unit = ma.fields.Decimal(places=4, validate=ma.validate.Range(min=0, max=10_000))
    daily_cap = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    weekly_cap = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    monthly_cap = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    active = ma.fields.Boolean()


_KINDS = ma.fields.List(
    ma.fields.String(validate=ma.validate.OneOf(INTERACTION_KINDS)),
    allow_none=True,
    validate=ma.validate.Length(min=1),
)


class PointsCampaignIn(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    multiplier = ma.fields.Decimal(required=True, places=3, validate=ma.validate.Range(min=1, max=10))
    starts_at = NaiveUTCDateTime(required=True)
    ends_at = NaiveUTCDateTime(required=True)
    kinds = _KINDS
    birthday_only = ma.fields.Boolean(load_default=False)
    segment_id = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=2**31 - 1))
    active = ma.fields.Boolean(load_default=True)


class PointsCampaignPatchIn(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=120))
    multiplier = ma.fields.Decimal(places=3, validate=ma.validate.Range(min=1, max=10))
    starts_at = NaiveUTCDateTime()
    ends_at = NaiveUTCDateTime()
    kinds = _KINDS
    birthday_only = ma.fields.Boolean()
    segment_id = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=1, max=2**31 - 1))
    active = ma.fields.Boolean()


class PointsCampaignOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    multiplier = ma.fields.Decimal(as_string=True)
    starts_at = ma.fields.DateTime()
    ends_at = ma.fields.DateTime()
    kinds = ma.fields.List(ma.fields.String(), allow_none=True)
    birthday_only = ma.fields.Boolean()
    segment_id = ma.fields.Integer(allow_none=True)
    active = ma.fields.Boolean()
    created_by_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()


class PointsAdjustmentIn(ma.Schema):
    member_id = ma.fields.Integer(required=True, validate=ma.validate.Range(min=1, max=2**31 - 1))
    delta = ma.fields.Integer(required=True, validate=ma.validate.Range(min=-10_000_000, max=10_000_000))
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))
    request_id = ma.fields.String(
        load_default=None, allow_none=True,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"description": "Idempotency key: resending the same request_id changes nothing."},
    )


class PendingAwardOut(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String(metadata={"description": "interaction (e.g. attendance) or adjustment"})
    member_id = ma.fields.Integer()
    points = ma.fields.Integer()
    reason = ma.fields.String()
    status = ma.fields.String()
    requested_by_id = ma.fields.Integer(allow_none=True)
    decided_by_id = ma.fields.Integer(allow_none=True)
    decided_at = ma.fields.DateTime(allow_none=True)
    decision_reason = ma.fields.String()
    created_at = ma.fields.DateTime()


class PointsReasonIn(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))


class LiabilityAgeOut(ma.Schema):
    age = ma.fields.String()
    points = ma.fields.Integer()


class LiabilityOut(ma.Schema):
    as_of = ma.fields.DateTime()
    outstanding = ma.fields.Integer()
    available = ma.fields.Integer()
    held = ma.fields.Integer()
    members_with_points = ma.fields.Integer()
    by_age = ma.fields.List(ma.fields.Nested(LiabilityAgeOut))
    expiring_30_days = ma.fields.Integer()
    expiring_90_days = ma.fields.Integer()
    system_accounts = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())


class StaffReferralOut(ma.Schema):
    id = ma.fields.Integer()
    referrer_id = ma.fields.Integer()
    referee_id = ma.fields.Integer()
    signup_ip = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    reward_status = ma.fields.String()
    flag_reason = ma.fields.String(allow_none=True)
    signed_up_at = ma.fields.DateTime()
    converted_at = ma.fields.DateTime(allow_none=True)
    rewarded_at = ma.fields.DateTime(allow_none=True)
    reviewed_by_id = ma.fields.Integer(allow_none=True)
    reviewed_at = ma.fields.DateTime(allow_none=True)


class FunnelWeekOut(ma.Schema):
    week_start = ma.fields.Date()
    invited = ma.fields.Integer()
    signed_up = ma.fields.Integer()
    converted = ma.fields.Integer()
    avg_days_to_conversion = ma.fields.Float(allow_none=True)


class WeeklyFunnelOut(ma.Schema):
    weeks = ma.fields.List(ma.fields.Nested(FunnelWeekOut))
