"""Experiments: control vs test, before and after.

Assignment is deterministic: a member's bucket (0-9999) is a 32-bit integer hash of the member
id and the experiment's salt (``bucket``, computed identically in SQL and in Python); the member
is in the test arm when the bucket is below the test share (in basis points).  With
``stratify_by`` (tier or RFM class) the members present at the start are ranked by bucket within
each stratum and the first ``round(share × stratum size)`` go to test, so each stratum is split
exactly; members who join later are assigned by the bucket threshold.  Assignments are stored
(``ExperimentAssignment``) and never change; the periodic job adds members who joined since.

A **holdout** is a programme-wide experiment whose control arm is the global control group: no
campaign multipliers (the points campaign engine asks ``campaign_reaches``), no marketing touches
(messaging asks ``in_holdout``), no marketing rewards; transactional service is never withheld.
A campaign, reward or touch experiment withholds its own treatment from its control arm.

Results compare arms per metric over a pre-period (``pre_days`` before ``starts_at``) and the
post-period (``starts_at`` to the end or now): see ``results``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from community.models import utcnow
from community.services import audit
from errors import Conflict, NotFound, ValidationError
from extensions import db

from . import settings as settings_mod
from . import sql
from . import stats as st
from .models import VALUE_COLUMNS, VALUE_METRICS, Experiment, ExperimentAssignment, ExperimentValue  # noqa: F401

M32 = 2**32
_MIX = 73244475  # 0x45d9f3b: a 32-bit integer hash finaliser (multiply-xorshift)
_GOLDEN = 2654435761
METRICS = VALUE_METRICS  # net amount, purchases, distinct products / categories, retention, points


def salt_int(salt: str) -> int:
    return int.from_bytes(hashlib.sha256(salt.encode()).digest()[:4], "big")


def bucket(member_id: int, salt: str) -> int:
    """0-9999, the same number the SQL of ``_bucket_ctes`` computes."""
    h = (member_id * _GOLDEN + salt_int(salt)) % M32
    h = ((h ^ (h >> 16)) * _MIX) % M32
    h = ((h ^ (h >> 16)) * _MIX) % M32
    h = h ^ (h >> 16)
    return h % 10000


def _bucket_ctes(population: str, salt: str) -> str:
    """CTEs ``h0``..``hb`` computing ``bucket`` for ``population`` (a SELECT of member_id, stratum)."""
    s = salt_int(salt)
    x = sql.xor
    return f"""
