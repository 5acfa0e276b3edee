"""Request and response schemas for messaging (strict: unknown fields are a 422)."""

from __future__ import annotations

import marshmallow as ma

from .catalog import CATEGORIES, OPTIONAL_CATEGORIES
from .models import DELIVERY_STATES
from .render import LOCALES


class ChannelsIn(ma.Schema):
    email = ma.fields.Boolean()
    in_app = ma.fields.Boolean()


class PreferencesIn(ma.Schema):
    locale = ma.fields.String(validate=ma.validate.OneOf(LOCALES))
    time_zone = ma.fields.String(validate=ma.validate.Length(min=1, max=64))
    channels = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.OneOf(OPTIONAL_CATEGORIES)),
                              values=ma.fields.Nested(ChannelsIn))


class ChannelsOut(ma.Schema):
    email = ma.fields.Boolean()
    in_app = ma.fields.Boolean()


class PreferencesOut(ma.Schema):
    locale = ma.fields.String()
    time_zone = ma.fields.String()
    email_verified = ma.fields.Boolean()
    channels = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.OneOf(CATEGORIES)),
                              values=ma.fields.Nested(ChannelsOut))


class UnsubscribeOut(ma.Schema):
    category = ma.fields.String()
    email = ma.fields.Boolean()


class EmailTokenIn(ma.Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class VerifiedOut(ma.Schema):
    email = ma.fields.String()
    email_verified = ma.fields.Boolean()


class EmailChangeIn(ma.Schema):
    new_email = ma.fields.String(required=True, validate=ma.validate.Length(min=3, max=254))
    password = ma.fields.String(required=True, validate=ma.validate.Length(max=128))


class ResetRequestIn(ma.Schema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))


class ResetConfirmIn(ma.Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    new_password = ma.fields.String(required=True, validate=ma.validate.Length(max=1024))


class AcceptedOut(ma.Schema):
    status = ma.fields.String()


class InboxArgs(ma.Schema):
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    unread = ma.fields.Boolean(load_default=False)


class InboxItemOut(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    category = ma.fields.String()
    payload = ma.fields.Dict()
    created_at = ma.fields.DateTime()
    read_at = ma.fields.DateTime(allow_none=True)


class InboxPageOut(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(InboxItemOut))
    next_cursor = ma.fields.String(allow_none=True)
    unread_count = ma.fields.Integer()


class UnreadOut(ma.Schema):
    unread_count = ma.fields.Integer()


class MarkedOut(ma.Schema):
    marked = ma.fields.Integer()


class DeliveryOut(ma.Schema):
    id = ma.fields.Integer()
    member_id = ma.fields.Integer()
    notification_id = ma.fields.Integer(allow_none=True)
    kind = ma.fields.String()
    category = ma.fields.String(allow_none=True)
    state = ma.fields.String(validate=ma.validate.OneOf(DELIVERY_STATES))
    reason = ma.fields.String(allow_none=True)
    attempts = ma.fields.Integer()
    message_id = ma.fields.String(allow_none=True)
    to_address = ma.fields.String(allow_none=True)
    locale = ma.fields.String(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    not_before = ma.fields.DateTime()
    created_at = ma.fields.DateTime()
    claimed_at = ma.fields.DateTime(allow_none=True)
    sent_at = ma.fields.DateTime(allow_none=True)


class DeliveryFilterArgs(ma.Schema):
    member_id = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=1, max=2**31 - 1))
    state = ma.fields.String(load_default=None, validate=ma.validate.OneOf(DELIVERY_STATES))
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
