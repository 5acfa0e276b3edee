"""The analytics configuration: versioned data, the highest version in force, defaults in code.

``current()`` returns the defaults overlaid with the latest stored version, so a fresh install
works without seeding and a stored version only needs the parts it changes.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import func, select

from community.services import audit
from extensions import db

from .models import AnalyticsSettings

DEFAULTS: dict[str, Any] = {
    "rfm": {
        "window_days": 365,
        # First matching rule wins; each bound is optional (scores are 1-5 quintiles).
        "classes": [
            {"class": "high_value", "r_min": 4, "f_min": 4, "m_min": 4},
            {"class": "at_risk", "r_max": 2, "f_min": 3},
            {"class": "at_risk", "r_max": 2, "m_min": 3},
            {"class": "potential", "r_min": 3},
        ],
        "default_class": "low_value",
    },
    "value": {"weights": {"historical": 40, "potential": 40, "strategic": 20}},
    "health": {
        "weights": {"recency": 30, "frequency_trend": 20, "community": 15, "survey": 10, "nps": 15, "flags": 10},
        "recency_full_days": 7,
        "recency_zero_days": 90,
        "trend_days": 90,
        "community_days": 90,
        "community_full": 10,
        "survey_days": 180,
        "survey_full": 2,
        "flag_penalty": 25,
    },
    "roi": {"cost_per_point": 0.01, "reward_cost_per_point": 0.01},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "weights":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def latest() -> AnalyticsSettings | None:
    return db.session.scalar(select(AnalyticsSettings).order_by(AnalyticsSettings.version.desc()).limit(1))


def current() -> dict:
    row = latest()
    return _merge(DEFAULTS, row.settings) if row else copy.deepcopy(DEFAULTS)


def version() -> int:
    row = latest()
    return row.version if row else 0


def save(actor_id: int, settings: dict, note: str = "") -> dict:
    """Store a new version (validated by ``schemas.SettingsIn``: only known keys get here)."""
    merged = _merge(current(), settings)
    number = (db.session.scalar(select(func.max(AnalyticsSettings.version))) or 0) + 1
    db.session.add(AnalyticsSettings(version=number, settings=merged, note=note, created_by_id=actor_id))
    db.session.flush()
    audit(actor_id, "analytics.settings.update", "analytics_settings", number, reason=note, details=settings)
    return {"version": number, "settings": merged}
