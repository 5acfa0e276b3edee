"""The authorization matrix: every API route x every actor.

Each domain lists its routes in ``tests/<domain>/authz_cases.py`` as ``CASES = [Case(...)]``.
``tests/test_authz_matrix.py`` runs every case for every actor and fails if any ``/api/v1``
route of the app has no case, so a new route cannot ship without its authorization test.

A case says which actors are *allowed*; the runner asserts the others get 401 (anonymous) or
403, and that allowed actors get neither.  ``setup(ctx)`` creates what the route needs (owned by
``ctx.users["owner"]``) and returns the URL's path parameters; ``body`` (a dict or a function of
``ctx`` and the parameters) is the JSON to send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACTORS = ("anonymous", "member", "owner", "moderator", "marketer", "redemption_staff", "admin", "suspended")
EVERYONE = frozenset(ACTORS)
LOGGED_IN = EVERYONE - {"anonymous"}
MEMBERS = LOGGED_IN  # every account is a member


@dataclass
class Ctx:
    users: dict[str, Any]
    app: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    method: str
    rule: str  # the Flask rule, e.g. "/api/v1/forums/threads/<int:thread_id>"
    allowed: frozenset[str]
    setup: Callable[[Ctx], dict] | None = None
    body: dict | Callable[[Ctx, dict], dict] | None = None
    query: dict | None = None
    headers: dict | None = None
    # Actors for which the route must answer 403 even though they are logged in (e.g. a
    # suspended member posting); defaults to "everyone not allowed".
    note: str = ""
    # What an anonymous caller gets: 401 from the API; console pages redirect to sign-in (302).
    anonymous_status: tuple[int, ...] = (401,)

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"

    def url(self, params: dict) -> str:
        import re

        def sub(match):
            name = match.group(1).split(":")[-1]
            return str(params[name])

        return re.sub(r"<([^>]+)>", sub, self.rule)
