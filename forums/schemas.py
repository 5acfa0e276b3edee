"""What the forums API accepts and returns.  Unknown input fields are rejected (422)."""

from __future__ import annotations

import marshmallow as ma

from community.models import GRANTABLE_ROLES, TIERS
from contract import PatchSchema, Schema, patch_of
from contract import fields as f
from pagination import PageArgs, PageMeta

from .models import BOARD_KINDS, FLAG_REASONS
from .services import BODY_MAX, MAX_SANCTION_DAYS

Length = ma.validate.Length
OneOf = ma.validate.OneOf
Range = ma.validate.Range
HTML_IN = "HTML; sanitized when stored (only the allowed tags and attributes are kept)."


# --------------------------------------------------------------------------- boards


class BoardIn(Schema):
    slug = f.String(required=True, validate=ma.validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,63}$"))
    name = f.String(required=True, validate=Length(min=1, max=120))
    description = f.String(load_default="", validate=Length(max=2000))
    kind = f.String(load_default="discussion", validate=OneOf(BOARD_KINDS))
    members_can_reply = ma.fields.Boolean(load_default=True)
    min_tier = f.String(load_default="aware", validate=OneOf(TIERS))
    required_role = f.String(load_default=None, allow_none=True, validate=OneOf(GRANTABLE_ROLES))
    flag_threshold = f.Integer(load_default=5, validate=Range(min=1, max=1000))
    position = f.Integer(load_default=0, validate=Range(min=0, max=10_000))


# Every field optional (only those sent change), at least one.
BoardPatchIn = patch_of(BoardIn, "BoardPatchIn")


class BoardOut(Schema):
    id = f.Integer()
    slug = f.String()
    name = f.String()
    description = f.String()
    kind = f.String()
    members_can_reply = ma.fields.Boolean()
    min_tier = f.String()
    required_role = f.String(allow_none=True)
    flag_threshold = f.Integer()
    position = f.Integer()
    thread_count = f.Integer()
    last_activity_at = f.DateTime(allow_none=True)


# --------------------------------------------------------------------------- threads and posts


class ThreadIn(Schema):
    title = f.String(required=True, validate=Length(min=1, max=200))
    body = ma.fields.String(required=True, validate=Length(min=1, max=BODY_MAX),
                    metadata={"description": HTML_IN})


class ReplyIn(Schema):
    body = ma.fields.String(required=True, validate=Length(min=1, max=BODY_MAX),
                    metadata={"description": HTML_IN})
    quote_post_id = f.Id(load_default=None, allow_none=True)


class PostPatch(PatchSchema):
    body = ma.fields.String(validate=Length(min=1, max=BODY_MAX), metadata={"description": HTML_IN})
    title = f.String(validate=Length(min=1, max=200))


class ThreadOut(Schema):
    id = f.Integer()
    board_id = f.Integer()
    author_id = f.Integer()
    title = f.String()
    pinned = ma.fields.Boolean()
    locked = ma.fields.Boolean()
    reply_count = f.Integer()
    last_activity_at = f.DateTime()
    last_post_id = f.Integer(allow_none=True)
    deleted = ma.fields.Function(lambda t: t.deleted_at is not None)
    created_at = f.DateTime()


class ThreadListItem(ThreadOut):
    author_name = f.String()


class ThreadListOut(Schema):
    board = ma.fields.Nested(BoardOut)
    items = ma.fields.List(ma.fields.Nested(ThreadListItem))
    meta = ma.fields.Nested(PageMeta)


# Excerpts are plain text cut from a post's text (entities decoded: ``&lt;b&gt;`` reads ``<b>``);
# they are never HTML and no HTML is ever built from them: clients must escape them to show them.
EXCERPT_DOC = "Plain text, never HTML (escape it to display it): the start of the post's text."


class QuoteOut(Schema):
    post_id = f.Integer()
    author_name = f.String(allow_none=True)
    excerpt = f.String(
        allow_none=True, metadata={"description": f"{EXCERPT_DOC} null when the quoted post was removed."}
    )


class PostOut(Schema):
    id = f.Integer()
    thread_id = f.Integer()
    author_id = f.Integer()
    is_first = ma.fields.Boolean()
    body = f.Html()
    state = f.String(metadata={"description": "visible, hidden or deleted (staff see the latter two)"})
    like_count = f.Integer()
    edit_count = f.Integer()
    edited_at = f.DateTime(allow_none=True)
    created_at = f.DateTime()
    quote_post_id = f.Integer(allow_none=True)


