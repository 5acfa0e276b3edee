"""What each journey and step did, from the enrolment and execution rows (GROUP BY on indexes).

Per journey: entered, active (in progress), waiting (at a wait step), done, exited, converted,
per arm (test / holdout) with the conversion rate; per step: executions by outcome and reason,
and for sends the messaging delivery states (sent, suppressed with reason: frequency_cap,
preference, …; pending with quiet_hours …) of the notifications the step created.

A send with ``variants`` (an A/B test) also has, per variant: assigned, sent, skipped by reason,
converted (members it was sent to whose enrolment converted: the journey's goal within its
window, ``converted_at`` as for the totals) and the conversion rate; each variant after the
first is compared with the first (``two_proportions``: the difference in conversion rate with a
95 % interval and a two-sided p-value), and the assignment is checked against the weights (a
sample-ratio chi-square, as analytics prints with every experiment result).
"""

from __future__ import annotations

import math

from sqlalchemy import func, select

from extensions import db

from .models import Enrolment, Journey, JourneyVersion, StepExecution

CONFIDENCE = 0.95
SRM_ALPHA = 0.001  # analytics.stats.SRM_ALPHA: a mismatch this unlikely means the split is broken


def two_proportions(converted_b: int, n_b: int, converted_a: int, n_a: int,
                    confidence: float = CONFIDENCE) -> dict | None:
    """Variant b against variant a: the difference of conversion rates (b − a) with its Wald
    interval (unpooled standard error) and the two-sided p-value of the pooled two-proportion
    z-test, the textbook pair (a test of "no difference" pools, an interval for the difference
    does not).  None when either variant was sent to nobody."""
    from scipy import stats as sps

    if not n_a or not n_b:
        return None
    pa, pb = converted_a / n_a, converted_b / n_b
    diff = pb - pa
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    q = float(sps.norm.ppf(0.5 + confidence / 2))
    pooled = (converted_a + converted_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_value = float(2 * sps.norm.sf(abs(diff) / se0)) if se0 > 0 else None
    return {"difference": diff, "ci_low": diff - q * se, "ci_high": diff + q * se, "p_value": p_value}


def sample_ratio(assigned: list[int], weights: list[int]) -> dict | None:
    """Chi-square goodness of fit of the variants' assigned counts against their weights."""
    from scipy import stats as sps

    total = sum(assigned)
    if total == 0 or len(assigned) < 2:
        return None
    expected = [total * w / sum(weights) for w in weights]
    p = float(sps.chisquare(assigned, f_exp=expected).pvalue)
    return {"p_value": p, "mismatch": p < SRM_ALPHA}


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
    for sid, ab in variant_stats(journey).items():
        step(sid).update(ab)
    for s in steps.values():
        s.setdefault("variants", [])
        s.setdefault("variant_sample_ratio", None)
    return list(steps.values())


def variant_stats(journey: Journey) -> dict[str, dict]:
    """Per A/B send step: ``{"variants": [...], "variant_sample_ratio": ...}`` (see the module).

    Variants are listed in the current version's order (the first is the one the others are
    compared with), then any that only earlier versions had; the sample-ratio check uses the
    current version's weights and only variants it still has."""
    from messaging.models import EmailDelivery

    x = StepExecution.__table__.c
    e = Enrolment.__table__.c
    d = EmailDelivery.__table__.c
    ab = (x.journey_id == journey.id, x.variant.isnot(None))
    outcomes = db.session.execute(
        select(x.step_id, x.variant, x.outcome, x.reason, func.count()).where(*ab)
        .group_by(x.step_id, x.variant, x.outcome, x.reason)).all()
    if not outcomes:
        return {}
    converted = db.session.execute(
        select(x.step_id, x.variant, func.count()).join(Enrolment, e.id == x.enrolment_id)
        .where(*ab, x.outcome == "sent", e.converted_at.isnot(None))
        .group_by(x.step_id, x.variant)).all()
    suppressed = db.session.execute(
        select(x.step_id, x.variant, d.reason, func.count()).join(EmailDelivery, d.notification_id == x.notification_id)
        .where(*ab, x.notification_id.isnot(None), d.state == "suppressed")
        .group_by(x.step_id, x.variant, d.reason)).all()
    current = db.session.get(JourneyVersion, journey.current_version_id)
    weights = {s["id"]: {v["id"]: v["weight"] for v in s.get("variants") or ()} for s in current.steps}
    per: dict[str, dict[str, dict]] = {}

    def row(sid: str, vid: str) -> dict:
        return per.setdefault(sid, {}).setdefault(vid, {
            "variant_id": vid, "weight": weights.get(sid, {}).get(vid), "assigned": 0, "sent": 0, "skipped": 0,
            "failed": 0, "skipped_by_reason": {}, "converted": 0, "conversion_rate": None, "vs_first": None})

    for sid, vid, outcome, reason, n in outcomes:
        r = row(sid, vid)
        r["assigned"] += n
        if outcome in ("sent", "skipped", "failed"):
            r[outcome] += n
        if outcome == "skipped":
            label = reason or "unknown"
            r["skipped_by_reason"][label] = r["skipped_by_reason"].get(label, 0) + n
    for sid, vid, reason, n in suppressed:  # messaging dropped it (cap, preference), as in step_stats
        reasons = row(sid, vid)["skipped_by_reason"]
        reasons[f"email_{reason}"] = reasons.get(f"email_{reason}", 0) + n
    for sid, vid, n in converted:
        row(sid, vid)["converted"] = n
    out = {}
    for sid, variants in per.items():
        order = list(weights.get(sid, {}))
        listed = [variants[v] for v in order if v in variants] + [r for v, r in variants.items() if v not in order]
        for r in listed:
            r["conversion_rate"] = round(r["converted"] / r["sent"], 4) if r["sent"] else None
        first = next((r for r in listed if r["variant_id"] == order[0]), None) if order else listed[0]
        for r in listed:
            if first is not None and r is not first:
                r["vs_first"] = two_proportions(r["converted"], r["sent"], first["converted"], first["sent"])
        kept = [(variants.get(v, {}).get("assigned", 0), weights[sid][v]) for v in order]
        out[sid] = {"variants": listed,
                    "variant_sample_ratio": sample_ratio([a for a, _ in kept], [w for _, w in kept]) if kept else None}
    return out
