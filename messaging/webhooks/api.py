"""Admin API for outbound webhooks: endpoints, secrets, the delivery log, redelivery.

``init_app`` subscribes to ``community``'s ``member_registered`` signal; the other domains
call ``events.publish`` themselves (one line each, in the transaction of their change).
"""

from __future__ import annotations

from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from community.permissions import require
from contract.openapi import error_responses
from extensions import db
from pagination import PageArgs, page_of, page_schema, paginate

from . import events, services
from .permissions import MANAGE_WEBHOOKS
from .schemas import (
    DeliveryArgs,
    DeliveryDetailOut,
    EndpointIn,
    EndpointOut,
    EndpointPatchIn,
    EndpointSecretOut,
    EventTypeOut,
    PingOut,
    WebhookDeliveryOut,
)

blp = Blueprint("admin_webhooks", __name__, url_prefix="/api/v1/admin/webhooks",
                description="Admin: outbound webhooks (signed per Standard Webhooks)")
blueprints = [blp]


def _on_member_registered(user, **_):
    events.publish("member.registered", {
        "member_id": user.id, "email": user.email, "display_name": user.display_name,
        "referred_by_id": user.referred_by_id, "created_at": user.created_at,
    })


def init_app(app) -> None:
    from community.services import member_registered

    member_registered.connect(_on_member_registered)


@blp.route("/event-types")
class EventTypes(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(EventTypeOut, "WebhookEventTypePage"))
    def get(self, args):
        """The event types an endpoint can subscribe to (payloads: docs/webhooks.md)."""
        types = [{"type": t, "description": d} for t, d in events.EVENT_TYPES.items()]
        return page_of(types, args["page"], args["per_page"])


@blp.route("/endpoints")
class Endpoints(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_schema(EndpointOut, "WebhookEndpointPage"))
    def get(self, args):
        """Registered endpoints (deleted ones are left out)."""
        return paginate(services.endpoints_query(), args["page"], args["per_page"])

    @require(MANAGE_WEBHOOKS)
    @blp.arguments(EndpointIn)
    @blp.response(201, EndpointSecretOut)
    def post(self, data):
        """Register an endpoint.  The answer holds its signing secret: it is shown only this once.

        The URL must be http(s) and its host must resolve to public addresses only.
        """
        endpoint, secret = services.create_endpoint(current_user, data)
        db.session.commit()
        return {"endpoint": endpoint, "secret": secret}


@blp.route("/endpoints/<int:endpoint_id>")
class Endpoint(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.response(200, EndpointOut)
    def get(self, endpoint_id):
        """One endpoint, with its failure streak and why it was disabled (if it was)."""
        return services.get_endpoint(endpoint_id)

    @require(MANAGE_WEBHOOKS)
    @blp.arguments(EndpointPatchIn)
    @blp.response(200, EndpointOut)
    def patch(self, data, endpoint_id):
        """Change URL, event types, description or ``enabled`` (enabling clears the failure streak)."""
        endpoint = services.update_endpoint(current_user, endpoint_id, data)
        db.session.commit()
        return endpoint

    @require(MANAGE_WEBHOOKS)
    @blp.response(204)
    def delete(self, endpoint_id):
        """Delete the endpoint: nothing more is sent to it; pending deliveries are failed."""
        services.delete_endpoint(current_user, endpoint_id)
        db.session.commit()


@blp.route("/endpoints/<int:endpoint_id>/rotate-secret")
class RotateSecret(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.response(200, EndpointSecretOut)
    def post(self, endpoint_id):
        """A new signing secret (shown once).  For ``WEBHOOKS_SECRET_GRACE_HOURS`` every payload
        carries a signature with the old secret too, so receivers can switch without a gap."""
        endpoint, secret = services.rotate_secret(current_user, endpoint_id)
        db.session.commit()
        return {"endpoint": endpoint, "secret": secret}


@blp.route("/endpoints/<int:endpoint_id>/ping")
class Ping(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.response(202, PingOut)
    @error_responses(409)
    def post(self, endpoint_id):
        """Send a ``webhook.ping`` event to this endpoint only, to test the receiver."""
        event_id = services.ping(current_user, endpoint_id)
        db.session.commit()
        return {"event_id": event_id}


@blp.route("/endpoints/<int:endpoint_id>/deliveries")
class Deliveries(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.arguments(DeliveryArgs, location="query")
    @blp.response(200, page_schema(WebhookDeliveryOut, "WebhookDeliveryPage"))
    def get(self, args, endpoint_id):
        """The endpoint's deliveries, newest first (filter by ``status`` and ``event_type``)."""
        query = services.deliveries_query(endpoint_id, args["status"], args["event_type"])
        return paginate(query, args["page"], args["per_page"])


@blp.route("/deliveries/<int:delivery_id>")
class Delivery(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.response(200, DeliveryDetailOut)
    def get(self, delivery_id):
        """One delivery with its payload and every attempt (status, latency, response excerpt)."""
        found = services.get_delivery(delivery_id)
        found.attempt_log = services.attempts_of(found.id)
        return found


@blp.route("/deliveries/<int:delivery_id>/redeliver")
class Redeliver(MethodView):
    @require(MANAGE_WEBHOOKS)
    @blp.response(202, WebhookDeliveryOut)
    @error_responses(409)
    def post(self, delivery_id):
        """Send the delivery again now, with the same ``webhook-id`` (receivers de-duplicate on it)."""
        found = services.redeliver(current_user, delivery_id)
        db.session.commit()
        return found