h0 AS (SELECT member_id, stratum, (member_id * {_GOLDEN} + {s}) % {M32} AS h FROM ({population}) p),
h1 AS (SELECT member_id, stratum, ({x('h', 'h >> 16')} * {_MIX}) % {M32} AS h FROM h0),
h2 AS (SELECT member_id, stratum, ({x('h', 'h >> 16')} * {_MIX}) % {M32} AS h FROM h1),
hb AS (SELECT member_id, stratum, ({x('h', 'h >> 16')}) % 10000 AS bucket FROM h2)"""


def _population_sql(exp: Experiment, initial: bool = False) -> str:
    stratum = {"tier": "u.tier", "rfm_class": "COALESCE(s.rfm_class, 'low_value')"}.get(exp.stratify_by or "", "NULL")
    join = "LEFT JOIN member_scores s ON s.member_id = u.id" if exp.stratify_by == "rfm_class" else ""
    where = "u.is_active_account = :true_"
    if exp.segment_id is not None:
        where += (" AND u.id IN (SELECT member_id FROM analytics_segment_members "
                  f"WHERE segment_id = {int(exp.segment_id)})")
    if initial:
        # The start: nobody is assigned yet.  Without this the anti-join probes the table the
        # statement is filling, which the planner (statistics of an empty table) may do by a
        # sequential scan per member: quadratic (132 s for 100,000 members in the benchmark).
        return f"SELECT u.id AS member_id, {stratum} AS stratum FROM users u {join} WHERE {where}"
    return (f"SELECT u.id AS member_id, {stratum} AS stratum FROM users u {join} WHERE {where} "
            f"AND NOT EXISTS (SELECT 1 FROM analytics_experiment_assignments ea "
            f"WHERE ea.experiment_id = {int(exp.id)} AND ea.member_id = u.id)")


def assign(experiment_id: int, *, initial: bool = False, now: datetime | None = None) -> int:
    """Assign every eligible member not yet assigned (idempotent); returns how many were added."""
    exp = get(experiment_id)
    if exp.status != "running":
        return 0
    now = now or utcnow()
    share = exp.test_share_bp
    if initial and exp.stratify_by:
        arm = ("CASE WHEN ROW_NUMBER() OVER (PARTITION BY stratum ORDER BY bucket, member_id) "
               f"<= (COUNT(*) OVER (PARTITION BY stratum) * {share} + 5000) / 10000 "
               "THEN 'test' ELSE 'control' END")
    else:
        arm = f"CASE WHEN bucket < {share} THEN 'test' ELSE 'control' END"
    statement = (
        "INSERT INTO analytics_experiment_assignments (experiment_id, member_id, arm, stratum, bucket, assigned_at) "
        f"WITH {_bucket_ctes(_population_sql(exp, initial), exp.salt)} "
        f"SELECT {int(exp.id)}, member_id, {arm}, stratum, bucket, :now FROM hb"
    )
    added = sql.run(statement, now=now, true_=True).rowcount
    if initial and sql.dialect() == "postgresql":
        # Statistics for the plans that read the assignments next (results, later joiners);
        # ANALYZE counts this transaction's own rows.
        sql.run("ANALYZE analytics_experiment_assignments")
    return added


def _arm_of(exp: Experiment, member_id: int) -> str | None:
    arm = db.session.scalar(select(ExperimentAssignment.arm).where(
        ExperimentAssignment.experiment_id == exp.id, ExperimentAssignment.member_id == member_id))
    if arm is not None or exp.segment_id is not None:
        return arm
    # Joined since the last assignment run: the arm the job will store (the bucket threshold).
    return "test" if bucket(member_id, exp.salt) < exp.test_share_bp else "control"


def _running(now: datetime, *conditions) -> list[Experiment]:
    return list(db.session.scalars(select(Experiment).where(
        Experiment.status == "running", Experiment.starts_at <= now,
        or_(Experiment.ends_at.is_(None), Experiment.ends_at > now), *conditions)))


# --------------------------------------------------------------------------- published functions


def holdout_running(now: datetime | None = None) -> bool:
    """Is a programme-wide holdout running (callers handling many members ask once)?"""
    return bool(_running(now or utcnow(), Experiment.kind == "holdout"))


def in_holdout(member_id: int, now: datetime | None = None) -> bool:
    """Is the member in the global control group (no marketing touches, multipliers or rewards)?"""
    return any(_arm_of(exp, member_id) == "control" for exp in _running(now or utcnow(), Experiment.kind == "holdout"))


def campaign_reaches(member_id: int, campaign_id: int, segment_id: int | None = None,
                     now: datetime | None = None) -> bool:
    """Does a points campaign apply to the member?  Not to the holdout, not to the control arm of an
    experiment on this campaign, and only to its segment's members when it names one."""
    now = now or utcnow()
    if in_holdout(member_id, now):
        return False
    for exp in _running(now, Experiment.kind == "campaign", Experiment.campaign_id == campaign_id):
        if _arm_of(exp, member_id) == "control":
            return False
    if segment_id is not None:
        from .segments import is_member_in

        return is_member_in(segment_id, member_id)
    return True


def reward_withheld(member_id: int, reward_id: int, now: datetime | None = None, *, marketing: bool = True) -> bool:
    """Is the reward withheld from the member: the holdout (for a ``marketing`` reward; the standing
    catalogue is transactional service and never withheld), or the control arm of its experiment?"""
    now = now or utcnow()
    if marketing and in_holdout(member_id, now):
        return True
    return any(_arm_of(exp, member_id) == "control"
               for exp in _running(now, Experiment.kind == "reward", Experiment.reward_id == reward_id))


def withheld_reward_ids(member_id: int, now: datetime | None = None) -> list[int]:
    """Rewards whose running experiment has the member in its control arm (the catalogue hides them)."""
    return [exp.reward_id for exp in _running(now or utcnow(), Experiment.kind == "reward")
            if _arm_of(exp, member_id) == "control"]


