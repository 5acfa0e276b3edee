"""Request checks every API view gets before its own code runs.

* **Path ids** (``<int:...>`` in a rule) are range-checked: an id outside 1 .. 2^31 - 1 is a 422
  naming the parameter (no such row can exist, and the database must never see the number).
* **Request bodies**: a write whose body is not ``application/json`` (or the media types a view
  declares with ``@accepts``) is 415 ``unsupported_media_type``; a view that documents a required
  JSON body answers 422 when none is sent; JSON nested deeper than ``MAX_JSON_DEPTH`` is a 400.
* **Text never holds NUL** (U+0000; PostgreSQL cannot store it): in a query parameter or
  anywhere in a JSON body it is a 422.

Authentication and CSRF run before these (a stranger gets 401, not 415).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask, current_app, request
from werkzeug.routing import IntegerConverter

from errors import BadRequest, UnsupportedMediaType, ValidationError

from .fields import INT32_MAX

MAX_JSON_DEPTH = 32
JSON = "application/json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class IdConverter(IntegerConverter):
    """``<int:name>``: a row id.  Documented as 1 .. 2^31 - 1; out of range is a 422, see below."""

    def __init__(self, map, *args, min=1, max=INT32_MAX, **kwargs):  # noqa: A002 - werkzeug's names
        super().__init__(map, *args, min=min, max=max, **kwargs)

    def to_python(self, value: str) -> int:
        return int(value)  # the range is checked once the argument's name is known


def accepts(*media_types: str) -> Callable:
    """Declare the body media types a view takes instead of JSON (e.g. an upload)."""

    def decorate(fn):
        fn._accepts = frozenset(media_types)
        return fn

    return decorate


def view_method(app: Flask | None = None) -> Callable | None:
    """The function (MethodView method) that will answer this request, if any."""
    rule = request.url_rule
    if rule is None or request.routing_exception is not None:
        return None
    view = (app or current_app).view_functions.get(rule.endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    return getattr(view_class, request.method.lower(), None)


def json_body_required(fn) -> bool:
    apidoc = getattr(fn, "_apidoc", {}) or {}
    for param in (apidoc.get("arguments") or {}).get("parameters", []):
        if param.get("in") == "json" and param.get("required", True):
            return True
    return False


def _documents_json_body(fn) -> bool:
    apidoc = getattr(fn, "_apidoc", {}) or {}
    return any(p.get("in") == "json" for p in (apidoc.get("arguments") or {}).get("parameters", []))


def _anonymous_at_protected_view() -> bool:
    """The view will answer 401 itself: a stranger learns nothing about its inputs first."""
    from flask_login import current_user

    fn = view_method()
    return getattr(fn, "_auth", None) is not None and not current_user.is_authenticated


def _check_path_ids() -> None:
    rule, values = request.url_rule, request.view_args
    if not values or rule is None or _anonymous_at_protected_view():
        return
    errors = {}
    for name, value in values.items():
        converter = rule._converters.get(name)
        if isinstance(converter, IdConverter) and not (converter.min <= value <= converter.max):
            errors[name] = [f"Must be between {converter.min} and {converter.max}."]
    if errors:
        raise ValidationError("A path parameter is out of range.", fields=errors)


def _inspect(value) -> tuple[int, bool]:
    """The nesting depth of a parsed JSON value, and whether any string in it holds a NUL."""
    deepest, nul, stack = 0, False, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            nul = nul or "\x00" in node
        elif isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth, nul
            if isinstance(node, dict):
                nul = nul or any("\x00" in key for key in node)
                children = node.values()
            else:
                children = node
            stack.extend((child, depth + 1) for child in children)
    return deepest, nul


def _check_query() -> None:
    """Text never holds NUL (PostgreSQL cannot store it): a 422 naming the parameter."""
    if not request.path.startswith("/api/"):
        return
    bad = {key: ["NUL characters are not allowed."] for key, value in request.args.items(multi=True)
           if "\x00" in key or "\x00" in value}
    if bad:
        raise ValidationError("A query parameter is invalid.", fields=bad)


def _check_body() -> None:
    if request.method not in WRITE_METHODS or not request.path.startswith("/api/"):
        return
    fn = view_method()
    if fn is None or _anonymous_at_protected_view():
        return
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")
    if not has_body:
        if json_body_required(fn):
            raise ValidationError("A JSON request body is required.", fields={"_body": ["Missing request body."]})
        return
    takes_body = json_body_required(fn) or _documents_json_body(fn) or getattr(fn, "_accepts", None)
    accepted = getattr(fn, "_accepts", None) or frozenset({JSON})
    if request.mimetype not in accepted:
        raise UnsupportedMediaType(
            f"Send the body as {' or '.join(sorted(accepted))}.",
            fields={"Content-Type": [f"Unsupported media type {request.mimetype or '(none)'!r}."]},
        )
    if request.mimetype == JSON:
        try:
            data = json.loads(request.get_data(cache=True))
        except RecursionError as exc:
            raise BadRequest(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.") from exc
        except ValueError:
            return  # the view's parser answers 400 for malformed JSON
        depth, nul = _inspect(data)
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
        if nul:
            raise ValidationError("Text in the body must not contain NUL characters.",
                                  fields={"_body": ["NUL characters are not allowed."]})
        if not takes_body and data not in ({}, None):
            raise ValidationError("This operation takes no request body.",
                                  fields={"_body": ["Send no body (or an empty JSON object)."]})


def init_request_checks(app: Flask) -> None:
    """Register the checks; call after authentication is set up (its hooks must run first)."""
    app.before_request(_check_path_ids)
    app.before_request(_check_query)
    app.before_request(_check_body)
