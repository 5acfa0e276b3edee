"""The migrations build exactly the schema the models describe, and run down and up again.

Runs on a scratch database of the same kind as the suite's (a SQLite file, or a PostgreSQL
database next to the configured one), so the shared test schema is never touched.
"""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from extensions import alembic_include_object, db
from tests.conftest import _database_url


@pytest.fixture
def scratch_url(tmp_path):
    url = make_url(_database_url())
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"{url.database}_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def schema_drift() -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": alembic_include_object}
        )
        return compare_metadata(context, db.metadata)


def table_names() -> set[str]:
    return set(inspect(db.engine).get_table_names())


def test_migrations_match_the_models_and_go_down_and_up(make_app, scratch_url):
    scratch = make_app(SQLALCHEMY_DATABASE_URI=scratch_url)
    with scratch.app_context():
        upgrade(revision="heads")
        assert schema_drift() == []
        model_tables = {t.name for t in db.metadata.sorted_tables}
        assert model_tables <= table_names()

        downgrade(revision="base")
        leftover = {t for t in table_names() if alembic_include_object(None, t, "table", True, None)}
        assert leftover <= {"alembic_version"}, f"downgrade left tables behind: {sorted(leftover)}"

        upgrade(revision="heads")
        assert schema_drift() == []
        db.session.remove()
        db.engine.dispose()


def test_include_object_skips_only_full_text_objects():
    assert not alembic_include_object(None, "forum_search_fts", "table", True, None)
    assert not alembic_include_object(None, "forum_search_fts_data", "table", True, None)
    assert not alembic_include_object(None, "ix_fts_posts_body", "index", True, None)
    assert alembic_include_object(None, "ix_fts_posts_body", "table", True, None)
    assert alembic_include_object(None, "users", "table", True, None)
    assert alembic_include_object(None, "ix_users_referred_by_id", "index", True, None)


def _seed_redemption() -> None:
    """A fulfilled coupon redemption with its history, written with Core (the ORM models are
    one revision ahead of the schema here)."""
    t = db.metadata.tables
    with db.engine.begin() as conn:
        conn.execute(t["users"].insert().values(id=1, email="m@example.com", password_hash="x", display_name="M"))
        conn.execute(t["rewards"].insert().values(id=1, name="Coffee", cost=10, kind="coupon", stock=0))
        conn.execute(t["redemptions"].insert().values(id=1, member_id=1, reward_id=1, state="fulfilled", cost=10,
                                                      idempotency_key="k"))
        conn.execute(t["reward_codes"].insert().values(reward_id=1, code="C-1", redemption_id=1))
        conn.execute(t["redemption_transitions"].insert(), [
            {"redemption_id": 1, "from_state": None, "to_state": "pending", "actor_id": 1},
            {"redemption_id": 1, "from_state": "pending", "to_state": "fulfilled", "actor_id": None},
        ])
        conn.execute(t["redemption_jobs"].insert().values(redemption_id=1, status="succeeded", attempts=1))


def _history_counts() -> tuple:
    with db.engine.connect() as conn:
        return tuple(conn.execute(text(sql)).scalar() for sql in (
            "SELECT count(*) FROM redemptions",
            "SELECT count(*) FROM redemption_transitions",
            "SELECT count(*) FROM redemption_jobs",
            "SELECT count(*) FROM reward_codes WHERE redemption_id = 1",
        ))


def test_rewards_0002_widens_the_state_check_and_keeps_the_history(make_app, scratch_url):
    """On SQLite the revision rebuilds ``redemptions``: the rows that reference it (transitions,
    job, assigned code) must survive, and the state check must still refuse unknown states."""
    from sqlalchemy.exc import IntegrityError

    scratch = make_app(SQLALCHEMY_DATABASE_URI=scratch_url)
    with scratch.app_context():
        upgrade(revision="tiers_0003")
        _seed_redemption()
        with db.engine.connect() as conn, pytest.raises(IntegrityError):
            conn.execute(text("UPDATE redemptions SET state = 'refunded' WHERE id = 1"))

        upgrade(revision="rewards_0002")
        assert _history_counts() == (1, 2, 1, 1)
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE redemptions SET state = 'refunded', refund_reason = 'r' WHERE id = 1"))
        with db.engine.connect() as conn, pytest.raises(IntegrityError):
            conn.execute(text("UPDATE redemptions SET state = 'lost' WHERE id = 1"))
        if db.engine.dialect.name == "sqlite":
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
                assert "ck_redemptions_cost_positive" in conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'redemptions'").scalar()

        with pytest.raises(SystemExit):  # flask-migrate logs the RuntimeError and exits 1
            downgrade(revision="tiers_0003")
        assert _history_counts() == (1, 2, 1, 1)
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE redemptions SET state = 'fulfilled' WHERE id = 1"))
        downgrade(revision="tiers_0003")
        assert _history_counts() == (1, 2, 1, 1)
        assert "refund_reason" not in {c["name"] for c in inspect(db.engine).get_columns("redemptions")}

        upgrade(revision="heads")
        assert schema_drift() == []
        db.session.remove()
        db.engine.dispose()
