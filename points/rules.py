"""Earning rules: how many points an interaction earns.

Rules are data: marketing edits ``earning_rules`` rows through the API; a kind without a row uses
``DEFAULT_RULES`` below (so a fresh install earns sensibly without any seeding).

points = floor((rule.points + value x rule.points_per_unit) x tier multiplier x campaign multiplier),
then cut to what is left of the member's daily / weekly / monthly cap for that kind.

* The tier multiplier is ``tiers.benefits.benefits_for(member.tier)["earning_multiplier"]``.
* Campaign multipliers do not stack: the highest active campaign matching the kind (and, for
  birthday campaigns, the member's birthday, set at least ``BIRTHDAY_MIN_AGE_DAYS`` before)
  applies.  A member's own multipliers (``MemberMultiplier``: a campaign of one, granted e.g. by
  a journey's ``points_multiplier`` step for a window) compete with the campaigns the same way.
* Caps count points already earned from interactions of the same kind whose ``occurred_at``
  falls in the same UTC day, ISO week (Monday first) or calendar month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Integer, cast, false, func, null, select, union_all

from extensions import db
from tiers.benefits import benefits_for

from .models import Campaign, EarningRule, Interaction, MemberMultiplier


@dataclass(frozen=True)
class Rule:
    kind: str
    points: int
    points_per_unit: Decimal = Decimal(0)
    daily_cap: int | None = None
    weekly_cap: int | None = None
    monthly_cap: int | None = None
    active: bool = True

    @property
    def has_caps(self) -> bool:
        return any(c is not None for c in (self.daily_cap, self.weekly_cap, self.monthly_cap))


DEFAULT_RULES: dict[str, Rule] = {
    r.kind: r
    for r in (
        Rule("post", 10, daily_cap=50),
        Rule("reply", 5, daily_cap=50),
        Rule("reaction_received", 1, daily_cap=20),
        Rule("survey_completed", 50, monthly_cap=500),
        # Each session sets its own attendance points; surveys passes them as the value.
        Rule("focus_group_attended", 0, points_per_unit=Decimal(1)),
        # Signing up only counts for the funnel; the conversion is what earns.
        Rule("referral_signup", 0),
        Rule("referral_converted", 200),
        Rule("purchase", 0, points_per_unit=Decimal(1)),
        Rule("refund", 0),
        Rule("profile_completed", 20),
        Rule("daily_visit", 2, daily_cap=2),
    )
}


# The columns a Rule is built from (labelled ``rule_*``), for callers that read them in their
# own statement.
_RULE_FIELDS = ("id", "points", "points_per_unit", "daily_cap", "weekly_cap", "monthly_cap", "active")
RULE_COLUMNS = tuple(EarningRule.__table__.c[name].label(f"rule_{name}") for name in _RULE_FIELDS)


def rule_for(kind: str) -> Rule:
    return rule_from_row(kind, db.session.execute(
        select(*RULE_COLUMNS).where(EarningRule.kind == kind)).first())


def rule_from_row(kind: str, row) -> Rule:
    """The rule for ``kind`` from a row holding ``RULE_COLUMNS`` (an outer join's, whose
    ``rule_id`` is None when the kind has no row: the default rule)."""
    if row is None or row.rule_id is None:
        return DEFAULT_RULES.get(kind, Rule(kind, 0))
    return Rule(
        kind=kind,
        points=row.rule_points,
        points_per_unit=Decimal(row.rule_points_per_unit or 0),
        daily_cap=row.rule_daily_cap,
        weekly_cap=row.rule_weekly_cap,
        monthly_cap=row.rule_monthly_cap,
        active=row.rule_active,
    )


def campaign_multiplier(member, kind: str, at: datetime) -> Decimal:
    """The highest multiplier of the active campaigns and the member's own windows that apply.

    One statement: the campaigns ``UNION ALL`` the member's windows (indexed on member_id,
    ends_at; usually none), so earning pays no extra round trip for them.
    """
    c = Campaign.__table__.c
    query = select(c.id, c.multiplier, c.kinds, c.birthday_only, c.segment_id).where(
        c.active.is_(True), c.starts_at <= at, c.ends_at > at)
    member_id = getattr(member, "id", None)
    if member_id is not None:
        m = MemberMultiplier.__table__.c
        query = union_all(query, select(
            cast(null(), Integer), m.multiplier, m.kinds, false(), cast(null(), Integer)
        ).where(m.member_id == member_id, m.ends_at > at, m.starts_at <= at))
    best = Decimal(1)
    for campaign_id, multiplier, kinds, birthday_only, segment_id in db.session.execute(query):
        if kinds is not None and kind not in kinds:
            continue
        # None: one of the member's own windows, which always reach them
        if campaign_id is not None and not _campaign_applies(member, at, campaign_id, segment_id, birthday_only):
            continue
        best = max(best, Decimal(multiplier))
    return best


def multipliers_for(member, at: datetime) -> list[dict]:
    """What multiplies ``member``'s earning: the campaigns running at ``at`` that reach them
    (``campaign_multiplier``'s rules: birthday-only campaigns on their birthday, segments, never
    a control arm or the holdout) and their own windows running or still to come, soonest end
    first.  Each: source (``campaign``/``personal``), name, multiplier, kinds, starts_at, ends_at.
    """
    out = []
    campaigns = db.session.scalars(select(Campaign).where(
        Campaign.active.is_(True), Campaign.starts_at <= at, Campaign.ends_at > at))
    for c in campaigns:
        if not _campaign_applies(member, at, c.id, c.segment_id, c.birthday_only):
            continue
        out.append({"source": "campaign", "name": c.name, "multiplier": Decimal(c.multiplier), "kinds": c.kinds,
                    "starts_at": c.starts_at, "ends_at": c.ends_at})
    windows = db.session.scalars(select(MemberMultiplier).where(
        MemberMultiplier.member_id == member.id, MemberMultiplier.ends_at > at))
    for w in windows:
        out.append({"source": "personal", "name": None, "multiplier": Decimal(w.multiplier), "kinds": w.kinds,
                    "starts_at": w.starts_at, "ends_at": w.ends_at})
    return sorted(out, key=lambda m: (m["ends_at"], m["starts_at"]))


def _campaign_applies(member, at: datetime, campaign_id: int, segment_id: int | None, birthday_only: bool) -> bool:
    """Whether a running campaign multiplies ``member``'s earning at ``at``: birthday-only ones on
    their birthday, and only if the campaign reaches them (segment, holdout, experiment arm)."""
    if birthday_only and not _is_birthday(member, at):
        return False
    return _campaign_reaches(member, _CampaignRef(campaign_id, segment_id))


@dataclass(frozen=True)
class _CampaignRef:
    id: int
    segment_id: int | None


def _campaign_reaches(member, campaign: _CampaignRef) -> bool:
    """Analytics decides who a campaign reaches: its segment, and neither the programme holdout
    nor the control arm of an experiment on this campaign (``analytics.experiments``)."""
    member_id = getattr(member, "id", None)
    if member_id is None:
        return campaign.segment_id is None
    from analytics.experiments import campaign_reaches

    return campaign_reaches(member_id, campaign.id, campaign.segment_id)


def _is_birthday(member, at: datetime) -> bool:
    """The member's birthday, if it was set at least ``BIRTHDAY_MIN_AGE_DAYS`` before ``at``
    (members set it once; a birthday entered on the day earns no birthday bonus)."""
    from flask import current_app

    b = member.birthday
    if b is None:
        return False
    set_at = getattr(member, "birthday_set_at", None)
    if set_at is not None and set_at > at - timedelta(days=int(current_app.config.get("BIRTHDAY_MIN_AGE_DAYS", 30))):
        return False
    if (b.month, b.day) == (2, 29) and not _leap(at.year):
        return (at.month, at.day) == (2, 28)
    return (b.month, b.day) == (at.month, at.day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def period_starts(at: datetime) -> dict[str, tuple[datetime, datetime]]:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return {
        "daily_cap": (day, day + timedelta(days=1)),
        "weekly_cap": (week, week + timedelta(days=7)),
        "monthly_cap": (month, next_month),
    }


def earned_in(member_id: int, kind: str, start: datetime, end: datetime) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(Interaction.points), 0)).where(
                Interaction.member_id == member_id,
                Interaction.kind == kind,
                Interaction.occurred_at >= start,
                Interaction.occurred_at < end,
            )
        )
        or 0
    )


def points_for(rule: Rule, member, value: Decimal | None, at: datetime) -> int:
    """Points before caps (caps need the member lock, see ``services.record_interaction``).

    ``member`` is anything with ``tier`` and ``birthday`` (a ``User`` or a row of those columns).
    """
    if not rule.active:
        return 0
    base = Decimal(rule.points)
    if value is not None and rule.points_per_unit:
        base += Decimal(value) * rule.points_per_unit
    if base <= 0:
        return 0
    tier = Decimal(str(benefits_for(member.tier)["earning_multiplier"]))
    return max(0, math.floor(base * tier * campaign_multiplier(member, rule.kind, at)))


def apply_caps(rule: Rule, member_id: int, points: int, at: datetime) -> int:
    for cap_name, (start, end) in period_starts(at).items():
        cap = getattr(rule, cap_name)
        if cap is None or points <= 0:
            continue
        points = min(points, max(0, cap - earned_in(member_id, rule.kind, start, end)))
    return points
