"""Request and response schemas for messaging (strict: unknown fields are a 422)."""

from __future__ import annotations

import marshmallow as ma

from contract import PatchSchema, Schema
from contract import fields as f
from pagination import PageArgs, PageMeta

from .catalog import CATEGORIES, OPTIONAL_CATEGORIES
from .models import DELIVERY_STATES
from .render import LOCALES


class ChannelsIn(Schema):
    email = f.Boolean()
    in_app = f.Boolean()


class PreferencesIn(PatchSchema):
    locale = f.String(validate=ma.validate.OneOf(LOCALES))
    time_zone = f.String(validate=ma.validate.Length(min=1, max=64))
    channels = ma.fields.Dict(keys=f.String(validate=ma.validate.OneOf(OPTIONAL_CATEGORIES)),
                              values=ma.fields.Nested(ChannelsIn))


class ChannelsOut(Schema):
    email = ma.fields.Boolean()
    in_app = ma.fields.Boolean()


class PreferencesOut(Schema):
    locale = f.String()
    time_zone = f.String()
    email_verified = ma.fields.Boolean()
    channels = ma.fields.Dict(keys=f.String(validate=ma.validate.OneOf(CATEGORIES)),
                              values=ma.fields.Nested(ChannelsOut))


class UnsubscribeOut(Schema):
    category = f.String()
    email = ma.fields.Boolean()


class EmailTokenIn(Schema):
    token = f.String(required=True, validate=ma.validate.Length(min=1, max=200))


class VerifiedOut(Schema):
    email = f.String()
    email_verified = ma.fields.Boolean()


class EmailChangeIn(Schema):
    new_email = f.String(required=True, validate=ma.validate.Length(min=3, max=254))
    password = f.String(required=True, validate=ma.validate.Length(max=128))


class ResetRequestIn(Schema):
    email = f.String(required=True, validate=ma.validate.Length(max=254))


class ResetConfirmIn(Schema):
    token = f.String(required=True, validate=ma.validate.Length(min=1, max=200))
    new_password = f.String(required=True, validate=ma.validate.Length(max=1024))


class AcceptedOut(Schema):
    status = f.String()


class InboxArgs(PageArgs):
    unread = ma.fields.Boolean(load_default=False, metadata={"description": "Only unread notifications."})


class InboxItemOut(Schema):
    id = f.Integer()
    kind = f.String()
    category = f.String()
    payload = ma.fields.Dict()
    created_at = f.DateTime()
    read_at = f.DateTime(allow_none=True)


class InboxPageOut(Schema):
    items = ma.fields.List(ma.fields.Nested(InboxItemOut), required=True)
    meta = ma.fields.Nested(PageMeta, required=True)
    unread_count = f.Integer(required=True, metadata={"description": "Unread visible notifications in all."})


class UnreadOut(Schema):
    unread_count = f.Integer()


class MarkedOut(Schema):
    marked = f.Integer()


class DeliveryOut(Schema):
    id = f.Integer()
    member_id = f.Integer()
    notification_id = f.Integer(allow_none=True)
    kind = f.String()
    category = f.String(allow_none=True)
    state = f.String(validate=ma.validate.OneOf(DELIVERY_STATES))
    reason = f.String(allow_none=True)
    attempts = f.Integer()
    message_id = f.String(allow_none=True)
    to_address = f.String(allow_none=True)
    locale = f.String(allow_none=True)
    last_error = f.String(allow_none=True)
    not_before = f.DateTime()
    created_at = f.DateTime()
    claimed_at = f.DateTime(allow_none=True)
    sent_at = f.DateTime(allow_none=True)


class DeliveryFilterArgs(Schema):
    member_id = f.QueryId(load_default=None)
    state = f.String(load_default=None, validate=ma.validate.OneOf(DELIVERY_STATES))
    page = f.QueryInteger(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = f.QueryInteger(load_default=20, validate=ma.validate.Range(min=1, max=100))
