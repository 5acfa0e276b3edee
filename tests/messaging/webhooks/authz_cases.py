from tests.authz import Case

ADMIN = frozenset({"admin"})


def _endpoint(ctx):
    from extensions import db
    from messaging.webhooks import services

    endpoint, _ = services.create_endpoint(ctx.users["admin"], {
        "url": "http://127.0.0.1:9/hook", "event_types": ["points.changed"]})
    db.session.commit()
    return {"endpoint_id": endpoint.id}


def _delivery(ctx):
    from extensions import db
    from messaging.webhooks import events

    params = _endpoint(ctx)
    events.publish("points.changed", {"member_id": ctx.users["owner"].id}, endpoint_ids=[params["endpoint_id"]])
    db.session.commit()
    from messaging.webhooks.models import WebhookDelivery

    return {"delivery_id": db.session.scalar(db.select(db.func.max(WebhookDelivery.id)))}


BASE = "/api/v1/admin/webhooks"
CASES = [
    Case("GET", f"{BASE}/event-types", ADMIN),
    Case("GET", f"{BASE}/endpoints", ADMIN),
    Case("POST", f"{BASE}/endpoints", ADMIN, body={"url": "http://127.0.0.1:9/new", "event_types": ["tier.changed"]}),
    Case("GET", f"{BASE}/endpoints/<int:endpoint_id>", ADMIN, setup=_endpoint),
    Case("PATCH", f"{BASE}/endpoints/<int:endpoint_id>", ADMIN, setup=_endpoint, body={"description": "crm"}),
    Case("DELETE", f"{BASE}/endpoints/<int:endpoint_id>", ADMIN, setup=_endpoint),
    Case("POST", f"{BASE}/endpoints/<int:endpoint_id>/rotate-secret", ADMIN, setup=_endpoint),
    Case("POST", f"{BASE}/endpoints/<int:endpoint_id>/ping", ADMIN, setup=_endpoint),
    Case("GET", f"{BASE}/endpoints/<int:endpoint_id>/deliveries", ADMIN, setup=_endpoint),
    Case("GET", f"{BASE}/deliveries/<int:delivery_id>", ADMIN, setup=_delivery),
    Case("POST", f"{BASE}/deliveries/<int:delivery_id>/redeliver", ADMIN, setup=_delivery),
]
