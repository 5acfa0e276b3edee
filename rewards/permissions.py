"""Who manages the catalogue and who works the redemption queue."""

from __future__ import annotations

from community.permissions import define

MANAGE_CATALOGUE = define("rewards.manage_catalogue", ["marketer"])
FULFIL_REDEMPTIONS = define("rewards.fulfil_redemptions", ["redemption_staff"])
