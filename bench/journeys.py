"""Benchmark: journeys' daily member-date entries and the engine's step rate, on PostgreSQL.

    .venv/bin/python bench/journeys.py [--members 1000000] [--advance 100000] [--keep] [--reuse]

With ``DATABASE_URL`` pointing at PostgreSQL the benchmark creates its own database next to it
(``<name>_bench_journeys_<members>``), builds the schema with the migrations, generates the
members with ``generate_series`` (birthdays over 70 years, sign-ups over 6 years, a renewal
date for a third of them), measures, and drops the database (``--keep`` / ``--reuse``).  Redis
is an embedded one (the bench never touches a shared Redis).

Measured, each in the same run:

* **entries**: for a birthday journey and a sign-up anniversary journey, ``enrol_scheduled``:
  the one ``INSERT … SELECT`` that finds today's members through the expression indexes and
  enrols them (target: < 2 s each at 1,000,000 members); also the plain count of the same
  members, and the plan, to show the index is used;
* **baseline**: the bare message enqueue: ``community.services.notify`` (the notification,
  its email delivery, the deliver job enqueued after the commit) for ``--advance`` members, in
  transactions of 200 (the advance job's batch);
* **baseline_bulk**: the same enqueue written set-based (notifications in one INSERT per 200,
  their deliveries through ``messaging.services.queue_for_notifications``), as the engine writes
  a wave's sends: a stricter reference than the issue's (``ratio_vs_bulk``);
* **reference_unnest** (information, not a target): the same enqueue with the notifications
  written as the engine now writes them (one ``unnest`` INSERT per batch of the advance jobs,
  payload sent once) and the same messaging deliveries (``ratio_vs_reference_unnest``);
* **advance**: ``--advance`` enrolments waiting at a wait step that is over, advanced one step
  (the wait's execution row, then a ``send`` step: its execution row, the preference and
  holdout checks, the same notification + delivery + enqueue), by ``engine.advance`` in the jobs'
  batches (``JOURNEYS_BATCH_SIZE``, 1,000; ``--batch`` to try another) (target: ≥ 50 % of the
  baseline's rate).  The baselines keep their transactions of 200.

Statements per member (``*_statements_per_member``) count what each phase sends to the server.

Before the phases the bench writes a month-old journey's history (every member enrolled, one
execution, one notification and one delivered email each) and ``ANALYZE``s the tables before
each phase: the phases then write into tables of a live programme's size, planned with real
statistics (the shared server runs without autovacuum; planned on an empty table's statistics,
the deliveries' ``NOT EXISTS`` and the ``UPDATE … WHERE id IN`` statements fall to sequential
scans that made earlier runs' baselines swing by 3-40x).  ``--skip-notify`` (iteration only)
leaves out the slow per-message baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import select, text  # noqa: E402

from bench.common import bench_database, database_name, finish, series, timed  # noqa: E402

BATCH = 200
loads: list[float | None] = []  # the load average before and after each counted phase
profiles: dict[str, dict] = {}  # --profile: per phase, SQL time by statement (first words)
PROFILE = False


def _generate(conn, members: int, now) -> None:
    ts = f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}'"
    conn.execute(text(f"""
        INSERT INTO users (email, display_name, password_hash, bio, tier, referral_code, is_active_account,
                           birthday, renewal_on, created_at, updated_at)
        SELECT 'm' || g || '@bench.example', 'Member ' || g, 'x', '', 'aware', 'R' || lpad(g::text, 11, '0'), true,
               DATE '1950-01-01' + CAST(floor(random() * 25550) AS INTEGER),
               CASE WHEN g % 3 = 0 THEN CAST({ts} AS DATE) + CAST(floor(random() * 365) AS INTEGER) END,
               {ts} - (random() * 2190) * INTERVAL '1 day', {ts}
        FROM {series('postgresql', members)}
    """))


def _analyze() -> None:
    """Fresh planner statistics for the tables the phases write (the server runs without
    autovacuum here: a phase must not be planned on the statistics of an empty table)."""
    from extensions import db

    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE notifications, email_deliveries, journey_enrolments, journey_step_executions"))


def _history(services, send: list, now) -> None:
    """A month-old journey that sent every member one message: its enrolments, executions,
    notifications and delivered emails, so every phase writes into tables of a live programme's
    size (with their statistics), not into empty ones."""
    from extensions import db

    j = services.create(None, {"name": "bench history", "definition": {
        "trigger": {"type": "event", "event": "member.registered"}, "audience": {"type": "everyone"},
        "entry": {"rule": "once"}, "steps": send}})
    db.session.flush()
    then = now.replace(microsecond=0) - timedelta(days=30)
    params = {"j": j.id, "v": j.current_version_id, "then": then}
    for sql in (
        "INSERT INTO notifications (member_id, kind, payload, created_at, delivered_at) "
        "SELECT id, 'journeys.community.history', '{}', :then, :then FROM users",
        "INSERT INTO email_deliveries (member_id, notification_id, kind, payload, state, attempts, not_before, "
        "created_at, sent_at) SELECT member_id, id, kind, '{}', 'sent', 1, :then, :then, :then FROM notifications",
        "INSERT INTO journey_enrolments (journey_id, version_id, member_id, occurrence, state, current_step, "
        "entered_at, finished_at, arm) SELECT :j, :v, id, 'once', 'done', 'send', :then, :then, 'test' FROM users",
        "INSERT INTO journey_step_executions (journey_id, version_id, member_id, occurrence, step_id, enrolment_id, "
        "outcome, notification_id, created_at) SELECT e.journey_id, e.version_id, e.member_id, 'once', 'send', "
        "e.id, 'sent', n.id, :then FROM journey_enrolments e JOIN notifications n ON n.member_id = e.member_id "
        "WHERE e.journey_id = :j",
        "UPDATE journeys SET status = 'archived' WHERE id = :j",
    ):
        db.session.execute(text(sql), params)
    _analyze()


def _load() -> float | None:
    """The 1-minute load average (the shared machine's noise, recorded beside each phase)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def _label(statement: str) -> str:
    """A statement's first words, for the profile (``INSERT INTO notifications``, ``SELECT … FROM x``)."""
    words = " ".join(statement.split())
    head = " ".join(words.split()[:3])
    if words.startswith("SELECT"):
        m = re.search(r"\bFROM (\w+)", words)
        head += f" … FROM {m.group(1)}" if m else ""
    return head[:80]


def _counted(fn, *, with_result: bool = False, phase: str | None = None):
    """Run ``fn`` timed, counting the SQL statements it sends: (seconds, statements[, result]).

    With ``--profile`` also the time spent in each kind of statement (the cursor's execute, i.e.
    the round trip and the server's work), recorded in ``profiles[phase]``.
    """
    from sqlalchemy import event

    from extensions import db

    statements = [0]
    spent: dict[str, list] = {}
    started: list[float] = []

    def count(*_args):
        statements[0] += 1
        if PROFILE:
            started.append(time.perf_counter())

    def done(_conn, _cursor, statement, *_args):
        if PROFILE and started:
            item = spent.setdefault(_label(statement), [0, 0.0])
            item[0] += 1
            item[1] += time.perf_counter() - started.pop()

    event.listen(db.engine, "before_cursor_execute", count)
    event.listen(db.engine, "after_cursor_execute", done)
    loads.append(_load())
    try:
        seconds, out = timed(fn)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        event.remove(db.engine, "after_cursor_execute", done)
        loads.append(_load())
    if PROFILE and phase:
        sql = sum(t for _, t in spent.values())
        profiles[phase] = {"total_s": round(seconds, 2), "sql_s": round(sql, 2), "other_s": round(seconds - sql, 2),
                           "statements": {k: [n, round(t, 2)] for k, (n, t) in
                                          sorted(spent.items(), key=lambda kv: -kv[1][1])}}
    return (seconds, statements[0], out) if with_result else (seconds, statements[0])


def bench(members: int, advance_n: int, database_url: str, *, keep: bool = False, reuse: bool = False,
          skip_notify: bool = False, batch: int | None = None) -> dict:
    from flask_migrate import upgrade

    from app import create_app
    from community.models import User, utcnow
    from extensions import db
    from tests.conftest import make_config

    tmp = tempfile.mkdtemp(prefix="kinship-bench-journeys-")
    url, admin, generate = bench_database(database_url, database_name(database_url, f"bench_journeys_{members}"),
                                          reuse)
    overrides = {"JOURNEYS_BATCH_SIZE": batch} if batch else {}
    app = create_app(make_config(SQLALCHEMY_DATABASE_URI=url, REDISLITE_PATH=os.path.join(tmp, "redis.db"),
                                 **overrides))
    result: dict = {"members": members, "advance": advance_n}
    try:
        with app.app_context():
            upgrade(revision="heads")
            now = utcnow().replace(microsecond=0)
            t0 = time.perf_counter()
            if generate:
                with db.engine.begin() as conn:
                    _generate(conn, members, now)
            else:
                with db.engine.begin() as conn:
                    conn.execute(text("TRUNCATE journeys, journey_templates, notifications, email_deliveries "
                                      "CASCADE"))
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            result["generate_s"] = round(time.perf_counter() - t0, 1)

            from journeys import services, triggers
            from journeys.models import Enrolment

            services.create_template(None, {"key": "bench", "category": "community", "subject": {"en": "Hi"},
                                            "body": {"en": "Hello"}})
            send = [{"id": "send", "type": "action", "action": "send", "template": "bench"}]
            t0 = time.perf_counter()
            _history(services, send, now)
            result["history_s"] = round(time.perf_counter() - t0, 1)
            made = {}
            for field in ("birthday", "signup_anniversary"):
                j = services.create(None, {"name": f"bench {field}", "definition": {
                    "trigger": {"type": "date", "field": field}, "audience": {"type": "everyone"},
                    "entry": {"rule": "per_occurrence"}, "steps": send}})
                services.set_status(None, j.id, "activate")
                made[field] = j
            db.session.commit()
            today = now.date()
            for field, j in made.items():
                version = services.current_version(j)
                cond = triggers.schedule_condition(version.trigger, today)
                count_s, found = timed(lambda c=cond: db.session.scalar(
                    select(text("count(*)")).select_from(User.__table__).where(c)))
                compiled = select(User.__table__.c.id).where(cond).compile(
                    db.engine, compile_kwargs={"literal_binds": True})
                plan = "\n".join(r[0] for r in db.session.execute(text(f"EXPLAIN {compiled}")))
                enrol_s, enrolled = timed(lambda j=j, v=version: triggers.enrol_scheduled(j, v, today, now))
                db.session.commit()
                result[field] = {"count_s": round(count_s, 3), "found": found, "enrol_s": round(enrol_s, 3),
                                 "enrolled": enrolled, "index_used": "ix_users_" in plan}

            # Baseline: the bare message enqueue for advance_n members, 200 per transaction.
            from community.services import notify

            ids = list(db.session.scalars(select(User.id).order_by(User.id).limit(advance_n)))
            db.session.commit()

            def baseline():
                for start in range(0, len(ids), BATCH):
                    for member_id in ids[start:start + BATCH]:
                        notify(member_id, "journeys.community.bench", {"subject": {"en": "Hi"},
                                                                       "text": {"en": "Hello"}})
                    db.session.commit()

            # --skip-notify (iteration only): the per-message baseline takes minutes at 100,000.
            _analyze()
            base_s, base_stmts = (None, None) if skip_notify else _counted(baseline, phase="baseline")

            # The same enqueue written set-based, as the engine now writes a wave's sends: the
            # notifications in one INSERT per 200 and their deliveries through messaging's bulk
            # path (one INSERT … SELECT, deliver jobs per MESSAGING_BATCH_SIZE).  The stricter
            # baseline; the target is against the per-message one above.
            from community.models import Notification
            from messaging.services import queue_for_notifications

            def baseline_bulk():
                table = Notification.__table__
                for start in range(0, len(ids), BATCH):
                    made = db.session.scalars(table.insert().returning(table.c.id), [
                        {"member_id": m, "kind": "journeys.community.bench",
                         "payload": {"subject": {"en": "Hi"}, "text": {"en": "Hello"}}, "created_at": utcnow()}
                        for m in ids[start:start + BATCH]]).all()
                    queue_for_notifications(list(made))
                    db.session.commit()

            _analyze()
            bulk_s, bulk_stmts = _counted(baseline_bulk, phase="baseline_bulk")


            from journeys import engine

            size = engine.batch_size()
            result["advance_batch"] = size

            # advance_n enrolments waiting at a wait step that is over, then a send.
            j = services.create(None, {"name": "bench advance", "definition": {
                "trigger": {"type": "event", "event": "purchase.recorded"}, "audience": {"type": "everyone"},
                "entry": {"rule": "once"},
                "steps": [{"id": "wait", "type": "wait", "delay_minutes": 60, "next": "send"}, *send]}})
            services.set_status(None, j.id, "activate")
            db.session.commit()
            due = now.replace(microsecond=0)
            db.session.execute(text(
                "INSERT INTO journey_enrolments (journey_id, version_id, member_id, occurrence, state, "
                "current_step, wait_until, next_run_at, entered_at) "
                "SELECT :j, :v, id, 'once', 'active', 'wait', :due, :due, :due FROM users ORDER BY id LIMIT :n"),
                {"j": j.id, "v": j.current_version_id, "due": due, "n": advance_n})
            db.session.commit()
            _analyze()
            enrolment_ids = list(db.session.scalars(select(Enrolment.id).where(Enrolment.journey_id == j.id)
                                                    .order_by(Enrolment.id)))
            db.session.commit()

            # The jobs' batch (``size``, ``JOURNEYS_BATCH_SIZE``): one ``advance_enrolments`` job,
            # one transaction, per batch, as the sweeper hands them out.  The baselines keep theirs
            # (200).

            def run():
                counts = {"advanced": 0}
                for start in range(0, len(enrolment_ids), size):
                    out = engine.advance(enrolment_ids[start:start + size])
                    counts["advanced"] += out["advanced"]
                return counts

            adv_s, adv_stmts, counts = _counted(run, with_result=True, phase="advance")
            sent = db.session.scalar(text("SELECT count(*) FROM journey_step_executions WHERE journey_id = :j "
                                          "AND step_id = 'send' AND outcome = 'sent'"), {"j": j.id})
            # Every send has its email delivery, handed to a deliver job (enqueued_at set).
            delivered = db.session.scalar(text(
                "SELECT count(*) FROM journey_step_executions x JOIN email_deliveries d "
                "ON d.notification_id = x.notification_id WHERE x.journey_id = :j AND d.enqueued_at IS NOT NULL"),
                {"j": j.id})
            rate = counts["advanced"] / adv_s
            # A reference, not a target (measured after the advance, so the advance runs on the same
            # tables as in the earlier passes): the same enqueue written the way the engine now writes a
            # wave's notifications (one ``INSERT … SELECT FROM unnest(members)`` with the payload
            # sent once, in transactions of the advance jobs' batch), its deliveries through the
            # same messaging path.  Shows how much of the advance's ratio to ``baseline_bulk`` is
            # the cheaper way of writing the notifications and the larger transactions.
            unnest = text(
                "INSERT INTO notifications (member_id, kind, payload, created_at) "
                "SELECT t.m, :kind, CAST(:payload AS json), :created_at "
                "FROM unnest(CAST(:members AS integer[])) AS t(m) RETURNING id")

            def baseline_unnest():
                payload = json.dumps({"subject": {"en": "Hi"}, "text": {"en": "Hello"}})
                for start in range(0, len(ids), size):
                    made = db.session.scalars(unnest, {
                        "members": ids[start:start + size], "kind": "journeys.community.bench",
                        "payload": payload, "created_at": utcnow()}).all()
                    queue_for_notifications(list(made))
                    db.session.commit()

            _analyze()
            unnest_s, _ = _counted(baseline_unnest, phase="baseline_unnest")
            if base_s is not None:
                result.update({
                    "baseline_s": round(base_s, 2), "baseline_per_s": round(len(ids) / base_s),
                    "baseline_statements_per_member": round(base_stmts / len(ids), 2),
                    "ratio": round(rate / (len(ids) / base_s), 2)})
            result.update({
                "baseline_bulk_s": round(bulk_s, 2), "baseline_bulk_per_s": round(len(ids) / bulk_s),
                "baseline_bulk_statements_per_member": round(bulk_stmts / len(ids), 2),
                "advance_s": round(adv_s, 2), "advance_per_s": round(rate),
                "advance_statements_per_member": round(adv_stmts / max(1, counts["advanced"]), 2),
                "advanced": counts["advanced"], "sent": sent, "deliveries_enqueued": delivered,
                "load_before_after_phases": list(loads),
                "ratio_vs_bulk": round(rate / (len(ids) / bulk_s), 2),
                "reference_unnest_per_s": round(len(ids) / unnest_s),
                "ratio_vs_reference_unnest": round(rate / (len(ids) / unnest_s), 2),
            })
            if PROFILE:
                result["profile"] = profiles
    finally:
        finish(app, admin, url, keep)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--advance", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--skip-notify", action="store_true", help="iteration only: no per-message baseline")
    parser.add_argument("--profile", action="store_true", help="time each kind of statement in each phase")
    parser.add_argument("--batch", type=int, help="the advance jobs' batch (JOURNEYS_BATCH_SIZE; default its setting)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    database_url = os.environ.get("DATABASE_URL")
    if not database_url or not database_url.startswith("postgres"):
        sys.exit("bench/journeys.py measures PostgreSQL: set DATABASE_URL=postgresql://…")
    print(json.dumps(bench(args.members, args.advance, database_url, keep=args.keep, reuse=args.reuse,
                                skip_notify=args.skip_notify, batch=args.batch), indent=2))


if __name__ == "__main__":
    main()
