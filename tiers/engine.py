"""The tier engine: requirement metrics and tier decisions for a range of members, in set-based SQL.

One pipeline serves the per-member job (a range of one id) and the periodic run (ranges of
thousands, all members or only those ``changed_members`` lists), on SQLite and PostgreSQL alike:

1. ``metric_rows`` aggregates the requirement metrics from the points ledger and the
   ``interactions`` table (a grouped pass over each, limited to a member-id range and/or a list
   of members; on PostgreSQL the member indexes cover every column it reads);
2. ``apply_range`` writes each member's state (only where something changed): the metrics, the
   tier the rules give (``qualified_tier``) and the decided ``target_tier`` (promotion at once;
   demotion after the grace period below the bar to stay; a pin wins); then a ``tier_changes``
   row with its reason and an outbox notification (with its email delivery, enqueued after the
   commit) for every member whose tier changes, and
   finally ``users.tier``.

Row locks keep the per-member job, the periodic run and admin pins from overwriting each other on
PostgreSQL: every path touches ``member_tier_states`` before ``users``, in that order.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from community.models import TIERS, Notification, User
from extensions import db
from messaging import services as messaging
from messaging.webhooks import events as webhooks
from points.models import Interaction, JournalEntry

from .models import MemberTierState, TierChange
from .rules import REQUIREMENTS, UPPER_TIERS, Rules

METRICS = tuple(REQUIREMENTS)  # column names in member_tier_states and tier_metric_stage
# Counted from the history; no_suspension comes from users.suspended_until at decision time.
HISTORY_METRICS = tuple(k for k in METRICS if k != "no_suspension")
# Interactions that are something the member did (a reaction *received* is someone else's act).
PASSIVE_KINDS = ("reaction_received",)
POST_KINDS = ("post", "reply")
NPS_PROMOTER_MIN = 9

users = User.__table__
states = MemberTierState.__table__
changes = TierChange.__table__
interactions = Interaction.__table__
entries = JournalEntry.__table__


# --------------------------------------------------------------------------- portable SQL pieces


class week_index(FunctionElement):
    """Whole weeks (Monday to Sunday) since Monday 1970-01-05: a distinct-weeks key."""

    type = Integer()
    inherit_cache = True


@compiles(week_index, "postgresql")
def _week_index_pg(element, compiler, **kw):
    (arg,) = element.clauses
    # Date arithmetic on integers: much cheaper per row than extract(epoch ...), which is numeric.
    return f"((CAST({compiler.process(arg, **kw)} AS DATE) - DATE '1970-01-05') / 7)"


@compiles(week_index, "sqlite")
def _week_index_sqlite(element, compiler, **kw):
    (arg,) = element.clauses
    return f"CAST(floor((julianday({compiler.process(arg, **kw)}) - 2440591.5) / 7) AS INTEGER)"


class distinct_weeks(FunctionElement):
    """Aggregate: how many distinct values (0..62) its argument takes within each group.

    PostgreSQL ORs one bit per week and counts the bits: a plain hash aggregate, where
    ``count(DISTINCT ...)`` would sort the whole history by member first (the most expensive
    step of a full run).  SQLite has no bitwise aggregate and keeps ``count(DISTINCT ...)``.
    """

    type = Integer()
    inherit_cache = True


@compiles(distinct_weeks, "postgresql")
def _distinct_weeks_pg(element, compiler, **kw):
    (arg,) = element.clauses
    return f"coalesce(bit_count(CAST(bit_or(CAST(1 AS BIGINT) << {compiler.process(arg, **kw)}) AS BIT(64))), 0)"


@compiles(distinct_weeks, "sqlite")
def _distinct_weeks_sqlite(element, compiler, **kw):
    (arg,) = element.clauses
    return f"count(DISTINCT {compiler.process(arg, **kw)})"


# Weeks a window may touch while one bit per week still fits in a BIGINT.
MAX_BITMASK_WEEKS = 63


class json_object(FunctionElement):
    """A JSON object from alternating key/value arguments."""

    inherit_cache = True


@compiles(json_object, "postgresql")
def _json_object_pg(element, compiler, **kw):
    return f"json_build_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object, "sqlite")
def _json_object_sqlite(element, compiler, **kw):
    return f"json_object({compiler.process(element.clauses, **kw)})"


def tier_rank(column) -> ColumnElement:
    """0 for aware … 4 for advocate (the SQL twin of community.models.tier_rank)."""
    return case({t: i for i, t in enumerate(TIERS)}, value=column, else_=0)


def rank_tier(column) -> ColumnElement:
    return case({i: t for i, t in enumerate(TIERS)}, value=column, else_=TIERS[0])


def _meets(value, threshold: int, keep_percent: int | None) -> ColumnElement:
    # Integer arithmetic, exactly as tiers.rules.meets: no float rounding at the boundary.
    if keep_percent is None:
        return value >= literal(threshold, BigInteger)
    return value * literal(100, BigInteger) >= literal(threshold * keep_percent, BigInteger)


def rank_expr(cols, rules: Rules, *, keep: bool) -> ColumnElement:
    """The rank of the highest tier whose every requirement ``cols`` meets."""
    factor = rules.keep_percent if keep else None
    whens = []
    for index in range(len(TIERS) - 1, 0, -1):
        reqs = rules.for_tier(TIERS[index])
        cond = and_(*[_meets(cols[k], t, factor) for k, t in reqs.items()]) if reqs else true()
        whens.append((cond, index))
    return case(*whens, else_=0)


def _keep_minimum(threshold: int, keep_percent: int) -> int:
    return -(-threshold * keep_percent // 100)  # ceil without floats


# --------------------------------------------------------------------------- metrics


def _only(query, column, lo: int | None, hi: int | None, members):
    """Limit ``query`` to members [lo, hi] and/or to the ids in ``members`` (a table of member_id)."""
    if lo is not None:
        query = query.where(column.between(lo, hi))
    if members is not None:
        query = query.where(column.in_(select(members.c.member_id)))
    return query


def points_earned_in_window(cutoff: datetime, now: datetime, lo: int | None = None, hi: int | None = None,
                            members=None):
    """Rows (member_id, points) of awards made in [cutoff, now], net of what was taken back.

    ``reverse`` reverses an entry whole and at most once (``related_id`` is unique): a reversed
    award counts not at all.  ``claw_back`` (a partial refund) takes part of an award back in
    ``reversal`` entries of ``source_type`` ``clawback`` naming the award in ``source_id``: the
    award counts for what is left of it.  Clawbacks are few, so they are summed per award once
    (through ``ix_journal_entries_source``) and joined, not looked up per award.
    """
    rev = entries.alias("rev")
    reversed_ = select(rev.c.id).where(rev.c.related_id == entries.c.id, rev.c.kind == "reversal").exists()
    claw = entries.alias("claw")
    clawed = (
        select(claw.c.source_id.label("entry_id"), func.sum(claw.c.amount).label("amount"))
        .where(claw.c.source_type == "clawback", claw.c.kind == "reversal")
        .group_by(claw.c.source_id)
        .subquery("clawed")
    )
    query = (
        select(entries.c.member_id.label("member_id"),
               (entries.c.amount - func.coalesce(clawed.c.amount, 0)).label("points"))
        .select_from(entries.outerjoin(clawed, clawed.c.entry_id == entries.c.id))
        .where(entries.c.kind == "award", entries.c.created_at >= cutoff, entries.c.created_at <= now, ~reversed_)
    )
    return _only(query, entries.c.member_id, lo, hi, members)


def _week_of(cutoff: datetime):
    """The week of an interaction, counted from the window's first week (0, 1, 2 ...)."""
    first_week = (cutoff - datetime(1970, 1, 5)).days // 7
    return week_index(interactions.c.occurred_at) - first_week


