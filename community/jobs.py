"""Community housekeeping on the ``periodic`` queue.

* ``purge_expired_sessions`` (daily): deletes cookie-session rows past their expiry.  Expired
  rows are refused by the lookup already; the purge only keeps ``user_sessions`` small.
"""

from __future__ import annotations

import logging

from jobs import Periodic, job

from . import auth

log = logging.getLogger(__name__)


@job("periodic", timeout=300, retries=0)
def purge_expired_sessions() -> int:
    removed = auth.purge_expired_sessions()
    log.debug("purged %d expired session(s)", removed)
    return removed


PERIODIC = [Periodic(purge_expired_sessions, cron="17 3 * * *")]
