"""The console's navigation and its "waiting work" panels, as registries other domains plug into.

A domain that wants console pages (analytics, messaging, journeys …) registers, from its own
``init_app``::

    from console import nav
    nav.register(nav.NavItem("analytics", "KPIs", "analytics_console.kpis", permission=KPI_READ))
    nav.register_waiting(lambda user: ...)  # optional: a home-page card
    nav.register_member_section(lambda member, viewer: nav.MemberSection(...) or None)  # optional:
    # a part of the admins' member page (its template is included with ``context``)

Items are shown only to users holding their ``permission`` (None: any staff member).  Labels are
translated lazily (``lazy_gettext``) so the registry can be filled at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l

from community.permissions import has_permission


@dataclass(frozen=True)
class NavItem:
    section: str  # groups items in the sidebar; see SECTIONS for the known titles and order
    label: object  # str or lazy string
    endpoint: str
    permission: str | None = None
    order: int = 100


@dataclass(frozen=True)
class Waiting:
    """A home-page card: how many things wait for this user, and where to work on them."""

    label: object
    count: int
    endpoint: str
    args: tuple = ()


SECTIONS = {
    "home": (_l("Home"), 0),
    "moderation": (_l("Moderation"), 10),
    "redemptions": (_l("Redemptions"), 20),
    "surveys": (_l("Surveys & focus groups"), 30),
    "marketing": (_l("Marketing"), 40),
    "analytics": (_l("Analytics"), 50),
    "messaging": (_l("Messaging"), 60),
    "journeys": (_l("Journeys"), 70),
    "admin": (_l("Administration"), 90),
}

@dataclass(frozen=True)
class MemberSection:
    """A part of the member page from another domain: ``template`` is included with ``context``."""

    template: str
    context: dict


_ITEMS: list[NavItem] = []
_WAITING: list[Callable] = []
_MEMBER_SECTIONS: list[Callable] = []


def register(item: NavItem) -> None:
    if any(existing.endpoint == item.endpoint for existing in _ITEMS):
        return  # app factories run more than once per process (tests); registration is idempotent
    _ITEMS.append(item)


def register_waiting(provider: Callable) -> None:
    """``provider(user) -> list[Waiting]``; it checks the user's permissions itself."""
    if provider not in _WAITING:
        _WAITING.append(provider)


def allowed(user, item: NavItem) -> bool:
    return item.permission is None or has_permission(user, item.permission)


def menu(user) -> list[tuple[object, list[NavItem]]]:
    """The sections (title, items) this user may see, in order."""
    groups: dict[str, list[NavItem]] = {}
    for item in sorted(_ITEMS, key=lambda i: i.order):
        if allowed(user, item):
            groups.setdefault(item.section, []).append(item)
    order = sorted(groups, key=lambda s: SECTIONS.get(s, (s, 80))[1])
    return [(SECTIONS.get(s, (s.title(), 80))[0], groups[s]) for s in order]


@dataclass(frozen=True)
class MenuLink:
    label: str
    endpoint: str
    url: str


_MENUS: dict[tuple, list] = {}


def cached_menu(user, locale: str, script_root: str = "") -> list[tuple[str, list[MenuLink]]]:
    """``menu(user)`` with translated labels and built URLs, kept per role set and language: the
    permissions are the roles' (``community.permissions``), and the registry is filled at start-up."""
    key = (frozenset(user.roles), locale, script_root, len(_ITEMS))
    found = _MENUS.get(key)
    if found is None:
        from flask import url_for

        found = [(str(title), [MenuLink(str(i.label), i.endpoint, url_for(i.endpoint)) for i in items])
                 for title, items in menu(user)]
        if len(_MENUS) > 256:
            _MENUS.clear()
        _MENUS[key] = found
    return found


def waiting_for(user) -> list[Waiting]:
    cards: list[Waiting] = []
    for provider in _WAITING:
        cards.extend(provider(user))
    return cards


def register_member_section(provider: Callable) -> None:
    """``provider(member, viewer) -> MemberSection | None``; it checks the viewer's permissions."""
    if provider not in _MEMBER_SECTIONS:
        _MEMBER_SECTIONS.append(provider)


def member_sections(member, viewer) -> list[MemberSection]:
    return [s for s in (provider(member, viewer) for provider in _MEMBER_SECTIONS) if s is not None]