def _interaction_metrics(cutoff: datetime, now: datetime, rules: Rules, lo: int | None, hi: int | None, members):
    """Per member: the requirement counts from interactions in the window (one grouped pass)."""
    # The ids of reversed entries (from the small partial index on reversals).
    rev = select(entries.c.related_id.label("related_id")).where(entries.c.kind == "reversal").subquery("post_rev")
    kind = interactions.c.kind
    own_week = case((kind.not_in(PASSIVE_KINDS), _week_of(cutoff)), else_=null())
    bitmask_fits = rules.window_days // 7 + 2 <= MAX_BITMASK_WEEKS
    query = (
        select(
            interactions.c.member_id.label("member_id"),
            (distinct_weeks(own_week) if bitmask_fits else func.count(own_week.distinct())).label("active_weeks"),
            func.count().filter(kind == "survey_completed").label("surveys_completed"),
            func.count().filter(and_(kind == "survey_completed", interactions.c.value >= NPS_PROMOTER_MIN))
            .label("promoter_answers"),
            func.count().filter(kind == "focus_group_attended").label("focus_groups_attended"),
            func.count().filter(kind == "referral_converted").label("referrals_converted"),
            # A post whose award moderation reversed is not "accepted".
            func.count().filter(and_(kind.in_(POST_KINDS), rev.c.related_id.is_(None))).label("accepted_posts"),
        )
        .select_from(interactions.outerjoin(rev, rev.c.related_id == interactions.c.entry_id))
        .where(interactions.c.occurred_at >= cutoff, interactions.c.occurred_at <= now)
        .group_by(interactions.c.member_id)
    )
    return _only(query, interactions.c.member_id, lo, hi, members)


