"""Forums fixtures: boards and threads built through the services (as the API would)."""

from __future__ import annotations

import itertools

import pytest

from extensions import db

_slugs = itertools.count(1)


@pytest.fixture
def make_board(app, make_member):
    """``make_board(kind="bulletin", min_tier="advocate", ...)`` -> a committed Board."""
    from forums import services

    admin = make_member(roles=("admin",))

    def make(**fields):
        n = next(_slugs)
        data = {"slug": f"board-{n}", "name": f"Board {n}", **fields}
        board = services.create_board(admin, data)
        db.session.commit()
        return board

    return make


@pytest.fixture
def make_thread(app, make_member):
    """``make_thread(board, author=None, replies=0)`` -> a committed Thread.

    The default author is an advocate (no posting limits), so tests can build many posts.
    """
    from forums import services

    def make(board, author=None, *, title="A thread", body="<p>First post</p>", replies=0, reply_author=None):
        author = author or make_member(tier="advocate")
        thread = services.create_thread(author, board.id, title, body)
        db.session.flush()
        replier = reply_author or author
        for i in range(replies):
            services.reply(replier, thread.id, f"<p>reply {i}</p>")
        db.session.commit()
        return thread

    return make
