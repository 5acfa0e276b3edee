"""What members and staff see of accounts, and what they may send."""

from __future__ import annotations

import marshmallow as ma

from .models import GRANTABLE_ROLES


class RegisterIn(ma.Schema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(max=128))
    display_name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=80))
    referral_code = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=16))
    birthday = ma.fields.Date(load_default=None, allow_none=True)


class LoginIn(ma.Schema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(max=128))


class MemberOut(ma.Schema):
    """A member's own view of their account."""

    id = ma.fields.Integer()
    email = ma.fields.String()
    display_name = ma.fields.String()
    bio = ma.fields.String()
    birthday = ma.fields.Date(allow_none=True)
    roles = ma.fields.Function(lambda u: sorted(u.roles))
    tier = ma.fields.String()
    referral_code = ma.fields.String()
    silenced_until = ma.fields.DateTime(allow_none=True)
    suspended_until = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()


class PublicMemberOut(ma.Schema):
    """What other members may see."""

    id = ma.fields.Integer()
    display_name = ma.fields.String()
    tier = ma.fields.String()


class StaffMemberOut(MemberOut):
    signup_ip = ma.fields.String(allow_none=True)
    referred_by_id = ma.fields.Integer(allow_none=True)
    is_active = ma.fields.Boolean(attribute="is_active_account")


class SessionOut(ma.Schema):
    member = ma.fields.Nested(MemberOut)
    csrf_token = ma.fields.String()


class CsrfOut(ma.Schema):
    csrf_token = ma.fields.String()


class ProfileIn(ma.Schema):
    display_name = ma.fields.String(validate=ma.validate.Length(min=1, max=80))
    bio = ma.fields.String(validate=ma.validate.Length(max=2000))
    birthday = ma.fields.Date(allow_none=True)


class PasswordChangeIn(ma.Schema):
    current_password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(max=128))
    new_password = ma.fields.String(required=True, load_only=True, validate=ma.validate.Length(max=128))


class TokenIn(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=80))
    password = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(max=128),
        metadata={"description": "The account's current password (a session alone cannot mint a token)."},
    )


class BirthdayCorrectionIn(ma.Schema):
    birthday = ma.fields.Date(required=True, allow_none=True)
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))


class TokenOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    prefix = ma.fields.String()
    created_at = ma.fields.DateTime()
    last_used_at = ma.fields.DateTime(allow_none=True)
    revoked_at = ma.fields.DateTime(allow_none=True)


class TokenCreatedOut(TokenOut):
    token = ma.fields.String(metadata={"description": "The secret; shown only once."})


class RoleIn(ma.Schema):
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(GRANTABLE_ROLES))


class NotificationOut(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    payload = ma.fields.Dict()
    created_at = ma.fields.DateTime()
    read_at = ma.fields.DateTime(allow_none=True)


class AuditOut(ma.Schema):
    id = ma.fields.Integer()
    actor_id = ma.fields.Integer(allow_none=True)
    action = ma.fields.String()
    target_type = ma.fields.String()
    target_id = ma.fields.Integer(allow_none=True)
    reason = ma.fields.String()
    details = ma.fields.Dict()
    created_at = ma.fields.DateTime()