def metric_rows(now: datetime, rules: Rules, lo: int | None = None, hi: int | None = None, members=None):
    """SELECT member_id + HISTORY_METRICS, one row per member with any history in the window.

    Limited to members [lo, hi] and/or to those listed in ``members`` when given.

    Two grouped passes (ledger, interactions), then their rows merged per member: cheaper than
    one pass over the union of the history, whose every row would carry every column.  Merged by
    UNION ALL + GROUP BY rather than a FULL JOIN, which SQLite runs as a nested loop without an
    index (quadratic: 11 s for 20,000 members).
    """
    cutoff = now - timedelta(days=rules.window_days)
    earned = points_earned_in_window(cutoff, now, lo, hi, members).subquery("earned")
    acts = _interaction_metrics(cutoff, now, rules, lo, hi, members).subquery("acts")
    act_columns = ("active_weeks", "surveys_completed", "promoter_answers", "focus_groups_attended",
                   "referrals_converted", "accepted_posts")
    zero = literal(0, BigInteger)
    both = union_all(
        select(earned.c.member_id, func.sum(earned.c.points).label("points_earned"),
               *[zero.label(c) for c in act_columns])
        .group_by(earned.c.member_id),
        select(acts.c.member_id, zero.label("points_earned"), *[acts.c[c] for c in act_columns]),
    ).subquery("both")
    total = {c: func.sum(both.c[c]) for c in ("points_earned", *act_columns)}
    return select(
        both.c.member_id.label("member_id"),
        total["points_earned"].label("points_earned"),
        total["active_weeks"].label("active_weeks"),
        total["surveys_completed"].label("surveys_completed"),
        case((total["promoter_answers"] > 0, 1), else_=0).label("nps_promoter"),
        total["focus_groups_attended"].label("focus_groups_attended"),
        total["referrals_converted"].label("referrals_converted"),
        total["accepted_posts"].label("accepted_posts"),
    ).group_by(both.c.member_id)


