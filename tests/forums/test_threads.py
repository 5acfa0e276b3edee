"""Boards, threads and posts through the API: permissions, counters, quotes, edits, deletes, likes."""

from __future__ import annotations

from sqlalchemy import select

from community.models import User
from extensions import db
from forums.models import Board, Post, PostRevision, Thread


def _body(resp):
    return resp.get_json()


def test_member_starts_thread_and_others_reply(make_board, make_member, login):
    board = make_board()
    alice, bob = make_member(tier="engaged"), make_member()
    a, b = login(alice), login(bob)
    resp = a.post(f"/api/v1/boards/{board.id}/threads", json={"title": "Hello <b>all</b>", "body": "<p>Hi!</p>"})
    assert resp.status_code == 201, resp.get_json()
    thread = _body(resp)
    assert thread["title"] == "Hello all" and thread["reply_count"] == 0
    resp = b.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "<p>Welcome</p><script>x()</script>"})
    assert resp.status_code == 201, resp.get_json()
    reply = _body(resp)
    assert reply["body"] == "<p>Welcome</p>x()"
    page = _body(a.get(f"/api/v1/threads/{thread['id']}"))
    assert page["thread"]["reply_count"] == 1
    assert page["thread"]["last_post_id"] == reply["id"]
    assert [p["author_name"] for p in page["items"]] == [alice.display_name, bob.display_name]
    assert page["meta"]["total"] == 2
    listing = _body(b.get(f"/api/v1/boards/{board.id}/threads"))
    assert listing["items"][0]["reply_count"] == 1 and listing["items"][0]["author_name"] == alice.display_name
    assert listing["board"]["thread_count"] == 1
    # the thread author is told about the reply
    notes = _body(a.get("/api/v1/me/notifications"))["items"]
    assert any(n["kind"] == "forums.reply" and n["payload"]["post_id"] == reply["id"] for n in notes)


def test_board_listing_orders_pinned_then_activity(make_board, make_thread, make_member, login):
    board = make_board()
    old, pinned, fresh = (make_thread(board, title=t) for t in ("old", "pinned", "fresh"))
    from forums import services

    mod = make_member(roles=("moderator",))
    services.moderate_thread(mod, pinned.id, "pin", "important")
    services.reply(mod, old.id, "<p>bump</p>")
    db.session.commit()
    listing = _body(login(make_member()).get(f"/api/v1/boards/{board.id}/threads"))
    assert [t["title"] for t in listing["items"]] == ["pinned", "old", "fresh"]
    assert listing["items"][0]["pinned"] is True


def test_quote_and_bad_quote(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board, body="<p>The original words</p>")
    other = make_thread(board)
    first = db.session.scalar(select(Post).where(Post.thread_id == thread.id))
    client = login(make_member())
    resp = client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "agreed", "quote_post_id": first.id})
    assert resp.status_code == 201
    page = _body(client.get(f"/api/v1/threads/{thread.id}"))
    quote = page["items"][1]["quote"]
    assert quote["post_id"] == first.id and "The original words" in quote["excerpt"]
    other_first = db.session.scalar(select(Post).where(Post.thread_id == other.id))
    for bad in (other_first.id, 999999):
        resp = client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "x", "quote_post_id": bad})
        assert resp.status_code == 422
        assert "quote_post_id" in resp.get_json()["error"]["fields"]


