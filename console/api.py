"""Wires the console into the app: its blueprint, Flask-Babel, and the pages of every domain.

``app._register_domains`` imports this module (``console`` is in ``jobs.DOMAINS``) and calls
``init_app``; the console has no ``/api/v1`` blueprints of its own.
"""

from __future__ import annotations

import os

from flask import Flask, request, session
from flask_babel import Babel

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
    # Several domains may ship catalogues; each adds its directory before Babel starts.
    dirs = app.config.get("BABEL_TRANSLATION_DIRECTORIES") or "translations"
    if TRANSLATIONS not in dirs.split(";"):
        app.config["BABEL_TRANSLATION_DIRECTORIES"] = f"{dirs};{TRANSLATIONS}"
    if "babel" not in app.extensions:
        Babel(app, locale_selector=select_locale)
    else:  # another domain (messaging) started Babel first: add our catalogue and selector to it
        babel = app.extensions["babel"]
        if TRANSLATIONS not in babel.translation_directories:
            babel.translation_directories.append(TRANSLATIONS)
            babel.default_directories.append(TRANSLATIONS)
        babel.locale_selector = select_locale

    from . import admin, home, marketing, moderation, redemptions, surveys  # noqa: F401  (routes)
    from .web import bp

    app.register_blueprint(bp)
    # Signing in and out of the console and choosing its language are not community writes.
    from community.auth import SUSPENDED_MAY

    SUSPENDED_MAY.update({"console.login", "console.logout", "console.set_language"})
    home.init_landing(app)
