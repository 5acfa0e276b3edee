"""Runs every domain's authorization cases for every actor, and checks no route is missing."""

from __future__ import annotations

import importlib

import pytest

from jobs import DOMAINS
from tests.authz import ACTORS, Case, Ctx


def _load_cases() -> list[Case]:
    cases: list[Case] = []
    for domain in DOMAINS:
        try:
            module = importlib.import_module(f"tests.{domain}.authz_cases")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"tests.{domain}.authz_cases", f"tests.{domain}"):
                raise
            continue
        cases.extend(module.CASES)
    return cases


CASES = _load_cases()
# Sign-in with the matrix's (absent) credentials is a 401 for everyone, and that is right.
_LOGIN_CASES = ("POST /api/v1/auth/login", "POST /console/login")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_route_authorization(case: Case, actors, app):
    ctx = Ctx(users=actors["users"], app=app)
    params = case.setup(ctx) if case.setup else {}
    url = case.url(params)
    # Every case gets its own actors (the fixture is per test), so a case that changes an
    # actor's state (logout, a role revoked) cannot leak into another case.
    for actor in ACTORS:
        client = actors["clients"][actor]
        body = case.body(ctx, params) if callable(case.body) else case.body
        resp = client.open(url, method=case.method, json=body, query_string=case.query, headers=case.headers)
        status = resp.status_code
        if actor in case.allowed:
            assert status not in (401, 403) or (case.id in _LOGIN_CASES and status == 401), (
                f"{actor} should be allowed on {case.id}, got {status}: {resp.get_data(as_text=True)[:300]}"
            )
        else:
            expected = case.anonymous_status if actor == "anonymous" else (403, 404)
            assert status in expected, (
                f"{actor} should be refused on {case.id} ({expected}), got {status}: "
                f"{resp.get_data(as_text=True)[:300]}"
            )
        assert status < 500, f"{actor} got a server error on {case.id}"


def test_every_api_and_console_route_has_a_case(app):
    declared = {(c.method, c.rule) for c in CASES}
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/v1/", "/console")) or rule.rule.endswith("openapi.json"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (method, rule.rule) not in declared:
                missing.append(f"{method} {rule.rule}")
    assert not missing, "routes without an authorization case:\n" + "\n".join(missing)


def test_every_case_names_a_real_route(app):
    """A case for a renamed or removed route would pass vacuously (404 for everyone)."""
    routes = {
        (method, rule.rule) for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    stale = sorted(f"{c.method} {c.rule}" for c in CASES if (c.method, c.rule) not in routes)
    assert not stale, "authorization cases for routes that do not exist:\n" + "\n".join(stale)


def test_cases_are_not_declared_twice():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
