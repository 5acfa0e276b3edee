"""Forums HTTP API: boards, threads, posts, search and moderation.

Every route needs a login.  Boards a member may not see answer 404 (their existence is not
revealed); actions refused by role, sanction or board setting answer 403.
"""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from community.permissions import login_required, require
from contract.fields import rfc3339
from contract.openapi import error_responses
from extensions import db
from pagination import PageArgs, page_meta, page_of, page_schema

from . import services
from .permissions import MANAGE_BOARDS, MODERATE
from .schemas import (
    BoardIn,
    BoardOut,
    BoardPatchIn,
    FlagIn,
    FlagOut,
    FlagQueueArgs,
    FlagQueueOut,
    ModeratedPostOut,
    PostActionIn,
    PostOut,
    PostPatch,
    ReactionOut,
    ReplyIn,
    ResolveIn,
    RevisionOut,
    SanctionIn,
    SanctionOut,
    SearchArgs,
    SearchOut,
    ThreadActionIn,
    ThreadIn,
    ThreadListOut,
    ThreadOut,
    ThreadPageOut,
)

boards_blp = Blueprint("forum_boards", __name__, url_prefix="/api/v1/boards", description="Forum boards")
threads_blp = Blueprint("forum_threads", __name__, url_prefix="/api/v1/threads", description="Forum threads")
posts_blp = Blueprint("forum_posts", __name__, url_prefix="/api/v1/posts", description="Forum posts and search")
mod_blp = Blueprint(
    "forum_moderation", __name__, url_prefix="/api/v1/moderation", description="Forum moderation (staff)"
)
blueprints = [boards_blp, threads_blp, posts_blp, mod_blp]


_meta = page_meta


def _user():
    return current_user._get_current_object()


# --------------------------------------------------------------------------- boards


@boards_blp.route("")
class Boards(MethodView):
    @login_required
    @boards_blp.arguments(PageArgs, location="query")
    @boards_blp.response(200, page_schema(BoardOut, "BoardPage"))
    def get(self, args):
        """Boards the member may read (by tier and role), in display order."""
        return page_of(list(services.list_boards(_user())), args["page"], args["per_page"])

    @require(MANAGE_BOARDS)
    @boards_blp.arguments(BoardIn)
    @boards_blp.response(201, BoardOut)
    @error_responses(409)
    def post(self, data):
        """Create a board (admin)."""
        board = services.create_board(_user(), data)
        db.session.commit()
        return board


@boards_blp.route("/<int:board_id>")
class BoardItem(MethodView):
    @login_required
    @boards_blp.response(200, BoardOut)
    def get(self, board_id):
        """One board."""
        return services.get_board(_user(), board_id)

    @require(MANAGE_BOARDS)
    @boards_blp.arguments(BoardPatchIn)
    @boards_blp.response(200, BoardOut)
    @error_responses(409)
    def patch(self, data, board_id):
        """Change a board's settings (admin): kind, reply policy, access tier/role, flag threshold."""
        board = services.update_board(_user(), board_id, data)
        db.session.commit()
        return board


@boards_blp.route("/<int:board_id>/threads")
class BoardThreads(MethodView):
    @login_required
    @boards_blp.arguments(PageArgs, location="query")
    @boards_blp.response(200, ThreadListOut)
    def get(self, args, board_id):
        """The board's threads: pinned first, then by last activity, with reply counts."""
        board, rows, total = services.list_threads(_user(), board_id, args["page"], args["per_page"])
        items = []
        for thread, author_name in rows:
            thread.author_name = author_name
            items.append(thread)
        return {"board": board, "items": items, "meta": _meta(args["page"], args["per_page"], total)}

    @login_required
    @boards_blp.arguments(ThreadIn)
    @boards_blp.response(201, ThreadOut)
    @error_responses(429)
    def post(self, data, board_id):
        """Start a thread (on bulletin boards: staff only).  Subject to the tier's posting limits."""
        thread = services.create_thread(_user(), board_id, data["title"], data["body"])
        db.session.commit()
        return thread


# --------------------------------------------------------------------------- threads


@threads_blp.route("/<int:thread_id>")
class ThreadItem(MethodView):
    @login_required
    @threads_blp.arguments(PageArgs, location="query")
    @threads_blp.response(200, ThreadPageOut)
    def get(self, args, thread_id):
        """The thread page: the thread and one page of its posts, oldest first."""
        page = services.thread_page_rows(_user(), thread_id, args["page"], args["per_page"])
        # Built by hand rather than dumped through ThreadPageOut (which documents it, and a test
        # keeps the two in step): for 50 posts marshmallow would cost more than the queries.
        body = {
            "thread": _thread_dict(page.thread),
            "board": _board_dict(page.board),
            "items": [_page_post(row) for row in page.posts],
            "meta": _meta(args["page"], args["per_page"], page.total),
        }
        return jsonify(body)


