"""Demo tiers for ``make run``: the default rules installed, and demo members placed on the ladder
by real history (recorded through the points services) rather than by pins:
alice is an advocate, bob loyal, carol engaged, dave still aware.
"""

from __future__ import annotations

from datetime import timedelta

from community.models import utcnow
from points.services import record_interaction

from . import services

# name -> (purchase amount, weeks with a visit, surveys (last answer's NPS), posts,
#          focus groups, converted referrals)
HISTORY = {
    "alice": (5200, 30, (8, 9, 10), 22, 1, 1),
    "bob": (2300, 18, (7, 8), 6, 0, 0),
    "carol": (150, 3, (), 0, 0, 0),
}


def load(ctx: dict) -> None:
    services.ensure_default_rules()
    members = ctx.get("members", {})
    now = utcnow()
    for name, (spent, weeks, nps, posts, focus_groups, referrals) in HISTORY.items():
        member = members.get(name)
        if member is None:
            continue

        # Fixed keys: loading twice records nothing new (a replay returns the first recording).
        def record(kind, n, *, value=None, days_ago=0, member=member, name=name):
            record_interaction(member.id, kind, key=f"demo:tiers:{name}:{kind}:{n}", value=value,
                               occurred_at=now - timedelta(days=days_ago))

        record("purchase", 0, value=spent, days_ago=3)
        for week in range(weeks):
            record("daily_visit", week, days_ago=7 * week)
        for n, score in enumerate(nps):
            record("survey_completed", n, value=score, days_ago=30 * (len(nps) - n))
        for n in range(posts):
            record("post", n, days_ago=n)
        for n in range(focus_groups):
            record("focus_group_attended", n, days_ago=60)
        for n in range(referrals):
            record("referral_converted", n, days_ago=20)
    for name in ("alice", "bob", "carol", "dave"):
        if name in members:
            services.recompute_member(members[name].id)
