"""What each journey and step did, from the enrolment and execution rows (GROUP BY on indexes).

Per journey: entered, active (in progress), waiting (at a wait step), done, exited, converted,
per arm (test / holdout) with the conversion rate; per step: executions by outcome and reason,
and for sends the messaging delivery states (sent, suppressed with reason: frequency_cap,
preference, …; pending with quiet_hours …) of the notifications the step created.
"""

from __future__ import annotations

from sqlalchemy import func, select

from extensions import db

from .models import Enrolment, Journey, StepExecution


def journey_stats(journey: Journey) -> dict:
    e = Enrolment.__table__.c
    rows = db.session.execute(
        select(e.state, e.arm, func.count(), func.count(e.converted_at))
        .where(e.journey_id == journey.id).group_by(e.state, e.arm)
    ).all()
    totals = {"entered": 0, "active": 0, "waiting": 0, "done": 0, "exited": 0, "converted": 0}
    arms: dict[str, dict] = {}
    for state, arm, n, converted in rows:
        totals["entered"] += n
        totals[state] += n
        totals["converted"] += converted
        a = arms.setdefault(arm or "undecided", {"entered": 0, "converted": 0})
        a["entered"] += n
        a["converted"] += converted
    for a in arms.values():
        a["conversion_rate"] = round(a["converted"] / a["entered"], 4) if a["entered"] else None
    lift = None
    if arms.get("test", {}).get("conversion_rate") is not None and arms.get("holdout", {}).get("conversion_rate") \
            is not None:
        lift = round(arms["test"]["conversion_rate"] - arms["holdout"]["conversion_rate"], 4)
    steps = step_stats(journey)
    totals["waiting"] = sum(s["waiting"] for s in steps)
    return {**totals, "arms": arms, "conversion_lift": lift, "steps": steps}


def step_stats(journey: Journey) -> list[dict]:
    from messaging.models import EmailDelivery

    x = StepExecution.__table__.c
    rows = db.session.execute(
        select(x.step_id, x.outcome, x.reason, func.count()).where(x.journey_id == journey.id)
        .group_by(x.step_id, x.outcome, x.reason)
    ).all()
    d = EmailDelivery.__table__.c
    deliveries = db.session.execute(
        select(x.step_id, d.state, d.reason, func.count())
        .join(EmailDelivery, d.notification_id == x.notification_id)
        .where(x.journey_id == journey.id, x.notification_id.isnot(None))
        .group_by(x.step_id, d.state, d.reason)
    ).all()
    waiting = dict(db.session.execute(
        select(Enrolment.current_step, func.count()).where(
            Enrolment.journey_id == journey.id, Enrolment.state == "active", Enrolment.wait_until.isnot(None))
        .group_by(Enrolment.current_step)).all())
    steps: dict[str, dict] = {}

    def step(sid: str) -> dict:
        return steps.setdefault(sid, {"step_id": sid, "executed": 0, "sent": 0, "done": 0, "failed": 0,
                                      "skipped": 0, "skipped_by_reason": {}, "branches": {}, "email": {},
                                      "waiting": waiting.get(sid, 0)})

    for sid, outcome, reason, n in rows:
        s = step(sid)
        s["executed"] += n
        s[outcome] += n
        if outcome == "skipped":
            s["skipped_by_reason"][reason or "unknown"] = s["skipped_by_reason"].get(reason or "unknown", 0) + n
        elif reason and reason.startswith("condition_"):
            s["branches"][reason.removeprefix("condition_")] = n
    for sid, state, reason, n in deliveries:
        label = state if not reason else f"{state}:{reason}"
        step(sid)["email"][label] = step(sid)["email"].get(label, 0) + n
        if state == "suppressed":  # messaging dropped it (cap, preference): a skip, with its reason
            reasons = step(sid)["skipped_by_reason"]
            reasons[f"email_{reason}"] = reasons.get(f"email_{reason}", 0) + n
    for sid in waiting:
        step(sid)
    return list(steps.values())
