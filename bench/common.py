"""Pieces the data-set benchmarks (``bench/tiers.py``, ``bench/analytics.py``) share: a scratch
PostgreSQL database next to the configured one, a ``1..n`` row source for set-based generation,
a timer, and the teardown that leaves nothing behind (the database unless kept, the embedded
Redis the bench started)."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def bench_database(url: str, name: str, reuse: bool) -> tuple[str, object, bool]:
    """Create database ``name`` on the server of ``url`` (or reuse it when asked and present).

    Returns its URL, the admin engine, and whether the data must be generated.
    """
    from config import normalise_database_url

    base = make_url(normalise_database_url(url))
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not (reuse and exists):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name).render_as_string(hide_password=False), admin, not (reuse and exists)


def database_name(url: str, suffix: str) -> str:
    """``<configured db>_<suffix>``: the scratch database's name."""
    from config import normalise_database_url

    return f"{make_url(normalise_database_url(url)).database}_{suffix}"


def series(dialect: str, n: int) -> str:
    """A FROM clause yielding g = 1..n."""
    if dialect == "postgresql":
        return f"generate_series(1, {n}) AS s(g)"
    return f"(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n}) SELECT g FROM c) AS s"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def finish(app, admin, url: str, keep: bool) -> None:
    """Close the app's connections, drop the scratch database (unless kept), stop our embedded Redis."""
    from extensions import db, stop_embedded_redis

    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if admin is not None and not keep:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    stop_embedded_redis()
