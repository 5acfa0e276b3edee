"""The tier requirements: what can be required, the shipped defaults, validation, evaluation.

A rule set says, for each tier above ``aware``, the minimum of each requirement it needs.
A member *enters* the highest tier whose every requirement is met; a member *stays* in their
tier while every requirement is met at ``keep_percent`` % of its threshold (so staying is easier
than entering), and is demoted only after ``grace_days`` below that bar.  Every metric is
counted over the last ``window_days`` days.

The same rules are evaluated in Python here (one member: progress, tests) and in SQL by
``tiers.engine`` (everyone at once); both use the integer comparisons of ``meets``.
"""

from __future__ import annotations

from dataclasses import dataclass

from community.models import TIERS
from errors import ValidationError

UPPER_TIERS = TIERS[1:]  # aware needs nothing: everyone starts there


@dataclass(frozen=True)
class Requirement:
    key: str
    description: str
    # For progress messages: "120 more points", "1 more converted referral".
    singular: str
    plural: str
    # Yes/no requirements (threshold 1) get a sentence instead of "N more ...".
    boolean: bool = False
    todo: str = ""


REQUIREMENTS: dict[str, Requirement] = {
    r.key: r
    for r in (
        Requirement("points_earned", "points earned in the window (awards minus their reversals)", "point", "points"),
        Requirement("active_weeks", "distinct weeks with at least one interaction of your own", "active week",
                    "active weeks"),
        Requirement("surveys_completed", "surveys completed", "completed survey", "completed surveys"),
        Requirement("nps_promoter", "answered a survey's NPS question with 9 or 10", "", "", boolean=True,
                    todo="answer a survey's recommendation question with 9 or 10"),
        Requirement("focus_groups_attended", "focus groups attended", "focus group attended",
                    "focus groups attended"),
        Requirement("referrals_converted", "referred members who converted", "converted referral",
                    "converted referrals"),
        Requirement("accepted_posts", "forum posts and replies whose points were not reversed by moderation",
                    "accepted forum post", "accepted forum posts"),
        Requirement("no_suspension", "no active suspension", "", "", boolean=True,
                    todo="have no active suspension"),
    )
}


@dataclass(frozen=True)
class Rules:
    """One rule set: ``requirements[tier][key] = threshold`` for the tiers above aware."""

    version: int
    requirements: dict[str, dict[str, int]]
    window_days: int = 365
    grace_days: int = 30
    keep_percent: int = 90
    note: str = ""

    def for_tier(self, tier: str) -> dict[str, int]:
        return self.requirements.get(tier, {})


DEFAULT_REQUIREMENTS: dict[str, dict[str, int]] = {
    "engaged": {"points_earned": 100, "active_weeks": 2},
    "satisfied": {"points_earned": 500, "active_weeks": 6, "surveys_completed": 1, "no_suspension": 1},
    "loyal": {"points_earned": 2000, "active_weeks": 16, "surveys_completed": 2, "accepted_posts": 5,
              "no_suspension": 1},
    "advocate": {"points_earned": 5000, "active_weeks": 26, "surveys_completed": 3, "nps_promoter": 1,
                 "focus_groups_attended": 1, "referrals_converted": 1, "accepted_posts": 20, "no_suspension": 1},
}

DEFAULT_RULES = Rules(version=1, requirements=DEFAULT_REQUIREMENTS, window_days=365, grace_days=30,
                      keep_percent=90, note="defaults shipped with Kinship")

MAX_THRESHOLD = 10_000_000


def validate(data: dict) -> dict:
    """Check a proposed rule set (already shaped by the schema); returns it normalised.

    Raises ValidationError naming each bad field, e.g. ``requirements.loyal.foo``.
    """
    errors: dict[str, list[str]] = {}
    requirements = data.get("requirements") or {}
    clean: dict[str, dict[str, int]] = {}
    for tier, reqs in requirements.items():
        if tier not in UPPER_TIERS:
            errors[f"requirements.{tier}"] = [f"Not a tier with requirements; one of {', '.join(UPPER_TIERS)}."]
            continue
        if not isinstance(reqs, dict):
            errors[f"requirements.{tier}"] = ["Must be an object of requirement: threshold."]
            continue
        clean[tier] = {}
        for key, value in reqs.items():
            req = REQUIREMENTS.get(key)
            where = f"requirements.{tier}.{key}"
            if req is None:
                errors[where] = [f"Unknown requirement; one of {', '.join(REQUIREMENTS)}."]
            elif isinstance(value, bool):
                if not req.boolean:
                    errors[where] = ["Must be a whole number."]
                elif value:
                    clean[tier][key] = 1
            elif not isinstance(value, int) or not 0 <= value <= MAX_THRESHOLD:
                errors[where] = [f"Must be a whole number from 0 to {MAX_THRESHOLD}."]
            elif req.boolean and value not in (0, 1):
                errors[where] = ["Must be true, false, 1 or 0."]
            elif value > 0:  # a zero threshold is no requirement at all
                clean[tier][key] = value
    for tier in UPPER_TIERS:
        # A tier without requirements would hold every member: surely a mistake.
        if not clean.get(tier) and f"requirements.{tier}" not in errors:
            errors[f"requirements.{tier}"] = ["Every tier above aware needs at least one requirement."]
    if errors:
        raise ValidationError("The rule set is invalid.", fields=errors)
    return {**data, "requirements": {t: clean.get(t, {}) for t in UPPER_TIERS}}


def meets(value: int, threshold: int, keep_percent: int | None = None) -> bool:
    """Entering needs ``value >= threshold``; staying needs ``value * 100 >= threshold * keep%``."""
    if keep_percent is None:
        return value >= threshold
    return value * 100 >= threshold * keep_percent


def tier_for(metrics: dict[str, int], rules: Rules, *, keep: bool = False) -> str:
    """The highest tier whose every requirement ``metrics`` meets (at the keep bar if ``keep``)."""
    factor = rules.keep_percent if keep else None
    for tier in reversed(UPPER_TIERS):
        if all(meets(metrics.get(k, 0), t, factor) for k, t in rules.for_tier(tier).items()):
            return tier
    return TIERS[0]


def progress(metrics: dict[str, int], rules: Rules, tier: str) -> dict | None:
    """What is missing to reach the tier above ``tier``, per requirement; None at the top."""
    index = TIERS.index(tier) if tier in TIERS else 0
    if index + 1 >= len(TIERS):
        return None
    target = TIERS[index + 1]
    items = []
    for key, threshold in rules.for_tier(target).items():
        req = REQUIREMENTS[key]
        current = int(metrics.get(key, 0))
        missing = max(threshold - current, 0)
        text = req.todo if req.boolean else f"{missing} more {req.singular if missing == 1 else req.plural}"
        items.append({"requirement": key, "required": threshold, "current": current, "missing": missing,
                      "met": missing == 0, "text": text})
    todo = [i["text"] for i in items if not i["met"]]
    return {"tier": target, "requirements": items,
            "summary": (", ".join(todo) + f" to reach {target}") if todo else f"all met: {target} is on its way"}
