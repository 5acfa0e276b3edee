"""Shared helpers of the tier tests: history through the real points services, small rule sets."""

from __future__ import annotations

import itertools
from datetime import datetime

from community.models import utcnow
from extensions import db
from tiers.rules import Rules

_keys = itertools.count(1)


def rules(version: int = 1, *, grace_days: int = 30, keep_percent: int = 90, window_days: int = 365,
          **requirements) -> Rules:
    """Rules with ``engaged`` needing exactly ``requirements`` (the other tiers unreachable)."""
    unreachable = {"points_earned": 10**7}
    return Rules(version=version, requirements={"engaged": requirements, "satisfied": unreachable,
                                                "loyal": unreachable, "advocate": unreachable},
                 window_days=window_days, grace_days=grace_days, keep_percent=keep_percent)


def interact(member, kind: str, *, at: datetime | None = None, value=None, source_type=None, source_id=None):
    """Record an interaction through points.services (which may also award points)."""
    from points.services import record_interaction

    n = next(_keys)
    interaction = record_interaction(member.id, kind, key=f"test:{kind}:{n}", occurred_at=at or utcnow(),
                                     value=value, source_type=source_type, source_id=source_id)
    db.session.commit()
    return interaction


def award(member, amount: int):
    from points.ledger import award as ledger_award

    entry = ledger_award(member.id, amount, key=f"test:award:{next(_keys)}", reason="test")
    db.session.commit()
    return entry
