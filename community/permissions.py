"""Named permissions, granted to roles, applied to views as decorators (after FlaskBB).

Each domain declares its permissions in its own ``permissions.py`` with ``define``; views use
``@require("forums.moderate")`` or ``@login_required``.  Ownership checks ("is this my post?")
live in the domain services, which raise ``Forbidden``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from flask_login import current_user

from errors import Forbidden, Unauthorized

_PERMISSIONS: dict[str, frozenset[str]] = {}


def define(name: str, roles: Iterable[str]) -> str:
    """Declare a permission and the roles that hold it; returns the name for use as a constant."""
    roles = frozenset(roles) | {"admin"}  # admins hold every permission
    existing = _PERMISSIONS.get(name)
    if existing is not None and existing != roles:
        raise ValueError(f"permission {name!r} defined twice with different roles")
    _PERMISSIONS[name] = roles
    return name


def all_permissions() -> dict[str, frozenset[str]]:
    return dict(_PERMISSIONS)


def has_permission(user, name: str) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    try:
        roles = _PERMISSIONS[name]
    except KeyError as exc:  # a typo must fail loudly, never silently allow or deny
        raise KeyError(f"unknown permission {name!r}") from exc
    return bool(user.roles & roles)


def login_required(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            raise Unauthorized("Log in to do this.")
        return fn(*args, **kwargs)

    wrapper._auth = "login"  # read by contract.openapi (security and 401 in the document)
    return wrapper


def require(*names: str) -> Callable:
    """The caller must be logged in and hold every named permission."""

    for name in names:
        if name not in _PERMISSIONS:
            raise KeyError(f"unknown permission {name!r}")

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                raise Unauthorized("Log in to do this.")
            for name in names:
                if not has_permission(current_user, name):
                    raise Forbidden("You do not have permission to do this.")
            return fn(*args, **kwargs)

        wrapper._auth = "permission"  # read by contract.openapi (security, 401 and 403 documented)
        return wrapper

    return decorate


ADMIN_USERS = define("community.manage_users", ["admin"])
READ_AUDIT = define("community.read_audit", ["admin"])