def _thread_dict(row: tuple) -> dict:
    """``ThreadOut`` of the columns ``services.PAGE_THREAD_COLUMNS``."""
    (thread_id, board_id, author_id, title, pinned, locked, reply_count, last_activity_at, last_post_id,
     deleted_at, created_at) = row
    return {
        "id": thread_id, "board_id": board_id, "author_id": author_id, "title": title, "pinned": bool(pinned),
        "locked": bool(locked), "reply_count": reply_count, "last_activity_at": _iso(last_activity_at),
        "last_post_id": last_post_id, "deleted": deleted_at is not None, "created_at": _iso(created_at),
    }


def _board_dict(row: tuple) -> dict:
    """``BoardOut`` of the columns ``services.PAGE_BOARD_COLUMNS``."""
    return dict(zip(services.PAGE_BOARD_COLUMNS, row, strict=True)) | {
        "members_can_reply": bool(row[5]), "last_activity_at": _iso(row[11]),
    }


_iso = rfc3339


def _page_post(row) -> dict:
    # Unpacked by position (the column order of services._thread_page_statements): for 50 rows
    # that is measurably cheaper than 17 attribute lookups each.
    (post_id, thread_id, author_id, is_first, body, like_count, edit_count, edited_at, created_at,
     quote_post_id, hidden_at, deleted_at, author_name, author_tier, quote_author_name, quote_text, liked) = row
    state = "deleted" if deleted_at is not None else "hidden" if hidden_at is not None else "visible"
    quote = None
    if quote_post_id is not None:
        visible = quote_text is not None
        quote = {
            "post_id": quote_post_id,
            "author_name": quote_author_name if visible else None,
            "excerpt": services.excerpt(quote_text),
        }
    return {
        "id": post_id, "thread_id": thread_id, "author_id": author_id, "is_first": is_first,
        "body": body, "state": state, "like_count": like_count, "edit_count": edit_count,
        "edited_at": _iso(edited_at), "created_at": _iso(created_at), "quote_post_id": quote_post_id,
        "author_name": author_name, "author_tier": author_tier, "liked": bool(liked), "quote": quote,
    }


@threads_blp.route("/<int:thread_id>/posts")
class ThreadPosts(MethodView):
    @login_required
    @threads_blp.arguments(ReplyIn)
    @threads_blp.response(201, PostOut)
    @error_responses(409, 429)
    def post(self, data, thread_id):
        """Reply (optionally quoting a post of the thread).  Subject to the tier's posting limits."""
        post = services.reply(_user(), thread_id, data["body"], data.get("quote_post_id"))
        db.session.commit()
        return post


# --------------------------------------------------------------------------- posts


@posts_blp.route("/search")
class Search(MethodView):
    @login_required
    @posts_blp.arguments(SearchArgs, location="query")
    @posts_blp.response(200, SearchOut)
    @error_responses(404)
    def get(self, args):
        """Full-text search over thread titles and posts of the boards the member may read."""
        rows, total = services.search(_user(), args["q"], args.get("board_id"), args["page"], args["per_page"])
        items = [
            {
                "post_id": post.id, "thread_id": post.thread_id, "board_id": board_id, "thread_title": title,
                "author_name": author_name, "excerpt": services.excerpt(post.search_text),
                "created_at": post.created_at,
            }
            for post, title, board_id, author_name in rows
        ]
        return {"items": items, "meta": _meta(args["page"], args["per_page"], total)}


@posts_blp.route("/<int:post_id>")
class PostItem(MethodView):
    @login_required
    @posts_blp.response(200, PostOut)
    def get(self, post_id):
        """One post."""
        post, _thread, _board = services.get_post(_user(), post_id)
        return post

    @login_required
    @posts_blp.arguments(PostPatch)
    @posts_blp.response(200, PostOut)
    @error_responses(409)
    def patch(self, data, post_id):
        """Edit your post (a first post may also change the thread title); the old text is kept."""
        post = services.edit_post(_user(), post_id, data.get("body"), data.get("title"))
        db.session.commit()
        return post

    @login_required
    @posts_blp.response(204)
    @error_responses(409)
    def delete(self, post_id):
        """Delete your own post (a first post only while the thread has no replies)."""
        services.delete_own_post(_user(), post_id)
        db.session.commit()


@posts_blp.route("/<int:post_id>/revisions")
class PostRevisions(MethodView):
    @login_required
    @posts_blp.arguments(PageArgs, location="query")
    @posts_blp.response(200, page_schema(RevisionOut, "RevisionPage"))
    @error_responses(403)
    def get(self, args, post_id):
        """The post's edit history, newest first (author and moderators)."""
        return page_of(list(services.list_revisions(_user(), post_id)), args["page"], args["per_page"])


