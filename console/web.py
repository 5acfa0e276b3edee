"""The console blueprint and what every console view shares.

* ``staff_page(*permissions)``: anonymous visitors are sent to the sign-in page; a logged-in
  account without any staff role gets 404 (the console does not exist for members); staff
  without a named permission get 403.  The named permissions are the API's own.
* Forms carry the session's CSRF token in a ``csrf_token`` field, checked by
  ``community.auth`` for every write, exactly like the API's header.
* Input is validated with the API's marshmallow schemas (``validated``); services raise the
  same ``AppError``s, which become a flash message and a redirect back on a POST
  (POST/redirect/GET) or an HTML error page on a GET.
* Every console response carries a Content-Security-Policy without inline script or style.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import urlsplit

import marshmallow as ma
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import get_locale, get_translations
from flask_babel import gettext as _
from flask_login import current_user
from jinja2 import pass_context
from markupsafe import Markup

from community.auth import csrf_token
from community.models import GRANTABLE_ROLES
from community.permissions import has_permission
from errors import AppError
from extensions import db

from . import messages as messages_
from . import nav

bp = Blueprint(
    "console", __name__, url_prefix="/console", template_folder="templates",
    static_folder="static", static_url_path="/static",
)

STAFF_ROLES = frozenset(GRANTABLE_ROLES)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
LANGUAGES = {"en": "English", "zh_CN": "简体中文"}


def is_staff(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.roles & STAFF_ROLES)


def staff_page(*permissions: str) -> Callable:
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))
            if not is_staff(current_user):
                abort(404)
            for name in permissions:
                if not has_permission(current_user, name):
                    abort(403)
            return fn(*args, **kwargs)

        wrapper.console_permissions = permissions  # type: ignore[attr-defined]
        return wrapper

    return decorate


def safe_next(target: str | None, default: str) -> str:
    """Only a path inside the console: never an open redirect."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/console"):
            return target
    return default


def back(default_endpoint: str = "console.home", **values) -> object:
    """Redirect (303) to the form's ``back`` field, the referring console page, or a default."""
    default = url_for(default_endpoint, **values)
    target = request.form.get("back") or request.referrer
    if target and urlsplit(target).netloc == request.host:
        parts = urlsplit(target)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    return redirect(safe_next(target, default), code=303)


def validated(schema: ma.Schema, data: dict) -> dict:
    """Load form data with the API's schema; a failure is the API's 422."""
    try:
        return schema.load(data)
    except ma.ValidationError as exc:
        from errors import ValidationError

        fields = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ValidationError(_("The form has errors."), fields=fields) from exc


def form_str(name: str, default: str | None = None) -> str | None:
    value = request.form.get(name, "")
    value = value.strip()
    return value if value else default


def form_lines(name: str) -> list[str]:
    """A textarea with one entry per line."""
    return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]


def arg_int(name: str, default: int, *, lo: int = 1, hi: int = 1_000_000) -> int:
    try:
        value = int(request.args.get(name, default))
    except (TypeError, ValueError):
        return default
    return min(max(value, lo), hi)


def page_args(per_page: int = 25) -> tuple[int, int]:
    return arg_int("page", 1), arg_int("per_page", per_page, hi=100)


def _describe(error: AppError) -> str:
    parts = [messages_.translate(error.message)]
    for field, messages in messages_.translate_fields(error.fields or {}).items():
        if isinstance(messages, dict):
            messages = [f"{k}: {v}" for k, v in messages.items()]
        elif not isinstance(messages, list | tuple):
            messages = [messages]
        parts.append(f"{field}: {' '.join(str(m) for m in messages)}")
    return " — ".join(parts)


@bp.errorhandler(AppError)
def _app_error(error: AppError):
    db.session.rollback()
    if error.status == 401:
        return redirect(url_for("console.login"))
    if request.method == "POST" and error.status in (400, 409, 422, 429):
        flash(_describe(error), "error")
        return back()
    message = messages_.translate(error.message)
    return render_template("console/error.html", status=error.status, message=message), error.status


@bp.errorhandler(403)
def _forbidden(_error):
    message = _("You do not have permission to see this page.")
    return render_template("console/error.html", status=403, message=message), 403


@bp.errorhandler(404)
def _not_found(_error):
    return render_template("console/error.html", status=404, message=_("There is no such page.")), 404


@bp.after_request
def _security_headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


# A global (not only a context variable): macros imported without context render forms too.
bp.add_app_template_global(csrf_token, "csrf_token")
bp.add_app_template_global(messages_.tier_summary, "tier_summary")
bp.add_app_template_global(messages_.word, "word")


def console_blueprint(name: str, import_name: str, url_prefix: str, **kw) -> Blueprint:
    """A domain's console blueprint (its name ends in ``_console``) with the console's error pages,
    flash-and-redirect handling of service errors and security headers."""
    blueprint = Blueprint(name, import_name, url_prefix=url_prefix, **kw)
    blueprint.register_error_handler(AppError, _app_error)
    blueprint.register_error_handler(403, _forbidden)
    blueprint.register_error_handler(404, _not_found)
    blueprint.after_request(_security_headers)
    return blueprint


def is_console_blueprint(name: str | None) -> bool:
    return bool(name) and (name.startswith("console") or name.endswith("_console"))


def _request_gettext():
    """Jinja's new-style ``gettext`` bound to this request's catalogue, looked up once.

    Flask-Babel's template ``gettext`` finds the request's translations again on every call
    (context, domain, locale: about a tenth of a millisecond); a busy page such as the review
    queue makes a hundred calls.  Same semantics as ``jinja2.ext``'s new-style gettext: the
    result is Markup under autoescape and always %-formatted with the (escaped) variables."""
    lookup = get_translations().gettext

    @pass_context
    def gettext(context, string, **variables):
        rv = lookup(string)
        if context.eval_ctx.autoescape:
            rv = Markup(rv)  # noqa: S704  (catalogue text, as jinja2.ext's own new-style gettext does)
        return rv % variables

    return gettext


@bp.app_context_processor
def _template_globals():
    if not is_console_blueprint(request.blueprint):
        return {}
    user = current_user if current_user.is_authenticated else None
    gettext = _request_gettext()
    return {
        "_": gettext, "gettext": gettext,
        "nav_menu": nav.cached_menu(user, str(get_locale()), request.script_root) if is_staff(user) else [],
        "languages": LANGUAGES,
        "current_language": session.get("lang") or "en",
        "can": lambda name: has_permission(user, name),
        "me": user,
    }


def form_int(name: str) -> int | str | None:
    """An integer field: its int, None when empty, or the raw text (the schema then says why)."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw
