"""Every forums route x every actor.  Content is owned by ``owner``; the board is public."""

from __future__ import annotations

import itertools

from tests.authz import LOGGED_IN, Case

STAFF = frozenset({"moderator", "admin"})
POSTERS = LOGGED_IN - {"suspended"}  # suspended members cannot post, react or flag
_n = itertools.count(1)


def _board(ctx):
    from extensions import db
    from forums.models import Board

    board = Board(slug=f"authz-{next(_n)}", name="Authz", flag_threshold=1000)
    db.session.add(board)
    db.session.commit()
    return board


def _board_params(ctx):
    return {"board_id": _board(ctx).id}


def _thread(ctx):
    """A thread by ``owner`` with one reply by ``owner``; params for both posts."""
    from extensions import db
    from forums import services

    board = _board(ctx)
    owner = ctx.users["owner"]
    thread = services.create_thread(owner, board.id, "Authz thread", "<p>first words</p>")
    db.session.flush()
    first_id = thread.last_post_id
    # Written directly: the owner's posting limits (30 s between posts) must not get in the way.
    from forums.models import Post

    reply = Post(thread_id=thread.id, author_id=owner.id, body="<p>a reply</p>", search_text="a reply")
    db.session.add(reply)
    db.session.commit()
    return {"board_id": board.id, "thread_id": thread.id, "first_id": first_id, "post_id": reply.id}


def _flag(ctx):
    from extensions import db
    from forums import services

    params = _thread(ctx)
    flag = services.flag_post(ctx.users["member"], params["post_id"], "spam")
    db.session.commit()
    return {**params, "flag_id": flag.id}


def _member(ctx):
    return {"member_id": ctx.users["member"].id}


CASES = [
    Case("GET", "/api/v1/boards", LOGGED_IN),
    Case("POST", "/api/v1/boards", frozenset({"admin"}),
         body=lambda ctx, p: {"slug": f"new-{next(_n)}", "name": "New board"}),
    Case("GET", "/api/v1/boards/<int:board_id>", LOGGED_IN, setup=_board_params),
    Case("PATCH", "/api/v1/boards/<int:board_id>", frozenset({"admin"}), setup=_board_params,
         body={"description": "changed"}),
    Case("GET", "/api/v1/boards/<int:board_id>/threads", LOGGED_IN, setup=_board_params),
    Case("POST", "/api/v1/boards/<int:board_id>/threads", POSTERS, setup=_board_params,
         body={"title": "Hi", "body": "<p>hello</p>"}),
    Case("GET", "/api/v1/threads/<int:thread_id>", LOGGED_IN, setup=_thread),
    Case("POST", "/api/v1/threads/<int:thread_id>/posts", POSTERS, setup=_thread, body={"body": "a reply"}),
    Case("GET", "/api/v1/posts/search", LOGGED_IN, setup=_thread, query={"q": "words"}),
    Case("GET", "/api/v1/posts/<int:post_id>", LOGGED_IN, setup=_thread),
    Case("PATCH", "/api/v1/posts/<int:post_id>", frozenset({"owner"}) | STAFF, setup=_thread,
         body=lambda ctx, p: {"body": f"edit {next(_n)}"}),
    Case("DELETE", "/api/v1/posts/<int:post_id>", frozenset({"owner"}), setup=_thread),
    Case("GET", "/api/v1/posts/<int:post_id>/revisions", frozenset({"owner"}) | STAFF, setup=_thread),
    Case("PUT", "/api/v1/posts/<int:post_id>/like", POSTERS, setup=_thread),
    Case("DELETE", "/api/v1/posts/<int:post_id>/like", POSTERS, setup=_thread),
    Case("POST", "/api/v1/posts/<int:post_id>/flags", POSTERS, setup=_thread, body={"reason": "spam"},
         note="the owner gets 409 (own post), which is not an authorization refusal"),
    Case("GET", "/api/v1/moderation/flags", STAFF),
    Case("POST", "/api/v1/moderation/flags/<int:flag_id>/resolve", STAFF, setup=_flag,
         body={"decision": "disagree"}),
    Case("POST", "/api/v1/moderation/posts/<int:post_id>", STAFF, setup=_thread,
         body={"action": "hide", "reason": "test"}),
    Case("POST", "/api/v1/moderation/threads/<int:thread_id>", STAFF, setup=_thread,
         body={"action": "lock", "reason": "test"}),
    Case("GET", "/api/v1/moderation/members/<int:member_id>/sanctions", STAFF, setup=_member),
    Case("POST", "/api/v1/moderation/members/<int:member_id>/sanctions", STAFF, setup=_member,
         body={"action": "warn", "reason": "be nice"}),
]
