"""Background jobs of the surveys domain: focus-group reminders.

``queue_session_reminders`` runs periodically and enqueues one ``send_session_reminders`` job per
session starting within ``REMINDER_LEAD``; that job writes one outbox notification per confirmed
member, with a dedupe key, so however often it runs each member is reminded once.  Members
promoted from the waitlist after a first run are reminded by the next one.
"""

from __future__ import annotations

from datetime import timedelta

from extensions import db
from jobs import Periodic, enqueue_now, job

from . import focus_groups

REMINDER_LEAD = timedelta(hours=24)


@job("default", timeout=120, retries=3)
def send_session_reminders(session_id: int) -> int:
    sent = focus_groups.send_reminders(session_id)
    db.session.commit()
    return sent


@job("periodic", timeout=120, retries=1)
def queue_session_reminders() -> int:
    session_ids = focus_groups.sessions_needing_reminders(REMINDER_LEAD)
    db.session.rollback()  # read-only: end the transaction before talking to Redis
    for session_id in session_ids:
        enqueue_now(send_session_reminders, session_id, unique_key=f"focus_group_reminders:{session_id}")
    return len(session_ids)


PERIODIC = [Periodic(queue_session_reminders, interval=15 * 60)]