def changed_members(since: datetime, now: datetime, rules: Rules, margin: timedelta):
    """SELECT member_id: every member whose decision may differ from the one made at ``since``.

    A member's metrics are a function of the history inside the window, so they can only
    change when a row enters or leaves it; the decision also depends on the suspension and on
    the grace clock.  Listed, each found through an index or a small table:

    * ledger entries recorded since ``since - margin`` (awards, and reversals of older ones);
    * interactions recorded since ``since - margin``, or dated after ``since`` (a future date
      enters the window only when ``now`` reaches it);
    * awards and interactions that were inside the window at ``since`` and are not any more;
    * members suspended now or whose suspension ended since then, and members the last
      computation saw suspended (a suspension lifted early);
    * members in the grace period before a demotion.

    ``margin`` takes in rows whose transaction committed after the run at ``since`` had read
    the history (their ``created_at`` is earlier than their commit) and clock skew between hosts.
    A member listed needlessly is merely recomputed to the same result.

    Relies on what the points domain guarantees: an interaction's award (``entry_id``) is made
    to the interaction's own member, so a reversal of it lists the right member.
    """
    recorded = since - margin
    old_cutoff = since - timedelta(days=rules.window_days)
    cutoff = now - timedelta(days=rules.window_days)
    sources = [
        select(entries.c.member_id).where(entries.c.created_at > recorded),
        select(entries.c.member_id).where(entries.c.created_at >= old_cutoff, entries.c.created_at < cutoff,
                                          entries.c.kind == "award"),
        select(interactions.c.member_id).where(interactions.c.created_at > recorded),
        select(interactions.c.member_id).where(interactions.c.occurred_at > since),
        select(interactions.c.member_id).where(interactions.c.occurred_at >= old_cutoff,
                                               interactions.c.occurred_at < cutoff),
        select(users.c.id).where(users.c.suspended_until.is_not(None), users.c.suspended_until > recorded),
        select(states.c.member_id).where(or_(states.c.no_suspension == 0, states.c.below_since.is_not(None))),
    ]
    return union(*sources)


def member_metrics(member_id: int, now: datetime, rules: Rules, *, suspended: bool) -> dict[str, int]:
    """The live metrics of one member (for progress), as a dict keyed by requirement."""
    row = db.session.execute(metric_rows(now, rules, member_id, member_id)).mappings().first()
    metrics = {k: int(row[k]) if row else 0 for k in HISTORY_METRICS}
    metrics["no_suspension"] = 0 if suspended else 1
    return metrics


# --------------------------------------------------------------------------- decisions


def _metrics(source, lo: int, hi: int, now: datetime, rules: Rules, members=None):
    """Per member in [lo, hi] (and in ``members`` if given): the metrics from ``source``, the
    current rank, the entry and keep ranks."""
    m = _only(
        select(
            users.c.id.label("member_id"),
            *[func.coalesce(source.c[k], 0).label(k) for k in HISTORY_METRICS],
            case((users.c.suspended_until > now, 0), else_=1).label("no_suspension"),
            tier_rank(users.c.tier).label("cur_rank"),
        )
        .select_from(users.outerjoin(source, source.c.member_id == users.c.id)),
        users.c.id, lo, hi, members,
    ).subquery("m")
    return select(
        m, rank_expr(m.c, rules, keep=False).label("enter_rank"), rank_expr(m.c, rules, keep=True).label("keep_rank")
    ).subquery("d")


def _decide(d, pinned_tier, below_since, now: datetime, rules: Rules) -> dict:
    """The new values of a state row from metrics ``d`` and the row's pin and grace clock."""
    pinned = pinned_tier.is_not(None)
    promote = d.c.enter_rank > d.c.cur_rank
    stays = d.c.keep_rank >= d.c.cur_rank
    # Below the bar to stay: the grace clock started at below_since (or starts now).
    since = func.coalesce(below_since, now)
    demote = since <= now - timedelta(days=rules.grace_days)
    values = {k: d.c[k] for k in METRICS}
    values["qualified_tier"] = rank_tier(d.c.enter_rank)
    values["target_tier"] = case(
        (pinned, pinned_tier),
        (promote, rank_tier(d.c.enter_rank)),
        (stays, rank_tier(d.c.cur_rank)),
        (demote, rank_tier(d.c.keep_rank)),
        else_=rank_tier(d.c.cur_rank),
    )
    values["below_since"] = case((or_(pinned, promote, stays, demote), null()), else_=since)
    values["rule_version"] = literal(rules.version)
    return values


