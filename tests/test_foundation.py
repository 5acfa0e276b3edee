"""Shared building blocks: rate limits, pagination, CSV export, named permissions, demo data."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

import ratelimit
from community.models import TIERS, User, tier_rank
from community.permissions import all_permissions, define, has_permission, require
from csv_export import csv_response, iter_csv
from errors import TooManyRequests
from extensions import db, get_redis
from pagination import paginate
from tests.conftest import in_threads

# --------------------------------------------------------------------------- rate limits


def test_rate_limit_counts_down_then_raises_429_with_retry_after(app):
    assert [ratelimit.hit("t:key", 3, 60) for _ in range(3)] == [2, 1, 0]
    with pytest.raises(TooManyRequests) as exc:
        ratelimit.hit("t:key", 3, 60, "slow down")
    err = exc.value
    assert err.status == 429 and err.message == "slow down"
    assert 0 < int(err.headers["Retry-After"]) <= 60
    assert 0 < get_redis().ttl("kinship:rl:t:key") <= 60
    assert ratelimit.hit("t:other", 3, 60) == 2  # keys are independent
    ratelimit.reset("t:key")
    assert ratelimit.hit("t:key", 3, 60) == 2


def test_rate_limit_holds_under_concurrency(app):
    def attempt(_):
        with app.app_context():
            try:
                ratelimit.hit("t:race", 5, 60)
                return "ok"
            except TooManyRequests:
                return "limited"

    results = in_threads(12, attempt)
    assert results.count("ok") == 5 and results.count("limited") == 7


# --------------------------------------------------------------------------- pagination


def test_paginate_counts_with_the_same_filters(make_member):
    for i in range(7):
        make_member(tier="loyal" if i % 2 else "aware")
    query = select(User).where(User.tier == "aware").order_by(User.id)
    first = paginate(query, 1, 3)
    assert first["meta"] == {"page": 1, "per_page": 3, "total": 4, "pages": 2}
    assert [u.tier for u in first["items"]] == ["aware"] * 3
    second = paginate(query, 2, 3)
    assert len(second["items"]) == 1
    assert {u.id for u in first["items"]}.isdisjoint({u.id for u in second["items"]})
    assert paginate(query, 5, 3)["items"] == []


def test_page_arguments_are_validated(make_member, login):
    client = login(make_member(roles=("admin",)))
    for query in ({"page": 0}, {"per_page": 0}, {"per_page": 101}, {"page": "x"}):
        resp = client.get("/api/v1/admin/users", query_string=query)
        assert resp.status_code == 422, query
        assert resp.get_json()["error"]["fields"]


# --------------------------------------------------------------------------- CSV


def test_csv_neutralises_formulas_and_keeps_values(app):
    rows = [["=1+1", "+cmd", "-2", "@x", "plain", None, 5, "a,b\n\"c\""]]
    text = "".join(iter_csv(["a", "b", "c", "d", "e", "f", "g", "h"], rows))
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1] == ["'=1+1", "'+cmd", "'-2", "'@x", "plain", "", "5", "a,b\n\"c\""]


def test_csv_response_streams_from_a_callable(app):
    calls = []

    def rows():
        calls.append("started")
        yield from ([i, f"row {i}"] for i in range(3))

    with app.test_request_context():
        resp = csv_response("x.csv", ["n", "label"], rows)
        assert calls == []  # nothing runs until the body is consumed
        body = resp.get_data(as_text=True)
    assert resp.headers["Content-Disposition"] == "attachment; filename=x.csv"
    assert body.splitlines() == ['"n","label"', '"0","row 0"', '"1","row 1"', '"2","row 2"']


# --------------------------------------------------------------------------- permissions and tiers


def test_permissions_are_named_and_admins_hold_them_all(make_member):
    name = define("tests.example", ["moderator"])
    assert define("tests.example", ["moderator"]) == name  # re-declaring identically is fine
    with pytest.raises(ValueError):
        define("tests.example", ["marketer"])
    assert all_permissions()[name] == frozenset({"moderator", "admin"})
    assert has_permission(make_member(roles=("moderator",)), name)
    assert has_permission(make_member(roles=("admin",)), name)
    assert not has_permission(make_member(roles=("marketer",)), name)
    assert not has_permission(None, name)
    with pytest.raises(KeyError):
        has_permission(make_member(), "tests.no_such_permission")
    with pytest.raises(KeyError):
        require("tests.no_such_permission")


def test_tier_rank_orders_the_ladder():
    assert [tier_rank(t) for t in TIERS] == [0, 1, 2, 3, 4]
    assert tier_rank(None) == 0 and tier_rank("unknown") == 0


# --------------------------------------------------------------------------- demo data


def test_demo_data_is_idempotent_and_has_every_demo_account(app):
    from community.demo import DEMO_PASSWORD
    from demo import load_demo

    ctx = load_demo()
    assert set(ctx["members"]) >= {"admin", "mod", "marketing", "redeem", "alice", "bob", "carol", "dave"}
    assert ctx["members"]["admin"].roles >= {"admin"}
    assert ctx["members"]["mod"].roles >= {"moderator"}
    assert ctx["members"]["redeem"].roles >= {"redemption_staff"}
    counts = {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}

    load_demo()
    again = {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}
    assert again == counts

    resp = app.test_client().post("/api/v1/auth/login", json={"email": "alice@example.com", "password": DEMO_PASSWORD})
    assert resp.status_code == 200
