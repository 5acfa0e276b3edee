"""Forums permissions (roles); board access by tier and role is decided in ``services``."""

from community.permissions import define

# Hide/restore/delete posts, lock/pin/move threads, resolve flags, sanction members.
MODERATE = define("forums.moderate", ["moderator"])
# Create and configure boards.
MANAGE_BOARDS = define("forums.manage_boards", [])
# Start threads on bulletin boards.
POST_BULLETIN = define("forums.post_bulletin", ["moderator", "marketer"])
