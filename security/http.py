"""HTTP hardening: response headers, trusted proxies and the public base URL.

* Every response carries ``X-Content-Type-Options: nosniff``; HTML responses get the configured
  ``CONTENT_SECURITY_POLICY`` unless the view set its own (the Swagger UI page needs a looser
  one, see ``DOCS_CSP``).  Views that return secrets or personal data mark themselves
  ``no_store`` (``Cache-Control: no-store``).
* The ``Server`` header names no version: ``serve.py`` runs werkzeug's server with
  ``RequestHandler`` below (gunicorn sends a bare ``Server: gunicorn``).
* ``TRUSTED_PROXY_HOPS`` > 0 wraps the app in werkzeug's ``ProxyFix`` for that many hops of
  ``X-Forwarded-For`` / ``X-Forwarded-Proto``: per-address limits then key on the client, not
  the proxy, and a client cannot forge its address by sending the header itself with no proxy.
* ``public_url(path)`` builds absolute links from ``PUBLIC_BASE_URL``; the ``Host`` header is
  never used for a link.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import Flask, current_app, g
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import WSGIRequestHandler

# Swagger UI (served from our own static route) starts with an inline script and styles.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SERVER_NAME_HEADER = "Kinship"


class RequestHandler(WSGIRequestHandler):
    """werkzeug's server without ``Server: Werkzeug/x.y Python/z`` (``serve.py`` uses it)."""

    def version_string(self) -> str:
        return SERVER_NAME_HEADER


def public_url(path: str = "") -> str:
    """``PUBLIC_BASE_URL`` + ``path`` (which starts with a slash)."""
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path


def public_host() -> str:
    """The host part of ``PUBLIC_BASE_URL`` (e.g. for calendar UIDs)."""
    base = current_app.config["PUBLIC_BASE_URL"]
    return base.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]


def no_store(fn: Callable) -> Callable:
    """Mark a view's responses ``Cache-Control: no-store`` (tokens, the member's own account)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        g.no_store = True
        return fn(*args, **kwargs)

    return wrapper


def init_http_security(app: Flask) -> None:
    hops = int(app.config.get("TRUSTED_PROXY_HOPS") or 0)
    if hops < 0:
        from config import ConfigError

        raise ConfigError("TRUSTED_PROXY_HOPS must be 0 or more")
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    @app.after_request
    def _security_headers(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        if g.get("no_store"):
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"
        if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
            from flask import request

            docs = request.path.startswith("/api/docs")
            response.headers["Content-Security-Policy"] = DOCS_CSP if docs else app.config["CONTENT_SECURITY_POLICY"]
        return response