@posts_blp.route("/<int:post_id>/like")
class PostLike(MethodView):
    @login_required
    @posts_blp.response(200, ReactionOut)
    @error_responses(409)
    def put(self, post_id):
        """Like a post (idempotent)."""
        services.like(_user(), post_id)
        db.session.commit()
        return _reaction_state(post_id, True)

    @login_required
    @posts_blp.response(200, ReactionOut)
    @error_responses(409)
    def delete(self, post_id):
        """Take a like back (idempotent)."""
        services.unlike(_user(), post_id)
        db.session.commit()
        return _reaction_state(post_id, False)


def _reaction_state(post_id: int, liked: bool) -> dict:
    post, _thread, _board = services.get_post(_user(), post_id)
    return {"post_id": post.id, "liked": liked, "like_count": post.like_count}


@posts_blp.route("/<int:post_id>/flags")
class PostFlags(MethodView):
    @login_required
    @posts_blp.arguments(FlagIn)
    @posts_blp.response(201, FlagOut)
    @error_responses(409)
    def post(self, data, post_id):
        """Flag a post for moderators; enough weighted flags hide it pending review."""
        flag = services.flag_post(_user(), post_id, data["reason"], data["note"])
        db.session.commit()
        return flag


# --------------------------------------------------------------------------- moderation


@mod_blp.route("/flags")
class FlagQueue(MethodView):
    @require(MODERATE)
    @mod_blp.arguments(FlagQueueArgs, location="query")
    @mod_blp.response(200, FlagQueueOut)
    def get(self, args):
        """The review queue (open flags oldest first; resolved ones newest first)."""
        rows, total = services.list_flags(args["status"], args["page"], args["per_page"])
        items = []
        for flag, post, title, board_id, flagger_name in rows:
            items.append({
                "id": flag.id, "post_id": flag.post_id, "reason": flag.reason, "status": flag.status,
                "created_at": flag.created_at, "flagger_id": flag.flagger_id, "flagger_name": flagger_name,
                "note": flag.note, "weight": flag.weight, "resolved_by_id": flag.resolved_by_id,
                "resolved_at": flag.resolved_at, "post_state": post.state, "post_flag_score": post.flag_score,
                "post_excerpt": services.excerpt(post.search_text), "thread_id": post.thread_id,
                "thread_title": title, "board_id": board_id,
            })
        return {"items": items, "meta": _meta(args["page"], args["per_page"], total)}


@mod_blp.route("/flags/<int:flag_id>/resolve")
class FlagResolve(MethodView):
    @require(MODERATE)
    @mod_blp.arguments(ResolveIn)
    @mod_blp.response(200, FlagOut)
    @error_responses(409)
    def post(self, data, flag_id):
        """Agree (the post is hidden) or disagree (the flag's weight is withdrawn)."""
        flag = services.resolve_flag(_user(), flag_id, data["decision"], data["note"])
        db.session.commit()
        return flag


@mod_blp.route("/posts/<int:post_id>")
class PostModeration(MethodView):
    @require(MODERATE)
    @mod_blp.arguments(PostActionIn)
    @mod_blp.response(200, ModeratedPostOut)
    @error_responses(409)
    def post(self, data, post_id):
        """Hide, restore or delete a post (deleting reverses the points it earned)."""
        post = services.moderate_post(_user(), post_id, data["action"], data["reason"])
        db.session.commit()
        return post


@mod_blp.route("/threads/<int:thread_id>")
class ThreadModeration(MethodView):
    @require(MODERATE)
    @mod_blp.arguments(ThreadActionIn)
    @mod_blp.response(200, ThreadOut)
    @error_responses(409)
    def post(self, data, thread_id):
        """Lock, unlock, pin, unpin, move (with ``board_id``), delete or restore a thread."""
        thread = services.moderate_thread(_user(), thread_id, data["action"], data["reason"], data.get("board_id"))
        db.session.commit()
        return thread


@mod_blp.route("/members/<int:member_id>/sanctions")
class MemberSanctions(MethodView):
    @require(MODERATE)
    @mod_blp.arguments(PageArgs, location="query")
    @mod_blp.response(200, page_schema(SanctionOut, "SanctionPage"))
    def get(self, args, member_id):
        """A member's warnings, silences and suspensions, newest first."""
        return page_of(list(services.list_sanctions(member_id)), args["page"], args["per_page"])

    @require(MODERATE)
    @mod_blp.arguments(SanctionIn)
    @mod_blp.response(201, SanctionOut)
    @error_responses(409)
    def post(self, data, member_id):
        """Warn, silence or suspend a member for ``duration_hours``, or lift their sanctions.

        A suspended member's account is read-only (403 ``account_suspended`` on every write,
        sessions and tokens alike) and their API tokens are revoked.  Only admins sanction
        staff (any staff role); nobody sanctions themselves."""
        sanction = services.sanction_member(
            _user(), member_id, data["action"], data["reason"], data.get("duration_hours")
        )
        db.session.commit()
        return sanction
