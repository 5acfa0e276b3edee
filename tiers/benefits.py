"""Benefits per tier: the earning multiplier, posting limits and focus-group priority.

Other domains read benefits only through ``benefits_for(tier)``.  The defaults live here in
code; admins may override a tier's benefits (``tier_benefits`` rows, edited through
``tiers.services.set_benefits``).  The merged table is cached per application for
``CACHE_SECONDS``, so the ledger's earning rules and the forums' posting limits do not read the
database on every call; a change made in this process is visible at once, in other processes
within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import time

from flask import current_app, has_app_context
from sqlalchemy import select

from community.models import TIERS

# posting limits: None means "no limit".
DEFAULT_BENEFITS: dict[str, dict] = {
    "aware": {
        "earning_multiplier": 1.0,
        "posting_limits": {"threads_per_day": 3, "replies_per_day": 10, "min_seconds_between_posts": 30},
        "focus_group_priority": 0,
    },
    "engaged": {
        "earning_multiplier": 1.0,
        "posting_limits": {"threads_per_day": 10, "replies_per_day": 50, "min_seconds_between_posts": 15},
        "focus_group_priority": 1,
    },
    "satisfied": {
        "earning_multiplier": 1.1,
        "posting_limits": {"threads_per_day": 20, "replies_per_day": 100, "min_seconds_between_posts": 10},
        "focus_group_priority": 2,
    },
    "loyal": {
        "earning_multiplier": 1.25,
        "posting_limits": {"threads_per_day": 50, "replies_per_day": 300, "min_seconds_between_posts": 5},
        "focus_group_priority": 3,
    },
    "advocate": {
        "earning_multiplier": 1.5,
        "posting_limits": {"threads_per_day": None, "replies_per_day": None, "min_seconds_between_posts": 0},
        "focus_group_priority": 4,
    },
}
assert tuple(DEFAULT_BENEFITS) == TIERS

CACHE_SECONDS = 30
_CACHE_KEY = "tier_benefits"


def _load() -> dict[str, dict]:
    from extensions import db

    from .models import TierBenefit

    table = dict(DEFAULT_BENEFITS)
    # Callers are often midway through their own writes: reading must not flush them.
    with db.session.no_autoflush:
        for row in db.session.scalars(select(TierBenefit)):
            table[row.tier] = {
                "earning_multiplier": float(row.earning_multiplier),
                "posting_limits": dict(row.posting_limits),
                "focus_group_priority": row.focus_group_priority,
            }
    return table


def all_benefits() -> dict[str, dict]:
    """Benefits of every tier (admin overrides merged over the defaults), cached."""
    if not has_app_context():
        return DEFAULT_BENEFITS
    cache = current_app.extensions.setdefault(_CACHE_KEY, {})
    expires, table = cache.get("table", (0.0, None))
    if table is None or expires < time.monotonic():
        table = _load()
        cache["table"] = (time.monotonic() + CACHE_SECONDS, table)
    return table


def invalidate() -> None:
    """Forget the cached table (after an admin edit) so this process reads it again."""
    if has_app_context():
        current_app.extensions.get(_CACHE_KEY, {}).pop("table", None)


def benefits_for(tier: str | None) -> dict:
    """The benefits of ``tier`` (unknown or missing counts as the lowest tier)."""
    table = all_benefits()
    return table.get(tier or "aware", table["aware"])
