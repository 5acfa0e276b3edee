"""The one place that turns member-supplied HTML into safe HTML (with bleach), at write time.

Bodies keep a small allowlist: paragraphs, line breaks, emphasis, links, lists, code and
quotes.  Everything else is stripped (its text survives, escaped); attributes other than a
link's ``href``/``title`` are dropped; links may only point at http(s) or mailto URLs and always
carry ``rel="nofollow noopener"`` (bare URLs in the text become such links too).  Storing the
cleaned HTML means every reader, API client or export sees the same safe markup.
"""

from __future__ import annotations

import html
import re
from functools import partial

from bleach.linkifier import LinkifyFilter
from bleach.sanitizer import Cleaner

ALLOWED_TAGS = frozenset(
    {"p", "br", "em", "strong", "b", "i", "u", "s", "a", "ul", "ol", "li", "code", "pre", "blockquote"}
)
ALLOWED_ATTRIBUTES = {"a": ["href", "title"]}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener"


def _set_rel(attrs: dict, new: bool = False) -> dict:
    """Every link, written by the member or linkified from a bare URL, gets our ``rel``."""
    attrs[(None, "rel")] = LINK_REL
    return attrs


_cleaner = Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    protocols=ALLOWED_PROTOCOLS,
    strip=True,
    strip_comments=True,
    filters=[partial(LinkifyFilter, callbacks=[_set_rel], skip_tags={"pre", "code"}, parse_email=False)],
)
# Tags and attributes allowed: none.  Used to derive plain text for search and excerpts.
_text_cleaner = Cleaner(tags=frozenset(), attributes={}, strip=True, strip_comments=True)

_WHITESPACE = re.compile(r"\s+")


def clean_html(text: str) -> str:
    """Member HTML -> allowlisted, safe HTML (idempotent: cleaning clean HTML changes nothing)."""
    return _cleaner.clean(text or "").strip()


def to_text(markup: str) -> str:
    """Plain text of (already cleaned) HTML, whitespace collapsed: for search and excerpts."""
    # Block tags become spaces so words in adjacent paragraphs do not run together.
    spaced = re.sub(r"<(/?(p|br|li|blockquote|pre)\b[^>]*)>", r" <\1> ", markup or "")
    return _WHITESPACE.sub(" ", html.unescape(_text_cleaner.clean(spaced))).strip()


def clean_line(text: str) -> str:
    """A plain one-line text (titles): no tags, no angle brackets, whitespace collapsed.

    Titles are stored as text, not HTML; dropping ``<`` and ``>`` as well means even a client
    that wrongly inserts a title as HTML cannot be made to build an element from it.
    """
    plain = html.unescape(_text_cleaner.clean(text or ""))
    return _WHITESPACE.sub(" ", plain.replace("<", "").replace(">", "")).strip()
