"""Background jobs: enqueue after commit, unique keys, real RQ runs, the periodic schedule."""

from __future__ import annotations

import importlib
import logging

import pytest
from sqlalchemy import func, select, text

import jobs
from community.models import Notification
from community.services import notify
from extensions import db
from jobs import QUEUES, Periodic, build_cron_scheduler, enqueue_after_commit, enqueue_now, get_queue, job
from tests.conftest import unused_port


@job("default", timeout=30, retries=0)
def note_job(member_id: int, kind: str) -> None:
    notify(member_id, kind, {"via": "job"}, dedupe_key=f"test-job:{member_id}:{kind}")
    db.session.commit()


@job("default", timeout=30, retries=0)
def chain_job(member_id: int, step: int) -> None:
    """Re-enqueues itself under the same unique key while running: that must be accepted."""
    notify(member_id, f"chain-{step}", dedupe_key=f"test-chain:{member_id}:{step}")
    db.session.commit()
    if step == 0:
        assert enqueue_now(chain_job, member_id, 1, unique_key=f"chain:{member_id}") is not None


@job("default", timeout=30, retries=0)
def failing_job(member_id: int) -> None:
    notify(member_id, "half-written")
    db.session.flush()
    raise RuntimeError("job failed midway")


@job("periodic", timeout=30, retries=0)
def periodic_note(member_id: int) -> None:
    notify(member_id, "periodic", dedupe_key=f"test-periodic:{member_id}")
    db.session.commit()


def not_a_job() -> None:
    """A plain function: not allowed in the periodic schedule."""


def notifications(member_id: int) -> list[str]:
    db.session.commit()  # a fresh snapshot: jobs commit on their own sessions
    query = select(Notification.kind).where(Notification.member_id == member_id).order_by(Notification.id)
    return list(db.session.scalars(query))


def default_queue_count() -> int:
    return get_queue("default").count


def test_enqueue_after_commit_waits_for_the_commit(make_member, run_jobs):
    member = make_member()
    db.session.execute(text("SELECT 1"))  # inside a transaction, as in a request
    enqueue_after_commit(note_job, member.id, "after-commit")
    assert default_queue_count() == 0
    db.session.commit()
    assert default_queue_count() == 1
    run_jobs()
    assert notifications(member.id) == ["after-commit"]
    assert default_queue_count() == 0


def test_enqueue_after_commit_is_dropped_on_rollback(make_member, run_jobs):
    member = make_member()
    db.session.execute(text("SELECT 1"))
    enqueue_after_commit(note_job, member.id, "rolled-back")
    db.session.rollback()
    db.session.execute(text("SELECT 1"))
    db.session.commit()
    assert default_queue_count() == 0
    run_jobs()
    assert notifications(member.id) == []


def test_savepoints_neither_enqueue_early_nor_drop_the_transactions_jobs(make_member):
    member = make_member()
    db.session.execute(text("SELECT 1"))
    enqueue_after_commit(note_job, member.id, "kept")
    with db.session.begin_nested():  # released savepoint: SQLAlchemy calls it a commit
        pass
    assert default_queue_count() == 0
    with pytest.raises(ValueError), db.session.begin_nested():  # rolled-back savepoint
        raise ValueError
    db.session.commit()
    assert default_queue_count() == 1


def test_unique_key_prevents_duplicate_enqueues_until_the_job_starts(make_member, run_jobs):
    member = make_member()
    first = enqueue_now(note_job, member.id, "unique", unique_key=f"note:{member.id}")
    assert first is not None
    assert enqueue_now(note_job, member.id, "unique", unique_key=f"note:{member.id}") is None
    assert default_queue_count() == 1
    run_jobs()
    assert notifications(member.id) == ["unique"]
    # Once it ran, the same logical job can be enqueued again.
    assert enqueue_now(note_job, member.id, "unique", unique_key=f"note:{member.id}") is not None


def test_a_running_job_releases_its_unique_key(make_member, run_jobs):
    member = make_member()
    enqueue_now(chain_job, member.id, 0, unique_key=f"chain:{member.id}")
    run_jobs()
    assert notifications(member.id) == ["chain-0", "chain-1"]