def _write_states(source, lo: int, hi: int, now: datetime, rules: Rules, dialect: str, members) -> int:
    """Update the state rows whose values change; insert those of members without one.

    An UPDATE touches only changed rows (an upsert would lock and dirty every row), so a
    steady-state run writes almost nothing.  On PostgreSQL the UPDATE re-reads a row a
    concurrent pin changed meanwhile, so the pin (``states.pinned_tier``) still wins.
    """
    d = _metrics(source, lo, hi, now, rules, members)
    values = _decide(d, states.c.pinned_tier, states.c.below_since, now, rules)
    changed = or_(*[states.c[k].is_distinct_from(v) for k, v in values.items()])
    # preserve_rowcount: the DBAPI's count is otherwise not kept for INSERT ... SELECT.
    counted = {"preserve_rowcount": True}
    updated = db.session.execute(
        update(states).where(states.c.member_id == d.c.member_id, changed).values(**values, changed_at=now),
        execution_options=counted,
    ).rowcount
    fresh = _decide(d, null(), null(), now, rules)
    missing = select(d.c.member_id, *fresh.values(), literal(now)).where(
        ~select(states.c.member_id).where(states.c.member_id == d.c.member_id,
                                          states.c.member_id.between(lo, hi)).exists()
    )
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    if dialect == "postgresql":
        # While member_tier_states is still (nearly) empty, as on the first run, the planner
        # probes it with a sequential scan per member, and the scan grows with every row this
        # statement inserts: quadratic (13 s for 50,000 members).  A hash anti-join on the range
        # costs the same at any size.
        db.session.execute(text("SET LOCAL enable_nestloop = off"))
    inserted = db.session.execute(
        make(states).from_select(["member_id", *fresh, "changed_at"], missing).on_conflict_do_nothing(),
        execution_options=counted,
    ).rowcount
    if dialect == "postgresql":
        db.session.execute(text("SET LOCAL enable_nestloop = on"))
    # -1 (a driver that cannot count) must never look like "nothing changed".
    return -1 if updated < 0 or inserted < 0 else updated + inserted


def _met_list(tier: str, rules: Rules) -> ColumnElement:
    parts = []
    for key, threshold in rules.for_tier(tier).items():
        parts.append(literal(f"; {key} ") + cast(states.c[key], String) + literal(f" (needs {threshold})"))
    if not parts:
        return literal("")
    text = parts[0]
    for part in parts[1:]:
        text = text + part
    return text


def _lost_list(tier: str, rules: Rules) -> ColumnElement:
    text = literal("")
    for key, threshold in rules.for_tier(tier).items():
        minimum = _keep_minimum(threshold, rules.keep_percent)
        text = text + case(
            (~_meets(states.c[key], threshold, rules.keep_percent),
             literal(f"; {key} ") + cast(states.c[key], String) + literal(f" (needs {minimum} to stay)")),
            else_="",
        )
    return text


def _reason(rules: Rules) -> ColumnElement:
    """Why the tier changes, naming the requirements met (promotion) or lost (demotion)."""
    promotion = case(
        *[(states.c.target_tier == t, literal(f"met every requirement of {t}") + _met_list(t, rules))
          for t in UPPER_TIERS],
        else_="",
    )
    demotion = case(
        *[(users.c.tier == t, literal(f"{rules.grace_days} days below the bar to stay {t}") + _lost_list(t, rules))
          for t in UPPER_TIERS],
        else_="",
    )
    return case(
        (states.c.pinned_tier.is_not(None), literal("pinned by an admin: ") + func.coalesce(states.c.pin_reason, "")),
        (tier_rank(states.c.target_tier) > tier_rank(users.c.tier), promotion),
        else_=demotion,
    )


def _kind():
    return case(
        (states.c.pinned_tier.is_not(None), "pin"),
        (tier_rank(states.c.target_tier) > tier_rank(users.c.tier), "promotion"),
        else_="demotion",
    )