def holdout_members(member_ids) -> set[int]:
    """Which of ``member_ids`` are in the global control group now: one query for a batch (messaging
    asks it per delivery batch).  A member not assigned yet gets the arm the job will store."""
    ids = set(member_ids)
    exps = _running(utcnow(), Experiment.kind == "holdout")
    if not ids or not exps:
        return set()
    out: set[int] = set()
    for exp in exps:
        stored = dict(db.session.execute(select(ExperimentAssignment.member_id, ExperimentAssignment.arm).where(
            ExperimentAssignment.experiment_id == exp.id, ExperimentAssignment.member_id.in_(ids))).all())
        out.update(m for m in ids if stored.get(m, "test" if bucket(m, exp.salt) < exp.test_share_bp
                                                else "control") == "control")
    return out


def arm_of(experiment_id: int, member_id: int) -> str | None:
    return _arm_of(get(experiment_id), member_id)


# --------------------------------------------------------------------------- staff operations

DRAFT_ONLY = ("test_share", "stratify_by", "segment_id", "campaign_id", "reward_id", "starts_at", "pre_days",
              "kind")


def get(experiment_id: int) -> Experiment:
    exp = db.session.get(Experiment, experiment_id)
    if exp is None:
        raise NotFound("No such experiment.")
    return exp


def _check_target(data: dict) -> None:
    kind = data["kind"]
    targets = {k: data.get(k) for k in ("campaign_id", "reward_id")}
    if kind == "holdout" and (any(targets.values()) or data.get("segment_id")):
        raise ValidationError("A holdout covers every member and has no campaign, reward or segment.",
                              fields={"kind": ["holdout"]})
    if kind == "campaign":
        if not targets["campaign_id"] or targets["reward_id"]:
            raise ValidationError("A campaign experiment names its campaign.", fields={"campaign_id": ["Required."]})
        from points.services import get_campaign

        get_campaign(targets["campaign_id"])
    if kind == "reward":
        if not targets["reward_id"] or targets["campaign_id"]:
            raise ValidationError("A reward experiment names its reward.", fields={"reward_id": ["Required."]})
        from rewards.services import get_reward

        get_reward(targets["reward_id"])
    if kind == "touch" and any(targets.values()):
        raise ValidationError("A touch experiment has no campaign or reward.", fields={"kind": ["touch"]})
    if data.get("segment_id") is not None:
        from .segments import require_segment

        require_segment(data["segment_id"])
    if data.get("ends_at") is not None and data["ends_at"] <= data["starts_at"]:
        raise ValidationError("The experiment must end after it starts.", fields={"ends_at": ["After starts_at."]})


def _check_overlap(exp_id: int | None, data: dict) -> None:
    """Two live experiments may not treat the same thing at the same time (their arms would mix)."""
    kind = data["kind"]
    same = {"holdout": Experiment.kind == "holdout",
            "campaign": and_(Experiment.kind == "campaign", Experiment.campaign_id == data.get("campaign_id")),
            "reward": and_(Experiment.kind == "reward", Experiment.reward_id == data.get("reward_id")),
            "touch": and_(Experiment.kind == "touch", Experiment.segment_id == data.get("segment_id")
                          if data.get("segment_id") else Experiment.segment_id.is_(None))}[kind]
    far = datetime(9999, 1, 1)
    ends = data.get("ends_at") or far
    clash = db.session.scalar(select(Experiment.id).where(
        same, Experiment.status != "stopped", Experiment.id != (exp_id or 0),
        Experiment.starts_at < ends, func.coalesce(Experiment.ends_at, far) > data["starts_at"]).limit(1))
    if clash is not None:
        raise Conflict("An overlapping experiment already treats the same target.", code="overlapping_experiment",
                       fields={"experiment_id": [clash]})


def create(actor_id: int, data: dict, *, exclusive: bool = True) -> Experiment:
    """A draft experiment.  ``exclusive=False`` (a journey's own touch experiment, whose target
    is the journey, not a population) skips the overlap check."""
    data = dict(data)
    data.setdefault("starts_at", utcnow())
    _check_target(data)
    if exclusive:
        _check_overlap(None, data)
    if db.session.scalar(select(Experiment.id).where(Experiment.name == data["name"])) is not None:
        raise Conflict("An experiment with this name exists.", fields={"name": [data["name"]]})
    exp = Experiment(
        name=data["name"], description=data.get("description") or "", kind=data["kind"],
        salt=data.get("salt") or secrets.token_hex(8), test_share_bp=round(data["test_share"] * 10000),
        stratify_by=data.get("stratify_by"), campaign_id=data.get("campaign_id"), reward_id=data.get("reward_id"),
        segment_id=data.get("segment_id"), starts_at=data["starts_at"], ends_at=data.get("ends_at"),
        pre_days=data.get("pre_days") or 90, created_by_id=actor_id, created_at=utcnow(),
    )
    db.session.add(exp)
    db.session.flush()
    audit(actor_id, "analytics.experiment.create", "experiment", exp.id, details={"kind": exp.kind})
    return exp