def test_job_options_come_from_the_decorator(make_member):
    member = make_member()
    rq_job = enqueue_now(note_job, member.id, "options")
    assert rq_job.origin == "default"
    assert rq_job.timeout == 30
    assert rq_job.func_name == "tests.test_jobs.note_job"
    assert rq_job.args == (member.id, "options")


def test_a_failed_job_rolls_back_its_writes(make_member, run_jobs):
    member = make_member()
    enqueue_now(failing_job, member.id)
    run_jobs()
    assert notifications(member.id) == []
    assert get_queue("default").failed_job_registry.count == 1


def test_enqueue_after_commit_survives_a_redis_outage(make_app, make_member, caplog):
    member = make_member()
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    caplog.set_level(logging.WARNING)
    with down.app_context():
        notify(member.id, "written")
        enqueue_after_commit(note_job, member.id, "lost")
        db.session.commit()  # the enqueue fails after the commit: logged, not raised
    assert "leaving it to the sweeper" in caplog.text
    assert notifications(member.id) == ["written"]


def test_job_declared_on_an_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="unknown queue"):
        job("nightly")


# --------------------------------------------------------------------------- periodic schedule


def test_every_periodic_entry_is_a_job_on_a_known_queue():
    for entry in jobs.periodic_schedule():
        spec = getattr(entry.fn, "spec", None)
        assert spec is not None, f"{entry.name} is not an @job"
        assert spec.queue in QUEUES, entry.name
        assert (entry.interval is None) != (entry.cron is None), entry.name
        assert entry.interval is None or entry.interval > 0, entry.name
        # RQ finds the function again by its dotted name in the worker process.
        module, _, name = entry.name.rpartition(".")
        assert getattr(importlib.import_module(module), name) is entry.fn, entry.name


def test_scheduler_registers_the_whole_schedule(app):
    schedule = jobs.periodic_schedule()
    scheduler = build_cron_scheduler(app)
    registered = {(c.name, c.queue_name, c.interval, c.cron) for c in scheduler.get_jobs()}
    expected = {(e.name, e.fn.spec.queue, e.interval, e.cron) for e in schedule}
    assert registered == expected
    assert len(scheduler.get_jobs()) == len(schedule)


def test_a_scheduled_entry_is_enqueued_on_its_queue_and_runs(app, make_member, run_jobs):
    member = make_member()
    entry = Periodic(periodic_note, interval=3600, kwargs={"member_id": member.id})
    scheduler = build_cron_scheduler(app, [entry])
    [cron_job] = scheduler.get_jobs()
    assert (cron_job.queue_name, cron_job.name) == ("periodic", "tests.test_jobs.periodic_note")
    enqueued = scheduler.enqueue_jobs()  # interval jobs are due at once, then every interval
    assert len(enqueued) == 1 and get_queue("periodic").count == 1
    assert scheduler.enqueue_jobs() == []
    run_jobs()
    assert notifications(member.id) == ["periodic"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (Periodic(not_a_job, interval=60), "not declared with @job"),
        (Periodic(periodic_note, interval=60, cron="* * * * *"), "exactly one"),
        (Periodic(periodic_note), "exactly one"),
    ],
)
def test_bad_schedule_entries_stop_the_scheduler(app, entry, message):
    with pytest.raises(ValueError, match=message):
        build_cron_scheduler(app, [entry])


def test_notification_count_sanity(make_member):
    """``notify`` with a dedupe key writes once however often it is called (jobs rely on it)."""
    member = make_member()
    for _ in range(3):
        notify(member.id, "once", dedupe_key=f"once:{member.id}")
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


def test_flask_worker_cli_runs_jobs_in_forked_work_horses(app, make_member):
    """The real thing: ``flask worker --burst`` in its own process, forking a horse per job."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    member = make_member()
    for kind in ("forked-1", "forked-2"):
        enqueue_now(note_job, member.id, kind)
    env = dict(
        os.environ,
        FLASK_APP="app",
        KINSHIP_ENV="test",
        DATABASE_URL=db.engine.url.render_as_string(hide_password=False),
        REDIS_URL=app.extensions["redis_url"],
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "flask", "worker", "--burst", "-q", "default"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert notifications(member.id) == ["forked-1", "forked-2"], proc.stderr[-3000:]
    assert default_queue_count() == 0