def test_bad_input_is_rejected_in_the_envelope(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board)
    client = login(make_member(tier="advocate"))
    cases = [
        ("post", f"/api/v1/boards/{board.id}/threads", {"title": "", "body": "x"}, 422),
        ("post", f"/api/v1/boards/{board.id}/threads", {"title": "t", "body": "<script></script>"}, 422),
        ("post", f"/api/v1/boards/{board.id}/threads", {"title": "t", "body": "x", "author_id": 1}, 422),
        ("post", f"/api/v1/boards/{board.id}/threads", {"title": "<>", "body": "x"}, 422),
        ("post", f"/api/v1/boards/{board.id}/threads", {"title": "t", "body": "x" * 20001}, 422),
        ("post", "/api/v1/boards/99999/threads", {"title": "t", "body": "x"}, 404),
        ("post", f"/api/v1/threads/{thread.id}/posts", {"body": ""}, 422),
        ("post", f"/api/v1/threads/{thread.id}/posts", {"body": "x", "like_count": 5}, 422),
        ("post", "/api/v1/threads/99999/posts", {"body": "x"}, 404),
        ("get", "/api/v1/threads/99999", None, 404),
        ("get", f"/api/v1/threads/{thread.id}?per_page=0", None, 422),
        ("get", f"/api/v1/boards/{board.id}/threads?page=abc", None, 422),
        ("get", "/api/v1/boards/99999", None, 404),
        ("get", "/api/v1/boards/99999/threads", None, 404),
        ("get", "/api/v1/posts/99999", None, 404),
        ("patch", "/api/v1/posts/99999", {"body": "x"}, 404),
        ("delete", "/api/v1/posts/99999", None, 404),
        ("get", "/api/v1/posts/99999/revisions", None, 404),
        ("put", "/api/v1/posts/99999/like", None, 404),
        ("delete", "/api/v1/posts/99999/like", None, 404),
        ("post", "/api/v1/posts/99999/flags", {"reason": "spam"}, 404),
    ]
    for method, url, body, status in cases:
        resp = getattr(client, method)(url, json=body)
        assert resp.status_code == status, (method, url, resp.get_json())
        assert set(resp.get_json()["error"]) == {"code", "message", "fields"}
    assert db.session.scalar(select(db.func.count()).select_from(Thread)) == 1


def test_board_admin_create_update_and_bad_input(login, make_member):
    admin = login(make_member(roles=("admin",)))
    resp = admin.post("/api/v1/boards", json={"slug": "news", "name": "News", "kind": "bulletin",
                                              "members_can_reply": False})
    assert resp.status_code == 201, resp.get_json()
    board_id = resp.get_json()["id"]
    assert admin.post("/api/v1/boards", json={"slug": "news", "name": "Again"}).status_code == 409
    assert admin.post("/api/v1/boards", json={"slug": "Bad Slug", "name": "x"}).status_code == 422
    assert admin.post("/api/v1/boards", json={"slug": "x", "name": "x", "kind": "wiki"}).status_code == 422
    assert admin.post("/api/v1/boards", json={"slug": "y", "name": "y", "flag_threshold": 0}).status_code == 422
    resp = admin.patch(f"/api/v1/boards/{board_id}", json={"min_tier": "loyal", "flag_threshold": 3})
    assert resp.status_code == 200 and resp.get_json()["min_tier"] == "loyal"
    assert resp.get_json()["kind"] == "bulletin"  # untouched fields stay
    assert admin.patch(f"/api/v1/boards/{board_id}", json={"min_tier": "gold"}).status_code == 422
    assert admin.patch("/api/v1/boards/9999", json={"name": "x"}).status_code == 404
    assert admin.patch(f"/api/v1/boards/{board_id}", json={}).status_code == 422
    admin.post("/api/v1/boards", json={"slug": "other", "name": "Other"})
    assert admin.patch(f"/api/v1/boards/{board_id}", json={"slug": "other"}).status_code == 409
    audit = admin.get("/api/v1/admin/audit?action=forums.board").get_json()["items"]
    assert {a["action"] for a in audit} == {"forums.board.create", "forums.board.update"}


def test_tier_and_role_restricted_boards(make_board, make_thread, make_member, login):
    advocates = make_board(min_tier="advocate")
    staff_only = make_board(required_role="marketer")
    public = make_board()
    thread = make_thread(advocates)
    aware, advocate = login(make_member()), login(make_member(tier="advocate"))
    marketer, mod = login(make_member(roles=("marketer",))), login(make_member(roles=("moderator",)))
    ids = lambda c: {b["id"] for b in c.get("/api/v1/boards").get_json()["items"]}  # noqa: E731
    assert ids(aware) == {public.id}
    assert ids(advocate) == {public.id, advocates.id}
    assert ids(marketer) == {public.id, staff_only.id}
    assert ids(mod) == {public.id, advocates.id, staff_only.id}
    assert aware.get(f"/api/v1/threads/{thread.id}").status_code == 404
    assert aware.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "hi"}).status_code == 404
    assert aware.post(f"/api/v1/boards/{advocates.id}/threads", json={"title": "t", "body": "b"}).status_code == 404
    assert advocate.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "hi"}).status_code == 201


