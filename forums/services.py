"""Forums business logic: boards, threads, posts, reactions, search, flags and moderation.

Callers pass the acting ``User``; nothing here reads the request.  Functions only flush; the
view commits once.  Counters change by atomic SQL, and every state change of a post or thread
(visible -> hidden -> deleted and back) is a guarded ``UPDATE ... WHERE <from-state>`` whose
rowcount decides whether the counters move, so two moderators acting at once cannot count a
change twice.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, func, literal_column, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

import sanitize
from community.models import GRANTABLE_ROLES, User, UserRole, tier_rank, utcnow
from community.permissions import has_permission
from community.services import (
    audit,
    member_suspension_changed,
    notify,
    refuse,
    refuse_self_dealing,
    revoke_all_tokens,
)
from contract.fields import rfc3339
from errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationError
from extensions import db
from messaging.webhooks import events as webhooks
from points.services import record_interaction, reverse_source
from tiers.benefits import benefits_for

from .models import Board, Flag, Post, PostRevision, Reaction, Sanction, Thread
from .permissions import MANAGE_BOARDS, MODERATE, POST_BULLETIN

BODY_MAX = 20_000
EXCERPT_CHARS = 200
SEARCH_MAX_TERMS = 8
DAY = timedelta(days=1)
# Longest silence or suspension a moderator can set in one action.
MAX_SANCTION_DAYS = 365


# --------------------------------------------------------------------------- access


def is_staff(user: User) -> bool:
    """Moderators (and admins) see and act on everything in every board."""
    return has_permission(user, MODERATE)


def can_read_board(user: User, board: Board) -> bool:
    if is_staff(user):
        return True
    if board.required_role and board.required_role not in user.roles:
        return False
    return tier_rank(user.tier) >= tier_rank(board.min_tier)


def readable_board_ids(user: User) -> list[int]:
    boards = db.session.execute(select(Board.id, Board.min_tier, Board.required_role)).all()
    if is_staff(user):
        return [b.id for b in boards]
    rank, roles = tier_rank(user.tier), user.roles
    return [
        b.id for b in boards if tier_rank(b.min_tier) <= rank and (not b.required_role or b.required_role in roles)
    ]


def _check_can_post(user: User) -> None:
    if user.is_suspended():
        raise Forbidden("Your account is suspended; you cannot post.", code="suspended")
    if user.is_silenced():
        raise Forbidden("You are silenced by a moderator and cannot post for now.", code="silenced")


def _check_can_interact(user: User) -> None:
    """Reacting and flagging: refused only to suspended members (silenced ones may still)."""
    if user.is_suspended():
        raise Forbidden("Your account is suspended.", code="suspended")


def _later(column, when: datetime):
    """``column`` moved forward to ``when`` but never back (concurrent writers may commit late)."""
    return case((or_(column.is_(None), column < when), when), else_=column)


# --------------------------------------------------------------------------- boards


def list_boards(user: User) -> list[Board]:
    ids = readable_board_ids(user)
    return list(db.session.scalars(select(Board).where(Board.id.in_(ids)).order_by(Board.position, Board.id)))


def get_board(user: User, board_id: int) -> Board:
    """The board, or NotFound when it does not exist or ``user`` may not see it."""
    board = db.session.get(Board, board_id)
    if board is None or not can_read_board(user, board):
        raise NotFound("No such board.")
    return board


BOARD_FIELDS = (
    "slug", "name", "description", "kind", "members_can_reply", "min_tier", "required_role", "flag_threshold",
    "position",
)


def create_board(actor: User, data: dict) -> Board:
    if not has_permission(actor, MANAGE_BOARDS):
        raise Forbidden("You cannot create boards.")
    board = Board(**{k: v for k, v in data.items() if k in BOARD_FIELDS})
    if db.session.scalar(select(Board.id).where(Board.slug == board.slug)) is not None:
        raise Conflict("A board with this slug exists.", fields={"slug": ["Already taken."]})
    db.session.add(board)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:  # a concurrent creation won the slug
        raise Conflict("A board with this slug exists.", fields={"slug": ["Already taken."]}) from exc
    audit(actor.id, "forums.board.create", "board", board.id, details={"slug": board.slug})
    return board


def update_board(actor: User, board_id: int, changes: dict) -> Board:
    if not has_permission(actor, MANAGE_BOARDS):
        raise Forbidden("You cannot change boards.")
    board = get_board(actor, board_id)
    if changes.get("slug", board.slug) != board.slug and db.session.scalar(
        select(Board.id).where(Board.slug == changes["slug"])
    ) is not None:
        raise Conflict("A board with this slug exists.", fields={"slug": ["Already taken."]})
    for key, value in changes.items():
        if key in BOARD_FIELDS:
            setattr(board, key, value)
    db.session.flush()
    audit(actor.id, "forums.board.update", "board", board.id, details={k: changes[k] for k in sorted(changes)})
    return board


# --------------------------------------------------------------------------- posting limits


def check_posting_limits(user: User, *, first: bool, now: datetime) -> None:
    """Raise 429 when ``user`` is over their tier's posting limits (staff: moderators and
    bulletin posters, are exempt).

    Counts the member's posts of the rolling day in SQL.  The member's row is locked first
    (``FOR UPDATE`` on PostgreSQL; SQLite write transactions are already serialised), so two
    concurrent posts cannot both slip under the limit.
    """
    if is_staff(user) or has_permission(user, POST_BULLETIN):
        return
    limits = benefits_for(user.tier)["posting_limits"]
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    since = now - DAY
    row = db.session.execute(
        select(
            func.count().filter(Post.is_first.is_(True)),
            func.count().filter(Post.is_first.is_(False)),
            func.max(Post.created_at),
            func.min(case((Post.is_first.is_(True), Post.created_at))),
            func.min(case((Post.is_first.is_(False), Post.created_at))),
        ).where(Post.author_id == user.id, Post.created_at > since)
    ).one()
    threads, replies, last_at, oldest_thread, oldest_reply = row
    gap = limits.get("min_seconds_between_posts") or 0
    if gap and last_at is not None and (now - last_at).total_seconds() < gap:
        wait = gap - (now - last_at).total_seconds()
        _too_many(f"Please wait {int(wait) + 1} seconds between posts.", wait)
    per_day = limits.get("threads_per_day" if first else "replies_per_day")
    done, oldest = (threads, oldest_thread) if first else (replies, oldest_reply)
    if per_day is not None and done >= per_day:
        what = "threads" if first else "replies"
        wait = ((oldest or now) + DAY - now).total_seconds()
        _too_many(
            f"You can start at most {per_day} {what} a day at your tier; try again later.", wait,
        )


def _too_many(message: str, wait_seconds: float) -> None:
    retry = max(int(wait_seconds) + 1, 1)
    raise TooManyRequests(message, headers={"Retry-After": str(retry)}, fields={"retry_after": retry})


# --------------------------------------------------------------------------- threads and posts


def _clean_body(body: str) -> tuple[str, str]:
    if len(body or "") > BODY_MAX:
        raise ValidationError("The post is too long.", fields={"body": [f"At most {BODY_MAX} characters."]})
    cleaned = sanitize.clean_html(body)
    plain = sanitize.to_text(cleaned)
    if not plain:
        raise ValidationError("The post is empty.", fields={"body": ["Write something."]})
    return cleaned, plain


def _clean_title(title: str) -> str:
    cleaned = sanitize.clean_line(title)
    if not cleaned:
        raise ValidationError("A title is required.", fields={"title": ["Write a title."]})
    return cleaned[:200]


def _award(member_id: int, kind: str, key: str, source_type: str, source_id: int) -> None:
    record_interaction(member_id, kind, key=key, source_type=source_type, source_id=source_id)


def create_thread(author: User, board_id: int, title: str, body: str) -> Thread:
    board = get_board(author, board_id)
    _check_can_post(author)
    if board.kind == "bulletin" and not has_permission(author, POST_BULLETIN):
        raise Forbidden("Only staff start threads on this bulletin board.")
    title = _clean_title(title)
    cleaned, plain = _clean_body(body)
    now = utcnow()
    check_posting_limits(author, first=True, now=now)
    thread = Thread(board_id=board.id, author_id=author.id, title=title, last_activity_at=now, created_at=now)
    db.session.add(thread)
    db.session.flush()
    post = Post(
        thread_id=thread.id, author_id=author.id, is_first=True, body=cleaned, search_text=f"{title} {plain}",
        created_at=now,
    )
    db.session.add(post)
    db.session.flush()
    thread.last_post_id = post.id
    db.session.execute(
        update(Board).where(Board.id == board.id).values(
            thread_count=Board.thread_count + 1, last_activity_at=_later(Board.last_activity_at, now)
        )
    )
    _award(author.id, "post", f"post:{post.id}", "post", post.id)
    db.session.flush()
    return thread


def get_thread(user: User, thread_id: int) -> tuple[Thread, Board]:
    """The thread and its board, or NotFound (missing, deleted, or on a board ``user`` cannot see)."""
    thread, board, *_ = _load_thread(user, thread_id)
    return thread, board


def _load_thread(user: User, thread_id: int, *extra, statement=None) -> tuple:
    """``(Thread, Board, *extra columns)`` for a thread ``user`` may see, in one query.

    ``statement`` is a prebuilt form of the same query taking the id as ``thread_id``.
    """
    if statement is None:
        statement = select(Thread, Board, *extra).join(Board, Board.id == Thread.board_id).where(
            Thread.id == bindparam("thread_id"))
    row = db.session.execute(statement, {"thread_id": thread_id}).first()
    if row is None:
        raise NotFound("No such thread.")
    thread, board = row[0], row[1]
    if not can_read_board(user, board) or (thread.deleted_at is not None and not is_staff(user)):
        raise NotFound("No such thread.")
    return tuple(row)


def reply(author: User, thread_id: int, body: str, quote_post_id: int | None = None) -> Post:
    thread, board = get_thread(author, thread_id)
    _check_can_post(author)
    if thread.deleted_at is not None:
        raise Conflict("This thread is deleted.", code="thread_deleted")
    if thread.locked and not is_staff(author):
        raise Conflict("This thread is locked.", code="thread_locked")
    if board.kind == "bulletin" and not board.members_can_reply and not has_permission(author, POST_BULLETIN):
        raise Forbidden("Members can only read this bulletin board.")
    if quote_post_id is not None:
        quoted = db.session.get(Post, quote_post_id)
        if quoted is None or quoted.thread_id != thread.id or quoted.state != "visible":
            raise ValidationError(
                "You can only quote a visible post of this thread.", fields={"quote_post_id": ["Not quotable."]}
            )
    cleaned, plain = _clean_body(body)
    now = utcnow()
    check_posting_limits(author, first=False, now=now)
    post = Post(
        thread_id=thread.id, author_id=author.id, body=cleaned, search_text=plain, quote_post_id=quote_post_id,
        created_at=now,
    )
    db.session.add(post)
    db.session.flush()
    db.session.execute(
        update(Thread).where(Thread.id == thread.id).values(
            reply_count=Thread.reply_count + 1,
            last_activity_at=_later(Thread.last_activity_at, now),
            last_post_id=case(
                (or_(Thread.last_post_id.is_(None), Thread.last_post_id < post.id), post.id),
                else_=Thread.last_post_id,
            ),
        )
    )
    db.session.execute(
        update(Board).where(Board.id == board.id).values(last_activity_at=_later(Board.last_activity_at, now))
    )
    _award(author.id, "reply", f"post:{post.id}", "post", post.id)
    if thread.author_id != author.id:
        notify(
            thread.author_id, "forums.reply",
            {"thread_id": thread.id, "post_id": post.id, "by": author.display_name, "title": thread.title},
            dedupe_key=f"forums.reply:{post.id}",
        )
    db.session.flush()
    return post


def list_threads(user: User, board_id: int, page: int, per_page: int) -> tuple[Board, list, int]:
    """One page of a board: pinned threads first, then by last activity.  Rows are
    ``(Thread, author display name)``."""
    board = get_board(user, board_id)
    where = [Thread.board_id == board.id]
    if not is_staff(user):
        where.append(Thread.deleted_at.is_(None))
    # A separate COUNT (index only) rather than a window count: the window would make the
    # database build every row of the board before applying the LIMIT.
    total = db.session.scalar(select(func.count()).select_from(Thread).where(*where))
    rows = db.session.execute(
        select(Thread, User.display_name)
        .join(User, User.id == Thread.author_id)
        .where(*where)
        .order_by(Thread.pinned.desc(), Thread.last_activity_at.desc(), Thread.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return board, rows, total


@dataclass
class ThreadPage:
    thread: Thread
    board: Board
    posts: list  # Row objects with the columns of ``_thread_page_statement``
    total: int


@functools.cache
def _thread_page_statements(staff: bool):
    """The page's statements, built once per process: constructing a statement with aliased
    joins costs more than running it, and the thread page is the forums' hottest read.

    Two round trips in all: the thread with its board and post count (a correlated count rides
    along), then the page of posts with their authors, quotes and whether the reader liked each.
    Returns ``(thread statement, page statement)``.
    """
    visible = [Post.hidden_at.is_(None), Post.deleted_at.is_(None)]
    count = (
        select(func.count()).select_from(Post)
        .where(Post.thread_id == Thread.id, *([] if staff else visible))
        .correlate(Thread)
        .scalar_subquery()
    )
    quoted, quoted_author = aliased(Post), aliased(User)
    quote_visible = quoted.hidden_at.is_(None) & quoted.deleted_at.is_(None)
    liked = (
        select(Reaction.id)
        .where(Reaction.post_id == Post.id, Reaction.member_id == bindparam("member_id"))
        .exists()
    )
    page = (
        select(
            Post.id, Post.thread_id, Post.author_id, Post.is_first, Post.body, Post.like_count, Post.edit_count,
            Post.edited_at, Post.created_at, Post.quote_post_id, Post.hidden_at, Post.deleted_at,
            User.display_name.label("author_name"), User.tier.label("author_tier"),
            quoted_author.display_name.label("quote_author_name"),
            case((quote_visible, quoted.search_text), else_=None).label("quote_text"),
            liked.label("liked"),
        )
        .join(User, User.id == Post.author_id)
        .outerjoin(quoted, quoted.id == Post.quote_post_id)
        .outerjoin(quoted_author, quoted_author.id == quoted.author_id)
        .where(Post.thread_id == bindparam("thread_id"), *([] if staff else visible))
        .order_by(Post.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    thread = select(Thread, Board, count).join(Board, Board.id == Thread.board_id).where(
        Thread.id == bindparam("thread_id"))
    return thread, page


def thread_page(user: User, thread_id: int, page: int, per_page: int) -> ThreadPage:
    """A thread and one page of its posts in two queries, whatever the thread's length.

    Members see visible posts; staff also see hidden and deleted ones (with their state).
    """
    thread_stmt, page_stmt = _thread_page_statements(is_staff(user))
    thread, board, total = _load_thread(user, thread_id, statement=thread_stmt)
    rows = db.session.execute(
        page_stmt,
        {"thread_id": thread.id, "member_id": user.id, "limit": per_page, "offset": (page - 1) * per_page},
    ).all()
    return ThreadPage(thread, board, rows, total)


# The thread page for the API (``thread_page_rows``): plain columns, no entities.  The thread's
# columns, then the board's (labelled ``board_*``), then the visible-post count.
PAGE_THREAD_COLUMNS = ("id", "board_id", "author_id", "title", "pinned", "locked", "reply_count",
                       "last_activity_at", "last_post_id", "deleted_at", "created_at")
PAGE_BOARD_COLUMNS = ("id", "slug", "name", "description", "kind", "members_can_reply", "min_tier",
                      "required_role", "flag_threshold", "position", "thread_count", "last_activity_at")


@functools.cache
def _thread_header_statement(staff: bool):
    visible = [Post.hidden_at.is_(None), Post.deleted_at.is_(None)]
    count = (
        select(func.count()).select_from(Post)
        .where(Post.thread_id == Thread.id, *([] if staff else visible))
        .correlate(Thread)
        .scalar_subquery()
    )
    return (
        select(*(getattr(Thread, c) for c in PAGE_THREAD_COLUMNS),
               *(getattr(Board, c).label(f"board_{c}") for c in PAGE_BOARD_COLUMNS), count)
        .join(Board, Board.id == Thread.board_id)
        .where(Thread.id == bindparam("thread_id"))
    )


@dataclass
class ThreadPageRows:
    thread: tuple  # PAGE_THREAD_COLUMNS
    board: tuple  # PAGE_BOARD_COLUMNS
    posts: list  # rows with the columns of ``_thread_page_statements``' page statement
    total: int


def thread_page_rows(user: User, thread_id: int, page: int, per_page: int) -> ThreadPageRows:
    """What ``thread_page`` finds, as plain rows (the API's hottest read: no ORM entities).

    The same two queries on the session's connection, and the same visibility rules: NotFound
    for a missing thread, a deleted one (members) or one on a board ``user`` cannot read.
    """
    staff = is_staff(user)
    conn = db.session.connection()
    row = conn.execute(_thread_header_statement(staff), {"thread_id": thread_id}).first()
    if row is None:
        raise NotFound("No such thread.")
    n_thread, n_board = len(PAGE_THREAD_COLUMNS), len(PAGE_BOARD_COLUMNS)
    thread, board = tuple(row[:n_thread]), tuple(row[n_thread:n_thread + n_board])
    access = _BoardAccess(min_tier=board[PAGE_BOARD_COLUMNS.index("min_tier")],
                          required_role=board[PAGE_BOARD_COLUMNS.index("required_role")])
    deleted = thread[PAGE_THREAD_COLUMNS.index("deleted_at")] is not None
    if not can_read_board(user, access) or (deleted and not staff):
        raise NotFound("No such thread.")
    _thread_stmt, page_stmt = _thread_page_statements(staff)
    rows = conn.execute(
        page_stmt, {"thread_id": thread_id, "member_id": user.id, "limit": per_page, "offset": (page - 1) * per_page},
    ).all()
    return ThreadPageRows(thread, board, rows, row[-1])


@dataclass(frozen=True)
class _BoardAccess:
    """The two board settings ``can_read_board`` reads."""

    min_tier: str
    required_role: str | None


def get_post(user: User, post_id: int) -> tuple[Post, Thread, Board]:
    """A post ``user`` may see (members: visible posts of visible threads), or NotFound."""
    post = db.session.get(Post, post_id)
    if post is None:
        raise NotFound("No such post.")
    thread, board = get_thread(user, post.thread_id)
    if post.state != "visible" and not is_staff(user):
        raise NotFound("No such post.")
    return post, thread, board


def edit_post(actor: User, post_id: int, body: str | None, title: str | None) -> Post:
    """Edit a post's body (and a first post's thread title); the previous text becomes a revision."""
    post, thread, _board = get_post(actor, post_id)
    staff = is_staff(actor)
    if post.author_id != actor.id and not staff:
        raise Forbidden("You can only edit your own posts.")
    if not staff:
        _check_can_post(actor)
        if thread.locked:
            raise Conflict("This thread is locked.", code="thread_locked")
    if title is not None and not post.is_first:
        raise ValidationError("Only a thread's first post has a title.", fields={"title": ["Not allowed here."]})
    # Concurrent edits queue up here, so each revision keeps the body it really replaced.
    db.session.refresh(post, with_for_update=True)
    db.session.refresh(thread, with_for_update=True)
    new_title = _clean_title(title) if title is not None else thread.title
    new_body, plain = _clean_body(body) if body is not None else (post.body, sanitize.to_text(post.body))
    if new_body == post.body and new_title == thread.title:
        return post
    db.session.add(PostRevision(
        post_id=post.id, editor_id=actor.id, body=post.body,
        title=thread.title if new_title != thread.title else None,
    ))
    post.body = new_body
    post.search_text = f"{new_title} {plain}" if post.is_first else plain
    post.edited_at = utcnow()
    post.edit_count = Post.edit_count + 1
    thread.title = new_title
    if post.author_id != actor.id:
        audit(actor.id, "forums.post.edit", "post", post.id, details={"author_id": post.author_id})
    db.session.flush()
    return post


def list_revisions(actor: User, post_id: int) -> list[PostRevision]:
    post, _thread, _board = get_post(actor, post_id)
    if post.author_id != actor.id and not is_staff(actor):
        raise Forbidden("Only the author and moderators see a post's history.")
    return list(db.session.scalars(
        select(PostRevision).where(PostRevision.post_id == post.id).order_by(PostRevision.id.desc())
    ))


def _visible_to_removed(post: Post, *, deleted_by: int | None = None, hidden_reason: str | None = None) -> bool:
    """visible -> deleted (``deleted_by``) or -> hidden (``hidden_reason``); True if this call did it."""
    now = utcnow()
    values = {"deleted_at": now, "deleted_by_id": deleted_by} if hidden_reason is None else {
        "hidden_at": now, "hidden_reason": hidden_reason
    }
    changed = db.session.execute(
        update(Post).where(Post.id == post.id, Post.hidden_at.is_(None), Post.deleted_at.is_(None)).values(**values)
    ).rowcount == 1
    if changed and not post.is_first:
        db.session.execute(
            update(Thread).where(Thread.id == post.thread_id).values(reply_count=Thread.reply_count - 1)
        )
    db.session.refresh(post)
    return changed


def _removed_to_visible(post: Post, *, only_flag_hidden_below: int | None = None) -> bool:
    """hidden/deleted -> visible; with ``only_flag_hidden_below``, only a post hidden by flags
    whose score has fallen below that threshold.  True if this call did it."""
    where = [Post.id == post.id, or_(Post.hidden_at.is_not(None), Post.deleted_at.is_not(None))]
    if only_flag_hidden_below is not None:
        where += [Post.hidden_reason == "flags", Post.deleted_at.is_(None), Post.flag_score < only_flag_hidden_below]
    changed = db.session.execute(
        update(Post).where(*where).values(hidden_at=None, hidden_reason=None, deleted_at=None, deleted_by_id=None)
    ).rowcount == 1
    if changed and not post.is_first:
        db.session.execute(
            update(Thread).where(Thread.id == post.thread_id).values(reply_count=Thread.reply_count + 1)
        )
    db.session.refresh(post)
    return changed


def delete_own_post(actor: User, post_id: int) -> Post:
    """The author removes their post (soft: moderators still see it).  A thread's first post
    can only go with its thread, which the author may delete while it has no replies."""
    post, thread, board = get_post(actor, post_id)
    if post.author_id != actor.id:
        raise Forbidden("You can only delete your own posts.")
    if post.is_first:
        db.session.refresh(thread, with_for_update=True)  # a reply committed meanwhile counts
        if thread.reply_count > 0:
            raise Conflict("This thread has replies; ask a moderator to remove it.", code="thread_has_replies")
        _thread_deleted(thread)
    if _visible_to_removed(post, deleted_by=actor.id):
        # Like a moderator's removal: a deleted post earns nothing (post, then delete, then
        # post again must not farm points; the cap still counts the reversed ones).
        _reverse_post_points(post.id, actor, "Post deleted by its author")
    return post


def _thread_deleted(thread: Thread) -> bool:
    changed = db.session.execute(
        update(Thread).where(Thread.id == thread.id, Thread.deleted_at.is_(None)).values(deleted_at=utcnow())
    ).rowcount == 1
    if changed:
        db.session.execute(
            update(Board).where(Board.id == thread.board_id).values(thread_count=Board.thread_count - 1)
        )
    db.session.refresh(thread)
    return changed


# --------------------------------------------------------------------------- reactions


def like(actor: User, post_id: int) -> Reaction:
    """Like a post (idempotent).  The author earns ``reaction_received``; liking one's own post
    is refused (409 ``own_post``) and changes nothing."""
    _check_can_interact(actor)
    post, _thread, _board = get_post(actor, post_id)
    if post.state != "visible":
        raise Conflict("This post is not visible.", code="post_not_visible")
    if post.author_id == actor.id:
        raise Conflict("You cannot like your own post.", code="own_post")
    existing = _reaction(actor.id, post.id)
    if existing is not None:
        return existing
    reaction = Reaction(post_id=post.id, member_id=actor.id, kind="like")
    try:
        with db.session.begin_nested():
            db.session.add(reaction)
            db.session.flush()
    except IntegrityError:  # a concurrent like by the same member won
        return _reaction(actor.id, post.id)
    db.session.execute(update(Post).where(Post.id == post.id).values(like_count=Post.like_count + 1))
    _award(post.author_id, "reaction_received", f"reaction:{reaction.id}", "reaction", reaction.id)
    db.session.flush()
    return reaction


def _reaction(member_id: int, post_id: int) -> Reaction | None:
    return db.session.scalar(
        select(Reaction).where(Reaction.member_id == member_id, Reaction.post_id == post_id, Reaction.kind == "like")
    )


def unlike(actor: User, post_id: int) -> None:
    """Take a like back; the points it gave the author are reversed (liking again earns anew,
    within the ledger's caps)."""
    _check_can_interact(actor)
    post, _thread, _board = get_post(actor, post_id)
    reaction = _reaction(actor.id, post.id)
    if reaction is None:
        return
    if db.session.execute(
        Reaction.__table__.delete().where(Reaction.__table__.c.id == reaction.id)
    ).rowcount == 1:
        db.session.execute(update(Post).where(Post.id == post.id).values(like_count=Post.like_count - 1))
        reverse_source("reaction", reaction.id, reason="Like withdrawn", actor_id=actor.id)
    db.session.expunge(reaction)


# --------------------------------------------------------------------------- search

_TERM = re.compile(r"\w+", re.UNICODE)


def search(user: User, q: str, board_id: int | None, page: int, per_page: int) -> tuple[list, int]:
    """Full-text search over visible posts (and thread titles) of boards ``user`` may read.

    Every term must match (AND).  SQLite uses the FTS5 table, PostgreSQL the ``ix_fts_`` GIN
    index; both tokenise without stemming so results agree across backends.
    Rows are ``(Post, Thread.title, Thread.board_id, author display name)``, newest first.
    """
    terms = _TERM.findall(q or "")[:SEARCH_MAX_TERMS]
    if not terms:
        raise ValidationError("Enter words to search for.", fields={"q": ["No searchable words."]})
    boards = readable_board_ids(user)
    if board_id is not None:
        if board_id not in boards:
            raise NotFound("No such board.")
        boards = [board_id]
    if db.session.get_bind().dialect.name == "postgresql":
        match = func.to_tsvector(literal_column("'simple'"), Post.search_text).op("@@")(
            func.plainto_tsquery(literal_column("'simple'"), " ".join(terms))
        )
    else:
        fts_query = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
        match = Post.id.in_(
            select(literal_column("rowid")).select_from(text("forum_search_fts"))
            .where(text("forum_search_fts MATCH :fts_query").bindparams(fts_query=fts_query))
        )
    where = [
        match, Thread.board_id.in_(boards), Thread.deleted_at.is_(None),
        Post.hidden_at.is_(None), Post.deleted_at.is_(None),
    ]
    base = select(Post.id).join(Thread, Thread.id == Post.thread_id).where(*where)
    total = db.session.scalar(select(func.count()).select_from(base.subquery()))
    rows = db.session.execute(
        select(Post, Thread.title, Thread.board_id, User.display_name)
        .join(Thread, Thread.id == Post.thread_id)
        .join(User, User.id == Post.author_id)
        .where(*where)
        .order_by(Post.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return rows, total


def excerpt(text_: str | None) -> str | None:
    if text_ is None:
        return None
    return text_ if len(text_) <= EXCERPT_CHARS else text_[: EXCERPT_CHARS - 1] + "…"


# --------------------------------------------------------------------------- flags


def flag_weight(user: User) -> int:
    """A flag from a higher-tier member weighs more: aware 1 … advocate 5."""
    return 1 + tier_rank(user.tier)


def flag_post(actor: User, post_id: int, reason: str, note: str = "") -> Flag:
    """Report a post.  When the post's flag score reaches its board's threshold, with flags from
    at least ``FLAG_MIN_DISTINCT_FLAGGERS`` members, it is hidden at once, pending a moderator's
    review; one heavy flag (an advocate's weighs 5) is not enough.  Staff posts are never
    hidden by flags (they wait for a moderator)."""
    _check_can_interact(actor)
    post, thread, board = get_post(actor, post_id)
    if post.author_id == actor.id:
        raise Conflict("You cannot flag your own post.", code="own_post")
    if db.session.scalar(select(Flag.id).where(Flag.post_id == post.id, Flag.flagger_id == actor.id)):
        raise Conflict("You already flagged this post.", code="already_flagged")
    flag = Flag(post_id=post.id, flagger_id=actor.id, reason=reason, note=note or "", weight=flag_weight(actor))
    try:
        with db.session.begin_nested():
            db.session.add(flag)
            db.session.flush()
    except IntegrityError as exc:
        raise Conflict("You already flagged this post.", code="already_flagged") from exc
    db.session.execute(update(Post).where(Post.id == post.id).values(flag_score=Post.flag_score + flag.weight))
    hidden = _may_auto_hide(post) and db.session.execute(
        update(Post)
        .where(Post.id == post.id, Post.hidden_at.is_(None), Post.deleted_at.is_(None),
               Post.flag_score >= board.flag_threshold)
        .values(hidden_at=utcnow(), hidden_reason="flags")
    ).rowcount == 1
    if hidden:
        if not post.is_first:
            db.session.execute(
                update(Thread).where(Thread.id == thread.id).values(reply_count=Thread.reply_count - 1)
            )
        audit(None, "forums.post.auto_hide", "post", post.id,
              reason="Flag score reached the board's threshold", details={"threshold": board.flag_threshold})
        notify(post.author_id, "forums.post_hidden", {"post_id": post.id, "thread_id": thread.id},
               dedupe_key=f"forums.post_hidden:{post.id}:{flag.id}")
        webhooks.publish("post.moderated", {"post_id": post.id, "thread_id": thread.id, "author_id": post.author_id,
                         "action": "hide", "by": "flags", "moderator_id": None, "reason": ""})
    db.session.refresh(post)
    return flag


def _may_auto_hide(post: Post) -> bool:
    from flask import current_app

    if db.session.scalar(select(UserRole.user_id).where(UserRole.user_id == post.author_id).limit(1)) is not None:
        return False  # a staff post (announcements): only a moderator hides it
    flaggers = db.session.scalar(
        select(func.count()).select_from(Flag).where(Flag.post_id == post.id, Flag.status == "open")
    )
    return flaggers >= int(current_app.config.get("FLAG_MIN_DISTINCT_FLAGGERS", 2))


def list_flags(status: str, page: int, per_page: int) -> tuple[list, int]:
    """The review queue: rows ``(Flag, Post, Thread.title, Thread.board_id, flagger name)``, oldest first."""
    where = [Flag.status == status]
    total = db.session.scalar(select(func.count()).select_from(Flag).where(*where))
    rows = db.session.execute(
        select(Flag, Post, Thread.title, Thread.board_id, User.display_name)
        .join(Post, Post.id == Flag.post_id)
        .join(Thread, Thread.id == Post.thread_id)
        .join(User, User.id == Flag.flagger_id)
        .where(*where)
        .order_by(Flag.id if status == "open" else Flag.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return rows, total


def resolve_flag(actor: User, flag_id: int, decision: str, note: str = "") -> Flag:
    """Agree (the post stays hidden, or is hidden now) or disagree (its weight leaves the post's
    score; a post hidden by flags comes back once the score is under the threshold again)."""
    flag = db.session.get(Flag, flag_id)
    if flag is None:
        raise NotFound("No such flag.")
    status = {"agree": "agreed", "disagree": "disagreed"}[decision]
    if db.session.execute(
        update(Flag).where(Flag.id == flag.id, Flag.status == "open")
        .values(status=status, resolved_by_id=actor.id, resolved_at=utcnow())
    ).rowcount != 1:
        raise Conflict("This flag is already resolved.", code="already_resolved")
    post = db.session.get(Post, flag.post_id)
    thread = db.session.get(Thread, post.thread_id)
    board = db.session.get(Board, thread.board_id)
    if decision == "agree":
        # A post the flags already hid is now hidden by the moderator's decision: withdrawing
        # other flags later must not bring it back.
        db.session.execute(
            update(Post).where(Post.id == post.id, Post.hidden_reason == "flags").values(hidden_reason="moderator")
        )
        if _visible_to_removed(post, hidden_reason="moderator"):
            notify(post.author_id, "forums.post_hidden", {"post_id": post.id, "thread_id": thread.id},
                   dedupe_key=f"forums.post_hidden:{post.id}:flag:{flag.id}")
            webhooks.publish("post.moderated", {"post_id": post.id, "thread_id": thread.id,
                             "author_id": post.author_id, "action": "hide", "by": "moderator",
                             "moderator_id": actor.id, "reason": note or ""})
    else:
        db.session.execute(update(Post).where(Post.id == post.id).values(flag_score=Post.flag_score - flag.weight))
        _removed_to_visible(post, only_flag_hidden_below=board.flag_threshold)
    audit(actor.id, f"forums.flag.{decision}", "flag", flag.id, reason=note,
          details={"post_id": post.id, "flag_reason": flag.reason})
    db.session.refresh(flag)
    return flag


# --------------------------------------------------------------------------- moderation


def _reverse_post_points(post_id: int, actor: User, reason: str) -> None:
    """A removed post earns nothing: reverse its own award and the likes it received."""
    reverse_source("post", post_id, reason=reason, actor_id=actor.id)
    for reaction_id in db.session.scalars(select(Reaction.id).where(Reaction.post_id == post_id)):
        reverse_source("reaction", reaction_id, reason=reason, actor_id=actor.id)


def moderate_post(actor: User, post_id: int, action: str, reason: str) -> Post:
    """hide / restore / delete a post.  Deleting reverses its points; restoring clears its open
    flags (the moderator has reviewed it) and its flag score."""
    post = db.session.get(Post, post_id)
    if post is None:
        raise NotFound("No such post.")
    changed = False
    if action == "hide":
        changed = _visible_to_removed(post, hidden_reason="moderator")
    elif action == "restore":
        changed = _removed_to_visible(post)
        if changed:
            db.session.execute(
                update(Flag).where(Flag.post_id == post.id, Flag.status == "open")
                .values(status="disagreed", resolved_by_id=actor.id, resolved_at=utcnow())
            )
            db.session.execute(update(Post).where(Post.id == post.id).values(flag_score=0))
            db.session.refresh(post)
    elif action == "delete":
        changed = _visible_to_removed(post, deleted_by=actor.id)
        if not changed:  # a hidden post can still be deleted
            changed = db.session.execute(
                update(Post).where(Post.id == post.id, Post.deleted_at.is_(None))
                .values(deleted_at=utcnow(), deleted_by_id=actor.id)
            ).rowcount == 1
            db.session.refresh(post)
        if changed:
            db.session.execute(
                update(Flag).where(Flag.post_id == post.id, Flag.status == "open")
                .values(status="agreed", resolved_by_id=actor.id, resolved_at=utcnow())
            )
            _reverse_post_points(post.id, actor, reason or "Post removed by a moderator")
    if not changed:
        raise Conflict(f"The post is already {post.state}; nothing to {action}.", code="no_change")
    audit(actor.id, f"forums.post.{action}", "post", post.id, reason=reason,
          details={"thread_id": post.thread_id, "author_id": post.author_id})
    webhooks.publish("post.moderated", {"post_id": post.id, "thread_id": post.thread_id, "author_id": post.author_id,
                     "action": action, "by": "moderator", "moderator_id": actor.id, "reason": reason or ""})
    if action != "restore":
        event = {"hide": "hidden", "delete": "deleted"}[action]
        notify(post.author_id, f"forums.post_{event}", {"post_id": post.id, "reason": reason},
               dedupe_key=f"forums.post_{event}:{post.id}:{utcnow().isoformat()}")
    return post


_THREAD_FLAGS = {"lock": ("locked", True), "unlock": ("locked", False), "pin": ("pinned", True),
                 "unpin": ("pinned", False)}


def moderate_thread(actor: User, thread_id: int, action: str, reason: str, board_id: int | None = None) -> Thread:
    """lock / unlock / pin / unpin / move / delete / restore a thread."""
    thread = db.session.get(Thread, thread_id)
    if thread is None:
        raise NotFound("No such thread.")
    details: dict = {"board_id": thread.board_id}
    if action in _THREAD_FLAGS:
        column, value = _THREAD_FLAGS[action]
        changed = db.session.execute(
            update(Thread).where(Thread.id == thread.id, getattr(Thread, column).is_(not value))
            .values(**{column: value})
        ).rowcount == 1
    elif action == "move":
        if board_id is None:
            raise ValidationError("Choose the board to move to.", fields={"board_id": ["Required to move."]})
        target = db.session.get(Board, board_id)
        if target is None:
            raise ValidationError("No such board.", fields={"board_id": ["Unknown board."]})
        old_board = thread.board_id
        changed = db.session.execute(
            update(Thread).where(Thread.id == thread.id, Thread.board_id == old_board, Thread.board_id != target.id)
            .values(board_id=target.id)
        ).rowcount == 1
        if changed and thread.deleted_at is None:
            db.session.execute(
                update(Board).where(Board.id == old_board).values(thread_count=Board.thread_count - 1)
            )
            db.session.execute(
                update(Board).where(Board.id == target.id).values(
                    thread_count=Board.thread_count + 1,
                    last_activity_at=_later(Board.last_activity_at, thread.last_activity_at),
                )
            )
        details = {"from_board_id": old_board, "to_board_id": target.id}
    elif action == "delete":
        changed = _thread_deleted(thread)
        if changed:
            for post_id in db.session.scalars(select(Post.id).where(Post.thread_id == thread.id)):
                _reverse_post_points(post_id, actor, reason or "Thread removed by a moderator")
    elif action == "restore":
        changed = db.session.execute(
            update(Thread).where(Thread.id == thread.id, Thread.deleted_at.is_not(None)).values(deleted_at=None)
        ).rowcount == 1
        if changed:
            db.session.execute(
                update(Board).where(Board.id == thread.board_id).values(thread_count=Board.thread_count + 1)
            )
    else:  # the schema allows only the actions above
        raise ValidationError("Unknown action.", fields={"action": ["Unknown."]})
    if not changed:
        raise Conflict(f"Nothing to {action}: the thread is already in that state.", code="no_change")
    audit(actor.id, f"forums.thread.{action}", "thread", thread.id, reason=reason, details=details)
    db.session.refresh(thread)
    return thread


def sanction_member(
    actor: User, member_id: int, kind: str, reason: str, duration_hours: int | None = None
) -> Sanction:
    """Warn, silence or suspend a member until an expiry, or lift their sanctions.

    Separation of duties: nobody sanctions themselves, and only admins sanction staff (any
    staff role: moderator, marketer, redemption staff, admin); both refusals are 403 and
    audited.  A suspension makes the account read-only (``community.auth``) and revokes its
    API tokens.
    """
    member = db.session.get(User, member_id)
    if member is None:
        raise NotFound("No such member.")
    if member.id == actor.id:
        refuse_self_dealing(actor, "forums.member.sanction", "user", member.id, "You cannot sanction yourself.",
                            code="self_sanction")
    if member.roles & set(GRANTABLE_ROLES) and not actor.has_role("admin"):
        refuse(actor, "forums.member.sanction", "user", member.id, "Only admins can sanction staff.",
               code="staff_sanction_forbidden", details={"kind": kind, "target_roles": sorted(member.roles)})
    expires_at = None
    if kind in ("silence", "suspend"):
        if duration_hours is None:
            raise ValidationError("Give the sanction a duration.", fields={"duration_hours": ["Required."]})
        expires_at = utcnow() + timedelta(hours=duration_hours)
    if kind == "silence":
        member.silenced_until = expires_at
    suspended_before = member.suspended_until
    if kind == "suspend":
        member.suspended_until = expires_at
    elif kind == "lift":
        member.silenced_until = None
        member.suspended_until = None
    if member.suspended_until != suspended_before:
        member_suspension_changed.send(member)
    if kind == "suspend":
        revoke_all_tokens(member.id)
    sanction = Sanction(member_id=member.id, moderator_id=actor.id, kind=kind, reason=reason, expires_at=expires_at)
    db.session.add(sanction)
    db.session.flush()
    audit(actor.id, f"forums.member.{kind}", "user", member.id, reason=reason,
          details={"expires_at": rfc3339(expires_at), "sanction_id": sanction.id})
    notify(
        member.id, f"forums.sanction_{kind}",
        {"reason": reason, "expires_at": rfc3339(expires_at)},
        dedupe_key=f"forums.sanction:{sanction.id}",
    )
    return sanction


def list_sanctions(member_id: int) -> list[Sanction]:
    if db.session.get(User, member_id) is None:
        raise NotFound("No such member.")
    return list(db.session.scalars(
        select(Sanction).where(Sanction.member_id == member_id).order_by(Sanction.id.desc())
    ))
