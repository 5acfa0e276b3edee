"""Concurrent redemptions through the HTTP API, in real threads, on the configured database."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from extensions import db
from points import ledger
from rewards.models import Redemption, Reward, RewardCode
from tests.conftest import in_threads

from .helpers import assert_books_balanced, assert_no_code_twice


def _post(app, headers, reward_id, key):
    with app.app_context():
        resp = app.test_client().post(
            "/api/v1/redemptions", json={"reward_id": reward_id}, headers={**headers, "Idempotency-Key": key}
        )
        return resp.status_code, resp.get_json()


def test_200_members_race_for_50_coupons(app, make_member, give_points, make_reward, bearer, run_jobs):
    reward = make_reward(kind="coupon", codes=50, cost=100)
    members = [make_member() for _ in range(200)]
    auth = []
    for member in members:
        give_points(member, 150)
        auth.append(bearer(member))

    reward_id = reward.id  # threads must not touch the test's ORM objects
    results = in_threads(200, lambda i: _post(app, auth[i], reward_id, f"race-{i}"))

    statuses = Counter(r[0] if isinstance(r, tuple) else repr(r) for r in results)
    assert statuses == {202: 50, 409: 150}, statuses
    assert {r[1]["error"]["code"] for r in results if r[0] == 409} == {"out_of_stock"}
    db.session.rollback()
    assert db.session.get(Reward, reward.id).stock == 0

    run_jobs(["redemptions"])
    db.session.rollback()
    assert db.session.scalar(select(func.count()).where(Redemption.state == "fulfilled")) == 50
    assert db.session.scalar(select(func.count(func.distinct(RewardCode.redemption_id)))) == 50
    assert_no_code_twice()
    assert_books_balanced()
    winners = {r[1]["id"] for r in results if r[0] == 202}
    for member in members:
        balance = ledger.get_balance(member.id)
        won = db.session.scalar(select(Redemption.id).where(Redemption.member_id == member.id))
        assert (won in winners) == (balance.available == 50)
        assert balance.held == 0


def test_one_member_balance_covers_5_of_20(app, make_member, give_points, make_reward, bearer, run_jobs):
    reward = make_reward(kind="digital", cost=100)  # unlimited stock: only the balance limits
    member = make_member()
    give_points(member, 500)
    auth = bearer(member)

    reward_id = reward.id
    results = in_threads(20, lambda i: _post(app, auth, reward_id, f"spend-{i}"))

    statuses = Counter(r[0] if isinstance(r, tuple) else repr(r) for r in results)
    assert statuses == {202: 5, 409: 15}, statuses
    assert {r[1]["error"]["code"] for r in results if r[0] == 409} == {"insufficient_points"}
    db.session.rollback()
    assert ledger.get_balance(member.id) == ledger.Balance(available=0, held=500, lifetime_earned=500)
    run_jobs(["redemptions"])
    db.session.rollback()
    assert ledger.get_balance(member.id) == ledger.Balance(available=0, held=0, lifetime_earned=500)
    assert db.session.scalar(select(func.count()).where(Redemption.state == "fulfilled")) == 5
    assert_books_balanced()


def test_same_key_sent_20_times_at_once_makes_one_redemption(app, make_member, give_points, make_reward, bearer):
    reward = make_reward(kind="physical", stock=10, cost=10)
    member = make_member()
    give_points(member, 1000)
    auth = bearer(member)

    reward_id = reward.id
    results = in_threads(20, lambda i: _post(app, auth, reward_id, "one-key"))

    assert {r[0] for r in results} == {202}, results
    assert len({r[1]["id"] for r in results}) == 1
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Redemption)) == 1
    assert ledger.get_balance(member.id).held == 10
    assert db.session.get(Reward, reward.id).stock == 9


def test_per_member_limit_holds_under_concurrency(app, make_member, give_points, make_reward, bearer):
    reward = make_reward(kind="physical", stock=100, cost=10, per_member_limit=2)
    member = make_member()
    give_points(member, 1000)
    auth = bearer(member)

    reward_id = reward.id
    results = in_threads(10, lambda i: _post(app, auth, reward_id, f"limit-{i}"))

    statuses = Counter(r[0] if isinstance(r, tuple) else repr(r) for r in results)
    assert statuses == {202: 2, 409: 8}, statuses
    assert {r[1]["error"]["code"] for r in results if r[0] == 409} == {"limit_reached"}
    assert ledger.get_balance(member.id).held == 20
    assert db.session.get(Reward, reward.id).stock == 98


def test_request_does_not_deadlock_with_a_job_of_the_same_member(app, make_member, give_points, make_reward):
    """PostgreSQL: a job holding the member's balance lock and then writing their notification
    (a foreign key to users) must not deadlock with a request locking the member's row."""
    import threading
    import time

    from community.models import User
    from community.services import notify
    from rewards import services

    if db.engine.dialect.name != "postgresql":
        pytest.skip("row-lock modes are PostgreSQL's; SQLite serialises writers")
    member = make_member()
    give_points(member, 1000)
    member_id, reward_id = member.id, make_reward(kind="physical", stock=5, cost=10).id
    job_locked = threading.Event()

    def job_like():
        with app.app_context():
            ledger.lock_member(member_id)  # what settle_hold does first
            job_locked.set()
            time.sleep(0.5)  # the request is now waiting for the balance lock
            notify(member_id, "rewards.redemption_test", {}, dedupe_key="deadlock-test")
            db.session.commit()
            return "job"

    def request():
        with app.app_context():
            job_locked.wait(10)
            services.request_redemption(db.session.get(User, member_id), reward_id, "deadlock")
            db.session.commit()
            return "request"

    results = in_threads(2, lambda i: (job_like, request)[i]())
    assert results == ["job", "request"], results


def test_delete_racing_a_request_is_a_clean_409_never_a_500(app, make_member, give_points, make_reward):
    """A request in flight holds the reward's KEY SHARE lock (PostgreSQL; SQLite serialises
    writers): a concurrent delete waits for it, then sees the redemption and refuses (409)
    instead of deleting the row under the request's foreign key."""
    import threading
    import time

    from community.models import User
    from errors import Conflict
    from rewards import services

    member = make_member()
    admin = make_member(roles=("admin",))
    give_points(member, 1000)
    member_id, admin_id = member.id, admin.id
    reward_id = make_reward(kind="physical", stock=5, cost=10).id
    requested = threading.Event()

    def request():
        with app.app_context():
            services.request_redemption(db.session.get(User, member_id), reward_id, "race-delete")
            requested.set()
            time.sleep(0.5)  # the delete is now waiting behind this transaction
            db.session.commit()
            return "requested"

    def delete():
        with app.app_context():
            requested.wait(10)
            try:
                services.delete_reward(db.session.get(User, admin_id), reward_id)
                db.session.commit()
                return "deleted"
            except Conflict as exc:
                db.session.rollback()
                return exc.code

    if db.engine.dialect.name == "sqlite":
        # One writer at a time: the delete runs after the request's commit, same outcome.
        results = [request(), delete()]
    else:
        results = in_threads(2, lambda i: (request, delete)[i]())
    assert results == ["requested", "reward_in_use"], results
    assert db.session.get(Reward, reward_id) is not None