def update(actor_id: int, experiment_id: int, data: dict) -> Experiment:
    exp = get(experiment_id)
    changed = sorted(k for k in data if k in DRAFT_ONLY)
    if exp.status != "draft" and changed:
        raise Conflict("The split and population of an experiment cannot change after it started.",
                       code="experiment_started", fields={k: ["Fixed once started."] for k in changed})
    if exp.status == "stopped":
        raise Conflict("The experiment has stopped.", code="experiment_stopped")
    merged = {"kind": exp.kind, "campaign_id": exp.campaign_id, "reward_id": exp.reward_id,
              "segment_id": exp.segment_id, "starts_at": exp.starts_at, "ends_at": exp.ends_at}
    merged.update({k: v for k, v in data.items() if k in merged})
    _check_target(merged)
    _check_overlap(exp.id, merged)
    if "name" in data and data["name"] != exp.name and db.session.scalar(
            select(Experiment.id).where(Experiment.name == data["name"])) is not None:
        raise Conflict("An experiment with this name exists.", fields={"name": [data["name"]]})
    for key, value in data.items():
        if key == "test_share":
            exp.test_share_bp = round(value * 10000)
        else:
            setattr(exp, key, value)
    if exp.status == "running" and "ends_at" in data and exp.values_through is not None:
        # The post-period changed: the stored values are of another period until rebuilt.
        exp.values_through = None
        queue_refresh(exp.id)
    db.session.flush()
    audit(actor_id, "analytics.experiment.update", "experiment", exp.id,
          details={k: str(v) for k, v in data.items()})
    return exp


def start(actor_id: int, experiment_id: int, now: datetime | None = None, *, exclusive: bool = True
          ) -> tuple[Experiment, int]:
    exp = get(experiment_id)
    if exp.status != "draft":
        raise Conflict("Only a draft experiment can start.", code="experiment_started")
    now = now or utcnow()
    if exclusive:
        _check_overlap(exp.id, {"kind": exp.kind, "campaign_id": exp.campaign_id, "reward_id": exp.reward_id,
                                "segment_id": exp.segment_id, "starts_at": exp.starts_at, "ends_at": exp.ends_at})
    exp.status = "running"
    exp.started_at = now
    db.session.flush()
    assigned = assign(exp.id, initial=True, now=now)
    if assigned == 0:
        raise ValidationError("The experiment's population is empty.", code="empty_population",
                              fields={"segment_id": [exp.segment_id]})
    audit(actor_id, "analytics.experiment.start", "experiment", exp.id, details={"assigned": assigned})
    queue_refresh(exp.id)
    return exp, assigned


def stop(actor_id: int, experiment_id: int, now: datetime | None = None) -> Experiment:
    exp = get(experiment_id)
    if exp.status != "running":
        raise Conflict("Only a running experiment can stop.", code="experiment_not_running")
    now = now or utcnow()
    exp.status = "stopped"
    exp.stopped_at = now
    if exp.ends_at is None or exp.ends_at > now:
        exp.ends_at = now
    db.session.flush()
    audit(actor_id, "analytics.experiment.stop", "experiment", exp.id)
    queue_refresh(exp.id)
    return exp


def request_refresh(experiment_id: int) -> Experiment:
    """Staff asked for a rebuild of a started experiment's stored values (409 for a draft)."""
    exp = get(experiment_id)
    if exp.status == "draft":
        raise Conflict("The experiment has not started.", code="experiment_not_started")
    queue_refresh(exp.id)
    return exp


def queue_refresh(experiment_id: int) -> None:
    """Rebuild the experiment's stored values in the background once this transaction commits."""
    from jobs import enqueue_after_commit

    from .jobs import refresh_experiment_values

    enqueue_after_commit(refresh_experiment_values, experiment_id, unique_key=f"analytics:values:{experiment_id}")