def test_bulletin_board_staff_post_members_reply_or_read(make_board, make_member, login):
    replies_ok = make_board(kind="bulletin", members_can_reply=True)
    read_only = make_board(kind="bulletin", members_can_reply=False)
    member, marketer = login(make_member(tier="advocate")), login(make_member(roles=("marketer",)))
    for board in (replies_ok, read_only):
        resp = member.post(f"/api/v1/boards/{board.id}/threads", json={"title": "t", "body": "b"})
        assert resp.status_code == 403
    t1 = marketer.post(f"/api/v1/boards/{replies_ok.id}/threads", json={"title": "News", "body": "b"}).get_json()
    t2 = marketer.post(f"/api/v1/boards/{read_only.id}/threads", json={"title": "News", "body": "b"}).get_json()
    assert member.post(f"/api/v1/threads/{t1['id']}/posts", json={"body": "thanks"}).status_code == 201
    assert member.post(f"/api/v1/threads/{t2['id']}/posts", json={"body": "thanks"}).status_code == 403
    assert marketer.post(f"/api/v1/threads/{t2['id']}/posts", json={"body": "update"}).status_code == 201


def test_edit_keeps_revisions(make_board, make_member, login):
    board = make_board()
    author = make_member(tier="advocate")
    client = login(author)
    thread = client.post(f"/api/v1/boards/{board.id}/threads", json={"title": "Old title", "body": "v1"}).get_json()
    first = db.session.scalar(select(Post).where(Post.thread_id == thread["id"]))
    resp = client.patch(f"/api/v1/posts/{first.id}", json={"body": "<p>v2 <img src=x onerror=1></p>"})
    assert resp.status_code == 200 and resp.get_json()["body"] == "<p>v2 </p>"
    assert resp.get_json()["edit_count"] == 1
    resp = client.patch(f"/api/v1/posts/{first.id}", json={"title": "New title"})
    assert resp.status_code == 200
    revs = client.get(f"/api/v1/posts/{first.id}/revisions").get_json()["items"]
    assert [(r["body"], r["title"], r["editor_id"]) for r in revs] == [
        ("<p>v2 </p>", "Old title", author.id), ("v1", None, author.id),
    ]
    assert client.get(f"/api/v1/threads/{thread['id']}").get_json()["thread"]["title"] == "New title"
    # nothing changed -> no revision
    client.patch(f"/api/v1/posts/{first.id}", json={"title": "New title"})
    assert db.session.scalar(select(db.func.count()).select_from(PostRevision)) == 2
    # others cannot edit or read the history; bad input is rejected
    other = login(make_member())
    assert other.patch(f"/api/v1/posts/{first.id}", json={"body": "hacked"}).status_code == 403
    assert other.get(f"/api/v1/posts/{first.id}/revisions").status_code == 403
    assert client.patch(f"/api/v1/posts/{first.id}", json={}).status_code == 422
    reply = client.post(f"/api/v1/threads/{thread['id']}/posts", json={"body": "r"}).get_json()
    assert client.patch(f"/api/v1/posts/{reply['id']}", json={"title": "x"}).status_code == 422


def test_delete_own_post_and_thread(make_board, make_thread, make_member, login):
    board = make_board()
    author = make_member(tier="advocate")
    client = login(author)
    thread = make_thread(board, author=author, replies=1)
    posts = db.session.scalars(select(Post).where(Post.thread_id == thread.id).order_by(Post.id)).all()
    first, reply = posts
    assert client.delete(f"/api/v1/posts/{first.id}").status_code == 409  # has replies
    assert login(make_member()).delete(f"/api/v1/posts/{reply.id}").status_code == 403
    assert client.delete(f"/api/v1/posts/{reply.id}").status_code == 204
    assert client.get(f"/api/v1/posts/{reply.id}").status_code == 404
    page = client.get(f"/api/v1/threads/{thread.id}").get_json()
    assert page["thread"]["reply_count"] == 0 and page["meta"]["total"] == 1
    assert client.delete(f"/api/v1/posts/{first.id}").status_code == 204
    assert client.get(f"/api/v1/threads/{thread.id}").status_code == 404
    assert db.session.get(Board, board.id).thread_count == 0
    # moderators still see the deleted thread and its posts, with their state
    mod = login(make_member(roles=("moderator",)))
    page = mod.get(f"/api/v1/threads/{thread.id}").get_json()
    assert page["thread"]["deleted"] is True and [p["state"] for p in page["items"]] == ["deleted", "deleted"]


