"""What each notification kind is: its category, whether it is urgent, and its template.

Categories (members choose per category and channel, except ``transactional``):

* ``transactional``: account emails and moderation notices about the member's account.
  Always sent; no unsubscribe.
* ``points_redemptions``: points expiring, referral rewards, redemption updates.
* ``tiers``: tier changes.
* ``community``: replies to the member's threads (and mentions).
* ``research``: survey and focus-group invitations, reminders and changes.
* ``marketing``: campaigns, birthday greetings, newsletters.

``DEFAULT_CHANNELS`` are the documented defaults (docs/messaging.md): every category on in-app,
email on for all but ``marketing``, which is opt-in.

*Urgent* kinds ignore quiet hours (account emails, a focus-group reminder hours before it
starts).  ``CAPPED`` categories count towards the weekly frequency cap; over the cap,
``research`` is deferred to the next free slot and ``marketing`` dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("transactional", "points_redemptions", "tiers", "community", "research", "marketing")
OPTIONAL_CATEGORIES = CATEGORIES[1:]
DEFAULT_CHANNELS: dict[str, dict[str, bool]] = {
    "transactional": {"email": True, "in_app": True},
    "points_redemptions": {"email": True, "in_app": True},
    "tiers": {"email": True, "in_app": True},
    "community": {"email": True, "in_app": True},
    "research": {"email": True, "in_app": True},
    "marketing": {"email": False, "in_app": True},
}
CAPPED = frozenset({"marketing", "research"})
# What happens to a capped message over the cap.
OVER_CAP = {"research": "defer", "marketing": "drop"}


@dataclass(frozen=True)
class Kind:
    category: str
    template: str
    urgent: bool = False


_EXACT: dict[str, Kind] = {
    "account.verify_email": Kind("transactional", "account_verify_email", urgent=True),
    "account.change_email": Kind("transactional", "account_change_email", urgent=True),
    "account.password_reset": Kind("transactional", "account_password_reset", urgent=True),
    "points.expiring": Kind("points_redemptions", "points_expiring"),
    "points.referral_rewarded": Kind("points_redemptions", "points_referral_rewarded"),
    "tiers.tier_changed": Kind("tiers", "tier_changed"),
    "forums.reply": Kind("community", "forums_reply"),
    "surveys.focus_group_reminder": Kind("research", "focus_group", urgent=True),
    "surveys.focus_group_cancelled": Kind("research", "focus_group", urgent=True),
    "surveys.focus_group_promoted": Kind("research", "focus_group"),
}
# Families of kinds named by a prefix (``rewards.redemption_<state>``, ``forums.post_<event>``,
# ``forums.sanction_<kind>``).
_PREFIXES: tuple[tuple[str, Kind], ...] = (
    ("rewards.redemption_", Kind("points_redemptions", "redemption")),
    ("forums.post_", Kind("transactional", "forums_moderation")),
    ("forums.", Kind("transactional", "forums_moderation")),  # warn / silence / suspend
    ("surveys.", Kind("research", "survey_invitation")),
    ("research.", Kind("research", "survey_invitation")),
    ("marketing.", Kind("marketing", "marketing")),
    # Journey sends: ``journeys.<category>.<template key>`` (the text travels in the payload).
    *((f"journeys.{c}.", Kind(c, "journey")) for c in ("points_redemptions", "tiers", "community", "research",
                                                       "marketing")),
)
_FALLBACK = Kind("community", "generic")


def kind_info(kind: str) -> Kind:
    """The category and template of ``kind``; unknown kinds are ``community`` with a generic text."""
    found = _EXACT.get(kind)
    if found is not None:
        return found
    for prefix, info in _PREFIXES:
        if kind.startswith(prefix):
            return info
    return _FALLBACK


def category_of(kind: str) -> str:
    return kind_info(kind).category


def _N(word: str) -> str:  # noqa: N802 - marks a word for the translation catalogue
    return word


# Words shown in emails by value (redemption states, tier names); translated at render time.
LABELS = (
    _N("pending"), _N("awaiting_fulfilment"), _N("approved"), _N("shipped"), _N("completed"), _N("fulfilled"),
    _N("cancelled"), _N("rejected"), _N("refunded"),
    _N("aware"), _N("engaged"), _N("satisfied"), _N("loyal"), _N("advocate"),
)


def category_condition(column, category: str):
    """A SQL condition on a ``kind`` column: the kind belongs to ``category`` (as ``kind_info`` says)."""
    from sqlalchemy import and_, false, not_, or_

    def matches(info_category: str):
        conds = [column.in_([k for k, v in _EXACT.items() if v.category == info_category])]
        claimed: list = [column.in_(list(_EXACT))]
        for prefix, info in _PREFIXES:
            like = column.startswith(prefix, autoescape=True)
            if info.category == info_category:
                conds.append(and_(like, not_(or_(*claimed))))
            claimed.append(like)
        if _FALLBACK.category == info_category:
            conds.append(not_(or_(*claimed)))
        return or_(*conds) if conds else false()

    return matches(category)
