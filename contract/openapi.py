"""Make the served OpenAPI document say what the server does.

flask-smorest documents success responses and request schemas from the decorators.  This
module adds, once every blueprint is registered (``finalize``):

* per-operation ``security``: public, bearer token or cookie session (plus the CSRF header on
  writes), or bearer only, read from the view's ``login_required`` / ``require`` / ``token_only``;
* every error status the operation can answer, each with the real envelope
  (``#/components/schemas/Error``): derived from what the view has (authentication,
  permissions, path ids, parameters, a JSON body) plus the statuses declared with ``@error_responses``;
* summaries and descriptions in Markdown rather than reST (``code`` instead of ````code````).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from apispec import BasePlugin
from flask import Flask
from flask_smorest.spec.plugins import FlaskPlugin
from werkzeug.routing import Rule

from .requests import JSON, WRITE_METHODS, IdConverter

ERROR_REF = {"$ref": "#/components/schemas/Error"}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                               "schema": {"type": "integer", "minimum": 0}}}

# What each status means in this API, with the ``error.code`` values it carries.
STATUS_TEXT = {
    400: "Malformed request: the body is not valid JSON, or is nested too deeply (`bad_request`).",
    401: "Not authenticated: log in or send a valid API token (`unauthorized`, `invalid_token`, "
         "`invalid_credentials`).",
    403: "Authenticated but not allowed: a missing permission (`forbidden`), a missing or wrong "
         "`X-CSRF-Token` on a cookie-authenticated write (`csrf_failed`), or a rule of the domain.",
    404: "No such resource, or one the caller may not see (`not_found`).",
    409: "The request conflicts with the resource's current state (`conflict` or a more specific code).",
    413: "The request body is larger than the server accepts (`payload_too_large`).",
    415: "The body's media type is not one this operation takes (`unsupported_media_type`).",
    422: "A parameter or the body is invalid; `fields` names each one (`validation_error`).",
    429: "Too many requests; retry after `Retry-After` seconds (`too_many_requests`).",
    500: "An unexpected error; no details are given (`internal_error`).",
    503: "A backend (database or Redis) is temporarily unavailable (`service_unavailable`).",
}


def error_responses(*statuses: int, **descriptions: str) -> Callable:
    """Declare error statuses a view answers beyond those ``finalize`` derives (409, 429, 403...).

    ``descriptions`` may name a status as ``s409="Already withdrawn (already_withdrawn)."``.
    """

    def decorate(fn):
        declared = dict(getattr(fn, "_errors", {}))
        for status in statuses:
            declared.setdefault(status, None)
        for key, text in descriptions.items():
            declared[int(key.lstrip("s"))] = text
        fn._errors = declared
        return fn

    return decorate


def token_only(fn):
    """The view accepts only ``Authorization: Bearer`` (documented as such)."""
    fn._token_only = True
    return fn


class ContractPlugin(BasePlugin):
    """Adds a schema class's ``openapi_extra`` (e.g. ``minProperties``) to its component."""

    def schema_helper(self, name, definition, **kwargs):
        schema = kwargs.get("schema")
        extra = getattr(schema if isinstance(schema, type) else type(schema), "openapi_extra", None)
        return dict(extra) if extra else None


def _markdown(text: str) -> str:
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _security(fn, method: str) -> list:
    if getattr(fn, "_token_only", False):
        return [{"bearerToken": []}]
    if getattr(fn, "_auth", None) is None:
        return []
    cookie = {"sessionCookie": [], "csrfToken": []} if method in WRITE_METHODS else {"sessionCookie": []}
    return [{"bearerToken": []}, cookie]


def _statuses(fn, rule: Rule, method: str, operation: dict) -> dict[int, str | None]:
    found: dict[int, str | None] = {500: None, 503: None}
    auth = getattr(fn, "_auth", None)
    if auth is not None:
        found[401] = None
        if auth == "permission" or method in WRITE_METHODS:
            found[403] = None
    if rule.arguments:
        found[404] = None
    if any(isinstance(c, IdConverter) for c in rule._converters.values()):
        found[422] = None
    if operation.get("parameters") and any(p.get("in") != "path" for p in operation["parameters"]):
        found[422] = None
    body = operation.get("requestBody")
    if body is not None:
        found.update({413: None, 422: None})
        if JSON in body.get("content", {}):
            found[400] = None
    if method in WRITE_METHODS:
        found[415] = None
    found.update(getattr(fn, "_errors", {}) or {})
    return found


def _response(status: int, text: str | None) -> dict:
    response = {"description": text or STATUS_TEXT.get(status, "Error."),
                "content": {JSON: {"schema": dict(ERROR_REF)}}}
    if status in (429, 503):
        response["headers"] = dict(RETRY_AFTER)
    return response


def _view_method(app: Flask, rule: Rule, method: str):
    view = app.view_functions.get(rule.endpoint)
    view_class = getattr(view, "view_class", None)
    return getattr(view_class, method.lower(), None) if view_class is not None else view


def finalize(app: Flask, api) -> None:
    """Rewrite the document's operations in place; call once every blueprint is registered."""
    paths = api.spec._paths
    for rule in app.url_map.iter_rules():
        path = FlaskPlugin.flaskpath2openapi(rule.rule)
        if path not in paths:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = paths[path].get(method.lower())
            fn = _view_method(app, rule, method)
            if operation is None or fn is None:
                continue
            operation["security"] = _security(fn, method)
            responses = operation.setdefault("responses", {})
            for key in [k for k in responses if k == "default" or str(k)[0] in "45"]:
                del responses[key]
            for status, text in sorted(_statuses(fn, rule, method, operation).items()):
                responses[str(status)] = _response(status, text)
            for key in ("summary", "description"):
                if operation.get(key):
                    operation[key] = _markdown(operation[key])
    api.spec.options.pop("security", None)
    api.spec.components.responses.clear()  # flask-smorest's own, replaced by the inline ones above
    if "Error" not in api.spec.components.schemas:
        from errors import ErrorSchema

        api.spec.components.schema("Error", schema=ErrorSchema)
