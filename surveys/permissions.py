"""Who may build surveys, read their results and run focus groups: marketing (and admins)."""

from community.permissions import define

MANAGE_SURVEYS = define("surveys.manage", ["marketer"])
MANAGE_FOCUS_GROUPS = define("surveys.manage_focus_groups", ["marketer"])
