"""Request authentication: cookie sessions, bearer API tokens, CSRF.

* A login creates a random session id (``sid``), kept in the signed cookie; the database keeps
  its SHA-256 and expiry (``user_sessions``).  The user loader accepts a cookie only while that
  row exists and has not expired, so logout, "log out everywhere", a password change, a reset
  and a suspension (which delete rows) make a replayed cookie worthless.
* ``Authorization: Bearer <token>`` authenticates integrations; the token's SHA-256 is looked
  up; such requests carry no cookie and are exempt from CSRF.
* Cookie-authenticated writes must echo the session's CSRF token in ``X-CSRF-Token``
  (returned by login and by ``GET /api/v1/auth/csrf``), or, for an HTML form (the staff
  console), in its ``csrf_token`` field.

Authentication is one indexed lookup: a token request is a single query (token by its unique
hash, joined to its member and the member's roles), a cookie request likewise (the session row
by its primary key, joined to its member and roles); neither touches Redis.  The query is
a Core statement whose row becomes the same persistent ``User`` the ORM would have loaded
(``_user_from_rows``): ORM entity loading with the roles joined cost several times the query.  Nothing is
cached between requests, so a revoked token, a deactivated member or a dropped session is
refused by the very next request in every process, and a suspension is seen by it.  A token's
``last_used_at`` is written at most once a minute per token (the lookup returns it, so deciding
needs no per-request write); a session row is written only at login and logout.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from flask import Flask, current_app, g, request, session
from flask_login import login_user, logout_user
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from errors import Forbidden, Unauthorized
from extensions import db, login_manager, sqlite_begin_mode

from .models import ApiToken, User, UserRole, UserSession, utcnow

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
# How stale a token's ``last_used_at`` may get before a request refreshes it.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)

# Built once per process: the member's columns and their roles in one Core statement (one row
# per role, or one with NULL role columns), turned into the persistent ``User`` the ORM would
# have loaded (see ``_user_from_rows``): loading the entity through the ORM, with its roles
# joined, cost several times the query itself.
_USER_COLUMNS = tuple((prop.key, prop.columns[0]) for prop in sa_inspect(User).column_attrs)
_ROLE_COLUMNS = tuple((prop.key, prop.columns[0]) for prop in sa_inspect(UserRole).column_attrs)
_USER_AND_ROLES = (
    select(*(col for _, col in _USER_COLUMNS), *(col.label(f"role_{key}") for key, col in _ROLE_COLUMNS))
    .select_from(User)
    .outerjoin(UserRole, UserRole.user_id == User.id)
)
_USER_BY_TOKEN = (
    _USER_AND_ROLES.add_columns(ApiToken.id.label("token_id"), ApiToken.last_used_at.label("token_last_used_at"))
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None))
)
_USER_BY_SESSION = (
    _USER_AND_ROLES.join(UserSession, UserSession.user_id == User.id)
    .where(UserSession.sid_hash == bindparam("sid_hash"), UserSession.user_id == bindparam("user_id"),
           UserSession.expires_at > bindparam("now"))
)
_N_USER, _N_ROLE = len(_USER_COLUMNS), len(_ROLE_COLUMNS)
_USER_KEYS, _ROLE_KEYS = tuple(k for k, _ in _USER_COLUMNS), tuple(k for k, _ in _ROLE_COLUMNS)
_USER_MAPPER, _ROLE_MAPPER = sa_inspect(User), sa_inspect(UserRole)


def _fetch_user(statement, params: dict) -> tuple[User, tuple] | None:
    """The member of ``statement``'s rows as a persistent ``User`` of this request's session,
    with ``role_rows`` loaded, and the first row's columns after the role columns; None if no row.

    The same object the ORM would load (committed attribute values, identity key, in the
    identity map): if the session already holds that member, that instance is used, as a
    query would."""
    rows = db.session.connection().execute(statement, params).all()
    if not rows:
        return None
    first = rows[0]
    extra = tuple(first[_N_USER + _N_ROLE:])
    key = _USER_MAPPER.identity_key_from_primary_key((first[0],))
    existing = db.session.identity_map.get(key)
    if existing is not None:
        return existing, extra
    return _user_from_rows(rows), extra


def _user_from_rows(rows) -> User:
    # Column values go straight into the instance's dict: make_transient_to_detached then
    # commits them all (no history), as a load would.  The collection needs the ORM's setter.
    user = _USER_MAPPER.class_manager.new_instance()
    user.__dict__.update(zip(_USER_KEYS, rows[0][:_N_USER], strict=True))
    roles = []
    for row in rows:
        values = row[_N_USER:_N_USER + _N_ROLE]
        if values[0] is None:  # the outer join found no role
            continue
        role = _ROLE_MAPPER.class_manager.new_instance()
        role.__dict__.update(zip(_ROLE_KEYS, values, strict=True))
        make_transient_to_detached(role)
        roles.append(role)
    set_committed_value(user, "role_rows", roles)
    make_transient_to_detached(user)
    db.session.add(user)  # cascades to the role rows: persistent, clean, nothing to flush
    return user


# Endpoints whose request carries its own credential (a token in the URL or body) and acts on
# no ambient authority, e.g. RFC 8058 one-click unsubscribe; domains add theirs at init.
CSRF_EXEMPT: set[str] = set()
CSRF_FORM_FIELD = "csrf_token"
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(user: User) -> str:
    """Log ``user`` in on this request's cookie session; returns the new CSRF token.

    Writes and commits the session row in its own transaction (callers have committed their
    own work by now)."""
    session.clear()
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    # The server-side session lives exactly as long as the (permanent) cookie.
    db.session.execute(insert(UserSession).values(
        sid_hash=hash_token(sid), user_id=user.id, created_at=now,
        expires_at=now + current_app.permanent_session_lifetime,
    ))
    db.session.commit()
    session["sid"] = sid
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True
    login_user(user)
    return session["csrf"]


def end_session() -> None:
    """End this request's cookie session (if any): its row goes, the cookie is cleared."""
    sid = session.get("sid")
    if sid:
        db.session.execute(delete(UserSession).where(UserSession.sid_hash == hash_token(sid)))
        db.session.commit()
    forget_session()


