"""Text hygiene for identities: invisible and direction-changing characters, look-alikes.

* ``strip_invisible`` removes what renders as nothing or reorders what follows: C0/C1 control
  characters (NUL …), bidi controls (U+202A-202E, U+2066-2069, LRM/RLM/ALM), zero-width
  characters and the line/paragraph separators U+2028/U+2029/U+0085.
* ``skeleton`` maps a string to what it looks like (after Unicode TR 39's idea of a skeleton):
  NFKC (full-width ``ａ`` -> ``a``), case folded, invisible characters dropped, and every
  character that the ``confusable-homoglyphs`` data says looks like a Latin/common one replaced
  by it (Cyrillic ``а`` -> ``a``).  Two strings with one skeleton are confusable: we refuse a
  second account whose email has the skeleton of an existing one, and display names that look
  like a staff member's.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from confusable_homoglyphs import confusables

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad"
_SEPARATORS = "\u2028\u2029\u0085"
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + _ZERO_WIDTH + _SEPARATORS + "]"
)
_INVISIBLE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f" + _BIDI + _ZERO_WIDTH + _SEPARATORS + "]")
_SPACES = re.compile(r"\s+")
_LINE_SPACES = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def strip_invisible(text: str, *, one_line: bool = True) -> str:
    """``text`` without control, bidi and zero-width characters (tabs and newlines too when
    ``one_line``); whitespace runs collapse to one space for one-line values."""
    if one_line:
        spaced = _LINE_SPACES.sub(" ", text or "")  # tabs and line breaks separate words
        return _SPACES.sub(" ", _INVISIBLE_ONE_LINE.sub("", spaced)).strip()
    return _INVISIBLE.sub("", text or "")


def has_invisible(text: str) -> bool:
    return bool(_INVISIBLE_ONE_LINE.search(text or ""))


@functools.lru_cache(maxsize=4096)
def _latin_lookalike(char: str) -> str:
    if char.isascii():
        return char
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin", "common"])
    if not found:
        return char
    for glyph in found[0]["homoglyphs"]:
        if glyph["c"].isascii():
            return glyph["c"]
    return char


def skeleton(text: str, *, loose: bool = False) -> str:
    """What ``text`` looks like: equal skeletons mean the strings can be mistaken for each other.

    ``loose`` (display names) also equates look-alikes within ASCII (``rn``/``m``, ``0``/``o``,
    ``1``/``l``/``i``) and ignores spaces and punctuation; emails use the strict form, where
    ``a.b@`` and ``ab@`` are different mailboxes.
    """
    # Look-alikes are mapped before case folding: capital Cyrillic М looks like M, small м does not.
    normal = unicodedata.normalize("NFKC", strip_invisible(text))
    mapped = "".join(_latin_lookalike(c) for c in normal).casefold()
    if not loose:
        return mapped
    mapped = mapped.replace("rn", "m").replace("0", "o").replace("1", "l").replace("|", "l").replace("i", "l")
    return re.sub(r"[\W_]+", "", mapped)
