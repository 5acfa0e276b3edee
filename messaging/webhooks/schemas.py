"""What admins send and see of webhook endpoints and deliveries (admins only: one view each)."""

from __future__ import annotations

import marshmallow as ma

from contract import PatchSchema, Schema
from contract import fields as f

from .delivery import MAX_URL_LENGTH
from .events import EVENT_TYPES
from .models import DELIVERY_STATES


class EndpointIn(Schema):
    url = f.String(required=True, validate=ma.validate.Length(min=1, max=MAX_URL_LENGTH))
    event_types = ma.fields.List(f.String(validate=ma.validate.OneOf(EVENT_TYPES)), required=True,
                                 validate=ma.validate.Length(min=1, max=50))
    description = f.String(load_default="", validate=ma.validate.Length(max=500))
    enabled = f.Boolean(load_default=True)


class EndpointPatchIn(PatchSchema):
    url = f.String(validate=ma.validate.Length(min=1, max=MAX_URL_LENGTH))
    event_types = ma.fields.List(f.String(validate=ma.validate.OneOf(EVENT_TYPES)),
                                 validate=ma.validate.Length(min=1, max=50))
    description = f.String(validate=ma.validate.Length(max=500))
    enabled = f.Boolean()


class EndpointOut(Schema):
    id = f.Integer()
    url = f.String()
    description = f.String()
    event_types = ma.fields.List(f.String())
    enabled = ma.fields.Boolean()
    # The first characters only: enough to tell secrets apart, never enough to sign.
    secret_prefix = f.String()
    previous_secret_expires_at = f.DateTime(allow_none=True)
    failure_count = f.Integer()
    failing_since = f.DateTime(allow_none=True)
    disabled_at = f.DateTime(allow_none=True)
    disabled_reason = f.String()
    created_by_id = f.Integer(allow_none=True)
    created_at = f.DateTime()
    updated_at = f.DateTime()


class EndpointSecretOut(Schema):
    """Returned on creation and rotation only: the secret is never shown again."""

    endpoint = ma.fields.Nested(EndpointOut)
    secret = f.String()


class EventTypeOut(Schema):
    type = f.String()
    description = f.String()


class PingOut(Schema):
    event_id = f.String()


class DeliveryArgs(Schema):
    status = f.String(load_default=None, validate=ma.validate.OneOf(DELIVERY_STATES))
    event_type = f.String(load_default=None, validate=ma.validate.Length(max=64))
    page = f.QueryInteger(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = f.QueryInteger(load_default=20, validate=ma.validate.Range(min=1, max=100))


class AttemptOut(Schema):
    id = f.Integer()
    attempted_at = f.DateTime()
    manual = ma.fields.Boolean()
    outcome = f.String()
    status_code = f.Integer(allow_none=True)
    latency_ms = f.Integer()
    response_excerpt = f.String()
    error = f.String()


class WebhookDeliveryOut(Schema):
    id = f.Integer()
    endpoint_id = f.Integer()
    event_id = f.String(attribute="event.event_id")
    event_type = f.String(attribute="event.type")
    status = f.String()
    attempts = f.Integer()
    next_attempt_at = f.DateTime(allow_none=True)
    last_attempt_at = f.DateTime(allow_none=True)
    last_status_code = f.Integer(allow_none=True)
    last_error = f.String()
    created_at = f.DateTime()
    completed_at = f.DateTime(allow_none=True)


class DeliveryDetailOut(WebhookDeliveryOut):
    payload = ma.fields.Dict(attribute="event.data")
    attempt_log = ma.fields.List(ma.fields.Nested(AttemptOut))
