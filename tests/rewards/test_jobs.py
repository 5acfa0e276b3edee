"""The sweeper, the periodic schedule and a Redis outage at request time (in-process worker)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from community.models import utcnow
from extensions import db, get_redis
from points import ledger
from rewards.jobs import PERIODIC, process_redemption, sweep_pending_redemptions
from rewards.models import Redemption, RedemptionJob
from tests.conftest import unused_port

from .helpers import assert_books_balanced, assert_no_code_twice


def _age(redemption_id: int, seconds: int) -> None:
    db.session.execute(
        update(Redemption).where(Redemption.id == redemption_id)
        .values(created_at=utcnow() - timedelta(seconds=seconds))
    )
    db.session.commit()


def _redeem(client, reward_id, key, headers=None):
    resp = client.post("/api/v1/redemptions", json={"reward_id": reward_id},
                       headers={"Idempotency-Key": key, **(headers or {})})
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


def test_sweeper_is_scheduled_every_minute():
    entry = next(p for p in PERIODIC if p.fn is sweep_pending_redemptions)
    assert entry.interval == 60 and entry.cron is None
    assert process_redemption.spec.queue == "redemptions" and process_redemption.spec.retries >= 3


def test_sweeper_recovers_lost_jobs_older_than_a_minute(app, make_member, login, give_points, make_reward,
                                                       run_jobs):
    member = make_member()
    give_points(member, 1000)
    reward = make_reward(kind="coupon", codes=5, cost=100)
    client = login(member)
    old, fresh = _redeem(client, reward.id, "old"), _redeem(client, reward.id, "fresh")
    get_redis(app).flushdb()  # the queued jobs are lost, as after a Redis restart without persistence
    _age(old, 90)

    assert sweep_pending_redemptions() == 1
    assert sweep_pending_redemptions() == 0  # already waiting in the queue: not doubled
    run_jobs(["redemptions"])
    db.session.rollback()
    assert db.session.get(Redemption, old).state == "fulfilled"
    assert db.session.get(Redemption, fresh).state == "pending"

    _age(fresh, 61)
    assert sweep_pending_redemptions() == 1
    run_jobs(["redemptions"])
    db.session.rollback()
    assert db.session.get(Redemption, fresh).state == "fulfilled"
    assert sweep_pending_redemptions(min_age_seconds=0) == 0  # nothing pending any more
    assert_no_code_twice()
    assert_books_balanced()


def test_failed_job_records_the_error_and_is_retried(app, make_member, login, give_points, make_reward, run_jobs,
                                                      monkeypatch):
    """The job's own status row records a failure; the next attempt succeeds and nothing doubles."""
    from rewards.jobs import FAULT_ENV

    member = make_member()
    give_points(member, 100)
    reward = make_reward(kind="coupon", codes=2, cost=100)
    rid = _redeem(login(member), reward.id, "flaky")
    monkeypatch.setenv(FAULT_ENV, "raise_once")

    with pytest.raises(RuntimeError, match="injected fault"):
        process_redemption(rid)
    db.session.rollback()
    row = db.session.get(RedemptionJob, rid)
    assert (row.status, row.attempts) == ("error", 1) and "injected fault" in row.last_error
    assert db.session.get(Redemption, rid).state == "pending"
    assert db.session.get(Redemption, rid).code is None  # the claimed code went back with the rollback

    assert process_redemption(rid) == "fulfilled"
    db.session.rollback()
    assert db.session.get(RedemptionJob, rid).status == "succeeded"
    assert_no_code_twice()
    assert_books_balanced()


def test_redis_down_at_request_time(app, make_app, make_member, give_points, make_reward, bearer, run_jobs):
    """The request still succeeds (bearer token: no Redis session needed); the sweeper catches up."""
    member = make_member()
    give_points(member, 300)
    reward = make_reward(kind="coupon", codes=3, cost=100)
    headers = bearer(member)
    reward_id = reward.id
    outage = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    with outage.app_context():
        resp = outage.test_client().post("/api/v1/redemptions", json={"reward_id": reward_id},
                                         headers={**headers, "Idempotency-Key": "outage"})
    assert resp.status_code == 202, resp.get_json()
    rid = resp.get_json()["id"]
    assert resp.get_json()["state"] == "pending"

    run_jobs(["redemptions"])  # nothing reached the queue
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == "pending"
    assert ledger.get_balance(member.id).held == 100

    _age(rid, 61)
    assert sweep_pending_redemptions() == 1
    run_jobs(["redemptions"])
    db.session.rollback()
    assert db.session.get(Redemption, rid).state == "fulfilled"
    assert ledger.get_balance(member.id) == ledger.Balance(available=200, held=0, lifetime_earned=300)
    assert_books_balanced()


def test_empty_pool_rejects_and_releases(app, make_member, login, give_points, make_reward, run_jobs):
    """Stock said a code was left but the pool is empty (codes removed by hand): refuse cleanly."""
    member = make_member()
    give_points(member, 100)
    reward = make_reward(kind="coupon", stock=1, cost=100)  # stock without codes
    rid = _redeem(login(member), reward.id, "empty")
    run_jobs(["redemptions"])
    db.session.rollback()
    redemption = db.session.get(Redemption, rid)
    assert redemption.state == "rejected" and redemption.reject_reason == "No codes left for this reward."
    assert ledger.get_balance(member.id) == ledger.Balance(available=100, held=0, lifetime_earned=100)
    assert_books_balanced()


def test_sweeper_gives_up_after_max_attempts(app, make_member, login, give_points, make_reward):
    from rewards.services import MAX_SWEEP_ATTEMPTS, stale_pending_ids

    member = make_member()
    give_points(member, 200)
    reward = make_reward(kind="digital", cost=100)
    client = login(member)
    stuck, retried = _redeem(client, reward.id, "stuck"), _redeem(client, reward.id, "retried")
    _age(stuck, 120)
    _age(retried, 120)
    db.session.execute(update(RedemptionJob).where(RedemptionJob.redemption_id == stuck)
                       .values(attempts=MAX_SWEEP_ATTEMPTS, status="error"))
    db.session.commit()
    assert stale_pending_ids() == [retried]
