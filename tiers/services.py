"""Tier business logic: rule sets, pins, a member's tier and progress, what-if, staff statistics.

Functions only flush; the caller commits.  The SQL that computes tiers lives in ``tiers.engine``;
the batched periodic run in ``tiers.jobs``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from community.models import TIERS, User, utcnow
from community.services import audit, get_user, notify
from errors import Conflict, NotFound, ValidationError
from extensions import db
from messaging.webhooks import events as webhooks

from . import benefits, engine
from .benefits import benefits_for
from .models import MemberTierState, TierBenefit, TierChange, TierRuleSet, TierRun
from .rules import DEFAULT_RULES, Rules, progress, validate

# --------------------------------------------------------------------------- rule sets


def _to_rules(row: TierRuleSet) -> Rules:
    return Rules(version=row.version, requirements=row.requirements, window_days=row.window_days,
                 grace_days=row.grace_days, keep_percent=row.keep_percent, note=row.note)


def current_rules() -> Rules:
    """The rule set in force: the highest stored version, else the shipped defaults (version 1)."""
    row = db.session.scalar(select(TierRuleSet).order_by(TierRuleSet.version.desc()).limit(1))
    return _to_rules(row) if row is not None else DEFAULT_RULES


def ensure_default_rules() -> None:
    """Store the shipped defaults as version 1 unless a rule set exists (safe to race)."""
    if db.session.scalar(select(TierRuleSet.id).limit(1)) is not None:
        return
    d = DEFAULT_RULES
    try:
        with db.session.begin_nested():
            db.session.add(TierRuleSet(version=d.version, requirements=d.requirements, window_days=d.window_days,
                                       grace_days=d.grace_days, keep_percent=d.keep_percent, note=d.note))
    except IntegrityError:
        pass  # a concurrent installer stored the same defaults first


def rules_from_input(data: dict, *, version: int) -> Rules:
    clean = validate(data)
    return Rules(version=version, requirements=clean["requirements"], window_days=clean["window_days"],
                 grace_days=clean["grace_days"], keep_percent=clean["keep_percent"], note=clean.get("note") or "")


def save_rules(actor_id: int, data: dict) -> Rules:
    """Store a new rule-set version; ``data["expected_version"]`` guards against lost updates."""
    ensure_default_rules()
    current = current_rules()
    if data["expected_version"] != current.version:
        raise Conflict(
            f"The rules changed meanwhile (now version {current.version}); reload and try again.",
            fields={"expected_version": [f"Current version is {current.version}."]},
        )
    rules = rules_from_input(data, version=current.version + 1)
    try:
        with db.session.begin_nested():
            db.session.add(TierRuleSet(version=rules.version, requirements=rules.requirements,
                                       window_days=rules.window_days, grace_days=rules.grace_days,
                                       keep_percent=rules.keep_percent, note=rules.note, created_by_id=actor_id))
    except IntegrityError as exc:  # another admin saved the same next version first
        raise Conflict("The rules changed meanwhile; reload and try again.") from exc
    audit(actor_id, "tiers.rules.update", "tier_rule_set", rules.version, reason=rules.note,
          details={"from_version": current.version, "requirements": rules.requirements,
                   "window_days": rules.window_days, "grace_days": rules.grace_days,
                   "keep_percent": rules.keep_percent})
    db.session.flush()
    return rules


def rule_versions() -> list[TierRuleSet]:
    return list(db.session.scalars(select(TierRuleSet).order_by(TierRuleSet.version.desc())))


# --------------------------------------------------------------------------- benefits


def set_benefits(actor_id: int, tier: str, data: dict) -> dict:
    """Override one tier's benefits (earning multiplier, posting limits, focus-group priority). Audited."""
    if tier not in TIERS:
        raise NotFound("No such tier.")
    previous = benefits_for(tier)
    row = db.session.get(TierBenefit, tier) or TierBenefit(tier=tier)
    row.earning_multiplier = data["earning_multiplier"]
    row.posting_limits = dict(data["posting_limits"])
    row.focus_group_priority = data["focus_group_priority"]
    row.updated_by_id = actor_id
    db.session.add(row)
    audit(actor_id, "tiers.benefits.update", "tier", None, reason=data.get("note") or "",
          details={"tier": tier, "from": previous,
                   "to": {"earning_multiplier": float(data["earning_multiplier"]),
                          "posting_limits": dict(data["posting_limits"]),
                          "focus_group_priority": data["focus_group_priority"]}})
    db.session.flush()
    benefits.invalidate()
    return benefits_for(tier)


