"""What members, staff and integrations send to and see of the points domain."""

from __future__ import annotations

import marshmallow as ma

from contract import PatchSchema, Schema
from contract import fields as f

from .services import EVENT_TYPES, INTERACTION_KINDS

MAX_BATCH = 1000


# --------------------------------------------------------------------------- member views


class ExpiringPointsOut(Schema):
    points = f.Integer()
    expires_at = f.DateTime()


class PointsBalanceOut(Schema):
    available = f.Integer()
    owed = f.Integer(metadata={
        "description": "Points clawed back after they were spent (a withdrawn or refunded reward): "
                       "repaid from new points first; redemptions wait until it is 0."
    })
    held = f.Integer()
    lifetime_earned = f.Integer()
    expiring_soon_total = f.Integer()
    expiring_soon = ma.fields.List(ma.fields.Nested(ExpiringPointsOut))


class LedgerEntryOut(Schema):
    """One ledger entry as the member sees it: what it did to their balances, and why."""

    id = f.Integer()
    kind = f.String()
    amount = f.Integer()
    available_change = f.Integer()
    held_change = f.Integer()
    reason = f.String()
    source_type = f.String(allow_none=True)
    source_id = f.Integer(allow_none=True)
    created_at = f.DateTime()


class StaffLedgerEntryOut(LedgerEntryOut):
    related_id = f.Integer(allow_none=True)
    actor_id = f.Integer(allow_none=True)
    key = f.String()




class DailyVisitOut(Schema):
    recorded = ma.fields.Boolean(metadata={"description": "False when today's visit was already recorded."})
    points = f.Integer()
    date = ma.fields.Date()


class ReferralFunnelOut(Schema):
    invited = f.Integer()
    signed_up = f.Integer()
    converted = f.Integer()
    rewarded = f.Integer()
    avg_days_to_conversion = ma.fields.Float(allow_none=True)


class StaffPointsBalanceOut(PointsBalanceOut):
    member_id = f.Integer()
    referral_funnel = ma.fields.Nested(ReferralFunnelOut)


class MyReferralOut(Schema):
    id = f.Integer()
    status = f.String()
    reward_status = f.String()
    signed_up_at = f.DateTime()
    converted_at = f.DateTime(allow_none=True)


class ReferralOverviewOut(Schema):
    referral_code = f.String()
    referral_link = f.String()
    funnel = ma.fields.Nested(ReferralFunnelOut)
    referrals = ma.fields.List(ma.fields.Nested(MyReferralOut))


class ReferralInviteIn(Schema):
    email = f.String(required=True, validate=ma.validate.Length(min=3, max=254), metadata={"format": "email"})


class ReferralInviteOut(Schema):
    created = ma.fields.Boolean()
    invited = f.Integer(metadata={"description": "Invitations this member has recorded in total."})


class EarningRuleOut(Schema):
    kind = f.String()
    points = f.Integer()
    points_per_unit = f.Decimal(as_string=True)
    daily_cap = f.Integer(allow_none=True)
    weekly_cap = f.Integer(allow_none=True)
    monthly_cap = f.Integer(allow_none=True)
    active = ma.fields.Boolean()
    custom = ma.fields.Boolean()
    updated_at = f.DateTime(allow_none=True)
    updated_by_id = f.Integer(allow_none=True)


# --------------------------------------------------------------------------- integration


MAX_LINE_ITEMS = 200
_PRODUCT_ID = [ma.validate.Length(min=1, max=100), ma.validate.Regexp(r"^[A-Za-z0-9._:/#\-]+$")]


class LineItemIn(Schema):
    """One line of a purchase, or of a refund (which names products of the refunded purchase)."""

    product_id = f.String(required=True, validate=_PRODUCT_ID)
    category = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=100))
    quantity = f.Integer(load_default=1, validate=ma.validate.Range(min=1, max=100_000))
    amount = f.Decimal(
        load_default=None, allow_none=True, places=2, validate=ma.validate.Range(min=0, max=10**9)
    )


