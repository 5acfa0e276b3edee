"""The per-member rate limit on redemption requests (Redis, shared by every process).

That it fails open (Redis down: requests still accepted) is test_jobs.test_redis_down_at_request_time.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from extensions import db
from points import ledger
from rewards.models import Redemption


def test_redemption_requests_are_rate_limited_per_member(make_app, make_member, give_points, make_reward, bearer):
    limited = make_app(REDEMPTION_RATE_LIMIT=(3, 60))
    member, other = make_member(), make_member()
    give_points(member, 1000)
    reward = make_reward(kind="digital", cost=10)
    headers, other_headers = bearer(member), bearer(other)
    reward_id, member_id = reward.id, member.id

    def redeem(auth, key):
        with limited.app_context():
            return limited.test_client().post("/api/v1/redemptions", json={"reward_id": reward_id},
                                              headers={**auth, "Idempotency-Key": key})

    assert [redeem(headers, f"k{i}").status_code for i in range(2)] == [202, 202]
    assert redeem(headers, "k0").status_code == 202  # a replay counts too
    over = redeem(headers, "k3")
    assert over.status_code == 429
    assert over.get_json()["error"]["code"] == "too_many_requests"
    assert set(over.get_json()["error"]) == {"code", "message", "fields"}
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    db.session.rollback()
    assert db.session.scalar(select(func.count()).where(Redemption.member_id == member_id)) == 2
    assert redeem(other_headers, "o1").status_code == 409  # another member's budget is their own (no points)
    assert ledger.get_balance(member_id).held == 20


def test_redemption_rate_limit_default(make_app, make_member, make_reward, bearer):
    """Without ``REDEMPTION_RATE_LIMIT`` in the config: 20 requests a minute per member."""
    other = make_app()
    other.config.pop("REDEMPTION_RATE_LIMIT", None)
    member = make_member()
    headers, reward_id = bearer(member), make_reward(kind="digital", cost=10).id
    with other.app_context():
        client = other.test_client()
        codes = [client.post("/api/v1/redemptions", json={"reward_id": reward_id},
                             headers={**headers, "Idempotency-Key": f"d{i}"}).status_code for i in range(21)]
    assert Counter(codes) == {409: 20, 429: 1}  # no points: each allowed request is insufficient_points
    assert codes[-1] == 429
