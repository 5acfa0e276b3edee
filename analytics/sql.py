"""The few SQL pieces that differ between SQLite and PostgreSQL, and typed parameter binding.

Analytics works set-based: one statement computes what a Python loop over members would, on
both backends.  Everything dialect-specific lives here.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import Date, DateTime, bindparam, text

from extensions import db


def dialect() -> str:
    return db.session.get_bind().dialect.name


def days_since(column: str, now_param: str = ":now") -> str:
    """Fractional days from ``column`` to the bound ``now``."""
    if dialect() == "postgresql":
        return f"(EXTRACT(EPOCH FROM (CAST({now_param} AS timestamp) - {column})) / 86400.0)"
    return f"(julianday({now_param}) - julianday({column}))"


def days_between(start: str, end: str) -> str:
    """Fractional days from column ``start`` to column ``end``."""
    if dialect() == "postgresql":
        return f"(EXTRACT(EPOCH FROM ({end} - {start})) / 86400.0)"
    return f"(julianday({end}) - julianday({start}))"


def month_of(column: str) -> str:
    if dialect() == "postgresql":
        return f"CAST(EXTRACT(MONTH FROM {column}) AS INTEGER)"
    return f"CAST(strftime('%m', {column}) AS INTEGER)"


def year_month(column: str) -> str:
    """'YYYY-MM' of a timestamp column."""
    if dialect() == "postgresql":
        return f"to_char({column}, 'YYYY-MM')"
    return f"strftime('%Y-%m', {column})"


def xor(a: str, b: str) -> str:
    """Bitwise XOR of two non-negative integers below 2**62 (SQLite has no XOR operator)."""
    return f"((({a}) | ({b})) - (({a}) & ({b})))"


def typed(sql: str, **params):
    """``text(sql)`` with datetime/date parameters bound as such (so SQLite compares them in the
    stored format) and the parameters to execute it with."""
    stmt = text(sql)
    used = {name for name in params if re.search(rf":{name}\b", sql)}
    binds = []
    for name, value in params.items():
        if name not in used:
            continue
        if isinstance(value, datetime):
            binds.append(bindparam(name, type_=DateTime()))
        elif isinstance(value, date):
            binds.append(bindparam(name, type_=Date()))
    if binds:
        stmt = stmt.bindparams(*binds)
    return stmt, {k: v for k, v in params.items() if k in used}


def run(sql: str, **params):
    stmt, values = typed(sql, **params)
    return db.session.execute(stmt, values)


def advisory_lock(name: str) -> None:
    """Serialise runs of one kind on PostgreSQL (SQLite serialises writers already)."""
    if dialect() == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": f"analytics:{name}"})


def tune(work_mem: str = "256MB") -> None:
    """Planner settings for this transaction's big set-based statements (PostgreSQL; no-op on
    SQLite), as ``tiers.jobs._tune`` learned:

    * work_mem: grouped passes, distinct counts and window sorts over a million members stay in
      memory instead of external merges;
    * jit off: compiling the wide CASE expressions costs seconds (3.4 s of a 4 s experiment
      result at 100,000 members) and saves less;
    * plan_cache_mode force_custom_plan: a statement psycopg prepared after five runs keeps a
      plan for its own bounds (window start, now), not a generic one.
    """
    if dialect() == "postgresql":
        run(f"SET LOCAL work_mem = '{work_mem}'")
        run("SET LOCAL jit = off")
        run("SET LOCAL plan_cache_mode = force_custom_plan")


def cached_scans() -> None:
    """PostgreSQL (no-op on SQLite): price index pages as cached (random_page_cost 1.1), so the
    per-member aggregates of the interactions read the covering (member_id, kind, occurred_at)
    INCLUDE (value) index in member order into a group aggregate (no hash table of every member),
    and no parallel plan: on this two-core class of machine the partial and finalize hash
    aggregates of a parallel scan cost more than one process's pass."""
    if dialect() == "postgresql":
        run("SET LOCAL random_page_cost = 1.1")
        run("SET LOCAL max_parallel_workers_per_gather = 0")
