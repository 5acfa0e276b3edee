"""The coalesced drain: requests wake one job that settles pending redemptions a batch per
transaction (``rewards.jobs.drain_redemptions``), and ``points.ledger.settle_holds``.

In-process (a real burst worker through Redis) and with real ``flask worker`` processes: a
batch killed with SIGKILL mid-way is recovered by the sweeper with every redemption settled
exactly once; two workers draining at once never settle one twice nor hand a code out twice.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from community.models import Notification
from errors import Conflict
from extensions import db, get_redis
from jobs import enqueue_now
from points import ledger
from rewards import services
from rewards.jobs import DRAIN_KEY, FAULT_ENV, drain_redemptions, sweep_pending_redemptions
from rewards.models import Redemption, RedemptionJob, RedemptionTransition, RewardCode

from .helpers import assert_books_balanced, assert_no_code_twice
from .test_faults import WORKER_CLASSES, _request, wait_for, workers  # noqa: F401 - the fixture


def _states(ids) -> dict[int, str]:
    db.session.rollback()
    return dict(db.session.execute(select(Redemption.id, Redemption.state).where(Redemption.id.in_(ids))).all())


def _pending(member, reward, n: int, prefix: str) -> list[int]:
    ids = []
    for i in range(n):
        redemption, _ = services.request_redemption(member, reward.id, f"{prefix}-{i}")
        ids.append(redemption.id)
        db.session.commit()
    return ids


def test_requests_share_one_waiting_drain_job(app, make_member, give_points, make_reward, bearer):
    member = make_member()
    give_points(member, 1000)
    reward = make_reward(kind="digital", cost=10)
    headers = bearer(member)
    for i in range(5):
        _request(app, headers, reward.id, f"wake-{i}")
    from rq import Queue

    queue = Queue("redemptions", connection=get_redis(app))
    assert [job.func_name for job in queue.get_jobs()] == ["rewards.jobs.drain_redemptions"]
    assert get_redis(app).exists(f"kinship:job-lock:{DRAIN_KEY}")


def test_one_drain_settles_a_mixed_batch_exactly_once(app, make_member, give_points, make_reward):
    members = [make_member() for _ in range(3)]
    for m in members:
        give_points(m, 1000)
    coupon = make_reward(kind="coupon", codes=6, cost=100)
    digital = make_reward(kind="digital", cost=50)
    physical = make_reward(kind="physical", cost=70, stock=5)
    empty = make_reward(kind="coupon", stock=1, cost=30)  # stock without codes: rejected, released
    ids = {
        "coupon": _pending(members[0], coupon, 3, "c0") + _pending(members[1], coupon, 3, "c1"),
        "digital": _pending(members[2], digital, 2, "d"),
        "physical": _pending(members[0], physical, 1, "p"),
        "empty": _pending(members[1], empty, 1, "e"),
    }
    cancelled = _pending(members[2], digital, 1, "x")[0]
    services.cancel(members[2], cancelled)
    db.session.commit()

    assert drain_redemptions(batch_size=4) == 10  # three batches in one job
    every = [rid for group in ids.values() for rid in group]
    states = _states([*every, cancelled])
    assert {states[r] for r in ids["coupon"] + ids["digital"]} == {"fulfilled"}
    assert states[ids["physical"][0]] == "awaiting_fulfilment"
    assert states[ids["empty"][0]] == "rejected"
    assert states[cancelled] == "cancelled"
    jobs = {j.redemption_id: j for j in db.session.scalars(select(RedemptionJob))}
    assert {(jobs[r].status, jobs[r].attempts) for r in every} == {("succeeded", 1)}
    assert (jobs[cancelled].attempts, jobs[cancelled].status) == (0, "queued")  # never claimed
    # one transition and one notification per move, each code once, coupons hold theirs
    moved = db.session.scalars(select(RedemptionTransition.redemption_id).where(
        RedemptionTransition.from_state == "pending")).all()
    assert sorted(moved) == sorted([*every, cancelled])
    fulfilled_notes = db.session.scalars(select(Notification.payload).where(
        Notification.kind == "rewards.redemption_fulfilled")).all()
    assert len(fulfilled_notes) == 8 and sum(1 for p in fulfilled_notes if p.get("code")) == 6
    assert db.session.scalar(select(func.count()).where(RewardCode.redemption_id.in_(ids["coupon"]))) == 6
    assert ledger.get_balance(members[0].id) == ledger.Balance(available=630, held=70, lifetime_earned=1000)
    assert ledger.get_balance(members[1].id) == ledger.Balance(available=700, held=0, lifetime_earned=1000)
    assert ledger.get_balance(members[2].id) == ledger.Balance(available=900, held=0, lifetime_earned=1000)

    assert drain_redemptions() == 0  # nothing fresh is left; running it again changes nothing
    assert services.process_many(every) == {rid: states[rid] for rid in every}
    db.session.commit()
    assert_no_code_twice()
    assert_books_balanced()


def test_failed_batch_is_handed_to_one_job_per_redemption(app, make_member, give_points, make_reward, run_jobs,
                                                          monkeypatch):
    member = make_member()
    give_points(member, 1000)
    reward = make_reward(kind="coupon", codes=4, cost=100)
    ids = _pending(member, reward, 4, "flaky")
    monkeypatch.setenv(FAULT_ENV, "raise_once")  # the batch's first attempt fails after the work
    assert drain_redemptions() == 4
    db.session.rollback()
    assert set(_states(ids).values()) == {"pending"}
    assert db.session.scalar(select(RewardCode.id).where(RewardCode.redemption_id.is_not(None))) is None
    rows = db.session.scalars(select(RedemptionJob).where(RedemptionJob.redemption_id.in_(ids))).all()
    assert {(r.status, r.attempts) for r in rows} == {("error", 1)}

    run_jobs(["redemptions"])  # the per-redemption jobs the failed batch enqueued
    assert set(_states(ids).values()) == {"fulfilled"}
    rows = db.session.scalars(select(RedemptionJob).where(RedemptionJob.redemption_id.in_(ids))).all()
    assert {(r.status, r.attempts) for r in rows} == {("succeeded", 2)}
    assert ledger.get_balance(member.id) == ledger.Balance(available=600, held=0, lifetime_earned=1000)
    assert_no_code_twice()
    assert_books_balanced()


def test_settle_holds_replays_and_refuses_closed_holds(app, make_member, give_points):
    member = make_member()
    give_points(member, 300)
    for i in (1, 2, 3):
        ledger.hold(member.id, 50, key=f"t:{i}:hold", reason="t", source_type="test", source_id=i)
    db.session.commit()
    first = ledger.settle_holds([("t:1:settle", "test", 1), ("t:2:settle", "test", 2)])
    db.session.commit()
    again = ledger.settle_holds([("t:2:settle", "test", 2), ("t:1:settle", "test", 1)])
    assert [e.id for e in again] == [first[1].id, first[0].id]
    assert ledger.get_balance(member.id) == ledger.Balance(available=150, held=50, lifetime_earned=300)
    ledger.release_hold(key="t:3:release", source_type="test", source_id=3, reason="t")
    db.session.commit()
    with pytest.raises(Conflict):
        ledger.settle_holds([("t:3:settle", "test", 3)])
    db.session.rollback()
    assert ledger.get_balance(member.id) == ledger.Balance(available=200, held=0, lifetime_earned=300)


@WORKER_CLASSES
@pytest.mark.slow
def test_batch_killed_mid_way_is_settled_exactly_once_after_restart(app, workers, make_member,  # noqa: F811
                                                                    give_points, make_reward, bearer, fork):
    members = [make_member() for _ in range(3)]
    for m in members:
        give_points(m, 1000)
    reward = make_reward(kind="coupon", codes=12, cost=100)
    ids = [rid for m in members for rid in _pending(m, reward, 3, f"kill-{m.id}")]

    # The batch claims codes, settles, notifies, then stalls before its commit: kill it there.
    slow = workers(app, fork=fork, **{FAULT_ENV: "sleep:60"})
    enqueue_now(drain_redemptions, unique_key=DRAIN_KEY)
    wait_for(lambda: db.session.scalar(select(func.count()).where(
        RedemptionJob.status == "running")) == len(ids), 60, "the batch to be claimed", slow)
    time.sleep(1.0)  # inside the stall: the work is flushed, not committed
    slow.signal(signal.SIGKILL)
    slow.proc.wait(timeout=30)
    assert set(_states(ids).values()) == {"pending"}
    assert db.session.scalar(select(RewardCode.id).where(RewardCode.redemption_id.is_not(None))) is None
    for m in members:
        assert ledger.get_balance(m.id) == ledger.Balance(available=700, held=300, lifetime_earned=1000)

    healthy = workers(app, fork=fork)
    assert drain_redemptions() == 0  # a drain never claims a batch that was attempted: the sweeper's job
    assert sweep_pending_redemptions(min_age_seconds=0) == len(ids)
    wait_for(lambda: set(_states(ids).values()) == {"fulfilled"}, 90, "the swept redemptions", healthy)
    rows = db.session.scalars(select(RedemptionJob).where(RedemptionJob.redemption_id.in_(ids))).all()
    assert {(r.status, r.attempts) for r in rows} == {("succeeded", 2)}
    for m in members:
        assert ledger.get_balance(m.id) == ledger.Balance(available=700, held=0, lifetime_earned=1000)
    notes = db.session.scalar(select(func.count()).where(Notification.kind == "rewards.redemption_fulfilled"))
    assert notes == len(ids)
    assert_no_code_twice()
    assert_books_balanced()


@pytest.mark.slow
def test_two_workers_draining_at_once_settle_each_redemption_once(app, workers, make_member,  # noqa: F811
                                                                  give_points, make_reward, bearer):
    members = [make_member() for _ in range(6)]
    for m in members:
        give_points(m, 10_000)
    coupon = make_reward(kind="coupon", codes=40, cost=10)
    digital = make_reward(kind="digital", cost=7)
    headers = [bearer(m) for m in members]
    a, b = workers(app, fork=False), workers(app, fork=False)
    ids = []
    for n in range(8):  # every member several times, so batches share members (balance locks)
        for i, h in enumerate(headers):
            ids.append(_request(app, h, (coupon if (n + i) % 2 else digital).id, f"two-{n}-{i}"))
            if len(ids) % 5 == 0:  # a few extra wake-ups so both workers run a drain at once
                get_redis(app).delete(f"kinship:job-lock:{DRAIN_KEY}")
                enqueue_now(drain_redemptions, unique_key=DRAIN_KEY)
    wait_for(lambda: set(_states(ids).values()) == {"fulfilled"}, 120, "every redemption", a)
    assert b.proc.poll() is None and a.proc.poll() is None
    transitions = db.session.execute(
        select(RedemptionTransition.redemption_id, func.count()).where(RedemptionTransition.from_state == "pending")
        .group_by(RedemptionTransition.redemption_id)).all()
    assert len(transitions) == len(ids) and {n for _, n in transitions} == {1}
    assert_no_code_twice()
    assert_books_balanced()
