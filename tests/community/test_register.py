"""Registration: validation, normalisation, uniqueness under concurrency, no mass assignment."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from community.models import User
from extensions import db
from tests.conftest import in_threads

GOOD = {"email": "new@example.com", "password": "a fine long password", "display_name": "New"}


def register(client, **changes):
    return client.post("/api/v1/auth/register", json={**GOOD, **changes})


def error(resp) -> dict:
    body = resp.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    return body["error"]


def test_register_creates_member_logs_in_and_hashes_password(client):
    resp = register(client, email="  Mixed.Case@Example.COM ")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["member"]["email"] == "mixed.case@example.com"
    assert body["member"]["roles"] == ["member"]
    assert body["member"]["tier"] == "aware"
    assert body["csrf_token"]
    assert "password" not in body["member"] and "password_hash" not in body["member"]

    user = db.session.scalar(select(User).where(User.email == "mixed.case@example.com"))
    assert user.password_hash.startswith("scrypt:")
    assert GOOD["password"] not in user.password_hash
    assert client.get("/api/v1/me").get_json()["id"] == user.id


def test_duplicate_email_is_409_whatever_its_case(client, app):
    assert register(client).status_code == 201
    resp = register(app.test_client(), email="NEW@example.com ")
    assert resp.status_code == 409
    err = error(resp)
    assert err["code"] == "conflict" and "email" in err["fields"]
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_concurrent_duplicate_registration_gives_one_201_and_one_409(app):
    def attempt(i):
        with app.app_context():
            return register(app.test_client(), display_name=f"Racer {i}").status_code

    statuses = in_threads(2, attempt)
    assert sorted(statuses) == [201, 409], statuses
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    ("password", "why"),
    [("short", "too short"), ("aaaaaaaaaaaaaa", "too repetitive"), ("x" * 129, "too long")],
)
def test_weak_password_is_422(client, password, why):
    resp = register(client, password=password)
    assert resp.status_code == 422, why
    assert "password" in error(resp)["fields"]
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "sp ace@example.com", ""])
def test_invalid_email_is_422(client, email):
    resp = register(client, email=email)
    assert resp.status_code == 422
    assert "email" in error(resp)["fields"]


def test_missing_fields_are_422_with_each_field_named(client):
    resp = client.post("/api/v1/auth/register", json={})
    assert resp.status_code == 422
    assert {"email", "password", "display_name"} <= set(error(resp)["fields"])


def test_blank_display_name_is_422(client):
    resp = register(client, display_name="   ")
    assert resp.status_code == 422
    assert "display_name" in error(resp)["fields"]


def test_referral_code_links_the_referrer(client, make_member):
    referrer = make_member()
    resp = register(client, referral_code=referrer.referral_code.lower())
    assert resp.status_code == 201
    user = db.session.get(User, resp.get_json()["member"]["id"])
    assert user.referred_by_id == referrer.id


def test_unknown_referral_code_is_422_and_creates_nothing(client):
    resp = register(client, referral_code="NOSUCHCODE")
    assert resp.status_code == 422
    assert "referral_code" in error(resp)["fields"]
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize(
    "extra",
    [{"roles": ["admin"]}, {"tier": "advocate"}, {"is_active_account": False}, {"id": 1}, {"referred_by_id": 1}],
)
def test_unknown_fields_are_rejected_no_mass_assignment(client, extra):
    resp = client.post("/api/v1/auth/register", json={**GOOD, **extra})
    assert resp.status_code == 422
    assert set(extra) <= set(error(resp)["fields"])
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_register_rate_limit(make_app):
    limited = make_app(REGISTER_RATE_LIMIT=(2, 3600))
    client = limited.test_client()
    assert register(client, email="one@example.com").status_code == 201
    assert register(limited.test_client(), email="two@example.com").status_code == 201
    resp = register(limited.test_client(), email="three@example.com")
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert error(resp)["code"] == "too_many_requests"