class ThreadPagePost(PostOut):
    author_name = f.String()
    author_tier = f.String()
    liked = ma.fields.Boolean()
    quote = ma.fields.Nested(QuoteOut, allow_none=True)


class ThreadPageOut(Schema):
    thread = ma.fields.Nested(ThreadOut)
    board = ma.fields.Nested(BoardOut)
    items = ma.fields.List(ma.fields.Nested(ThreadPagePost))
    meta = ma.fields.Nested(PageMeta)


class RevisionOut(Schema):
    id = f.Integer()
    post_id = f.Integer()
    editor_id = f.Integer()
    body = f.Html(metadata={"description": "The body before this edit"})
    title = f.String(allow_none=True, metadata={"description": "The title before this edit, if it changed"})
    created_at = f.DateTime()


class ReactionOut(Schema):
    post_id = f.Integer()
    liked = ma.fields.Boolean()
    like_count = f.Integer()


class SearchArgs(PageArgs):
    q = f.String(required=True, validate=Length(min=1, max=200))
    board_id = f.QueryId(load_default=None)


class SearchHit(Schema):
    post_id = f.Integer()
    thread_id = f.Integer()
    board_id = f.Integer()
    thread_title = f.String()
    author_name = f.String()
    excerpt = f.String(metadata={"description": EXCERPT_DOC})
    created_at = f.DateTime()


class SearchOut(Schema):
    items = ma.fields.List(ma.fields.Nested(SearchHit))
    meta = ma.fields.Nested(PageMeta)


# --------------------------------------------------------------------------- moderation


class FlagIn(Schema):
    reason = f.String(required=True, validate=OneOf(FLAG_REASONS))
    note = f.String(load_default="", validate=Length(max=1000))


class FlagOut(Schema):
    id = f.Integer()
    post_id = f.Integer()
    reason = f.String()
    status = f.String()
    created_at = f.DateTime()


class FlagQueueItem(FlagOut):
    """A staff view: who flagged, with what weight, and the post as it stands."""

    flagger_id = f.Integer()
    flagger_name = f.String()
    note = f.String()
    weight = f.Integer()
    resolved_by_id = f.Integer(allow_none=True)
    resolved_at = f.DateTime(allow_none=True)
    post_state = f.String()
    post_flag_score = f.Integer()
    post_excerpt = f.String(metadata={"description": EXCERPT_DOC})
    thread_id = f.Integer()
    thread_title = f.String()
    board_id = f.Integer()


class FlagQueueArgs(PageArgs):
    status = f.String(load_default="open", validate=OneOf(("open", "agreed", "disagreed")))


class FlagQueueOut(Schema):
    items = ma.fields.List(ma.fields.Nested(FlagQueueItem))
    meta = ma.fields.Nested(PageMeta)


class ResolveIn(Schema):
    decision = f.String(required=True, validate=OneOf(("agree", "disagree")))
    note = f.String(load_default="", validate=Length(max=1000))


class PostActionIn(Schema):
    action = f.String(required=True, validate=OneOf(("hide", "restore", "delete")))
    reason = f.String(required=True, validate=Length(min=1, max=1000))


class ThreadActionIn(Schema):
    action = f.String(
        required=True, validate=OneOf(("lock", "unlock", "pin", "unpin", "move", "delete", "restore"))
    )
    reason = f.String(required=True, validate=Length(min=1, max=1000))
    board_id = f.Id(load_default=None, allow_none=True)


class ModeratedPostOut(PostOut):
    flag_score = f.Integer()
    hidden_reason = f.String(allow_none=True)


class SanctionIn(Schema):
    action = f.String(required=True, validate=OneOf(("warn", "silence", "suspend", "lift")))
    reason = f.String(required=True, validate=Length(min=1, max=1000))
    duration_hours = f.Integer(
        load_default=None, allow_none=True, validate=Range(min=1, max=MAX_SANCTION_DAYS * 24)
    )


class SanctionOut(Schema):
    id = f.Integer()
    member_id = f.Integer()
    moderator_id = f.Integer()
    kind = f.String()
    reason = f.String()
    expires_at = f.DateTime(allow_none=True)
    created_at = f.DateTime()