def assign_all_running(now: datetime | None = None) -> dict:
    ids = db.session.scalars(select(Experiment.id).where(Experiment.status == "running")).all()
    return {str(i): assign(i, now=now) for i in ids}


# --------------------------------------------------------------------------- results


def _values_ctes(extra_where: str = "", *, everyone: bool = False) -> str:
    """CTEs ending in ``v``: each assigned member's arm and pre/post value of every metric from the
    period's purchases/refunds, line items and ledger lines (``VALUE_COLUMNS``, as doubles).

    ``everyone``: the population is every member (a holdout), so each source is aggregated by
    member without first joining it to the assignments (the final join drops the unassigned);
    otherwise each source is restricted to the assigned members first (a segment's experiment
    reads only its members' rows).  Distinct products and categories per period come from one
    grouping of the line items by member (``COUNT(DISTINCT …) FILTER``: a sort by member and
    small per-member sorts; was a DISTINCT of the line items per kind, each joined to the
    assignments, then grouped again)."""
    def f(column: str) -> str:
        # Per-member values as doubles: the sums of squares and cross-products of a million
        # members then accumulate in float8, not in PostgreSQL's NUMERIC (what SUM of a bigint
        # or a decimal gives), several times faster; the statistics are computed in floats anyway.
        return f"CAST(COALESCE({column}, 0) AS DOUBLE PRECISION)"

    def only_assigned(column: str) -> str:
        return "" if everyone else f"AND {column} IN (SELECT member_id FROM a)"

    return f"""
WITH a AS (
  SELECT member_id, arm FROM analytics_experiment_assignments WHERE experiment_id = :e {extra_where}),
buy AS (
  SELECT i.member_id,
    -- Summed exactly (NUMERIC), converted once per member (not in each of the five sums below).
    CAST(SUM(CASE WHEN i.occurred_at >= :split THEN 0 WHEN i.kind = 'purchase' THEN COALESCE(i.value, 0)
             ELSE -COALESCE(i.value, 0) END) AS DOUBLE PRECISION) AS net_amount_pre,
    CAST(SUM(CASE WHEN i.occurred_at < :split THEN 0 WHEN i.kind = 'purchase' THEN COALESCE(i.value, 0)
             ELSE -COALESCE(i.value, 0) END) AS DOUBLE PRECISION) AS net_amount_post,
    SUM(CASE WHEN i.kind = 'purchase' AND i.occurred_at < :split THEN 1 ELSE 0 END) AS purchases_pre,
    SUM(CASE WHEN i.kind = 'purchase' AND i.occurred_at >= :split THEN 1 ELSE 0 END) AS purchases_post
  FROM interactions i
  WHERE i.kind IN ('purchase', 'refund') AND i.occurred_at >= :pre_start AND i.occurred_at < :post_end
    {only_assigned("i.member_id")}
  GROUP BY i.member_id ORDER BY i.member_id),
li AS (
  SELECT l.member_id,
    COUNT(DISTINCT l.product_id) FILTER (WHERE l.occurred_at < :split) AS products_pre,
    COUNT(DISTINCT l.product_id) FILTER (WHERE l.occurred_at >= :split) AS products_post,
    COUNT(DISTINCT l.category) FILTER (WHERE l.occurred_at < :split) AS categories_pre,
    COUNT(DISTINCT l.category) FILTER (WHERE l.occurred_at >= :split) AS categories_post
  FROM purchase_line_items l
  WHERE l.kind = 'purchase' AND l.occurred_at >= :pre_start AND l.occurred_at < :post_end
    {only_assigned("l.member_id")}
  GROUP BY l.member_id),
pts AS (
  SELECT jl.member_id,
    SUM(CASE WHEN jl.account = 'issued' AND je.created_at < :split THEN -jl.amount ELSE 0 END) AS points_earned_pre,
    SUM(CASE WHEN jl.account = 'issued' AND je.created_at >= :split THEN -jl.amount ELSE 0 END) AS points_earned_post,
    SUM(CASE WHEN jl.account = 'redeemed' AND je.created_at < :split THEN jl.amount ELSE 0 END)
      AS points_redeemed_pre,
    SUM(CASE WHEN jl.account = 'redeemed' AND je.created_at >= :split THEN jl.amount ELSE 0 END)
      AS points_redeemed_post
  FROM journal_entries je JOIN journal_lines jl ON jl.entry_id = je.id
  WHERE jl.account IN ('issued', 'redeemed') AND je.created_at >= :pre_start AND je.created_at < :post_end
    {only_assigned("jl.member_id")}
  GROUP BY jl.member_id),
v AS MATERIALIZED (
  SELECT a.member_id, a.arm,
    {f('buy.net_amount_pre')} AS net_amount_pre, {f('buy.net_amount_post')} AS net_amount_post,
    {f('buy.purchases_pre')} AS purchases_pre, {f('buy.purchases_post')} AS purchases_post,
    {f('li.products_pre')} AS distinct_products_pre, {f('li.products_post')} AS distinct_products_post,
    {f('li.categories_pre')} AS distinct_categories_pre, {f('li.categories_post')} AS distinct_categories_post,
    {f('CASE WHEN buy.purchases_pre > 0 THEN 1 ELSE 0 END')} AS retention_pre,
    {f('CASE WHEN buy.purchases_post > 0 THEN 1 ELSE 0 END')} AS retention_post,
    {f('pts.points_earned_pre')} AS points_earned_pre, {f('pts.points_earned_post')} AS points_earned_post,
    {f('pts.points_redeemed_pre')} AS points_redeemed_pre, {f('pts.points_redeemed_post')} AS points_redeemed_post
  FROM a LEFT JOIN buy ON buy.member_id = a.member_id LEFT JOIN li ON li.member_id = a.member_id
  LEFT JOIN pts ON pts.member_id = a.member_id)"""


