"""The fault part of bench/load_fault.py, short: a few clients, every fault, the invariant check.

Its own PostgreSQL cluster and redis-server, the process set under supervisord; a worker and a
gunicorn worker are SIGKILLed, Redis restarts and PostgreSQL stops while members redeem, cancel
and read (4 clients, 12 s, PostgreSQL down 2 s).  Afterwards every ledger, balance, lot,
redemption, stock and code invariant holds, every acknowledged redemption is there, nothing is
left pending and every process runs.  About 85 s on a loaded machine; once per CI run.
"""

from __future__ import annotations

import os

import pytest

from tests.servers import PG_BIN, redis_server_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(redis_server_binary() is None or not (PG_BIN / "initdb").exists(),
                       reason="needs redis-server and PostgreSQL 15 binaries"),
    # Its servers are its own whatever the suite's backends: CI runs it once, in the embedded pass.
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="backend-independent; runs without DATABASE_URL"),
]


def test_mixed_load_with_every_fault_keeps_every_invariant():
    from bench.load_fault import run

    report = run(clients=4, seconds=12, pg_down=2, settle_timeout=120, web_processes=1, sweep_now=True,
                 log=lambda *_: None)
    assert report["invariant_violations"] == [], report
    assert report["all_processes_running"], report
    assert report["acknowledged"] > 0, report
    assert report["redemptions"].get("fulfilled", 0) > 0, report
