"""Marketers (and admins) manage journeys; staff read them and work the tasks they create."""

from __future__ import annotations

from community.permissions import define

VIEW = define("journeys.view", ["marketer", "moderator", "redemption_staff"])
MANAGE = define("journeys.manage", ["marketer"])
WORK_TASKS = define("journeys.work_tasks", ["marketer", "moderator", "redemption_staff"])
