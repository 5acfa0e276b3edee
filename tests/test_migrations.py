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
