"""What the forums API accepts and returns.  Unknown input fields are rejected (422)."""

from __future__ import annotations

import marshmallow as ma

from community.models import GRANTABLE_ROLES, TIERS
from pagination import PageArgs, PageMeta

from .models import BOARD_KINDS, FLAG_REASONS
from .services import BODY_MAX, MAX_SANCTION_DAYS

Length = ma.validate.Length
OneOf = ma.validate.OneOf
Range = ma.validate.Range


# --------------------------------------------------------------------------- boards


class BoardIn(ma.Schema):
    slug = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,63}$"))
    name = ma.fields.String(required=True, validate=Length(min=1, max=120))
    description = ma.fields.String(load_default="", validate=Length(max=2000))
    kind = ma.fields.String(load_default="discussion", validate=OneOf(BOARD_KINDS))
    members_can_reply = ma.fields.Boolean(load_default=True)
    min_tier = ma.fields.String(load_default="aware", validate=OneOf(TIERS))
    required_role = ma.fields.String(load_default=None, allow_none=True, validate=OneOf(GRANTABLE_ROLES))
    flag_threshold = ma.fields.Integer(load_default=5, validate=Range(min=1, max=1000))
    position = ma.fields.Integer(load_default=0, validate=Range(min=0, max=10_000))


class BoardPatchIn(BoardIn):
    """Every field optional: only those sent change."""

    def __init__(self, *args, **kwargs):
        kwargs["partial"] = True
        super().__init__(*args, **kwargs)

    @ma.validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Send at least one field to change.", "_schema")


class BoardOut(ma.Schema):
    id = ma.fields.Integer()
    slug = ma.fields.String()
    name = ma.fields.String()
    description = ma.fields.String()
    kind = ma.fields.String()
    members_can_reply = ma.fields.Boolean()
    min_tier = ma.fields.String()
    required_role = ma.fields.String(allow_none=True)
    flag_threshold = ma.fields.Integer()
    position = ma.fields.Integer()
    thread_count = ma.fields.Integer()
    last_activity_at = ma.fields.DateTime(allow_none=True)


# --------------------------------------------------------------------------- threads and posts


class ThreadIn(ma.Schema):
    title = ma.fields.String(required=True, validate=Length(min=1, max=200))
    body = ma.fields.String(required=True, validate=Length(min=1, max=BODY_MAX))


class ReplyIn(ma.Schema):
    body = ma.fields.String(required=True, validate=Length(min=1, max=BODY_MAX))
    quote_post_id = ma.fields.Integer(load_default=None, allow_none=True)


class PostPatch(ma.Schema):
    body = ma.fields.String(validate=Length(min=1, max=BODY_MAX))
    title = ma.fields.String(validate=Length(min=1, max=200))

    @ma.validates_schema
    def _something(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Send a body or a title.", "_schema")


class ThreadOut(ma.Schema):
    id = ma.fields.Integer()
    board_id = ma.fields.Integer()
    author_id = ma.fields.Integer()
    title = ma.fields.String()
    pinned = ma.fields.Boolean()
    locked = ma.fields.Boolean()
    reply_count = ma.fields.Integer()
    last_activity_at = ma.fields.DateTime()
    last_post_id = ma.fields.Integer(allow_none=True)
    deleted = ma.fields.Function(lambda t: t.deleted_at is not None)
    created_at = ma.fields.DateTime()


class ThreadListItem(ThreadOut):
    author_name = ma.fields.String()


class ThreadListOut(ma.Schema):
    board = ma.fields.Nested(BoardOut)
    items = ma.fields.List(ma.fields.Nested(ThreadListItem))
    meta = ma.fields.Nested(PageMeta)


# Excerpts are plain text cut from a post's text (entities decoded: ``&lt;b&gt;`` reads ``<b>``);
# they are never HTML and no HTML is ever built from them: clients must escape them to show them.
EXCERPT_DOC = "Plain text, never HTML (escape it to display it): the start of the post's text."


class QuoteOut(ma.Schema):
    post_id = ma.fields.Integer()
    author_name = ma.fields.String(allow_none=True)
    excerpt = ma.fields.String(
        allow_none=True, metadata={"description": f"{EXCERPT_DOC} null when the quoted post was removed."}
    )


class PostOut(ma.Schema):
    id = ma.fields.Integer()
    thread_id = ma.fields.Integer()
    author_id = ma.fields.Integer()
    is_first = ma.fields.Boolean()
    body = ma.fields.String(metadata={"description": "Sanitised HTML"})
    state = ma.fields.String(metadata={"description": "visible, hidden or deleted (staff see the latter two)"})
    like_count = ma.fields.Integer()
    edit_count = ma.fields.Integer()
    edited_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()
    quote_post_id = ma.fields.Integer(allow_none=True)


class ThreadPagePost(PostOut):
    author_name = ma.fields.String()
    author_tier = ma.fields.String()
    liked = ma.fields.Boolean()
    quote = ma.fields.Nested(QuoteOut, allow_none=True)


class ThreadPageOut(ma.Schema):
    thread = ma.fields.Nested(ThreadOut)
    board = ma.fields.Nested(BoardOut)
    items = ma.fields.List(ma.fields.Nested(ThreadPagePost))
    meta = ma.fields.Nested(PageMeta)


class RevisionOut(ma.Schema):
    id = ma.fields.Integer()
    post_id = ma.fields.Integer()
    editor_id = ma.fields.Integer()
    body = ma.fields.String(metadata={"description": "The body before this edit"})
    title = ma.fields.String(allow_none=True, metadata={"description": "The title before this edit, if it changed"})
    created_at = ma.fields.DateTime()


class ReactionOut(ma.Schema):
    post_id = ma.fields.Integer()
    liked = ma.fields.Boolean()
    like_count = ma.fields.Integer()


class SearchArgs(PageArgs):
    q = ma.fields.String(required=True, validate=Length(min=1, max=200))
    board_id = ma.fields.Integer(load_default=None)


class SearchHit(ma.Schema):
    post_id = ma.fields.Integer()
    thread_id = ma.fields.Integer()
    board_id = ma.fields.Integer()
    thread_title = ma.fields.String()
    author_name = ma.fields.String()
    excerpt = ma.fields.String(metadata={"description": EXCERPT_DOC})
    created_at = ma.fields.DateTime()


class SearchOut(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SearchHit))
    meta = ma.fields.Nested(PageMeta)


