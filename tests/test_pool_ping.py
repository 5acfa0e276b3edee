"""The pool's pre-ping (extensions._cheap_pre_ping): a quiet pooled PostgreSQL connection is
checked out without a round trip, and one the server closed is still replaced at checkout."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from extensions import db, sqlite_begin_mode


def _admin(engine):
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(url, autocommit=True)


def _last_query(admin, pid: int) -> str:
    return admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


@pytest.fixture
def pg_engine(app):
    engine = db.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (SQLite has no server to drop a connection)")
    engine.dispose()
    # As a job or a writing request checks connections out: in transactions (the app fixture
    # makes the test's own code a read-only caller, whose plain reads send no BEGIN/COMMIT).
    token = sqlite_begin_mode.set("IMMEDIATE")
    yield engine
    sqlite_begin_mode.reset(token)


def test_a_quiet_connection_is_checked_out_without_select_1(pg_engine):
    with pg_engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        conn.commit()
    with _admin(pg_engine) as admin:
        assert _last_query(admin, pid) == "COMMIT"
        with pg_engine.connect() as conn:  # checked out (and pre-pinged) again, nothing run yet
            # The ping sent nothing: the last statement the server saw is still our COMMIT.
            assert _last_query(admin, pid) == "COMMIT"
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == pid


def test_a_connection_the_server_closed_is_replaced_at_checkout(pg_engine):
    with pg_engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with _admin(pg_engine) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        deadline = time.monotonic() + 5
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with pg_engine.connect() as conn:  # no error: the dead connection was noticed and replaced
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