class PointsEventIn(Schema):
    event_id = f.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=100), ma.validate.Regexp(r"^[A-Za-z0-9._:\-]+$")],
    )
    type = f.String(required=True, validate=ma.validate.OneOf(EVENT_TYPES))
    member_id = f.Id(required=True)
    amount = f.Decimal(
        load_default=None, allow_none=True, places=2, validate=ma.validate.Range(min=0, max=10**9)
    )
    occurred_at = f.DateTime(load_default=None, allow_none=True)
    refund_of = f.String(
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


class PointsEventBatchIn(Schema):
    events = ma.fields.List(
        ma.fields.Nested(PointsEventIn), required=True, validate=ma.validate.Length(min=1, max=MAX_BATCH)
    )


class PointsEventErrorOut(Schema):
    code = f.String()
    message = f.String()
    fields = ma.fields.Dict()


class PointsEventResultOut(Schema):
    event_id = f.String()
    status = f.String(metadata={"description": "processed, duplicate or error"})
    interaction_id = f.Integer()
    points = f.Integer()
    reversed_points = f.Integer()
    error = ma.fields.Nested(PointsEventErrorOut)


class PointsEventBatchOut(Schema):
    processed = f.Integer()
    duplicates = f.Integer()
    errors = f.Integer()
    results = ma.fields.List(ma.fields.Nested(PointsEventResultOut))


# --------------------------------------------------------------------------- staff


class EarningRuleIn(PatchSchema):
    points = f.Integer(validate=ma.validate.Range(min=0, max=1_000_000))
    points_per_unit = f.Decimal(places=4, validate=ma.validate.Range(min=0, max=10_000))
    daily_cap = f.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    weekly_cap = f.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    monthly_cap = f.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    active = ma.fields.Boolean()


_KINDS = ma.fields.List(
    f.String(validate=ma.validate.OneOf(INTERACTION_KINDS)),
    allow_none=True,
    validate=ma.validate.Length(min=1),
)


class PointsCampaignIn(Schema):
    name = f.String(required=True, validate=ma.validate.Length(min=1, max=120))
    multiplier = f.Decimal(required=True, places=3, validate=ma.validate.Range(min=1, max=10))
    starts_at = f.DateTime(required=True)
    ends_at = f.DateTime(required=True)
    kinds = _KINDS
    birthday_only = ma.fields.Boolean(load_default=False)
    segment_id = f.Id(load_default=None, allow_none=True)
    active = ma.fields.Boolean(load_default=True)


class PointsCampaignPatchIn(PatchSchema):
    name = f.String(validate=ma.validate.Length(min=1, max=120))
    multiplier = f.Decimal(places=3, validate=ma.validate.Range(min=1, max=10))
    starts_at = f.DateTime()
    ends_at = f.DateTime()
    kinds = _KINDS
    birthday_only = ma.fields.Boolean()
    segment_id = f.Id(allow_none=True)
    active = ma.fields.Boolean()


class MyMultiplierOut(Schema):
    source = f.String(metadata={"description": "`campaign` (a programme campaign that reaches you) or `personal` "
                                               "(yours alone, e.g. a birthday's double points)."})
    name = f.String(allow_none=True, metadata={"description": "The campaign's name; null for a personal one."})
    multiplier = f.Decimal(metadata={"description": "e.g. 2 for double points."})
    kinds = ma.fields.List(f.String(), allow_none=True, metadata={
        "description": "The interaction kinds it multiplies; null: every kind."})
    starts_at = f.DateTime()
    ends_at = f.DateTime()


class PointsCampaignOut(Schema):
    id = f.Integer()
    name = f.String()
    multiplier = f.Decimal(as_string=True)
    starts_at = f.DateTime()
    ends_at = f.DateTime()
    kinds = ma.fields.List(f.String(), allow_none=True)
    birthday_only = ma.fields.Boolean()
    segment_id = f.Integer(allow_none=True)
    active = ma.fields.Boolean()
    created_by_id = f.Integer(allow_none=True)
    created_at = f.DateTime()


class PointsAdjustmentIn(Schema):
    member_id = f.Id(required=True)
    delta = f.Integer(required=True, validate=ma.validate.Range(min=-10_000_000, max=10_000_000))
    reason = f.String(required=True, validate=ma.validate.Length(min=1, max=500))
    request_id = f.String(
        load_default=None, allow_none=True,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"description": "Idempotency key: resending the same request_id changes nothing."},
    )


class PendingAwardOut(Schema):
    id = f.Integer()
    kind = f.String(metadata={"description": "interaction (e.g. attendance) or adjustment"})
    member_id = f.Integer()
    points = f.Integer()
    reason = f.String()
    status = f.String()
    requested_by_id = f.Integer(allow_none=True)
    decided_by_id = f.Integer(allow_none=True)
    decided_at = f.DateTime(allow_none=True)
    decision_reason = f.String()
    created_at = f.DateTime()


class PointsReasonIn(Schema):
    reason = f.String(required=True, validate=ma.validate.Length(min=1, max=500))


class LiabilityAgeOut(Schema):
    age = f.String()
    points = f.Integer()


class LiabilityOut(Schema):
    as_of = f.DateTime()
    outstanding = f.Integer()
    available = f.Integer()
    held = f.Integer()
    members_with_points = f.Integer()
    by_age = ma.fields.List(ma.fields.Nested(LiabilityAgeOut))
    expiring_30_days = f.Integer()
    expiring_90_days = f.Integer()
    system_accounts = ma.fields.Dict(keys=f.String(), values=f.Integer())


class StaffReferralOut(Schema):
    id = f.Integer()
    referrer_id = f.Integer()
    referee_id = f.Integer()
    signup_ip = f.String(allow_none=True)
    status = f.String()
    reward_status = f.String()
    flag_reason = f.String(allow_none=True)
    signed_up_at = f.DateTime()
    converted_at = f.DateTime(allow_none=True)
    rewarded_at = f.DateTime(allow_none=True)
    reviewed_by_id = f.Integer(allow_none=True)
    reviewed_at = f.DateTime(allow_none=True)


class FunnelWeekOut(Schema):
    week_start = ma.fields.Date()
    invited = f.Integer()
    signed_up = f.Integer()
    converted = f.Integer()
    avg_days_to_conversion = ma.fields.Float(allow_none=True)


class WeeklyFunnelOut(Schema):
    weeks = ma.fields.List(ma.fields.Nested(FunnelWeekOut))