# --------------------------------------------------------------------------- members


def _lock_state(member_id: int) -> MemberTierState:
    """The member's state row, created if missing and locked for this transaction."""
    make = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(make(MemberTierState.__table__).values(member_id=member_id).on_conflict_do_nothing())
    return db.session.scalar(
        select(MemberTierState).where(MemberTierState.member_id == member_id)
        .with_for_update().execution_options(populate_existing=True)
    )


def recompute_member(member_id: int, *, now: datetime | None = None) -> dict:
    """Decide one member's tier now (promotion at once, demotion after the grace period)."""
    return engine.recompute_members(member_id, member_id, now or utcnow(), current_rules())


def pin(actor_id: int, member_id: int, tier: str, reason: str) -> MemberTierState:
    """Fix a member's tier until unpinned; recomputations keep it.  Audited."""
    member = get_user(member_id)
    if tier not in TIERS:
        raise ValidationError("Unknown tier.", fields={"tier": [f"One of {', '.join(TIERS)}."]})
    state = _lock_state(member_id)
    now = utcnow()
    state.pinned_tier, state.pin_reason, state.pinned_by_id, state.pinned_at = tier, reason, actor_id, now
    state.target_tier, state.below_since = tier, None
    previous = member.tier
    if previous != tier:
        change = TierChange(member_id=member_id, from_tier=previous, to_tier=tier, kind="pin",
                            reason=f"pinned by an admin: {reason}", actor_id=actor_id,
                            rule_version=current_rules().version, created_at=now)
        db.session.add(change)
        member.tier = tier
        db.session.flush()
        notify(member_id, "tiers.tier_changed",
               {"from_tier": previous, "to_tier": tier, "kind": "pin", "reason": change.reason,
                "change_id": change.id},
               dedupe_key=f"tier_change:{change.id}")
        webhooks.publish("tier.changed", {"member_id": member_id, "change_id": change.id, "from_tier": previous,
                         "to_tier": tier, "kind": "pin", "reason": change.reason})
    audit(actor_id, "tiers.member.pin", "user", member_id, reason=reason, details={"tier": tier, "previous": previous})
    db.session.flush()
    return state


def unpin(actor_id: int, member_id: int, reason: str) -> MemberTierState:
    """Remove a pin; the rules apply again at once (a demotion still waits for the grace period)."""
    get_user(member_id)
    state = _lock_state(member_id)
    if state.pinned_tier is None:
        raise Conflict("This member's tier is not pinned.")
    audit(actor_id, "tiers.member.unpin", "user", member_id, reason=reason, details={"tier": state.pinned_tier})
    state.pinned_tier = state.pin_reason = state.pinned_by_id = state.pinned_at = None
    db.session.flush()
    recompute_member(member_id)
    return db.session.get(MemberTierState, member_id, populate_existing=True)


def member_state(member_id: int) -> MemberTierState | None:
    return db.session.get(MemberTierState, member_id)


def my_tier(member: User, *, now: datetime | None = None) -> dict:
    """The member's tier, its benefits, and what is missing for the next tier (live metrics)."""
    now = now or utcnow()
    rules = current_rules()
    metrics = engine.member_metrics(member.id, now, rules, suspended=member.is_suspended(now))
    state = db.session.get(MemberTierState, member.id)
    grace_ends = None
    if state is not None and state.below_since is not None and state.pinned_tier is None:
        grace_ends = state.below_since + timedelta(days=rules.grace_days)
    return {
        "tier": member.tier,
        "benefits": benefits_for(member.tier),
        "pinned": state is not None and state.pinned_tier is not None,
        "metrics": metrics,
        "window_days": rules.window_days,
        "rule_version": rules.version,
        "next": progress(metrics, rules, member.tier),
        "below_bar_since": state.below_since if state is not None and grace_ends else None,
        "demotion_after": grace_ends,
    }


