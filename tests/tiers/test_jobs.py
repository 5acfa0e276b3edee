"""The signal-triggered job, the batched full recomputation, its lock and its progress rows."""

from datetime import timedelta

from sqlalchemy import func, select

from community.models import User, utcnow
from extensions import db, get_redis
from jobs import enqueue_now, get_queue
from tiers import jobs, services
from tiers.models import TierChange, TierMetricStage, TierRun

from .helpers import award, interact

ONE_SURVEY = {
    "requirements": {"engaged": {"surveys_completed": 1}, "satisfied": {"surveys_completed": 5},
                     "loyal": {"surveys_completed": 10}, "advocate": {"surveys_completed": 20}},
    "window_days": 365, "grace_days": 30, "keep_percent": 90, "note": "test",
}


def _save(actor, data=ONE_SURVEY):
    services.ensure_default_rules()
    services.save_rules(actor.id, {**data, "expected_version": services.current_rules().version})
    db.session.commit()


def _tier(member_id):
    return db.session.get(User, member_id, populate_existing=True).tier


def test_an_interaction_enqueues_one_recompute_per_member(app, make_member, run_jobs):
    admin = make_member(roles=("admin",))
    _save(admin)
    m = make_member()
    interact(m, "survey_completed")
    interact(m, "daily_visit")
    assert get_queue("tiers").count == 1  # unique per member while pending
    assert _tier(m.id) == "aware"
    db.session.commit()  # the in-process worker shares this session: end our read first
    run_jobs(["tiers"])
    assert _tier(m.id) == "engaged"


def test_a_rolled_back_interaction_enqueues_nothing(app, make_member):
    from points.services import record_interaction

    m = make_member()
    record_interaction(m.id, "survey_completed", key="rolled-back")
    db.session.rollback()
    assert get_queue("tiers").count == 0


def _members_with_points(make_member, n):
    members = [make_member() for _ in range(n)]
    for i, m in enumerate(members):
        if i % 4:
            award(m, 100 * (i % 4))  # 0, 100, 200, 300 points
    return members


def _points_rules(actor):
    _save(actor, {**ONE_SURVEY, "requirements": {
        "engaged": {"points_earned": 100}, "satisfied": {"points_earned": 200},
        "loyal": {"points_earned": 300}, "advocate": {"points_earned": 10_000}}})


def test_full_run_in_batches_reports_progress_and_is_idempotent(app, make_member):
    admin = make_member(roles=("admin",))
    _points_rules(admin)
    members = _members_with_points(make_member, 23)
    run_id = jobs.run_full_recompute(batch_size=5)
    run = db.session.get(TierRun, run_id)
    total = db.session.scalar(select(func.count()).select_from(User))
    assert (run.status, run.total, run.processed) == ("done", total, total)
    assert run.promoted == sum(1 for i in range(23) if i % 4) and run.demoted == 0
    assert run.distribution == {"aware": total - 17, "engaged": 6, "satisfied": 6, "loyal": 5, "advocate": 0}
    assert [_tier(m.id) for m in members[:4]] == ["aware", "engaged", "satisfied", "loyal"]
    assert db.session.scalar(select(func.count()).select_from(TierMetricStage)) == 0  # scratch emptied
    changes = db.session.scalar(select(func.count()).select_from(TierChange))
    again = db.session.get(TierRun, jobs.run_full_recompute(batch_size=7), populate_existing=True)
    assert (again.status, again.promoted, again.demoted) == ("done", 0, 0)
    assert db.session.scalar(select(func.count()).select_from(TierChange)) == changes


def test_full_run_through_the_queue(app, make_member, run_jobs):
    admin = make_member(roles=("admin",))
    _points_rules(admin)
    (m,) = _members_with_points(make_member, 2)[1:]
    enqueue_now(jobs.recompute_all, unique_key="tiers:full-run")
    run_jobs(["tiers"])
    assert _tier(m.id) == "engaged"
    assert db.session.scalar(select(TierRun.status)) == "done"


