"""Wires the console into the app: its blueprint, its catalogue and locale selector, and the pages of every domain.

``app._register_domains`` imports this module (``console`` is in ``jobs.DOMAINS``) and calls
``init_app``; the console has no ``/api/v1`` blueprints of its own.
"""

from __future__ import annotations

import os

from flask import Flask, request, session

blueprints: list = []

TRANSLATIONS = os.path.join(os.path.dirname(__file__), "translations")


def select_locale() -> str:
    """The language chosen with the console's switch, else the browser's preference."""
    from .web import LANGUAGES

    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(["en", "zh-CN", "zh"]) if request else None
    return "zh_CN" if best and best.startswith("zh") else "en"


def init_app(app: Flask) -> None:
    # Several domains may ship catalogues: each adds its directory before the app starts Babel
    # (once, after every domain's init), and the console chooses the request's language.
    dirs = app.config.get("BABEL_TRANSLATION_DIRECTORIES") or "translations"
    if TRANSLATIONS not in dirs.split(";"):
        app.config["BABEL_TRANSLATION_DIRECTORIES"] = f"{dirs};{TRANSLATIONS}"
    app.extensions["kinship_locale_selector"] = select_locale
    # The API's error envelope reads service messages in the request's language too.
    from .messages import translate

    app.extensions["kinship_translate_message"] = translate

    from . import admin, home, marketing, moderation, redemptions, surveys  # noqa: F401  (routes)
    from .web import bp

    app.register_blueprint(bp)
    # Signing in and out of the console and choosing its language are not community writes.
    from community.auth import SUSPENDED_MAY

    SUSPENDED_MAY.update({"console.login", "console.logout", "console.set_language"})
    home.init_landing(app)
    # Domains without an init hook of their own whose pages the console wires in.
    from jobs import DOMAINS

    if "analytics" in DOMAINS:
        from analytics import console as analytics_console

        analytics_console.init_app(app)