def _sums_sql(source: str) -> str:
    """Per-arm sums (n, Σx, Σx², Σy, Σy², Σxy) of every metric over ``source`` (rows of arm and
    ``VALUE_COLUMNS``)."""
    metric_cols = []
    for name in METRICS:
        x, y = f"{name}_pre", f"{name}_post"
        metric_cols.append(
            f"SUM({x}) AS {name}_sx, SUM({x} * {x}) AS {name}_sxx, SUM({y}) AS {name}_sy, "
            f"SUM({y} * {y}) AS {name}_syy, SUM({x} * {y}) AS {name}_sxy")
    return f"SELECT arm, COUNT(*) AS n, {', '.join(metric_cols)} FROM {source} GROUP BY arm"


def _moments_sql(extra_where: str = "", *, everyone: bool = False) -> str:
    """Per-arm sums for every metric in one statement, computed from the source rows (live)."""
    return f"{_values_ctes(extra_where, everyone=everyone)}\n{_sums_sql('v')}"


def refresh_values(experiment_id: int, now: datetime | None = None) -> int:
    """Rebuild the stored per-member values of a started experiment for its periods as of
    ``now`` (the job's work; flushes, the job commits).  Returns the number of members stored.

    One ``DELETE`` and one ``INSERT … SELECT`` of the same per-member values the live result
    sums, so a result read from the store equals the live one as of ``values_through``."""
    exp = get(experiment_id)
    if exp.status == "draft":
        return 0
    sql.advisory_lock(f"values:{exp.id}")
    p = periods(exp, now)
    sql.tune()
    sql.cached_scans()
    sql.run("DELETE FROM analytics_experiment_values WHERE experiment_id = :e", e=exp.id)
    cols = ", ".join(VALUE_COLUMNS)
    stored = sql.run(
        f"INSERT INTO analytics_experiment_values (experiment_id, member_id, arm, {cols}) "
        f"{_values_ctes(everyone=exp.segment_id is None)}\n"
        f"SELECT :e, member_id, arm, {cols} FROM v ORDER BY member_id", e=exp.id, **p).rowcount
    exp.values_through = p["post_end"]
    db.session.flush()
    return stored


def queue_refresh_running() -> list[int]:
    """The daily chain: rebuild every running experiment's values (one job each)."""
    ids = db.session.scalars(select(Experiment.id).where(Experiment.status == "running")).all()
    for i in ids:
        queue_refresh(i)
    return list(ids)


def periods(exp: Experiment, now: datetime | None = None) -> dict:
    now = now or utcnow()
    post_end = min(exp.ends_at or now, now)
    return {"pre_start": exp.starts_at - timedelta(days=exp.pre_days), "split": exp.starts_at,
            "post_end": max(post_end, exp.starts_at)}


