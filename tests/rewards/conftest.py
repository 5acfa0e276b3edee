"""Fixtures for the rewards tests: points for members, rewards with code pools, token clients."""

from __future__ import annotations

import itertools

import pytest

from extensions import db

_award_seq = itertools.count(1)


@pytest.fixture
def give_points(app):
    """``give_points(member, amount)``: award points through the ledger, committed."""
    from points import ledger

    def give(member, amount: int):
        ledger.award(member.id, amount, key=f"test-award:{next(_award_seq)}", reason="test points")
        db.session.commit()

    return give


@pytest.fixture
def make_reward(app, make_member):
    """``make_reward(kind="coupon", codes=5, **fields)`` -> a committed, open reward."""
    from rewards import services
    from rewards.models import Reward

    staff = {}

    def make(*, kind: str = "digital", codes: int = 0, name: str | None = None, cost: int = 100, **fields):
        if kind == "coupon":
            fields.setdefault("stock", 0)
        reward = Reward(name=name or f"{kind} reward", kind=kind, cost=cost, **fields)
        db.session.add(reward)
        db.session.commit()
        if codes:
            if "actor" not in staff:
                staff["actor"] = make_member(roles=("marketer",))
            services.add_codes(staff["actor"], reward.id, [f"CODE-{reward.id}-{i:05d}" for i in range(codes)])
            db.session.commit()
            db.session.refresh(reward)
        return reward

    return make


@pytest.fixture
def bearer(app):
    """``bearer(user)`` -> headers authenticating as ``user`` with a fresh API token."""
    from community.services import create_token

    def make(user) -> dict:
        _, secret = create_token(user, "test")
        db.session.commit()
        return {"Authorization": f"Bearer {secret}"}

    return make
