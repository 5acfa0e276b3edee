"""Who edits the tier rules and pins tiers (admins), and who reads tier statistics (marketing)."""

from __future__ import annotations

from community.permissions import define

MANAGE_TIERS = define("tiers.manage", ["admin"])
VIEW_TIER_STATS = define("tiers.view_stats", ["marketer"])
