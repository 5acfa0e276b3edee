"""Posting limits (429), full-text search, the thread page's constant query count, concurrency."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from community.models import utcnow
from extensions import db
from forums.models import Board, Post, Thread
from tests.conftest import in_threads


def _age_posts(member_id, seconds):
    """Move a member's posts into the past (the limits look at created_at).  Done row by row:
    SQLite has no datetime arithmetic in SQL."""
    for post in db.session.scalars(select(Post).where(Post.author_id == member_id)):
        post.created_at -= timedelta(seconds=seconds)
    db.session.commit()


def test_new_member_waits_between_posts(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board)
    member = make_member()  # aware: 30 s between posts
    client = login(member)
    assert client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "one"}).status_code == 201
    resp = client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "two"})
    assert resp.status_code == 429
    assert "seconds between posts" in resp.get_json()["error"]["message"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 31
    _age_posts(member.id, 31)
    assert client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "two"}).status_code == 201


def test_daily_thread_and_reply_limits_lift_with_tier(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board)
    member = make_member()
    client = login(member)
    for i in range(3):
        resp = client.post(f"/api/v1/boards/{board.id}/threads", json={"title": f"t{i}", "body": "b"})
        assert resp.status_code == 201
        _age_posts(member.id, 40)
    resp = client.post(f"/api/v1/boards/{board.id}/threads", json={"title": "t4", "body": "b"})
    assert resp.status_code == 429 and "at most 3 threads a day" in resp.get_json()["error"]["message"]
    assert int(resp.headers["Retry-After"]) > 3600
    for _ in range(10):
        assert client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "r"}).status_code == 201
        _age_posts(member.id, 40)
    resp = client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "r"})
    assert resp.status_code == 429 and "10 replies" in resp.get_json()["error"]["message"]
    # nothing half-written by the refused requests
    assert db.session.scalar(select(db.func.count()).select_from(Post).where(Post.author_id == member.id)) == 13
    # promotion to "engaged" lifts the limits
    member.tier = "engaged"
    db.session.commit()
    assert client.post(f"/api/v1/boards/{board.id}/threads", json={"title": "t4", "body": "b"}).status_code == 201
    # posts older than a day no longer count
    demoted = make_member()
    c2 = login(demoted)
    for i in range(3):
        c2.post(f"/api/v1/boards/{board.id}/threads", json={"title": f"t{i}", "body": "b"})
        _age_posts(demoted.id, 40)
    _age_posts(demoted.id, 24 * 3600)
    assert c2.post(f"/api/v1/boards/{board.id}/threads", json={"title": "again", "body": "b"}).status_code == 201


def test_concurrent_posts_cannot_slip_past_the_gap(app, make_board, make_thread, make_member):
    from community.models import User
    from forums import services

    board = make_board()
    thread_id = make_thread(board).id  # threads must not touch the test's ORM objects
    member_id = make_member().id

    def post(i):
        with app.app_context():
            try:
                services.reply(db.session.get(User, member_id), thread_id, f"race {i}")
                db.session.commit()
                return "ok"
            except Exception as exc:
                db.session.rollback()
                return f"{type(exc).__name__}: {exc}"[:300]
            finally:
                db.session.remove()

    results = in_threads(4, post)
    assert results.count("ok") == 1, results
    assert all(r == "ok" or r.startswith("TooManyRequests") for r in results), results
    assert db.session.get(Thread, thread_id).reply_count == 1


def test_concurrent_replies_and_likes_keep_counters_exact(app, make_board, make_thread, make_member):
    from community.models import User
    from forums import services

    board = make_board()
    thread_id = make_thread(board).id
    first_id = db.session.scalar(select(Post.id).where(Post.thread_id == thread_id))
    ids = [make_member(tier="advocate").id for _ in range(6)]

    def act(i):
        with app.app_context():
            try:
                user = db.session.get(User, ids[i])
                services.reply(user, thread_id, f"reply {i}")
                services.like(user, first_id)
                db.session.commit()
                return "ok"
            finally:
                db.session.remove()

    assert in_threads(6, act) == ["ok"] * 6
    db.session.expire_all()
    assert db.session.get(Thread, thread_id).reply_count == 6
    assert db.session.get(Post, first_id).like_count == 6
    last = db.session.scalar(select(db.func.max(Post.id)).where(Post.thread_id == thread_id))
    assert db.session.get(Thread, thread_id).last_post_id == last


def test_concurrent_flags_hide_once(app, make_board, make_thread, make_member):
    from community.models import User
    from forums import services

    board = make_board(flag_threshold=3)
    thread_id = make_thread(board, replies=1).id
    reply_id = db.session.scalars(select(Post.id).where(Post.thread_id == thread_id).order_by(Post.id)).all()[1]
    ids = [make_member().id for _ in range(5)]

    def flag(i):
        with app.app_context():
            try:
                services.flag_post(db.session.get(User, ids[i]), reply_id, "spam")
                db.session.commit()
                return "ok"
            except Exception as exc:
                db.session.rollback()
                return type(exc).__name__
            finally:
                db.session.remove()

    results = in_threads(5, flag)
    db.session.expire_all()
    post = db.session.get(Post, reply_id)
    # once hidden, the post is gone for members: later flaggers get NotFound
    assert set(results) <= {"ok", "NotFound"} and results.count("ok") >= 3, results
    assert post.state == "hidden" and post.flag_score == results.count("ok")
    assert db.session.get(Thread, thread_id).reply_count == 0  # decremented exactly once


def test_search_finds_titles_and_bodies_within_permissions(make_board, make_thread, make_member, login):
    public, advocates = make_board(), make_board(min_tier="advocate")
    t1 = make_thread(public, title="Coffee rewards", body="<p>One point buys one <em>espresso</em></p>")
    make_thread(advocates, title="Secret espresso club", body="<p>advocates only</p>")
    make_thread(public, title="Unrelated", body="<p>tea</p>")
    aware, advocate = login(make_member()), login(make_member(tier="advocate"))
    hits = aware.get("/api/v1/posts/search?q=espresso").get_json()
    assert [h["thread_id"] for h in hits["items"]] == [t1.id] and hits["meta"]["total"] == 1
    assert hits["items"][0]["thread_title"] == "Coffee rewards"
    assert len(advocate.get("/api/v1/posts/search?q=espresso").get_json()["items"]) == 2
    assert [h["thread_id"] for h in aware.get("/api/v1/posts/search?q=COFFEE").get_json()["items"]] == [t1.id]
    assert aware.get("/api/v1/posts/search?q=coffee espresso").get_json()["meta"]["total"] == 1
    assert aware.get("/api/v1/posts/search?q=coffee tea").get_json()["meta"]["total"] == 0
    # FTS syntax in the query is treated as words, never as operators
    for q in ('"espresso', "espresso OR tea", "NEAR(espresso", "espresso*", "-tea", "a:b"):
        assert aware.get("/api/v1/posts/search", query_string={"q": q}).status_code == 200, q
    assert aware.get(f"/api/v1/posts/search?q=espresso&board_id={advocates.id}").status_code == 404
    assert advocate.get(f"/api/v1/posts/search?q=espresso&board_id={advocates.id}").get_json()["meta"]["total"] == 1
    assert aware.get("/api/v1/posts/search?q=!!!").status_code == 422
    assert aware.get("/api/v1/posts/search").status_code == 422
    assert aware.get("/api/v1/posts/search?q=" + "x" * 201).status_code == 422


def test_search_index_follows_edits_and_removals(make_board, make_thread, make_member, login):
    board = make_board()
    author = make_member(tier="advocate")
    thread = make_thread(board, author=author, title="Loyalty", body="<p>original wording</p>", replies=1)
    first, reply = db.session.scalars(select(Post).where(Post.thread_id == thread.id).order_by(Post.id)).all()
    client = login(author)
    search = lambda q: client.get("/api/v1/posts/search", query_string={"q": q}).get_json()["meta"]["total"]  # noqa: E731
    assert search("original") == 1
    client.patch(f"/api/v1/posts/{first.id}", json={"body": "<p>rewritten text</p>", "title": "Programme"})
    assert (search("original"), search("rewritten"), search("programme"), search("loyalty")) == (0, 1, 1, 0)
    assert search("reply") == 1
    mod = login(make_member(roles=("moderator",)))
    mod.post(f"/api/v1/moderation/posts/{reply.id}", json={"action": "hide", "reason": "x"})
    assert search("reply") == 0
    mod.post(f"/api/v1/moderation/threads/{thread.id}", json={"action": "delete", "reason": "x"})
    assert search("rewritten") == 0


def test_thread_page_query_count_is_constant(make_board, make_thread, make_member, login, count_queries):
    board = make_board()
    viewer = make_member()
    client = login(viewer)
    short = make_thread(board, replies=1)
    long = make_thread(board, replies=40, reply_author=make_member(tier="advocate"))
    posts = db.session.scalars(select(Post.id).where(Post.thread_id == long.id).order_by(Post.id)).all()
    from forums import services

    quoter = make_member(tier="advocate")
    for post_id in posts[:5]:  # quotes and likes must not add queries either
        services.reply(quoter, long.id, "quoting", quote_post_id=post_id)
        services.like(quoter, post_id)
    db.session.commit()
    client.get(f"/api/v1/threads/{short.id}")  # warm-up (first-request work is not the page's)
    counts = []
    # URLs are built first: touching the test's expired ORM objects would add queries of its own.
    for url in [f"/api/v1/threads/{t.id}?per_page=100" for t in (short, long)]:
        with count_queries() as n:
            resp = client.get(url)
        assert resp.status_code == 200
        counts.append(n())
    assert len(resp.get_json()["items"]) == 46
    with count_queries() as n:
        client.get("/api/v1/me")
    auth = n()  # what any authenticated request costs (the member and their roles)
    # beyond authentication: the thread with its board and post count, then the page of posts
    assert counts == [auth + 2, auth + 2], (counts, auth)
    board_url = f"/api/v1/boards/{board.id}/threads"
    with count_queries() as n:
        client.get(board_url)
    board_queries = n()
    make_thread(board, replies=3)
    with count_queries() as n:
        client.get(board_url)
    assert n() == board_queries == auth + 3  # the board, the count, the page


def test_board_counters_are_sql_not_python(make_board, make_thread):
    board = make_board()
    for _ in range(3):
        make_thread(board)
    assert db.session.get(Board, board.id).thread_count == 3
    assert db.session.get(Board, board.id).last_activity_at <= utcnow()


def test_concurrent_edits_keep_a_complete_history(app, make_board, make_thread, make_member):
    from community.models import User
    from forums import services
    from forums.models import PostRevision

    author = make_member(tier="advocate")
    author_id = author.id
    thread_id = make_thread(make_board(), author=author, body="<p>v0</p>").id
    post_id = db.session.scalar(select(Post.id).where(Post.thread_id == thread_id))

    def edit(i):
        with app.app_context():
            try:
                services.edit_post(db.session.get(User, author_id), post_id, f"<p>v{i + 1}</p>", None)
                db.session.commit()
                return "ok"
            finally:
                db.session.remove()

    assert in_threads(4, edit) == ["ok"] * 4
    db.session.expire_all()
    previous = [r.body for r in db.session.scalars(select(PostRevision).where(PostRevision.post_id == post_id))]
    final = db.session.get(Post, post_id)
    # every body that ever existed appears exactly once: as a revision, or as the current body
    assert sorted([*previous, final.body]) == [f"<p>v{i}</p>" for i in range(5)]
    assert final.edit_count == 4
