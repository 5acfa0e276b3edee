"""What members and staff see of accounts, and what they may send."""

from __future__ import annotations

import marshmallow as ma

from contract import PatchSchema, Schema
from contract import fields as f

from .models import GRANTABLE_ROLES, ROLES, TIERS
from .services import PASSWORD_MAX, PASSWORD_MIN


class RegisterIn(Schema):
    email = f.String(required=True, validate=ma.validate.Length(max=254), metadata={"format": "email"})
    password = f.String(required=True, load_only=True, validate=ma.validate.Length(min=PASSWORD_MIN, max=PASSWORD_MAX))
    display_name = f.String(required=True, validate=ma.validate.Length(min=1, max=80))
    referral_code = f.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=16))
    birthday = ma.fields.Date(load_default=None, allow_none=True)


class LoginIn(Schema):
    email = f.String(required=True, validate=ma.validate.Length(max=254))
    password = f.String(required=True, load_only=True, validate=ma.validate.Length(max=128))


class MemberOut(Schema):
    """A member's own view of their account."""

    id = f.Integer()
    email = f.String()
    display_name = f.String()
    bio = f.String()
    birthday = ma.fields.Date(allow_none=True)
    roles = ma.fields.Function(
        lambda u: sorted(u.roles), metadata={"type": "array", "items": {"type": "string", "enum": list(ROLES)}}
    )
    tier = f.String(metadata={"enum": list(TIERS)})
    referral_code = f.String()
    silenced_until = f.DateTime(allow_none=True)
    suspended_until = f.DateTime(allow_none=True)
    created_at = f.DateTime()


class PublicMemberOut(Schema):
    """What other members may see."""

    id = f.Integer()
    display_name = f.String()
    tier = f.String()


class StaffMemberOut(MemberOut):
    signup_ip = f.String(allow_none=True)
    referred_by_id = f.Integer(allow_none=True)
    is_active = ma.fields.Boolean(attribute="is_active_account")
    renewal_on = ma.fields.Date(allow_none=True)
    contract_on = ma.fields.Date(allow_none=True)


class SessionOut(Schema):
    member = ma.fields.Nested(MemberOut)
    csrf_token = f.String()


class CsrfOut(Schema):
    csrf_token = f.String()


class LogoutEverywhereIn(Schema):
    revoke_tokens = f.Boolean(
        load_default=False,
        metadata={"description": "Also revoke every API token of the account (integrations stop working)."},
    )


class LogoutEverywhereOut(Schema):
    sessions_ended = f.Integer(required=True, metadata={"description": "Cookie sessions that were still live."})
    tokens_revoked = f.Integer(required=True)


class ProfileIn(PatchSchema):
    display_name = f.String(validate=ma.validate.Length(min=1, max=80))
    bio = f.String(validate=ma.validate.Length(max=2000))
    birthday = ma.fields.Date(allow_none=True)


class PasswordChangeIn(Schema):
    current_password = f.String(required=True, load_only=True, validate=ma.validate.Length(max=128))
    new_password = f.String(
        required=True, load_only=True, validate=ma.validate.Length(min=PASSWORD_MIN, max=PASSWORD_MAX)
    )


class TokenIn(Schema):
    name = f.String(required=True, validate=ma.validate.Length(min=1, max=80))
    password = f.String(
        required=True, load_only=True, validate=ma.validate.Length(max=128),
        metadata={"description": "The account's current password (a session alone cannot mint a token)."},
    )


class BirthdayCorrectionIn(Schema):
    birthday = ma.fields.Date(required=True, allow_none=True)
    reason = f.String(required=True, validate=ma.validate.Length(min=1, max=500))


class MemberDatesIn(Schema):
    openapi_extra = {"anyOf": [{"required": ["renewal_on"]}, {"required": ["contract_on"]}]}

    renewal_on = ma.fields.Date(allow_none=True, metadata={
        "description": "When the member's membership or plan renews (journeys count down to the date itself)."})
    contract_on = ma.fields.Date(allow_none=True, metadata={
        "description": "When the member's contract started (journeys greet its yearly anniversary)."})
    reason = f.String(required=True, validate=ma.validate.Length(min=1, max=500))

    @ma.validates_schema
    def _a_date(self, data, **kwargs):
        if "renewal_on" not in data and "contract_on" not in data:
            raise ma.ValidationError("Send renewal_on, contract_on or both.", "_schema")


class TokenOut(Schema):
    id = f.Integer()
    name = f.String()
    prefix = f.String()
    created_at = f.DateTime()
    last_used_at = f.DateTime(allow_none=True)
    revoked_at = f.DateTime(allow_none=True)


class TokenCreatedOut(TokenOut):
    token = f.String(metadata={"description": "The secret; shown only once."})


class RoleIn(Schema):
    role = f.String(required=True, validate=ma.validate.OneOf(GRANTABLE_ROLES))


class NotificationOut(Schema):
    id = f.Integer()
    kind = f.String()
    payload = ma.fields.Dict()
    created_at = f.DateTime()
    read_at = f.DateTime(allow_none=True)


class AuditOut(Schema):
    id = f.Integer()
    actor_id = f.Integer(allow_none=True)
    action = f.String()
    target_type = f.String()
    target_id = f.Integer(allow_none=True)
    reason = f.String()
    details = ma.fields.Dict()
    created_at = f.DateTime()
