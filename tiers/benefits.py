"""Benefits per tier: the earning multiplier, posting limits and focus-group priority.

Other domains read benefits only through ``benefits_for(tier)``, so where the values live
(code defaults here, or admin-edited rows) stays the tiers domain's business.
"""

from __future__ import annotations

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


def benefits_for(tier: str | None) -> dict:
    """The benefits of ``tier`` (unknown or missing counts as the lowest tier)."""
    return DEFAULT_BENEFITS.get(tier or "aware", DEFAULT_BENEFITS["aware"])
