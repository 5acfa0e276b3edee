"""What members and staff see of rewards and redemptions, and what they may send.

Members see their own coupon code; staff schemas never carry it.  Unknown input fields are
rejected by marshmallow, which keeps ``state``, ``stock`` and the like out of member requests.
"""

from __future__ import annotations

import marshmallow as ma

from community.models import TIERS
from contract import PatchSchema, Schema
from contract import fields as f
from pagination import PageArgs

from .models import JOB_STATUSES, REWARD_KINDS, STATES


class RewardPatchIn(PatchSchema):
    name = f.String(validate=ma.validate.Length(min=1, max=120))
    description = f.String(validate=ma.validate.Length(max=5000))
    cost = f.Integer(strict=True, validate=ma.validate.Range(min=1, max=10_000_000))
    kind = f.String(validate=ma.validate.OneOf(REWARD_KINDS))
    stock = f.Integer(strict=True, allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    per_member_limit = f.Integer(strict=True, allow_none=True, validate=ma.validate.Range(min=1, max=10_000))
    min_tier = f.String(validate=ma.validate.OneOf(TIERS))
    starts_at = f.DateTime(allow_none=True)
    ends_at = f.DateTime(allow_none=True)
    image_url = f.Url(allow_none=True)
    is_active = ma.fields.Boolean()
    segment_id = f.Id(allow_none=True, metadata={"description": "Only this analytics segment's members see and "
                                                                "redeem it; null = everyone."})
    marketing = ma.fields.Boolean(metadata={"description": "A promotion: withheld from the programme-wide holdout."})


class RewardIn(RewardPatchIn):
    name = f.String(required=True, validate=ma.validate.Length(min=1, max=120))
    cost = f.Integer(strict=True, required=True, validate=ma.validate.Range(min=1, max=10_000_000))
    kind = f.String(required=True, validate=ma.validate.OneOf(REWARD_KINDS))


class RewardOut(Schema):
    """A catalogue entry as members see it."""

    id = f.Integer()
    name = f.String()
    description = f.String()
    cost = f.Integer()
    kind = f.String()
    stock = f.Integer(allow_none=True, metadata={"description": "Left to redeem; null = unlimited."})
    per_member_limit = f.Integer(allow_none=True)
    min_tier = f.String()
    starts_at = f.DateTime(allow_none=True)
    ends_at = f.DateTime(allow_none=True)
    image_url = f.String(allow_none=True)


class StaffRewardOut(RewardOut):
    is_active = ma.fields.Boolean()
    segment_id = f.Integer(allow_none=True)
    marketing = ma.fields.Boolean()
    created_by_id = f.Integer(allow_none=True)
    created_at = f.DateTime()
    updated_at = f.DateTime()


class StaffRewardArgs(PageArgs):
    kind = f.String(load_default=None, validate=ma.validate.OneOf(REWARD_KINDS))
    active = ma.fields.Boolean(load_default=None)


class CodeUploadOut(Schema):
    added = f.Integer()
    duplicates = f.Integer(metadata={"description": "Codes already in the pool or repeated in the file."})
    codes_total = f.Integer()
    codes_assigned = f.Integer()
    stock = f.Integer()


class RedemptionIn(Schema):
    reward_id = f.Id(required=True)


class IdempotencyHeader(Schema):
    """The ``Idempotency-Key`` header (other headers are ignored)."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = f.String(
        data_key="Idempotency-Key", required=True,
        validate=[ma.validate.Length(min=1, max=100), ma.validate.Regexp(r"^[!-~]([ -~]*[!-~])?$")],
        metadata={"description": "A key of your choosing (printable ASCII, at most 100); a replay with the same "
                                 "key returns the same redemption."},
    )


class JobOut(Schema):
    """Our own record of the background processing."""

    status = f.String(metadata={"enum": list(JOB_STATUSES)})
    attempts = f.Integer()
    enqueued_at = f.DateTime()
    started_at = f.DateTime(allow_none=True)
    finished_at = f.DateTime(allow_none=True)


class StaffJobOut(JobOut):
    last_error = f.String(allow_none=True)


class RewardBriefOut(Schema):
    id = f.Integer()
    name = f.String()
    kind = f.String()


class RedemptionOut(Schema):
    """A member's own redemption, with their coupon code once fulfilled."""

    id = f.Integer()
    reward_id = f.Integer()
    reward = ma.fields.Nested(RewardBriefOut)
    state = f.String(metadata={"enum": list(STATES)})
    cost = f.Integer()
    code = f.String(allow_none=True)
    tracking_reference = f.String(allow_none=True)
    reject_reason = f.String(allow_none=True)
    refund_reason = f.String(allow_none=True)
    created_at = f.DateTime()
    updated_at = f.DateTime()
    fulfilled_at = f.DateTime(allow_none=True)
    job = ma.fields.Nested(JobOut, allow_none=True)


class TransitionOut(Schema):
    from_state = f.String(allow_none=True)
    to_state = f.String()
    actor_id = f.Integer(allow_none=True, metadata={"description": "null = the system (a job)."})
    reason = f.String()
    created_at = f.DateTime()


class StaffRedemptionOut(Schema):
    """A redemption in the staff queue; the coupon code is the member's alone."""

    id = f.Integer()
    member_id = f.Integer()
    reward_id = f.Integer()
    reward = ma.fields.Nested(RewardBriefOut)
    state = f.String(metadata={"enum": list(STATES)})
    cost = f.Integer()
    tracking_reference = f.String(allow_none=True)
    reject_reason = f.String(allow_none=True)
    refund_reason = f.String(allow_none=True)
    created_at = f.DateTime()
    updated_at = f.DateTime()
    fulfilled_at = f.DateTime(allow_none=True)
    job = ma.fields.Nested(StaffJobOut, allow_none=True)


class StaffRedemptionDetailOut(StaffRedemptionOut):
    transitions = ma.fields.List(ma.fields.Nested(TransitionOut))


class MemberRedemptionArgs(PageArgs):
    state = f.String(load_default=None, validate=ma.validate.OneOf(STATES))


class StaffQueueArgs(PageArgs):
    state = f.String(load_default=None, validate=ma.validate.OneOf(STATES))
    reward_id = f.QueryId(load_default=None)
    member_id = f.QueryId(load_default=None)
    kind = f.String(load_default=None, validate=ma.validate.OneOf(REWARD_KINDS))


class ShipIn(Schema):
    tracking_reference = f.String(required=True, validate=ma.validate.Length(min=1, max=200))


class RejectIn(Schema):
    reason = f.String(required=True, validate=ma.validate.Length(min=1, max=500))


class RefundIn(Schema):
    reason = f.String(
        required=True, validate=ma.validate.Length(min=1, max=500),
        metadata={"description": "Why the points are returned; the member sees it."},
    )
