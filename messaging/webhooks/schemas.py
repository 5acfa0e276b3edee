"""What admins send and see of webhook endpoints and deliveries (admins only: one view each)."""

from __future__ import annotations

import marshmallow as ma

from .delivery import MAX_URL_LENGTH
from .models import DELIVERY_STATES


class EndpointIn(ma.Schema):
    url = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MAX_URL_LENGTH))
    event_types = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)), required=True,
                                 validate=ma.validate.Length(min=1, max=50))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=500))
    enabled = ma.fields.Boolean(load_default=True)


class EndpointPatchIn(ma.Schema):
    url = ma.fields.String(validate=ma.validate.Length(min=1, max=MAX_URL_LENGTH))
    event_types = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)),
                                 validate=ma.validate.Length(min=1, max=50))
    description = ma.fields.String(validate=ma.validate.Length(max=500))
    enabled = ma.fields.Boolean()


class EndpointOut(ma.Schema):
    id = ma.fields.Integer()
    url = ma.fields.String()
    description = ma.fields.String()
    event_types = ma.fields.List(ma.fields.String())
    enabled = ma.fields.Boolean()
    # The first characters only: enough to tell secrets apart, never enough to sign.
    secret_prefix = ma.fields.String()
    previous_secret_expires_at = ma.fields.DateTime(allow_none=True)
    failure_count = ma.fields.Integer()
    failing_since = ma.fields.DateTime(allow_none=True)
    disabled_at = ma.fields.DateTime(allow_none=True)
    disabled_reason = ma.fields.String()
    created_by_id = ma.fields.Integer(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class EndpointSecretOut(ma.Schema):
    """Returned on creation and rotation only: the secret is never shown again."""

    endpoint = ma.fields.Nested(EndpointOut)
    secret = ma.fields.String()


class EventTypeOut(ma.Schema):
    type = ma.fields.String()
    description = ma.fields.String()


class PingOut(ma.Schema):
    event_id = ma.fields.String()


class DeliveryArgs(ma.Schema):
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(DELIVERY_STATES))
    event_type = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


class AttemptOut(ma.Schema):
    id = ma.fields.Integer()
    attempted_at = ma.fields.DateTime()
    manual = ma.fields.Boolean()
    outcome = ma.fields.String()
    status_code = ma.fields.Integer(allow_none=True)
    latency_ms = ma.fields.Integer()
    response_excerpt = ma.fields.String()
    error = ma.fields.String()


class WebhookDeliveryOut(ma.Schema):
    id = ma.fields.Integer()
    endpoint_id = ma.fields.Integer()
    event_id = ma.fields.String(attribute="event.event_id")
    event_type = ma.fields.String(attribute="event.type")
    status = ma.fields.String()
    attempts = ma.fields.Integer()
    next_attempt_at = ma.fields.DateTime(allow_none=True)
    last_attempt_at = ma.fields.DateTime(allow_none=True)
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String()
    created_at = ma.fields.DateTime()
    completed_at = ma.fields.DateTime(allow_none=True)


class DeliveryDetailOut(WebhookDeliveryOut):
    payload = ma.fields.Dict(attribute="event.data")
    attempt_log = ma.fields.List(ma.fields.Nested(AttemptOut))