def history_query(member_id: int | None = None):
    query = select(TierChange).order_by(TierChange.id.desc())
    if member_id is not None:
        query = query.where(TierChange.member_id == member_id)
    return query


# --------------------------------------------------------------------------- what-if and statistics


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(TIERS, 0)


def distribution() -> dict[str, int]:
    counts = _empty_counts()
    for tier, n in db.session.execute(select(User.tier, func.count()).group_by(User.tier)):
        counts[tier] = n
    return counts


def what_if(data: dict) -> dict:
    """How many members the proposed rules would place in each tier, without saving anything.

    Uses the metrics stored by the last computation (members never computed count as zero)
    and today's suspensions; pinned members stay where they are pinned.
    """
    proposed = rules_from_input(data, version=current_rules().version + 1)
    s = MemberTierState.__table__
    u = User.__table__
    now = utcnow()
    cols = {k: func.coalesce(s.c[k], 0) for k in engine.HISTORY_METRICS}
    cols["no_suspension"] = case((u.c.suspended_until > now, 0), else_=1)
    rank = case((s.c.pinned_tier.is_not(None), engine.tier_rank(s.c.pinned_tier)),
                else_=engine.rank_expr(cols, proposed, keep=False)).label("rank")
    inner = select(rank).select_from(u.outerjoin(s, s.c.member_id == u.c.id)).subquery()
    proposed_counts = _empty_counts()
    for r, n in db.session.execute(select(inner.c.rank, func.count()).group_by(inner.c.rank)):
        proposed_counts[TIERS[r]] = n
    as_of = db.session.scalar(select(func.max(TierRun.finished_at)).where(TierRun.status == "done"))
    return {"current": distribution(), "proposed": proposed_counts, "metrics_as_of": as_of}


class period_start(FunctionElement):
    """The first day of the day / week (Monday) / month containing a timestamp."""

    inherit_cache = True


@compiles(period_start, "postgresql")
def _period_start_pg(element, compiler, **kw):
    unit, ts = element.clauses
    return f"date_trunc({compiler.process(unit, **kw)}, {compiler.process(ts, **kw)})"


@compiles(period_start, "sqlite")
def _period_start_sqlite(element, compiler, **kw):
    unit, ts = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CASE {unit} WHEN 'day' THEN date({ts}) WHEN 'week' THEN date({ts}, 'weekday 0', '-6 days') "
            f"ELSE strftime('%Y-%m-01', {ts}) END")


def movements(since: datetime, until: datetime, bucket: str) -> list[dict]:
    """Tier changes per period and (from, to) pair, oldest period first."""
    period = period_start(bucket, TierChange.created_at).label("period")
    inner = select(period, TierChange.from_tier, TierChange.to_tier, TierChange.kind).where(
        TierChange.created_at >= since, TierChange.created_at < until
    ).subquery()
    rows = db.session.execute(
        select(inner.c.period, inner.c.from_tier, inner.c.to_tier, inner.c.kind, func.count())
        .group_by(inner.c.period, inner.c.from_tier, inner.c.to_tier, inner.c.kind)
        .order_by(inner.c.period, inner.c.from_tier, inner.c.to_tier)
    )
    return [{"period": str(p)[:10], "from_tier": f, "to_tier": t, "kind": k, "count": n} for p, f, t, k, n in rows]


def distribution_history(limit: int = 30) -> list[TierRun]:
    return list(db.session.scalars(
        select(TierRun).where(TierRun.status == "done").order_by(TierRun.id.desc()).limit(limit)
    ))


def leaderboard_query(tier: str):
    """Members of ``tier`` ranked by converted referrals, then points earned in the window."""
    s = MemberTierState
    return (
        select(User.id, User.display_name, User.tier, s.referrals_converted, s.points_earned, s.accepted_posts,
               s.focus_groups_attended)
        .join(s, s.member_id == User.id)
        .where(User.tier == tier)
        .order_by(s.referrals_converted.desc(), s.points_earned.desc(), User.id)
    )


# --------------------------------------------------------------------------- runs


def get_run(run_id: int) -> TierRun:
    run = db.session.get(TierRun, run_id)
    if run is None:
        raise NotFound("No such run.")
    return run


def runs_query():
    return select(TierRun).order_by(TierRun.id.desc())