def test_like_is_idempotent_and_counted(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board)
    post = db.session.scalar(select(Post).where(Post.thread_id == thread.id))
    a, b = login(make_member()), login(make_member())
    assert a.put(f"/api/v1/posts/{post.id}/like").get_json() == {"post_id": post.id, "liked": True, "like_count": 1}
    assert a.put(f"/api/v1/posts/{post.id}/like").get_json()["like_count"] == 1
    assert b.put(f"/api/v1/posts/{post.id}/like").get_json()["like_count"] == 2
    page = a.get(f"/api/v1/threads/{thread.id}").get_json()
    assert page["items"][0]["liked"] is True and page["items"][0]["like_count"] == 2
    assert a.delete(f"/api/v1/posts/{post.id}/like").get_json()["like_count"] == 1
    assert a.delete(f"/api/v1/posts/{post.id}/like").get_json()["like_count"] == 1


def test_locked_thread_refuses_member_replies(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board)
    mod = login(make_member(roles=("moderator",)))
    resp = mod.post(f"/api/v1/moderation/threads/{thread.id}", json={"action": "lock", "reason": "heated"})
    assert resp.status_code == 200
    member = login(make_member())
    resp = member.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "hi"})
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "thread_locked"
    assert mod.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "closing note"}).status_code == 201


def test_silenced_and_suspended_members(make_board, make_thread, make_member, login):
    from datetime import timedelta

    from community.models import utcnow

    board = make_board()
    thread = make_thread(board)
    post = db.session.scalar(select(Post).where(Post.thread_id == thread.id))
    silenced = login(make_member(silenced_until=utcnow() + timedelta(hours=1)))
    suspended = login(make_member(suspended_until=utcnow() + timedelta(hours=1)))
    expired = login(make_member(silenced_until=utcnow() - timedelta(hours=1)))
    # A suspended account is read-only everywhere (#13): the general code, before the forum's own.
    for client, code in ((silenced, "silenced"), (suspended, "account_suspended")):
        resp = client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "hi"})
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == code
        resp = client.post(f"/api/v1/boards/{board.id}/threads", json={"title": "t", "body": "b"})
        assert resp.status_code == 403
    assert silenced.put(f"/api/v1/posts/{post.id}/like").status_code == 200
    assert silenced.post(f"/api/v1/posts/{post.id}/flags", json={"reason": "spam"}).status_code == 201
    assert suspended.put(f"/api/v1/posts/{post.id}/like").status_code == 403
    assert suspended.post(f"/api/v1/posts/{post.id}/flags", json={"reason": "spam"}).status_code == 403
    assert suspended.get(f"/api/v1/threads/{thread.id}").status_code == 200
    assert expired.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "hi"}).status_code == 201
    assert db.session.scalar(select(User).where(User.id == post.author_id)) is not None


def test_thread_page_body_matches_its_documented_schema(make_board, make_thread, make_member, login):
    """The thread page is serialised by hand for speed; it must keep the shape ThreadPageOut documents."""
    from forums.schemas import BoardOut, QuoteOut, ThreadOut, ThreadPageOut, ThreadPagePost

    board = make_board()
    thread = make_thread(board, replies=1)
    first = db.session.scalar(select(Post.id).where(Post.thread_id == thread.id).order_by(Post.id))
    client = login(make_member())
    client.post(f"/api/v1/threads/{thread.id}/posts", json={"body": "quoting", "quote_post_id": first})
    page = client.get(f"/api/v1/threads/{thread.id}").get_json()
    assert set(page) == set(ThreadPageOut().fields)
    assert set(page["thread"]) == set(ThreadOut().fields) and set(page["board"]) == set(BoardOut().fields)
    for item in page["items"]:
        assert set(item) == set(ThreadPagePost().fields)
    assert set(page["items"][-1]["quote"]) == set(QuoteOut().fields)
    # values agree with what the schema would produce from the same post
    post = db.session.get(Post, first)
    dumped = ThreadPagePost().dump(post)  # the post's own fields (the joined ones are not on the model)
    assert len(dumped) == 11 and {k: page["items"][0][k] for k in dumped} == dumped
    db.session.expire_all()
    assert page["thread"] == ThreadOut().dump(db.session.get(type(thread), thread.id))
    assert page["board"] == BoardOut().dump(db.session.get(type(board), board.id))


def test_page_past_the_end_still_reports_the_total(make_board, make_thread, make_member, login):
    board = make_board()
    thread = make_thread(board, replies=2)
    client = login(make_member())
    page = client.get(f"/api/v1/threads/{thread.id}?page=5&per_page=2").get_json()
    assert page["items"] == [] and page["meta"] == {"page": 5, "per_page": 2, "total": 3, "pages": 2}
    listing = client.get(f"/api/v1/boards/{board.id}/threads?page=3").get_json()
    assert listing["items"] == [] and listing["meta"]["total"] == 1
