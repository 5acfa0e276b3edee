"""Request authentication: cookie sessions tracked in Redis, bearer API tokens, CSRF.

* A login creates a server-side session id (``sid``) in Redis and in the signed cookie.  The
  user loader accepts a cookie only while its ``sid`` is live, so logout and a password change
  (which drop the ids) make a replayed cookie worthless.
* ``Authorization: Bearer <token>`` authenticates integrations; the token's SHA-256 is looked
  up; such requests carry no cookie and are exempt from CSRF.
* Cookie-authenticated writes must echo the session's CSRF token in ``X-CSRF-Token``
  (returned by login and by ``GET /api/v1/auth/csrf``), or, for an HTML form (the staff
  console), in its ``csrf_token`` field.

Authentication is one indexed lookup: a token request is a single query (token by its unique
hash, joined to its member and the member's roles), a cookie request one Redis ``GET`` of the
session id and the member by primary key, again with the roles in the same query.  Nothing is
cached between requests, so a revoked token, a deactivated member or a dropped session is
refused by the very next request in every process, and a suspension is seen by it.  A token's
``last_used_at`` is written at most once a minute per token (the lookup returns it, so deciding
needs no per-request write).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from flask import Flask, current_app, g, request, session
from flask_login import login_user, logout_user
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import joinedload

from errors import Forbidden, Unauthorized
from extensions import db, get_redis, login_manager, sqlite_begin_mode

from .models import ApiToken, User, utcnow

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
# How stale a token's ``last_used_at`` may get before a request refreshes it.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)

# Built once per process: the member and their roles in one statement (the roles relationship
# would otherwise cost a second, "selectin", query).
_USER_BY_ID = select(User).options(joinedload(User.role_rows)).where(User.id == bindparam("user_id"))
_USER_BY_TOKEN = (
    select(User, ApiToken.id, ApiToken.last_used_at)
    .join(ApiToken, ApiToken.user_id == User.id)
    .options(joinedload(User.role_rows))
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None))
)
# Endpoints whose request carries its own credential (a token in the URL or body) and acts on
# no ambient authority, e.g. RFC 8058 one-click unsubscribe; domains add theirs at init.
CSRF_EXEMPT: set[str] = set()
CSRF_FORM_FIELD = "csrf_token"
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _sess_key(sid: str) -> str:
    return f"kinship:sess:{sid}"


def _user_sess_key(user_id: int) -> str:
    return f"kinship:user-sess:{user_id}"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(user: User) -> str:
    """Log ``user`` in on this request's cookie session; returns the new CSRF token."""
    conn = get_redis()
    session.clear()
    sid = secrets.token_urlsafe(32)
    # The server-side session lives exactly as long as the (permanent) cookie.
    ttl = int(current_app.permanent_session_lifetime.total_seconds())
    with conn.pipeline() as pipe:
        pipe.set(_sess_key(sid), str(user.id), ex=ttl)
        pipe.sadd(_user_sess_key(user.id), sid)
        pipe.expire(_user_sess_key(user.id), ttl)
        pipe.execute()
    session["sid"] = sid
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True
    login_user(user)
    return session["csrf"]


def end_session() -> None:
    sid = session.get("sid")
    user_id = session.get("_user_id")
    if sid:
        conn = get_redis()
        conn.delete(_sess_key(sid))
        if user_id:
            conn.srem(_user_sess_key(int(user_id)), sid)
    logout_user()
    session.clear()


def end_all_sessions(user_id: int) -> None:
    """Invalidate every cookie session of a member (password change, suspension)."""
    conn = get_redis()
    key = _user_sess_key(user_id)
    sids = conn.smembers(key)
    with conn.pipeline() as pipe:
        for sid in sids:
            pipe.delete(_sess_key(sid.decode() if isinstance(sid, bytes) else sid))
        pipe.delete(key)
        pipe.execute()


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _bearer_secret(req) -> str | None:
    header = req.headers.get("Authorization", "")
    return header[len("Bearer ") :].strip() if header.startswith("Bearer ") else None


