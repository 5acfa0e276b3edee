"""Tier decisions in SQL, per requirement, at their boundaries, with grace, history and outbox."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from community.models import Notification, utcnow
from extensions import db
from tiers import engine
from tiers.models import MemberTierState, TierChange

from .helpers import award, interact, rules

MONDAY = datetime(2026, 11, 16, 9, 0)  # a Monday


def recompute(member, rule_set, now=None):
    out = engine.recompute_members(member.id, member.id, now or utcnow(), rule_set)
    db.session.commit()
    db.session.refresh(member)
    return out


def state(member) -> MemberTierState:
    return db.session.get(MemberTierState, member.id, populate_existing=True)


def test_points_earned_boundary(app, make_member):
    below, exact = make_member(), make_member()
    award(below, 99)
    award(exact, 60)
    award(exact, 40)
    r = rules(points_earned=100)
    recompute(below, r)
    recompute(exact, r)
    assert (below.tier, exact.tier) == ("aware", "engaged")
    assert state(exact).points_earned == 100


def test_reversed_awards_and_old_awards_do_not_count(app, make_member):
    from points.ledger import reverse

    m = make_member()
    entry = award(m, 100)
    reverse(entry.id, key="test:rev", reason="clawback")
    db.session.commit()
    recompute(m, rules(points_earned=100))
    assert m.tier == "aware"
    other = make_member()
    award(other, 100)
    # 366 days on, that award has left the 365-day window
    recompute(other, rules(points_earned=100), now=utcnow() + timedelta(days=366))
    assert other.tier == "aware"
    recompute(other, rules(points_earned=100), now=utcnow() + timedelta(days=364))
    assert other.tier == "engaged"


def test_partly_clawed_back_awards_count_for_what_is_left(app, make_member):
    from points.ledger import claw_back, reverse

    m = make_member()
    entry = award(m, 100)
    claw_back(entry.id, 30, key="test:claw:1", reason="partial refund")
    db.session.commit()
    recompute(m, rules(points_earned=100))
    assert m.tier == "aware"
    assert state(m).points_earned == 70
    recompute(m, rules(points_earned=70))
    assert m.tier == "engaged"
    # a second clawback and then a full reversal of the rest: nothing counts any more
    claw_back(entry.id, 20, key="test:claw:2", reason="partial refund")
    db.session.commit()
    recompute(m, rules(points_earned=70))
    assert state(m).points_earned == 50
    reverse(entry.id, key="test:claw:rev", reason="refunded in full")
    db.session.commit()
    recompute(m, rules(points_earned=70))
    assert state(m).points_earned == 0


@pytest.mark.parametrize("window_days", [365, 730])  # PostgreSQL: a week bitmask, then count(DISTINCT)
def test_active_weeks_are_distinct_weeks_of_own_activity(app, make_member, window_days):
    m = make_member()
    interact(m, "daily_visit", at=MONDAY)
    interact(m, "daily_visit", at=MONDAY + timedelta(days=6, hours=14))  # Sunday evening, same week
    interact(m, "reaction_received", at=MONDAY + timedelta(days=7))  # someone else's act
    r = rules(active_weeks=2, window_days=window_days)
    now = MONDAY + timedelta(days=10)
    recompute(m, r, now)
    assert m.tier == "aware"
    assert state(m).active_weeks == 1
    interact(m, "daily_visit", at=MONDAY + timedelta(days=7))  # next Monday
    recompute(m, r, now)
    assert m.tier == "engaged"
    assert state(m).active_weeks == 2
    # the window's first and last day count; the day before it does not
    interact(m, "daily_visit", at=now - timedelta(days=window_days))
    interact(m, "daily_visit", at=now - timedelta(days=window_days, seconds=1))
    recompute(m, r, now)
    assert state(m).active_weeks == 3


@pytest.mark.parametrize(
    ("requirement", "kind", "needed"),
    [("surveys_completed", "survey_completed", 2), ("focus_groups_attended", "focus_group_attended", 1),
     ("referrals_converted", "referral_converted", 2)],
)
def test_counted_interactions(app, make_member, requirement, kind, needed):
    m = make_member()
    r = rules(**{requirement: needed})
    for _ in range(needed - 1):
        interact(m, kind)
    recompute(m, r)
    assert m.tier == "aware"
    interact(m, kind)
    recompute(m, r)
    assert m.tier == "engaged"
    assert getattr(state(m), requirement) == needed


def test_nps_promoter_needs_nine_or_ten(app, make_member):
    passive, promoter = make_member(), make_member()
    interact(passive, "survey_completed", value=8)
    interact(promoter, "survey_completed", value=9)
    r = rules(nps_promoter=1)
    recompute(passive, r)
    recompute(promoter, r)
    assert (passive.tier, promoter.tier) == ("aware", "engaged")


def test_posts_whose_award_was_reversed_are_not_accepted(app, make_member):
    from points.services import reverse_source

    m = make_member()
    interact(m, "post", source_type="post", source_id=1)
    interact(m, "reply", source_type="post", source_id=2)
    r = rules(accepted_posts=2)
    recompute(m, r)
    assert m.tier == "engaged"
    reverse_source("post", 2, reason="removed by a moderator")
    db.session.commit()
    recompute(m, r)
    assert state(m).accepted_posts == 1
    assert state(m).below_since is not None  # below the bar: the grace clock runs


def test_an_active_suspension_blocks_promotion(app, make_member):
    m = make_member(suspended_until=utcnow() + timedelta(days=3))
    award(m, 100)
    r = rules(points_earned=100, no_suspension=1)
    recompute(m, r)
    assert m.tier == "aware"
    recompute(m, r, now=utcnow() + timedelta(days=4))
    assert m.tier == "engaged"


def test_promotion_writes_history_and_outbox(app, make_member):
    m = make_member()
    award(m, 150)
    out = recompute(m, rules(points_earned=100))
    assert out == {"promoted": 1, "demoted": 0}
    change = db.session.scalars(select(TierChange).where(TierChange.member_id == m.id)).one()
    assert (change.from_tier, change.to_tier, change.kind) == ("aware", "engaged", "promotion")
    assert change.reason == "met every requirement of engaged; points_earned 150 (needs 100)"
    note = db.session.scalars(select(Notification).where(Notification.member_id == m.id)).one()
    assert note.kind == "tiers.tier_changed"
    assert note.payload["to_tier"] == "engaged" and note.payload["change_id"] == change.id
    assert note.dedupe_key == f"tier_change:{change.id}"
    # idempotent: nothing new the second time
    assert recompute(m, rules(points_earned=100)) == {"promoted": 0, "demoted": 0}
    assert db.session.scalar(select(db.func.count()).select_from(TierChange)) == 1


def test_promotion_skips_tiers_when_earned(app, make_member):
    m = make_member()
    award(m, 500)
    r = rules(points_earned=100)
    r = type(r)(version=1, requirements={**r.requirements, "satisfied": {"points_earned": 200},
                                         "loyal": {"points_earned": 400}})
    recompute(m, r)
    assert m.tier == "loyal"


def test_demotion_waits_for_the_grace_period_and_names_what_was_lost(app, make_member):
    m = make_member(tier="engaged")
    award(m, 89)  # 89 of 100: below the 90 % bar to stay
    r = rules(points_earned=100, grace_days=30)
    t0 = utcnow()
    recompute(m, r, t0)
    assert m.tier == "engaged"
    assert state(m).below_since == t0
    recompute(m, r, t0 + timedelta(days=29, hours=23))
    assert m.tier == "engaged"
    assert state(m).below_since == t0  # the clock is not reset by later runs
    out = recompute(m, r, t0 + timedelta(days=30))
    assert out == {"promoted": 0, "demoted": 1}
    assert m.tier == "aware"
    change = db.session.scalars(select(TierChange).where(TierChange.member_id == m.id)).one()
    assert change.kind == "demotion"
    assert change.reason == "30 days below the bar to stay engaged; points_earned 89 (needs 90 to stay)"
    assert state(m).below_since is None


def test_the_lower_bar_to_stay(app, make_member):
    m = make_member(tier="engaged")
    award(m, 90)  # exactly 90 %
    r = rules(points_earned=100, grace_days=0)
    recompute(m, r)
    assert m.tier == "engaged"
    assert state(m).below_since is None
    assert state(m).qualified_tier == "aware"  # would not get in today, but stays


def test_recovering_during_grace_stops_the_clock(app, make_member):
    m = make_member(tier="engaged")
    r = rules(points_earned=100, grace_days=30)
    t0 = utcnow()
    recompute(m, r, t0)
    assert state(m).below_since == t0
    award(m, 95)
    recompute(m, r, t0 + timedelta(days=1))
    assert state(m).below_since is None
    assert m.tier == "engaged"


def test_zero_grace_demotes_at_once(app, make_member):
    m = make_member(tier="engaged")
    recompute(m, rules(points_earned=100, grace_days=0))
    assert m.tier == "aware"


def test_a_range_decides_many_members_at_once(app, make_member, count_queries):
    members = [make_member() for _ in range(30)]
    for i, m in enumerate(members):
        if i % 3 == 0:
            award(m, 100)
    r = rules(points_earned=100)
    first, last = members[0].id, members[-1].id  # read before counting: they reload after a commit
    with count_queries() as n:
        out = engine.recompute_members(first, last, utcnow(), r)
        db.session.commit()
    assert out == {"promoted": 10, "demoted": 0}
    # set-based: a fixed handful of statements (one writes the email deliveries, one looks up the
    # tier-change journeys, two are PostgreSQL's planner hints), not one per member
    assert n() <= 13
    tiers = [db.session.get(type(m), m.id, populate_existing=True).tier for m in members]
    assert tiers == ["engaged" if i % 3 == 0 else "aware" for i in range(30)]
