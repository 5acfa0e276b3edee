"""Read-only requests on PostgreSQL read outside a transaction until they need one.

``extensions._lazy_transactions_for_reads``: a GET's plain SELECTs run in autocommit (no
``BEGIN`` / ``ROLLBACK`` round trips); the first statement that is not a plain read opens the
transaction before it runs, so a write, a row lock or a server-side cursor behaves exactly as in
any other request.  Observed on the real connection: ``pgconn.transaction_status`` after each
statement says whether a transaction was open.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, select, text

from community.models import User
from extensions import _plain_read, db, sqlite_begin_mode


@pytest.fixture(autouse=True)
def _postgres_only(app):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL only: SQLite reads defer their lock instead (extensions._configure_sqlite)")


class Observed:
    """(first word of the statement, transaction open after it) for every statement run."""

    def __init__(self, app):
        self.app, self.seen = app, []

    def _after(self, conn, _cursor, statement, *_args):
        from psycopg.pq import TransactionStatus

        status = conn.connection.dbapi_connection.pgconn.transaction_status
        self.seen.append((statement.lstrip().split()[0].upper(), status != TransactionStatus.IDLE))

    def __enter__(self):
        with self.app.app_context():
            event.listen(db.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc):
        with self.app.app_context():
            event.remove(db.engine, "after_cursor_execute", self._after)


@pytest.fixture
def read_only():
    token = sqlite_begin_mode.set("DEFERRED")  # what before_request sets for GET / HEAD / OPTIONS
    yield
    sqlite_begin_mode.reset(token)


def test_a_get_reads_without_a_transaction_and_a_post_keeps_one(app, make_member, login):
    client = login(make_member())
    with Observed(app) as sql:
        assert client.get("/api/v1/me/points").status_code == 200
    assert sql.seen and all(word == "SELECT" and not in_tx for word, in_tx in sql.seen), sql.seen

    with Observed(app) as sql:
        resp = client.patch("/api/v1/me", json={"display_name": "Renamed"})
    assert resp.status_code == 200, resp.get_json()
    assert sql.seen and all(in_tx for _word, in_tx in sql.seen), sql.seen


def test_the_pooled_connection_goes_back_to_transactions(app, make_member, login, read_only):
    member = make_member()
    with app.app_context():
        db.session.scalar(select(User.id).where(User.id == member.id))
        dbapi = db.session.connection().connection.dbapi_connection
        assert dbapi.autocommit is True
        db.session.remove()
        assert dbapi.autocommit is False  # checked in: the next caller (a job, a POST) gets a transaction


def test_a_write_in_a_read_only_request_is_still_one_transaction(app, make_member, read_only):
    member = make_member(display_name="Before")
    with app.app_context(), Observed(app) as sql:
        assert db.session.scalar(select(User.display_name).where(User.id == member.id)) == "Before"
        db.session.execute(text("UPDATE users SET display_name = 'During' WHERE id = :id"), {"id": member.id})
        db.session.execute(text("UPDATE users SET bio = 'x' WHERE id = :id"), {"id": member.id})
        assert db.session.scalar(select(User.display_name).where(User.id == member.id)) == "During"
        db.session.rollback()  # nothing of the two updates may stay
        assert db.session.scalar(select(User.display_name).where(User.id == member.id)) == "Before"
        db.session.remove()
    words = [w for w, _ in sql.seen]
    first_update = words.index("UPDATE")
    assert not any(in_tx for _w, in_tx in sql.seen[:first_update]), sql.seen  # the reads before it
    assert all(in_tx for _w, in_tx in sql.seen[first_update:-1]), sql.seen  # one transaction from the write on
    assert sql.seen[-1] == ("SELECT", False)  # after the rollback: reading without one again


@pytest.mark.parametrize("statement", [
    "SELECT id FROM users WHERE id = :id FOR UPDATE",
    "SELECT id FROM users WHERE id = :id FOR NO KEY UPDATE",
    "SELECT id FROM users WHERE id = :id FOR SHARE",
    "SELECT pg_advisory_xact_lock(:id)",
    "SELECT set_config('statement_timeout', '5s', true), :id",
])
def test_locks_and_settings_open_the_transaction_first(app, make_member, read_only, statement):
    member = make_member()
    with app.app_context(), Observed(app) as sql:
        db.session.execute(text(statement), {"id": member.id})
        db.session.remove()
    assert sql.seen[-1][1] is True  # the lock lives until the request's transaction ends


def test_a_server_side_cursor_runs_in_a_transaction(app, make_member, read_only):
    ids = {make_member().id for _ in range(3)}
    with app.app_context():
        got = {row.id for row in db.session.execute(
            select(User.id).execution_options(yield_per=2)) if row.id in ids}
        db.session.remove()
    assert got == ids


def test_which_statements_count_as_plain_reads():
    assert _plain_read("SELECT users.id FROM users WHERE users.id = %(id)s")
    assert _plain_read("  select 1")
    for statement in ("INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "WITH x AS (DELETE FROM t) SELECT 1",
                      "SELECT 1 FROM t FOR UPDATE", "SELECT a INTO b FROM t", "SAVEPOINT sa_1",
                      "SELECT nextval('s')", "SET LOCAL jit = off"):
        assert not _plain_read(statement), statement
