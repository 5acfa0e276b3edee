"""Demo data for ``make run``: a few members per role, boards, a survey, rewards.

Each domain contributes a ``demo.load(ctx)`` function; ``ctx`` is a dict shared between them
(e.g. ``ctx["members"]``).  Loading is idempotent: running it twice changes nothing.
"""

from __future__ import annotations

import importlib

from extensions import db
from jobs import DOMAINS


def load_demo() -> dict:
    ctx: dict = {}
    for domain in DOMAINS:
        try:
            module = importlib.import_module(f"{domain}.demo")
        except ModuleNotFoundError as exc:
            if exc.name != f"{domain}.demo":
                raise
            continue
        module.load(ctx)
        db.session.commit()
    return ctx