# What a ``tier.changed`` webhook event holds, read back with RETURNING only when one is wanted.
_WEBHOOK_COLUMNS = (changes.c.member_id, changes.c.id.label("change_id"), changes.c.from_tier, changes.c.to_tier,
                    changes.c.kind, changes.c.reason)


def apply_range(source, lo: int, hi: int, now: datetime, rules: Rules, *, run_id: int | None = None,
                members=None) -> dict:
    """Decide and apply the tiers of members [lo, hi] from ``source`` (a subquery of metrics).

    With ``members`` (a table of member_id), only the members listed there are decided; the
    others in the range keep their state.

    Only flushes; the caller commits.  Idempotent: a second call with the same data changes
    nothing.  Returns {"promoted": n, "demoted": n}.
    """
    session = db.session
    dialect = session.get_bind().dialect.name
    session.flush()
    if _write_states(source, lo, hi, now, rules, dialect, members) == 0:
        # No state row changed, so no target tier did: users.tier (only ever written below, and
        # by pins together with the state) still matches every target.  The everyday run of a
        # steady population stops here.
        session.expire_all()
        return {"promoted": 0, "demoted": 0}

    in_range = states.c.member_id.between(lo, hi)
    moved = and_(users.c.id == states.c.member_id, in_range, users.c.tier != states.c.target_tier)
    before = session.scalar(select(func.coalesce(func.max(changes.c.id), 0)))
    inserted = session.execute(
        insert(changes).from_select(
            ["member_id", "from_tier", "to_tier", "kind", "reason", "run_id", "rule_version", "created_at"],
            select(
                states.c.member_id, users.c.tier, states.c.target_tier, _kind(), _reason(rules),
                literal(run_id, Integer), literal(rules.version), literal(now),
            ).where(moved),
        ).returning(*(_WEBHOOK_COLUMNS if webhooks.wanted("tier.changed") else (changes.c.kind,)))
    ).all()
    kinds = [row.kind for row in inserted]
    if kinds:
        if len(inserted[0]) > 1:  # a webhook endpoint listens: each change is an event
            webhooks.publish_many("tier.changed", (dict(row._mapping) for row in inserted))
        # The outbox rows community.services.notify would write, one INSERT for the whole range.
        # A change a concurrent job committed meanwhile in this range may be selected too: its
        # notification exists already, and the dedupe key makes the second one a no-op.
        notifications = Notification.__table__
        new_changes = and_(changes.c.id > before, changes.c.member_id.between(lo, hi))
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        created = session.scalars(
            make(notifications).from_select(
                ["member_id", "kind", "payload", "dedupe_key", "created_at"],
                select(
                    changes.c.member_id,
                    literal("tiers.tier_changed"),
                    json_object(
                        "from_tier", changes.c.from_tier, "to_tier", changes.c.to_tier, "kind", changes.c.kind,
                        "reason", changes.c.reason, "change_id", changes.c.id,
                    ),
                    literal("tier_change:") + cast(changes.c.id, String),
                    literal(now),
                ).where(new_changes),
            ).on_conflict_do_nothing(index_elements=[notifications.c.dedupe_key]).returning(notifications.c.id)
        ).all()
        # Their emails: delivery rows in this transaction, batched jobs enqueued after its commit.
        messaging.queue_for_notifications(list(created))
        session.execute(update(users).where(moved).values(tier=states.c.target_tier))
    # ORM objects loaded earlier in this session must not keep the old tier.
    session.expire_all()
    return {"promoted": kinds.count("promotion"), "demoted": kinds.count("demotion")}


def recompute_members(lo: int, hi: int, now: datetime, rules: Rules, *, run_id: int | None = None) -> dict:
    """Metrics straight from the history for [lo, hi] (a member's job, a small range)."""
    return apply_range(metric_rows(now, rules, lo, hi).subquery("src"), lo, hi, now, rules, run_id=run_id)
