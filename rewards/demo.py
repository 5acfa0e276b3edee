"""Demo rewards: a low-cost coffee coupon with a small code pool, a physical gift, a donation.

Low-cost rewards are what drive redemption (domain notes: "one point buys one coffee" took
redemption from under 15% to 67%), so the coffee is cheap.  Idempotent: rewards are found by
name, and codes already in the pool are skipped by ``add_codes``.
"""

from __future__ import annotations

from sqlalchemy import select

from extensions import db

from . import services
from .models import Reward

COFFEE = "Coffee on us (demo)"
REWARDS = [
    {"name": COFFEE, "kind": "coupon", "cost": 50,
     "description": "A regular coffee at any partner cafe. Show the code at the till.",
     "per_member_limit": 5},
    {"name": "Kinship tote bag (demo)", "kind": "physical", "cost": 800, "stock": 25, "min_tier": "engaged",
     "description": "A sturdy canvas tote, shipped to your address."},
    {"name": "Plant a tree (demo)", "kind": "donation", "cost": 200,
     "description": "We donate one tree to a reforestation partner in your name."},
]
COFFEE_CODES = [f"DEMO-COFFEE-{n:03d}" for n in range(1, 11)]


def load(ctx: dict) -> None:
    staff = ctx["members"]["marketing"]
    rewards: dict[str, Reward] = {}
    for spec in REWARDS:
        reward = db.session.scalar(select(Reward).where(Reward.name == spec["name"]))
        if reward is None:
            reward = services.create_reward(staff, dict(spec))
        rewards[spec["name"]] = reward
    services.add_codes(staff, rewards[COFFEE].id, COFFEE_CODES)
    db.session.flush()
    ctx["rewards"] = rewards
