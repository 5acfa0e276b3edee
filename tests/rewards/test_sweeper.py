"""The sweeper settles job rows that no attempt will ever run (issue 11)."""

from __future__ import annotations

from extensions import db
from rewards.jobs import sweep_pending_redemptions
from rewards.models import RedemptionJob
from tests.conftest import unused_port


def test_a_redemption_accepted_while_redis_was_down_and_cancelled_is_skipped_by_the_sweeper(
    app, make_app, make_member, give_points, make_reward, bearer
):
    member = make_member()
    give_points(member, 500)
    reward = make_reward(kind="digital", cost=100)
    headers = bearer(member)
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    with down.app_context():
        client = down.test_client()
        resp = client.post("/api/v1/redemptions", json={"reward_id": reward.id},
                           headers={**headers, "Idempotency-Key": "while-down"})
        assert resp.status_code == 202, resp.get_json()
        rid = resp.get_json()["id"]
        kept = client.post("/api/v1/redemptions", json={"reward_id": reward.id},
                           headers={**headers, "Idempotency-Key": "still-pending"}).get_json()["id"]
        assert client.post(f"/api/v1/redemptions/{rid}/cancel", headers=headers).status_code == 200
    db.session.rollback()
    assert (db.session.get(RedemptionJob, rid).status, db.session.get(RedemptionJob, rid).attempts) == ("queued", 0)

    assert sweep_pending_redemptions(min_age_seconds=0) == 1  # the one still pending is re-enqueued
    db.session.rollback()
    skipped = db.session.get(RedemptionJob, rid)
    assert (skipped.status, skipped.attempts) == ("skipped", 0) and skipped.finished_at is not None
    assert db.session.get(RedemptionJob, kept).status == "queued"  # still to be processed
