"""Analytics jobs on the "analytics" queue: runs (scores → segments → assignment; KPIs).

``run_analytics`` does one ``AnalyticsRun`` (idempotent: a finished run is not redone).  The
schedule starts a scores run daily (which chains into segments, experiment assignment and the
rebuild of each running experiment's stored values),
the incremental KPI build hourly, and assignment of members who joined since every 15 minutes.
"""

from __future__ import annotations

import logging

from extensions import db
from jobs import Periodic, job

from . import services

log = logging.getLogger(__name__)


@job("analytics", timeout=3600, retries=1, backoff=(300,))
def run_analytics(run_id: int) -> None:
    try:
        services.execute_run(run_id)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        services.fail_run(run_id, f"{exc.__class__.__name__}: {exc}")
        db.session.commit()
        raise


@job("analytics", timeout=3600, retries=1, backoff=(300,))
def refresh_experiment_values(experiment_id: int) -> None:
    """Rebuild one experiment's stored per-member values (idempotent: a full rebuild)."""
    from . import experiments

    experiments.refresh_values(experiment_id)
    db.session.commit()


@job("analytics", timeout=60, retries=0)
def daily_scores() -> None:
    services.start_run("scores")
    db.session.commit()


@job("analytics", timeout=60, retries=0)
def hourly_kpis() -> None:
    services.start_run("kpis")
    db.session.commit()


@job("analytics", timeout=60, retries=0)
def assign_new_members() -> None:
    services.start_run("assign")
    db.session.commit()


PERIODIC = [
    Periodic(daily_scores, cron="30 2 * * *"),
    Periodic(hourly_kpis, cron="10 * * * *"),
    Periodic(assign_new_members, interval=900),
]