# --------------------------------------------------------------------------- moderation


class FlagIn(ma.Schema):
    reason = ma.fields.String(required=True, validate=OneOf(FLAG_REASONS))
    note = ma.fields.String(load_default="", validate=Length(max=1000))


class FlagOut(ma.Schema):
    id = ma.fields.Integer()
    post_id = ma.fields.Integer()
    reason = ma.fields.String()
    status = ma.fields.String()
    created_at = ma.fields.DateTime()


class FlagQueueItem(FlagOut):
    """A staff view: who flagged, with what weight, and the post as it stands."""

    flagger_id = ma.fields.Integer()
    flagger_name = ma.fields.String()
    note = ma.fields.String()
    weight = ma.fields.Integer()
    resolved_by_id = ma.fields.Integer(allow_none=True)
    resolved_at = ma.fields.DateTime(allow_none=True)
    post_state = ma.fields.String()
    post_flag_score = ma.fields.Integer()
    post_excerpt = ma.fields.String(metadata={"description": EXCERPT_DOC})
    thread_id = ma.fields.Integer()
    thread_title = ma.fields.String()
    board_id = ma.fields.Integer()


class FlagQueueArgs(PageArgs):
    status = ma.fields.String(load_default="open", validate=OneOf(("open", "agreed", "disagreed")))


class FlagQueueOut(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(FlagQueueItem))
    meta = ma.fields.Nested(PageMeta)


class ResolveIn(ma.Schema):
    decision = ma.fields.String(required=True, validate=OneOf(("agree", "disagree")))
    note = ma.fields.String(load_default="", validate=Length(max=1000))


class PostActionIn(ma.Schema):
    action = ma.fields.String(required=True, validate=OneOf(("hide", "restore", "delete")))
    reason = ma.fields.String(required=True, validate=Length(min=1, max=1000))


class ThreadActionIn(ma.Schema):
    action = ma.fields.String(
        required=True, validate=OneOf(("lock", "unlock", "pin", "unpin", "move", "delete", "restore"))
    )
    reason = ma.fields.String(required=True, validate=Length(min=1, max=1000))
    board_id = ma.fields.Integer(load_default=None, allow_none=True)


class ModeratedPostOut(PostOut):
    flag_score = ma.fields.Integer()
    hidden_reason = ma.fields.String(allow_none=True)


class SanctionIn(ma.Schema):
    action = ma.fields.String(required=True, validate=OneOf(("warn", "silence", "suspend", "lift")))
    reason = ma.fields.String(required=True, validate=Length(min=1, max=1000))
    duration_hours = ma.fields.Integer(
        load_default=None, allow_none=True, validate=Range(min=1, max=MAX_SANCTION_DAYS * 24)
    )


class SanctionOut(ma.Schema):
    id = ma.fields.Integer()
    member_id = ma.fields.Integer()
    moderator_id = ma.fields.Integer()
    kind = ma.fields.String()
    reason = ma.fields.String()
    expires_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()
