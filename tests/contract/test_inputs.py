"""Direct tests of the input contract (issue 12): every case the issue reproduced with curl.

Integers are range-checked (422 naming the field, never a 500), strict (no floats, no numeric
strings, no booleans), bodies must be JSON where JSON is documented (415 otherwise), a missing
required body or an empty PATCH is 422, and deep JSON is 400.  They run on both backends.
"""

from __future__ import annotations

import pytest

from community.services import create_token
from extensions import db
from points.models import Interaction

HUGE = "9223372036854775808"  # 2^63: past SQLite's integer
INT32_PAST = 2**31  # past PostgreSQL's INTEGER


def envelope(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/json"
    body = resp.get_json()["error"]
    assert set(body) == {"code", "message", "fields"}
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture
def admin(make_member, login):
    return login(make_member(roles=("admin",)))


@pytest.fixture
def member(make_member, login):
    return login(make_member())


@pytest.fixture
def bearer(app, make_member):
    """A client posting with an admin's API token (integrations)."""
    user = make_member(roles=("admin",))
    _, secret = create_token(user, "contract")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    return lambda url, body: client.post(url, json=body, headers=headers)


# --------------------------------------------------------------------------- 1. ranges


@pytest.mark.parametrize("value", [HUGE, str(INT32_PAST), "0", "99999999999999999999999999"])
def test_path_ids_out_of_range_are_422_naming_the_parameter(member, value):
    body = envelope(member.get(f"/api/v1/posts/{value}"), 422, "validation_error")
    assert list(body["fields"]) == ["post_id"]


def test_unknown_path_id_in_range_is_404(member):
    envelope(member.get("/api/v1/posts/2147483647"), 404, "not_found")
    envelope(member.get("/api/v1/redemptions/1"), 404, "not_found")


def test_out_of_range_path_id_of_a_stranger_is_still_401(client):
    envelope(client.get(f"/api/v1/posts/{HUGE}"), 401)


@pytest.mark.parametrize("value", [99999999999999999999, INT32_PAST, 0, -1])
def test_body_ids_out_of_range_are_422(member, value):
    resp = member.post("/api/v1/redemptions", json={"reward_id": value}, headers={"Idempotency-Key": "k1"})
    assert list(envelope(resp, 422)["fields"]) == ["reward_id"]


def test_query_ids_out_of_range_are_422(admin):
    for url in ("/api/v1/admin/audit", "/api/v1/admin/redemptions"):
        field = "actor_id" if "audit" in url else "member_id"
        body = envelope(admin.get(url, query_string={field: HUGE}), 422)
        assert field in body["fields"]


def test_audit_csv_validates_before_sending_headers(admin):
    resp = admin.get("/api/v1/admin/audit.csv", query_string={"actor_id": HUGE})
    body = envelope(resp, 422)
    assert "actor_id" in body["fields"]
    ok = admin.get("/api/v1/admin/audit.csv", query_string={"actor_id": 1})
    assert ok.status_code == 200 and ok.mimetype == "text/csv"


def test_largest_legal_purchase_fits_the_points_columns(app, admin, bearer, make_member, monkeypatch):
    """10^9 units x 10^4 points per unit x tier x campaign multipliers of 10: 10^15 points (with
    MAX_POINTS_PER_UNIT raised to the schema's own bound, 10^4)."""
    monkeypatch.setitem(app.config, "MAX_POINTS_PER_UNIT", 10_000)
    buyer = make_member(tier="advocate")
    assert admin.put("/api/v1/admin/points/rules/purchase", json={"points_per_unit": 10_000}).status_code == 200
    resp = admin.put("/api/v1/admin/tiers/benefits/advocate", json={
        "earning_multiplier": 10, "focus_group_priority": 1,
        "posting_limits": {"threads_per_day": None, "replies_per_day": None, "min_seconds_between_posts": 0}})
    assert resp.status_code == 200, resp.get_json()
    resp = admin.post("/api/v1/admin/points/campaigns", json={
        "name": "Ten", "multiplier": 10, "starts_at": "2000-01-01T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z"})
    assert resp.status_code == 201, resp.get_json()
    event = {"event_id": "big-1", "type": "purchase", "member_id": buyer.id, "amount": 1_000_000_000}
    resp = bearer("/api/v1/points/events", event)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["points"] == 10**15
    assert db.session.query(Interaction).filter_by(member_id=buyer.id).one().points == 10**15
    balance = admin.get(f"/api/v1/admin/points/members/{buyer.id}").get_json()
    assert balance["lifetime_earned"] == 10**15
    envelope(bearer("/api/v1/points/events", {**event, "event_id": "big-2", "amount": 1_000_000_001}), 422)


# --------------------------------------------------------------------------- 2. strict numbers


@pytest.mark.parametrize("bad", [1.9, "5", True, 2.0, "1e3"])
def test_integer_fields_reject_floats_strings_and_booleans(admin, make_member, bad):
    target = make_member()
    resp = admin.post("/api/v1/admin/points/adjustments", json={"member_id": target.id, "delta": bad, "reason": "x"})
    assert list(envelope(resp, 422)["fields"]) == ["delta"]
    resp = admin.post("/api/v1/admin/points/adjustments", json={"member_id": 6.7, "delta": 1, "reason": "x"})
    assert list(envelope(resp, 422)["fields"]) == ["member_id"]


def test_board_position_must_be_an_integer(admin):
    resp = admin.post("/api/v1/boards", json={"slug": "b", "name": "B", "position": 2.5})
    assert list(envelope(resp, 422)["fields"]) == ["position"]


@pytest.mark.parametrize("page", ["1.5", "1e2", " 1", "true", ""])
def test_query_integers_are_plain_decimal_integers(member, page):
    envelope(member.get("/api/v1/rewards", query_string={"page": page}), 422)


def test_decimals_are_numbers_in_and_out(admin):
    body = {"name": "Double", "multiplier": "2", "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z"}
    assert "multiplier" in envelope(admin.post("/api/v1/admin/points/campaigns", json=body), 422)["fields"]
    resp = admin.post("/api/v1/admin/points/campaigns", json={**body, "multiplier": 1.25})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["multiplier"] == 1.25


def test_timestamps_need_an_offset_in_and_carry_z_out(admin):
    body = {"name": "Naive", "multiplier": 2, "starts_at": "2026-01-01T00:00:00", "ends_at": "2026-02-01T00:00:00Z"}
    assert list(envelope(admin.post("/api/v1/admin/points/campaigns", json=body), 422)["fields"]) == ["starts_at"]
    resp = admin.post("/api/v1/admin/points/campaigns", json={**body, "starts_at": "2026-01-01T02:00:00+02:00"})
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["starts_at"] == "2026-01-01T00:00:00Z" and out["created_at"].endswith("Z")


# --------------------------------------------------------------------------- 3. bodies


@pytest.mark.parametrize("kwargs", [
    {"data": '{"bio": "hello"}', "content_type": "text/plain"},
    {"data": {"bio": "hello"}},  # a form body
    {"data": "bio=hello", "content_type": "application/x-www-form-urlencoded"},
])
def test_non_json_body_on_a_json_write_is_415(member, kwargs):
    envelope(member.patch("/api/v1/me", **kwargs), 415, "unsupported_media_type")
    assert member.get("/api/v1/me").get_json()["bio"] == ""


def test_missing_required_body_is_422(member):
    envelope(member.post("/api/v1/me/tokens"), 422, "validation_error")
    envelope(member.post("/api/v1/me/referrals/invites"), 422, "validation_error")


@pytest.mark.parametrize("url", ["/api/v1/me", "/api/v1/boards/1", "/api/v1/posts/1"])
def test_patch_without_a_known_field_is_422(admin, url):
    envelope(admin.patch(url, json={}), 422, "validation_error")
    envelope(admin.patch(url), 422, "validation_error")


def test_a_body_on_an_operation_that_takes_none(member):
    assert member.post("/api/v1/me/visits").status_code == 200
    assert member.post("/api/v1/me/visits", json={}).status_code == 200
    envelope(member.post("/api/v1/me/visits", json={"x": 1}), 422)
    envelope(member.post("/api/v1/me/visits", data="x", content_type="text/plain"), 415)


def test_deep_json_is_400_not_a_recursion_error(member):
    deep = "[" * 100_000 + "]" * 100_000
    envelope(member.patch("/api/v1/me", data=deep, content_type="application/json"), 400, "bad_request")
    nested = '{"bio": ' + "[" * 40 + "]" * 40 + "}"
    envelope(member.patch("/api/v1/me", data=nested, content_type="application/json"), 400, "bad_request")


def test_nul_in_text_is_422(member):
    envelope(member.patch("/api/v1/me", json={"bio": "a\x00b"}), 422)
    envelope(member.get("/api/v1/rewards", query_string={"x": "a\x00"}), 422)
