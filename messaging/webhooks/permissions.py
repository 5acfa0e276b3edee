"""Who manages outbound webhooks: admins only (endpoints receive member data)."""

from __future__ import annotations

from community.permissions import define

MANAGE_WEBHOOKS = define("webhooks.manage", ["admin"])
