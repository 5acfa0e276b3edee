"""Registering endpoints: validation, SSRF refusal, nothing half-written, the admin views."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from community.models import AuditLog
from extensions import db
from messaging.webhooks import delivery
from messaging.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

from .conftest import ALL_TYPES

URL = "/api/v1/admin/webhooks/endpoints"


def counts() -> tuple[int, int]:
    db.session.expire_all()
    endpoints = db.session.scalar(select(db.func.count()).select_from(WebhookEndpoint))
    audits = db.session.scalar(
        select(db.func.count()).select_from(AuditLog).where(AuditLog.action.like("webhooks.%"))
    )
    return endpoints, audits


def error(resp) -> tuple[int, str, dict]:
    body = resp.get_json()["error"]
    return resp.status_code, body["code"], body["fields"]


def test_register_list_show_update_delete(admin_client, receiver):
    resp = admin_client.post(URL, json={"url": receiver.url, "event_types": ["tier.changed", "points.changed"],
                                        "description": "CRM"})
    assert resp.status_code == 201
    body = resp.get_json()
    endpoint, secret = body["endpoint"], body["secret"]
    assert endpoint["event_types"] == ["points.changed", "tier.changed"] and endpoint["enabled"] is True
    assert endpoint["secret_prefix"] == secret[:10] and "secret" not in endpoint

    listed = admin_client.get(URL).get_json()
    assert [e["id"] for e in listed["items"]] == [endpoint["id"]] and listed["meta"]["total"] == 1
    assert secret not in str(listed)

    resp = admin_client.patch(f"{URL}/{endpoint['id']}", json={"description": "CRM sync", "enabled": False})
    assert resp.status_code == 200
    shown = resp.get_json()
    assert shown["description"] == "CRM sync" and shown["enabled"] is False and shown["disabled_at"]

    assert admin_client.delete(f"{URL}/{endpoint['id']}").status_code == 204
    assert admin_client.get(f"{URL}/{endpoint['id']}").status_code == 404
    assert admin_client.get(URL).get_json()["items"] == []
    actions = [a.action for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["webhooks.endpoint.create", "webhooks.endpoint.update", "webhooks.endpoint.delete"]


def test_the_event_catalogue_lists_every_required_type(admin_client):
    types = [t["type"] for t in admin_client.get("/api/v1/admin/webhooks/event-types",
                                                                query_string={"per_page": 100}).get_json()["items"]]
    assert set(ALL_TYPES) <= set(types)


@pytest.mark.parametrize("url, reason", [
    ("not a url", "spaces"),
    ("example.com/hook", "http and https"),
    ("ftp://example.com/hook", "http and https"),
    ("javascript:alert(1)", "http and https"),
    ("file:///etc/passwd", "http and https"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "http and https"),
    ("http://", "no host"),
    ("http://user:secret@example.com/hook", "Credentials"),
    ("http://example.com:99999/hook", "malformed"),
    ("http://example.com:abc/hook", "malformed"),
    ("http://exa\nmple.com/", "control"),
    ("http://" + "a" * 64 + ".com/", "not valid"),
    ("http://" + "a" * 2000 + ".com/", "Length"),
    ("http://does-not-exist.invalid/hook", "does not resolve"),
])
def test_malformed_urls_are_422_and_write_nothing(admin_client, url, reason):
    before = counts()
    resp = admin_client.post(URL, json={"url": url, "event_types": ["points.changed"]})
    status, code, fields = error(resp)
    assert (status, code) == (422, "validation_error")
    assert "url" in fields
    assert reason.lower() in str(fields).lower()
    assert counts() == before


@pytest.mark.parametrize("body, field", [
    ({"url": "http://127.0.0.1:9/", "event_types": ["points.changed", "points.stolen"]}, "event_types"),
    ({"url": "http://127.0.0.1:9/", "event_types": []}, "event_types"),
    ({"url": "http://127.0.0.1:9/", "event_types": "points.changed"}, "event_types"),
    ({"url": "http://127.0.0.1:9/", "event_types": [1]}, "event_types"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["webhook.ping"]}, "event_types"),
    ({"url": "http://127.0.0.1:9/"}, "event_types"),
    ({"event_types": ["points.changed"]}, "url"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["points.changed"], "secret": "whsec_mine"}, "secret"),
    ({"url": "http://127.0.0.1:9/", "event_types": ["points.changed"], "description": "x" * 501}, "description"),
])
def test_bad_fields_are_422_and_write_nothing(admin_client, body, field):
    before = counts()
    status, code, fields = error(admin_client.post(URL, json=body))
    assert (status, code) == (422, "validation_error") and field in fields
    assert counts() == before


def test_malformed_json_is_400(admin_client):
    resp = admin_client.post(URL, data="{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "bad_request"


def test_a_bad_update_changes_nothing(admin_client, register, receiver):
    endpoint, _ = register(receiver.url, ["points.changed"])
    for body in ({"url": "ftp://x/", "description": "changed"},
                 {"event_types": ["nope"], "description": "changed"},
                 {"url": receiver.url, "event_types": ["points.changed", "nope"]}):
        status, _, _ = error(admin_client.patch(f"{URL}/{endpoint['id']}", json=body))
        assert status == 422
    shown = admin_client.get(f"{URL}/{endpoint['id']}").get_json()
    assert shown["description"] == "" and shown["url"] == receiver.url and shown["event_types"] == ["points.changed"]
    assert admin_client.patch(f"{URL}/999999", json={"description": "x"}).status_code == 404


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost:8080/hook", "loopback"),  # a name resolving to loopback, looked up for real
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10/hook", "private"),
    ("http://172.16.5.5/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://100.64.1.1/hook", "reserved"),
    ("https://2130706433/hook", "loopback"),  # 127.0.0.1 written as one number
])
def test_private_addresses_are_refused_outside_tests(app, admin_client, url, why):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    before = counts()
    status, code, fields = error(admin_client.post(URL, json={"url": url, "event_types": ["points.changed"]}))
    assert status == 422, fields
    assert why in str(fields["url"])
    assert counts() == before


def test_a_public_address_is_accepted_without_contacting_it(app, admin_client):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    resp = admin_client.post(URL, json={"url": "https://8.8.8.8/hook", "event_types": ["points.changed"]})
    assert resp.status_code == 201, resp.get_json()


def test_the_address_is_checked_again_at_delivery_time(app, make_member, register, receiver, deliver_all):
    """DNS rebinding: a host that was public at registration may point inward later."""
    from points import ledger

    register(receiver.url, ["points.changed"])
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False  # the same host now counts as not allowed
    member = make_member()
    ledger.award(member.id, 5, key="rebind", reason="x")
    db.session.commit()
    deliver_all()
    assert receiver.received == []
    (row,) = db.session.scalars(select(WebhookDelivery)).all()
    (log,) = db.session.scalars(select(WebhookAttempt)).all()
    assert log.outcome == "blocked_address" and "loopback" in log.error
    assert row.status == "pending"  # retried later, and counted towards auto-disable


def test_address_rules():
    assert delivery.address_refusal("93.184.216.34") is None
    assert delivery.address_refusal("2606:4700:4700::1111") is None
    for address in ("127.0.0.1", "10.0.0.1", "169.254.1.1", "fe80::1%eth0", "::1", "fc00::1", "239.255.255.250",
                    "::ffff:10.0.0.1", "192.0.2.1", "255.255.255.255"):
        assert delivery.address_refusal(address) is not None, address


def test_the_request_goes_to_the_checked_address_with_the_hosts_name(app, make_member, register, receiver,
                                                                      deliver_all):
    from points import ledger

    url = receiver.url.replace("127.0.0.1", "localhost")
    register(url, ["points.changed"])
    ledger.award(make_member().id, 5, key="by-name", reason="x")
    db.session.commit()
    deliver_all()
    (got,) = receiver.received
    assert got.headers["host"] == "localhost:" + url.split(":")[2].split("/")[0]