def forget_session() -> None:
    """Log this request out and clear its cookie, once its session row is gone."""
    logout_user()
    session.clear()


def end_all_sessions(user_id: int) -> int:
    """End every cookie session of a member (password change or reset, suspension, "log out
    everywhere"), committing with whatever the caller wrote before; returns how many were live."""
    live = db.session.execute(
        delete(UserSession).where(UserSession.user_id == user_id, UserSession.expires_at > utcnow())
    ).rowcount
    db.session.execute(delete(UserSession).where(UserSession.user_id == user_id))
    db.session.commit()
    return live


def purge_expired_sessions(now=None) -> int:
    """Delete session rows past their expiry (the cookie is refused already); returns how many."""
    removed = db.session.execute(delete(UserSession).where(UserSession.expires_at <= (now or utcnow()))).rowcount
    db.session.commit()
    return removed


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
    if not sid or not isinstance(sid, str):
        return None
    found = _fetch_user(_USER_BY_SESSION, {"sid_hash": hash_token(sid), "user_id": int(user_id), "now": utcnow()})
    if found is None or not found[0].is_active:
        return None
    user = found[0]
    g.auth_method = "session"
    return user


@login_manager.request_loader
def _load_token_user(req) -> User | None:
    secret = _bearer_secret(req)
    if secret is None:
        return None
    found = _fetch_user(_USER_BY_TOKEN, {"token_hash": hash_token(secret)})
    if found is None or not found[0].is_active:
        raise Unauthorized("The API token is invalid or revoked.", code="invalid_token")
    user, (token_id, last_used_at) = found
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


# Writes a suspended member may still make: signing in and out, and whatever only concerns their
# own account and mail rather than the community (domains add theirs at init: opting out of
# mail, verifying an address, resetting a password, marking notifications read).
SUSPENDED_MAY: set[str] = {"auth.Logout", "auth.Login", "auth.LogoutEverywhere"}


def _check_suspension(user) -> None:
    """Suspended = read-only, for sessions and tokens alike (403 ``account_suspended``)."""
    if request.method in SAFE_METHODS or not getattr(user, "is_authenticated", False):
        return
    if request.endpoint in SUSPENDED_MAY:
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
    if not app.config.get("SESSION_PROTECTION"):
        # flask-login hashes the client's address and user agent on every request only to
        # compare them under session protection, which is off: skip the hash.
        login_manager._session_protection_failed = lambda: False

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