def arm_moments(exp: Experiment, now: datetime | None = None, *, stored: bool = False
                ) -> dict[str, dict[str, st.Moments]]:
    """Per-arm moments of every metric: from the stored per-member values (``stored``: as of
    ``exp.values_through``, one narrow row per member) or live from the source rows as of ``now``."""
    sql.tune()
    if stored:
        rows = sql.run(_sums_sql("analytics_experiment_values WHERE experiment_id = :e"),
                       e=exp.id).mappings().all()
    else:
        sql.cached_scans()
        rows = sql.run(_moments_sql(everyone=exp.segment_id is None), e=exp.id,
                       **periods(exp, now)).mappings().all()
    out: dict[str, dict[str, st.Moments]] = {arm: {} for arm in ("test", "control")}
    for row in rows:
        for name in METRICS:
            out[row["arm"]][name] = st.Moments(
                float(row["n"]), *(float(row[f"{name}_{k}"] or 0) for k in ("sx", "sxx", "sy", "syy", "sxy")))
    for arm in out:
        for name in METRICS:
            out[arm].setdefault(name, st.Moments(0.0))
    return out


def metric_result(t: st.Moments, c: st.Moments) -> dict:
    return {
        "test": {"n": int(t.n), "pre_mean": t.mean_x, "post_mean": t.mean_y},
        "control": {"n": int(c.n), "pre_mean": c.mean_x, "post_mean": c.mean_y},
        "difference": st.post_difference(t, c).as_dict(),
        "diff_in_diff": st.diff_in_diff(t, c).as_dict(),
        "cuped": st.cuped(t, c).as_dict(),
        "relative_lift": st.relative_lift(t, c),
    }


def results(experiment_id: int, metrics: list[str] | None = None, now: datetime | None = None,
            *, live: bool = False) -> dict:
    """The comparison of the arms.  Read from the stored per-member values when the job has
    computed them (``as_of`` = ``values_through``, the post-period's end then), unless ``live``
    or none are stored yet: then from the source rows as of ``now``."""
    exp = get(experiment_id)
    unknown = sorted(set(metrics or ()) - set(METRICS))
    if unknown:
        raise ValidationError("Unknown metric.", fields={"metrics": unknown})
    if exp.status == "draft":
        raise Conflict("The experiment has not started.", code="experiment_not_started")
    # Stored values serve while they are of this experiment's periods (not past a moved end).
    stored = (not live and exp.values_through is not None
              and exp.values_through <= periods(exp, now)["post_end"])
    if stored:
        now = exp.values_through
    moments = arm_moments(exp, now, stored=stored)
    t, c = moments["test"], moments["control"]
    n_t, n_c = int(t["purchases"].n), int(c["purchases"].n)
    out_metrics = {name: metric_result(t[name], c[name]) for name in (metrics or METRICS)}
    cfg = settings_mod.current()["roi"]
    p = periods(exp, now)
    earned = t["points_earned"].sy
    redeemed = t["points_redeemed"].sy
    cost = earned * float(cfg["cost_per_point"]) + redeemed * float(cfg["reward_cost_per_point"])
    did = st.diff_in_diff(t["net_amount"], c["net_amount"]).effect
    incremental = did * n_t
    return {
        "experiment_id": exp.id, "kind": exp.kind, "status": exp.status,
        "source": "stored" if stored else "live", "as_of": p["post_end"],
        "pre_period": {"start": p["pre_start"], "end": p["split"]},
        "post_period": {"start": p["split"], "end": p["post_end"]},
        "assignment": {"test": n_t, "control": n_c, "test_share": exp.test_share,
                       "srm": st.srm(n_t, n_c, exp.test_share)},
        "metrics": out_metrics,
        "roi": {"incremental_net_revenue": incremental, "points_issued_to_test": earned,
                "points_redeemed_by_test": redeemed, "programme_cost": cost,
                "roi": (incremental - cost) / cost if cost > 0 else None},
    }


def members_in(experiment_id: int, arm: str | None = None):
    query = select(ExperimentAssignment.member_id).where(ExperimentAssignment.experiment_id == experiment_id)
    return query.where(ExperimentAssignment.arm == arm) if arm else query

