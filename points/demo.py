"""Demo points for ``make run``: a few earned interactions and balances, and a birthday campaign."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from extensions import db

from . import ledger, services
from .models import Campaign

BALANCES = {"alice": 500, "bob": 120, "carol": 40}


def load(ctx: dict) -> None:
    members = ctx.get("members", {})
    for name, points in BALANCES.items():
        member = members.get(name)
        if member is None:
            continue
        # Keys make every step idempotent: loading twice changes nothing.
        ledger.award(member.id, points, key=f"demo:welcome:{name}", reason="Welcome to the programme")
        services.record_interaction(member.id, "profile_completed", key=f"demo:profile:{name}")
        services.record_interaction(member.id, "daily_visit", key=f"demo:visit:{name}")
    if db.session.scalar(select(Campaign.id).where(Campaign.name == "Birthday double points")) is None:
        db.session.add(
            Campaign(name="Birthday double points", multiplier=2, starts_at=datetime(2026, 1, 1),
                     ends_at=datetime(2036, 1, 1), birthday_only=True)
        )
    db.session.flush()
