"""What members and staff see of rewards and redemptions, and what they may send.

Members see their own coupon code; staff schemas never carry it.  Unknown input fields are
rejected by marshmallow, which keeps ``state``, ``stock`` and the like out of member requests.
"""

from __future__ import annotations

from datetime import UTC

import marshmallow as ma

from community.models import TIERS
from pagination import PageArgs

from .models import JOB_STATUSES, REWARD_KINDS, STATES


def _naive_utc() -> ma.fields.NaiveDateTime:
    # Aware input is converted to UTC and stored naive, like every timestamp of ours.
    return ma.fields.NaiveDateTime(timezone=UTC, allow_none=True)


class RewardPatchIn(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=120))
    description = ma.fields.String(validate=ma.validate.Length(max=5000))
    cost = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1, max=10_000_000))
    kind = ma.fields.String(validate=ma.validate.OneOf(REWARD_KINDS))
    stock = ma.fields.Integer(strict=True, allow_none=True, validate=ma.validate.Range(min=0, max=10_000_000))
    per_member_limit = ma.fields.Integer(strict=True, allow_none=True, validate=ma.validate.Range(min=1, max=10_000))
    min_tier = ma.fields.String(validate=ma.validate.OneOf(TIERS))
    starts_at = _naive_utc()
    ends_at = _naive_utc()
    image_url = ma.fields.URL(allow_none=True, schemes={"http", "https"}, validate=ma.validate.Length(max=500))
    is_active = ma.fields.Boolean()


class RewardIn(RewardPatchIn):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=120))
    cost = ma.fields.Integer(strict=True, required=True, validate=ma.validate.Range(min=1, max=10_000_000))
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(REWARD_KINDS))


class RewardOut(ma.Schema):
    """A catalogue entry as members see it."""

    id = ma.fields.Integer()
    name = ma.fields.String()
    description = ma.fields.String()
    cost = ma.fields.Integer()
    kind = ma.fields.String()
    stock = ma.fields.Integer(allow_none=True, metadata={"description": "Left to redeem; null = unlimited."})
    per_member_limit = ma.fields.Integer(allow_none=True)
    min_tier = ma.fields.String()
    starts_at = ma.fields.DateTime(allow_none=True)
    ends_at = ma.fields.DateTime(allow_none=True)
    image_url = ma.fields.String(allow_none=True)


class StaffRewardOut(RewardOut):
    is_active = ma.fields.Boolean()
    created_by_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class StaffRewardArgs(PageArgs):
    kind = ma.fields.String(load_default=None, validate=ma.validate.OneOf(REWARD_KINDS))
    active = ma.fields.Boolean(load_default=None)


class CodeUploadOut(ma.Schema):
    added = ma.fields.Integer()
    duplicates = ma.fields.Integer(metadata={"description": "Codes already in the pool or repeated in the file."})
    codes_total = ma.fields.Integer()
    codes_assigned = ma.fields.Integer()
    stock = ma.fields.Integer()


class RedemptionIn(ma.Schema):
    reward_id = ma.fields.Integer(strict=True, required=True, validate=ma.validate.Range(min=1))


class IdempotencyHeader(ma.Schema):
    """The ``Idempotency-Key`` header (other headers are ignored)."""

    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = ma.fields.String(data_key="Idempotency-Key", load_default=None)


class JobOut(ma.Schema):
    """Our own record of the background processing."""

    status = ma.fields.String(metadata={"enum": list(JOB_STATUSES)})
    attempts = ma.fields.Integer()
    enqueued_at = ma.fields.DateTime()
    started_at = ma.fields.DateTime(allow_none=True)
    finished_at = ma.fields.DateTime(allow_none=True)


class StaffJobOut(JobOut):
    last_error = ma.fields.String(allow_none=True)


class RewardBriefOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    kind = ma.fields.String()


class RedemptionOut(ma.Schema):
    """A member's own redemption, with their coupon code once fulfilled."""

    id = ma.fields.Integer()
    reward_id = ma.fields.Integer()
    reward = ma.fields.Nested(RewardBriefOut)
    state = ma.fields.String(metadata={"enum": list(STATES)})
    cost = ma.fields.Integer()
    code = ma.fields.String(allow_none=True)
    tracking_reference = ma.fields.String(allow_none=True)
    reject_reason = ma.fields.String(allow_none=True)
    refund_reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    fulfilled_at = ma.fields.DateTime(allow_none=True)
    job = ma.fields.Nested(JobOut, allow_none=True)


class TransitionOut(ma.Schema):
    from_state = ma.fields.String(allow_none=True)
    to_state = ma.fields.String()
    actor_id = ma.fields.Integer(allow_none=True, metadata={"description": "null = the system (a job)."})
    reason = ma.fields.String()
    created_at = ma.fields.DateTime()


class StaffRedemptionOut(ma.Schema):
    """A redemption in the staff queue; the coupon code is the member's alone."""

    id = ma.fields.Integer()
    member_id = ma.fields.Integer()
    reward_id = ma.fields.Integer()
    reward = ma.fields.Nested(RewardBriefOut)
    state = ma.fields.String(metadata={"enum": list(STATES)})
    cost = ma.fields.Integer()
    tracking_reference = ma.fields.String(allow_none=True)
    reject_reason = ma.fields.String(allow_none=True)
    refund_reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    fulfilled_at = ma.fields.DateTime(allow_none=True)
    job = ma.fields.Nested(StaffJobOut, allow_none=True)


class StaffRedemptionDetailOut(StaffRedemptionOut):
    transitions = ma.fields.List(ma.fields.Nested(TransitionOut))


class MemberRedemptionArgs(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATES))


class StaffQueueArgs(PageArgs):
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATES))
    reward_id = ma.fields.Integer(load_default=None)
    member_id = ma.fields.Integer(load_default=None)
    kind = ma.fields.String(load_default=None, validate=ma.validate.OneOf(REWARD_KINDS))


class ShipIn(ma.Schema):
    tracking_reference = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class RejectIn(ma.Schema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))


class RefundIn(ma.Schema):
    reason = ma.fields.String(
        required=True, validate=ma.validate.Length(min=1, max=500),
        metadata={"description": "Why the points are returned; the member sees it."},
    )