@login_manager.user_loader
def _load_session_user(user_id: str) -> User | None:
    if _bearer_secret(request) is not None:
        return None  # a bearer token decides alone; flask-login then asks the request loader
    sid = session.get("sid")
    if not sid:
        return None
    live = get_redis().get(_sess_key(sid))
    if live is None or live.decode() != str(user_id):
        return None
    user = db.session.execute(_USER_BY_ID, {"user_id": int(user_id)}).unique().scalar_one_or_none()
    if user is None or not user.is_active:
        return None
    g.auth_method = "session"
    return user


@login_manager.request_loader
def _load_token_user(req) -> User | None:
    secret = _bearer_secret(req)
    if secret is None:
        return None
    row = db.session.execute(_USER_BY_TOKEN, {"token_hash": hash_token(secret)}).unique().first()
    if row is None or not row[0].is_active:
        raise Unauthorized("The API token is invalid or revoked.", code="invalid_token")
    user, token_id, last_used_at = row
    g.auth_method = "token"
    if last_used_at is None or last_used_at < utcnow() - TOKEN_TOUCH_INTERVAL:
        g.touch_api_token_id = token_id
    return user


@login_manager.unauthorized_handler
def _unauthorized():
    raise Unauthorized("Log in to do this.")


def _check_csrf() -> None:
    if request.method in SAFE_METHODS or not current_app.config.get("CSRF_ENABLED", True):
        return
    if request.endpoint in CSRF_EXEMPT:
        return
    if g.get("auth_method") != "session":
        return  # token requests and anonymous ones carry no ambient credential to ride on
    expected = session.get("csrf", "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.mimetype in FORM_MIMETYPES:
        sent = request.form.get(CSRF_FORM_FIELD, "")  # the staff console's HTML forms
    if not expected or not hmac.compare_digest(expected, sent):
        raise Forbidden(
            f"Missing or wrong {CSRF_HEADER} header; fetch one from GET /api/v1/auth/csrf.", code="csrf_failed"
        )


# Writes a suspended member may still make: ending their own session.
# Signing in and out, and the emailed-token flows (one-click unsubscribe, address verification,
# password reset), stay open to a suspended account: none changes what the suspension is about.
_SUSPENDED_MAY = frozenset({
    "auth.Logout", "auth.Login", "console.login", "console.logout", "console.set_language",
    "messaging_preferences.OneClickUnsubscribe", "messaging_account.VerifyEmail",
    "messaging_account.PasswordReset", "messaging_account.PasswordResetConfirm",
    "messaging_pages.unsubscribe_page", "messaging_pages.verify_page", "messaging_pages.reset_page",
})


def _check_suspension(user) -> None:
    """Suspended = read-only, for sessions and tokens alike (403 ``account_suspended``)."""
    if request.method in SAFE_METHODS or not getattr(user, "is_authenticated", False):
        return
    if request.endpoint in _SUSPENDED_MAY:
        return
    from .services import check_not_suspended

    check_not_suspended(user)


def _touch_token(token_id: int) -> None:
    """Record when a token was last used (called at most once a minute per token), best effort.

    It never fails the request it follows: the database being unavailable only means
    ``last_used_at`` lags behind.  The response is built by now and the view has committed, so
    the request's transaction is ended first: on SQLite it may hold the write lock this update
    needs.  The update then runs in its own short transaction; two processes racing to refresh
    the same token both write about the same time, which is harmless.
    """
    mode = sqlite_begin_mode.set("IMMEDIATE")
    try:
        db.session.rollback()
        with db.engine.begin() as conn:
            conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))
    except SQLAlchemyError:
        log.warning("could not record the use of API token %s", token_id, exc_info=True)
    finally:
        sqlite_begin_mode.reset(mode)


def init_auth(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = None  # sessions are revocable server-side instead

    @app.before_request
    def _authenticate_and_check_csrf():
        from flask_login import current_user

        # Resolve the user first so a bad bearer token is a 401 before anything else.
        _ = current_user.is_authenticated
        _check_csrf()
        _check_suspension(current_user)

    @app.after_request
    def _after(response):
        token_id = g.get("touch_api_token_id")
        if token_id is not None and response.status_code < 400:
            _touch_token(token_id)
        return response