def test_full_run_demotes_after_grace(app, make_member):
    admin = make_member(roles=("admin",))
    _points_rules(admin)
    m = make_member(tier="loyal")
    award(m, 200)  # enough to stay satisfied, not loyal (needs 270)
    t0 = utcnow()
    jobs.run_full_recompute(now=t0)
    assert _tier(m.id) == "loyal"
    jobs.run_full_recompute(now=t0 + timedelta(days=30))
    assert _tier(m.id) == "satisfied"
    change = db.session.scalars(select(TierChange).where(TierChange.member_id == m.id)).one()
    assert "points_earned 200 (needs 270 to stay)" in change.reason


def test_never_two_runs_at_once(app, make_member):
    make_member()
    held = get_redis().lock(jobs.LOCK_NAME, timeout=60)
    assert held.acquire(blocking=False)
    try:
        assert jobs.run_full_recompute() is None
        assert db.session.scalar(select(func.count()).select_from(TierRun)) == 0
    finally:
        held.release()
    assert jobs.run_full_recompute() is not None


def test_a_run_whose_worker_died_is_marked_abandoned(app, make_member):
    make_member()
    db.session.add(TierRun(status="running", total=10, processed=3))
    db.session.commit()
    jobs.run_full_recompute()
    statuses = db.session.scalars(select(TierRun.status).order_by(TierRun.id)).all()
    assert statuses == ["abandoned", "done"]


def test_periodic_schedule_lists_the_full_run():
    from jobs import periodic_schedule

    entries = [p for p in periodic_schedule() if p.fn is jobs.recompute_all]
    assert len(entries) == 1 and entries[0].cron


def test_pins_during_a_full_run_survive_it(app, make_member):
    from tests.conftest import in_threads

    admin = make_member(roles=("admin",))
    _points_rules(admin)
    members = _members_with_points(make_member, 24)
    ids, admin_id = [m.id for m in members], admin.id  # plain values: threads must not touch our session

    def work(i):
        with app.app_context():
            if i == 0:
                return jobs.run_full_recompute(batch_size=4)
            for member_id in ids:
                services.pin(admin_id, member_id, "advocate", "event speakers")
                db.session.commit()
            return None

    results = in_threads(2, work)
    assert not any(isinstance(r, Exception) for r in results), results
    db.session.commit()
    assert {_tier(i) for i in ids} == {"advocate"}
    # a later run keeps them too
    jobs.run_full_recompute()
    assert {_tier(i) for i in ids} == {"advocate"}


def test_a_suspension_and_its_lifting_recompute_the_member(app, make_member, run_jobs):
    """forums suspends through community.services.member_suspension_changed; tiers listens."""
    from forums.services import sanction_member
    from tiers.models import MemberTierState

    admin = make_member(roles=("admin",))
    _save(admin, {**ONE_SURVEY, "requirements": {**ONE_SURVEY["requirements"],
                                                 "engaged": {"no_suspension": 1}}})
    m = make_member()
    services.recompute_member(m.id)
    db.session.commit()
    assert _tier(m.id) == "engaged"
    sanction_member(admin, m.id, "suspend", "spam", duration_hours=48)
    db.session.commit()
    assert get_queue("tiers").count == 1
    run_jobs(["tiers"])
    state = db.session.get(MemberTierState, m.id, populate_existing=True)
    assert state.no_suspension == 0 and state.below_since is not None  # the grace clock runs
    sanction_member(admin, m.id, "lift", "appeal granted")
    db.session.commit()
    run_jobs(["tiers"])
    state = db.session.get(MemberTierState, m.id, populate_existing=True)
    assert state.no_suspension == 1 and state.below_since is None
    sanction_member(admin, m.id, "warn", "be nice")  # no suspension change: nothing queued
    db.session.commit()
    assert get_queue("tiers").count == 0
