"""Service and validation messages in the reader's language, without touching the services.

Every domain raises ``errors.AppError`` subclasses with an English message.  The literal messages
are extracted into the console's catalogue by keyword (the error class names, see
``console/babel.cfg`` and docs/console.md), so ``translate(message)`` finds them by their English
text at render time: the console's flash messages and error pages, and the API's error envelope
(``errors.localise``, by the request's language: the console's switch or ``Accept-Language``).

Messages a service builds with an f-string cannot be extracted.  ``PATTERNS`` lists the visible
ones as format strings; the English message is matched against each (a regular expression made
from the msgid), its values are translated when they are words the catalogue knows (states,
tiers, kinds), and the translated format string is filled in.  If a service rewords a message,
it simply shows in English until its pattern is updated — nothing breaks.

Field messages (``fields``) that services write as literals inside lists and marshmallow's
standard validation messages are listed in ``FIELD_MESSAGES`` for the same lookup.
"""

from __future__ import annotations

import functools
import re

from flask import has_request_context
from flask_babel import get_locale, get_translations, gettext

from .vocabulary import N_

# ``pybabel extract -k`` keywords of the console's catalogue: its own markers, the error classes
# (their first argument is the message) and ``community.services.refuse*`` (the fifth).
EXTRACT_KEYWORDS = (
    "_l", "N_", "AppError", "BadRequest", "UnsupportedMediaType", "ValidationError", "Unauthorized", "Forbidden",
    "NotFound", "Conflict", "TooManyRequests", "ServiceUnavailable", "Refused", "refuse:5", "refuse_self_dealing:5",
)

PATTERNS = (
    # forums
    N_("The post is already %(state)s; nothing to %(action)s."),
    N_("Nothing to %(action)s: the thread is already in that state."),
    N_("You can start at most %(n)s %(what)s a day at your tier; try again later."),
    # points, rewards, surveys, tiers
    N_("A %(kind)s entry cannot be reversed."),
    N_("A redemption that is %(state)s cannot become %(to)s."),
    N_("This reward needs the %(tier)s tier."),
    N_("You may redeem this reward at most %(n)s time(s)."),
    N_("Only a draft can be published; this survey is %(status)s."),
    N_("Only a published survey can be closed; this survey is %(status)s."),
    N_("After %(n)s missed sessions you can no longer sign up for focus groups."),
    N_("The rules changed meanwhile (now version %(n)s); reload and try again."),
    N_("Current version is %(n)s."),
    # requests, sessions, rate limits
    N_("Too many attempts; try again in %(n)s seconds."),
    N_("Missing or wrong %(header)s header; fetch one from GET /api/v1/auth/csrf."),
    N_("Send the body as %(types)s."),
    N_("Unsupported media type %(type)s."),
    N_("The JSON body is nested deeper than %(n)s levels."),
    # marshmallow's standard messages with values
    N_("Must be one of: %(choices)s."),
    N_("Length must be between %(min)s and %(max)s."),
    N_("Shorter than minimum length %(min)s."),
    N_("Longer than maximum length %(max)s."),
    N_("Must be greater than or equal to %(min)s and less than or equal to %(max)s."),
    N_("Must be greater than or equal to %(min)s."),
    N_("Must be less than or equal to %(max)s."),
)

FIELD_MESSAGES = (
    # marshmallow
    N_("Missing data for required field."), N_("Field may not be null."), N_("Unknown field."),
    N_("Not a valid integer."), N_("Not a valid string."), N_("Not a valid number."), N_("Not a valid boolean."),
    N_("Not a valid datetime."), N_("Not a valid date."), N_("Not a valid list."), N_("Not a valid mapping type."),
    N_("Invalid input type."), N_("Invalid value."), N_("Shorter than minimum length 1."),
    # surveys: answers
    N_("This survey has no such question."), N_("This question is required."), N_("Answer every row."),
    N_("This question was not shown for your earlier answers; leave it unanswered."),
    N_("Some answers need attention."), N_("Some answers are invalid."),
    # rewards
    N_("Tier too low."),
)


@functools.lru_cache(maxsize=64)
def _regex(msgid: str) -> re.Pattern:
    parts = re.split(r"%\((\w+)\)s", msgid)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    return re.compile(pattern, re.DOTALL)


def _english() -> bool:
    locale = get_locale()
    return locale is None or locale.language == "en"


def translate(message):
    """``message`` in the request's language (itself when there is no translation)."""
    if not isinstance(message, str) or not message or not has_request_context() or _english():
        return message
    translations = get_translations()
    found = translations.gettext(message)
    if found != message:
        return found
    for msgid in PATTERNS:
        match = _regex(msgid).fullmatch(message)
        if match:
            values = {k: translations.gettext(v) for k, v in match.groupdict().items()}
            return translations.gettext(msgid) % values
    return message


def translate_fields(fields):
    """The same for each message of an error's ``fields`` (nested lists and dicts)."""
    if isinstance(fields, dict):
        return {k: translate_fields(v) for k, v in fields.items()}
    if isinstance(fields, list | tuple):
        return [translate_fields(v) for v in fields]
    return translate(fields)


TIER_WORDS = (
    N_("%(n)s more %(what)s"), N_("point"), N_("points"), N_("active week"), N_("active weeks"),
    N_("completed survey"), N_("completed surveys"), N_("focus group attended"), N_("focus groups attended"),
    N_("converted referral"), N_("converted referrals"), N_("accepted forum post"), N_("accepted forum posts"),
    N_("answer a survey's recommendation question with 9 or 10"), N_("have no active suspension"),
    N_("threads"), N_("replies"),
)


def tier_summary(progress: dict | None) -> str:
    """The tier-progress sentence (``tiers`` builds it in English from the same items)."""
    if not progress:
        return ""
    if not has_request_context() or _english():
        return progress["summary"]
    tier = gettext(progress["tier"])
    todo = [_item(i["text"]) for i in progress["requirements"] if not i["met"]]
    if not todo:
        return gettext("all met: %(tier)s is on its way", tier=tier)
    return gettext("%(todo)s to reach %(tier)s", todo="、".join(todo), tier=tier)


def _item(text: str) -> str:
    translations = get_translations()
    found = translations.gettext(text)
    if found != text:
        return found
    match = _regex(TIER_WORDS[0]).fullmatch(text)
    if match:
        return translations.gettext(TIER_WORDS[0]) % {"n": match["n"], "what": translations.gettext(match["what"])}
    return text


def word(value) -> str:
    """A data word (a tier, a state, a condition's value) in the request's language, never
    %-formatted (member-supplied values such as tags may contain "%")."""
    text = "" if value is None else str(value)
    return get_translations().gettext(text) if text and has_request_context() else text
