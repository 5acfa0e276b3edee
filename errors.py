"""One error envelope for every 4xx/5xx: ``{"error": {"code", "message", "fields"}}``.

Services raise the ``AppError`` subclasses below; they know nothing about HTTP beyond the
status each class carries.  The handlers here turn those, werkzeug's HTTP exceptions,
webargs/marshmallow validation failures and unexpected exceptions into the envelope.
"""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
import redis
from flask import Flask, current_app, has_request_context, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Machine-readable, e.g. `validation_error`."})
    message = ma.fields.String(required=True, metadata={"description": "Plain text, for people."})
    fields = ma.fields.Dict(
        keys=ma.fields.String(), required=True,
        metadata={"description": "Per field or parameter, what is wrong with it; empty when no field is to blame."},
    )


class ErrorSchema(ma.Schema):
    """The one error envelope of every 4xx and 5xx answer."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}
        if code:
            self.code = code


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class ValidationError(AppError):
    status = 422
    code = "validation_error"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def envelope(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flatten_webargs(messages: Any) -> dict[str, Any]:
    """webargs nests messages by location ({"json": {...}, "query": {...}}); drop that level."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    flat: dict[str, Any] = {}
    for location, value in messages.items():
        if location in ("json", "query", "form", "files", "headers", "view_args", "path") and isinstance(
            value, dict
        ):
            flat.update(value)
        else:
            flat[location] = value
    return flat


def localise(message: str) -> str:
    """``message`` in the request's language when the app has a translator (the console's
    catalogue of every domain's literal error messages: ``console.messages.translate``)."""
    translate = current_app.extensions.get("kinship_translate_message") if has_request_context() else None
    return translate(message) if translate else message


def handle_app_error(error: AppError):
    return envelope(error.status, error.code, localise(error.message), error.fields, error.headers)


def handle_http_exception(error: HTTPException):
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    fields: dict[str, Any] = {}
    if "messages" in data:
        fields = _flatten_webargs(data["messages"])
    elif "errors" in data:
        fields = _flatten_webargs(data["errors"])
    if status == 422:
        message = data.get("message") or "The request body or parameters are invalid."
    elif status == 400 and ("json" in fields or "json" in (error.description or "").lower()):
        # webargs reports a body that does not parse as {"json": ["Invalid JSON body."]}.
        message = "The request body is not valid JSON."
    else:
        message = data.get("message") or error.description or error.name
    headers = {}
    if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    headers.update(data.get("headers") or {})
    return envelope(status, _HTTP_CODES.get(status, error.name.lower().replace(" ", "_")), message, fields, headers)


def describe_backend_error(error: BaseException) -> str:
    """One line naming the failure: ``OperationalError: connection refused`` (no SQL, no traceback)."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"{error.__class__.__name__}: {text[0] if text else cause.__class__.__name__}"[:300]


def handle_backend_unavailable(error: Exception):
    """Redis or the database unreachable or timing out: a temporary condition, not a bug (503)."""
    from flask import g, has_request_context, request

    where = f" on {request.method} {request.path}" if has_request_context() else ""
    log.warning("backend unavailable%s: %s", where, describe_backend_error(error))
    if has_request_context():
        g.backend_unavailable = True  # the teardown's failing rollback is the same failure: not logged again
    return envelope(
        503, "service_unavailable", "A backend service is temporarily unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )


def is_database_unavailable(error: BaseException) -> bool:
    """A lost or refused database connection (or an exhausted pool), as opposed to a bug."""
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        # SQLite's "database is locked" is an OperationalError too: a busy database, not a bug.
        return True
    if isinstance(error, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True
    if isinstance(error, sa_exc.PendingRollbackError):
        return True  # the session's connection failed earlier in this request
    return isinstance(error, sa_exc.DBAPIError) and bool(getattr(error, "connection_invalidated", False))


def handle_unexpected(error: Exception):
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    if is_database_unavailable(error):
        return handle_backend_unavailable(error)
    log.exception("Unhandled exception")
    return envelope(500, "internal_error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, handle_app_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(redis.exceptions.ConnectionError, handle_backend_unavailable)
    app.register_error_handler(redis.exceptions.TimeoutError, handle_backend_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
