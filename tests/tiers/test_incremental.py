"""Incremental daily runs: only members whose inputs changed are re-aggregated, and the result is
exactly what a full re-aggregation would give.

Time is simulated: every row a test records is stamped with the simulated clock (``created_at``,
and the award's ``created_at``), and each run is given that clock as ``now``.
"""

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from community.models import User, utcnow
from extensions import db
from points import ledger
from points.models import Interaction, JournalEntry
from points.services import record_interaction
from tiers import engine, jobs, services
from tiers.models import MemberTierState, TierDirtyMember, TierRun

_n = iter(range(10**9))

SHORT = {
    "requirements": {
        "engaged": {"points_earned": 20, "active_weeks": 2},
        "satisfied": {"surveys_completed": 2, "points_earned": 40},
        "loyal": {"accepted_posts": 2, "no_suspension": 1},
        "advocate": {"referrals_converted": 1, "nps_promoter": 1, "focus_groups_attended": 1},
    },
    "window_days": 14, "grace_days": 3, "keep_percent": 90, "note": "a short window for tests",
}
KINDS = ("daily_visit", "post", "reply", "survey_completed", "focus_group_attended", "referral_converted",
         "reaction_received", "purchase")


def _save(actor, data=SHORT):
    services.ensure_default_rules()
    services.save_rules(actor.id, {**data, "expected_version": services.current_rules().version})
    db.session.commit()


def _record(member_id, kind, clock, *, occurred=None, value=None):
    """An interaction recorded at ``clock`` (dated ``occurred``), with its award if a rule pays one."""
    i = record_interaction(member_id, kind, key=f"inc:{kind}:{next(_n)}", occurred_at=occurred or clock,
                           value=value)
    db.session.execute(update(Interaction).where(Interaction.id == i.id).values(created_at=clock))
    if i.entry_id is not None:
        db.session.execute(update(JournalEntry).where(JournalEntry.id == i.entry_id).values(created_at=clock))
    db.session.commit()
    return i


def _award(member_id, amount, clock):
    entry = ledger.award(member_id, amount, key=f"inc:award:{next(_n)}", reason="test")
    db.session.execute(update(JournalEntry).where(JournalEntry.id == entry.id).values(created_at=clock))
    db.session.commit()
    return entry.id


def _reverse(entry_id, clock):
    rev = ledger.reverse(entry_id, key=f"inc:rev:{next(_n)}", reason="test")
    db.session.execute(update(JournalEntry).where(JournalEntry.id == rev.id).values(created_at=clock))
    db.session.commit()


def _run(clock, **kw):
    run_id = jobs.run_full_recompute(now=clock, **kw)
    return db.session.get(TierRun, run_id, populate_existing=True)


def _tier(member_id):
    return db.session.get(User, member_id, populate_existing=True).tier


def _state(member_id):
    return db.session.get(MemberTierState, member_id, populate_existing=True)


def assert_as_a_full_run_would_leave_it(ids, now):
    """A full re-aggregation of these members at ``now`` would change no state row and no tier."""
    rules = services.current_rules()
    lo, hi = min(ids), max(ids)
    dialect = db.session.get_bind().dialect.name
    savepoint = db.session.begin_nested()
    source = engine.metric_rows(now, rules, lo, hi).subquery("src")
    changed = engine._write_states(source, lo, hi, now, rules, dialect, None)
    differing = db.session.execute(
        select(MemberTierState.member_id, MemberTierState.target_tier, User.tier)
        .join(User, User.id == MemberTierState.member_id)
        .where(MemberTierState.member_id.between(lo, hi), MemberTierState.target_tier != User.tier)
    ).all()
    savepoint.rollback()
    db.session.commit()
    assert changed == 0, "a full run would still change state rows"
    assert differing == [], differing


# --------------------------------------------------------------------------- choosing the mode


def test_first_run_is_full_then_incremental_until_rules_change_or_a_week_passes(app, make_member):
    admin = make_member(roles=("admin",))
    make_member()
    t0 = utcnow()
    assert _run(t0).mode == "full"
    assert _run(t0 + timedelta(days=1)).mode == "incremental"
    assert _run(t0 + timedelta(days=2), full=True).mode == "full"
    assert _run(t0 + timedelta(days=3), full=False).mode == "incremental"
    assert _run(t0 + timedelta(days=9)).mode == "full"  # TIER_FULL_RUN_DAYS (7) after the last full one
    assert _run(t0 + timedelta(days=10)).mode == "incremental"
    _save(admin)
    assert _run(t0 + timedelta(days=11)).mode == "full"  # new rules: everyone again
    # A run "as of" an earlier time than the last one cannot continue from it.
    assert _run(t0 + timedelta(days=5), full=False).mode == "full"


def test_an_unchanged_population_costs_nothing(app, make_member):
    admin = make_member(roles=("admin",))
    _save(admin)
    members = [make_member() for _ in range(5)]
    t0 = utcnow()
    for m in members:
        _award(m.id, 30, t0 - timedelta(days=1))
    _run(t0)
    run = _run(t0 + timedelta(hours=2))
    assert (run.mode, run.total, run.processed) == ("incremental", 0, 0)
    assert db.session.scalar(select(func.count()).select_from(TierDirtyMember)) == 0  # scratch emptied


# --------------------------------------------------------------------------- what makes a member change


def test_history_recorded_since_the_last_run_promotes_without_the_member_job(app, make_member):
    admin = make_member(roles=("admin",))
    _save(admin)
    quiet, busy = make_member(), make_member()
    t0 = utcnow()
    _run(t0)
    t1 = t0 + timedelta(days=1)
    _record(busy.id, "daily_visit", t1, occurred=t1 - timedelta(days=8))  # a late, backdated event
    _record(busy.id, "daily_visit", t1)
    _award(busy.id, 25, t1)
    run = _run(t1 + timedelta(hours=1))
    assert run.mode == "incremental" and run.total == 1
    assert (_tier(busy.id), _tier(quiet.id)) == ("engaged", "aware")
    assert _state(busy.id).active_weeks == 2
    assert_as_a_full_run_would_leave_it([quiet.id, busy.id], t1 + timedelta(hours=1))


def test_rows_committed_just_before_the_last_run_are_not_missed(app, make_member):
    """A row stamped before the last run but committed after it had read the history."""
    admin = make_member(roles=("admin",))
    _save(admin)
    m = make_member()
    t0 = utcnow()
    _run(t0)
    _award(m.id, 30, t0 - timedelta(minutes=5))  # stamped 5 minutes before the run it missed
    _record(m.id, "daily_visit", t0 - timedelta(minutes=5), occurred=t0 - timedelta(days=7))
    _record(m.id, "daily_visit", t0 - timedelta(minutes=5))
    assert _run(t0 + timedelta(days=1)).total == 1
    assert _tier(m.id) == "engaged"


def test_history_leaving_the_window_starts_the_grace_period_then_demotes(app, make_member):
    admin = make_member(roles=("admin",))
    _save(admin)
    m, other = make_member(), make_member()
    t0 = utcnow()
    _record(m.id, "daily_visit", t0 - timedelta(days=10))
    _record(m.id, "daily_visit", t0 - timedelta(days=2))
    _award(m.id, 30, t0 - timedelta(days=10))
    _award(other.id, 5, t0 - timedelta(days=1))
    _run(t0)
    assert _tier(m.id) == "engaged"
    # Day 5: day -10 leaves the 14-day window: one active week and a visit's points remain.
    t5 = t0 + timedelta(days=5)
    run = _run(t5)
    assert run.mode == "incremental" and run.total == 1  # only m: other's history did not move
    state = _state(m.id)
    assert (state.active_weeks, state.below_since, _tier(m.id)) == (1, t5, "engaged")
    assert state.points_earned < 18  # 90 % of 20
    assert_as_a_full_run_would_leave_it([m.id, other.id], t5)
    # Day 6: still in grace (3 days from day 5 end on day 8); the member is rechecked daily.
    assert _run(t0 + timedelta(days=6)).total == 1
    assert _tier(m.id) == "engaged"
    t8 = t0 + timedelta(days=8)
    run = _run(t8)
    assert (run.demoted, _tier(m.id)) == (1, "aware")
    assert_as_a_full_run_would_leave_it([m.id, other.id], t8)


def test_a_reversal_since_the_last_run_counts(app, make_member):
    admin = make_member(roles=("admin",))
    _save(admin, {**SHORT, "requirements": {**SHORT["requirements"], "engaged": {"points_earned": 20}}})
    m = make_member()
    t0 = utcnow()
    entry_id = _award(m.id, 25, t0 - timedelta(days=1))
    _run(t0)
    assert _tier(m.id) == "engaged"
    _reverse(entry_id, t0 + timedelta(hours=3))
    _run(t0 + timedelta(hours=4))
    assert _state(m.id).points_earned == 0 and _state(m.id).below_since is not None


def test_a_future_dated_interaction_counts_once_the_clock_reaches_it(app, make_member):
    admin = make_member(roles=("admin",))
    _save(admin, {**SHORT, "requirements": {**SHORT["requirements"], "engaged": {"surveys_completed": 1}}})
    m = make_member()
    t0 = utcnow()
    _record(m.id, "survey_completed", t0 - timedelta(days=1), occurred=t0 + timedelta(days=2), value=3)
    _run(t0)
    assert _tier(m.id) == "aware"
    _run(t0 + timedelta(days=1))
    assert _tier(m.id) == "aware"
    _run(t0 + timedelta(days=3))
    assert _tier(m.id) == "engaged"


def test_suspensions_starting_ending_and_lifted_early(app, make_member):
    admin = make_member(roles=("admin",))
    _save(admin, {**SHORT, "requirements": {**SHORT["requirements"], "engaged": {"no_suspension": 1}}})
    a, b = make_member(), make_member()
    t0 = utcnow()
    _run(t0)
    assert (_tier(a.id), _tier(b.id)) == ("engaged", "engaged")
    # Suspended for 2 days (a) and 10 days (b), after the last run.
    db.session.execute(update(User).where(User.id == a.id).values(suspended_until=t0 + timedelta(days=2)))
    db.session.execute(update(User).where(User.id == b.id).values(suspended_until=t0 + timedelta(days=10)))
    db.session.commit()
    _run(t0 + timedelta(days=1))
    assert _state(a.id).no_suspension == 0 and _state(b.id).no_suspension == 0
    _run(t0 + timedelta(days=3))  # a's suspension ended meanwhile
    assert _state(a.id).no_suspension == 1
    db.session.execute(update(User).where(User.id == b.id).values(suspended_until=None))  # lifted early
    db.session.commit()
    _run(t0 + timedelta(days=4))
    assert _state(b.id).no_suspension == 1
    assert_as_a_full_run_would_leave_it([a.id, b.id], t0 + timedelta(days=4))


# --------------------------------------------------------------------------- the invariant


_LAST_CLOCK = [utcnow()]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.lists(
    st.one_of(
        st.tuples(st.just("day"), st.integers(1, 6)),
        st.tuples(st.just("hours"), st.integers(1, 20)),
        st.tuples(st.just("interact"), st.integers(0, 2), st.sampled_from(KINDS), st.integers(-3, 20),
                  st.integers(0, 10)),
        st.tuples(st.just("award"), st.integers(0, 2), st.integers(1, 40)),
        st.tuples(st.just("reverse"), st.integers(0, 2)),
        st.tuples(st.just("suspend"), st.integers(0, 2), st.integers(-2, 8)),
        st.tuples(st.just("lift"), st.integers(0, 2)),
    ),
    min_size=1, max_size=30,
))
def test_incremental_runs_leave_what_full_runs_would(app, make_member, steps):
    """After any history and any sequence of daily runs, a full run would change nothing."""
    app.config["TIER_FULL_RUN_DAYS"] = 10_000  # only incremental runs after the first
    admin = make_member(roles=("admin",))
    _save(admin)
    ids = [make_member().id for _ in range(3)]
    clock = _LAST_CLOCK[0] = max(_LAST_CLOCK[0], utcnow()) + timedelta(days=30)  # after earlier examples' runs
    assert _run(clock).mode == "full"
    awards: dict[int, list[int]] = {i: [] for i in range(3)}
    for step in steps:
        kind = step[0]
        if kind in ("day", "hours"):
            clock += timedelta(days=step[1]) if kind == "day" else timedelta(hours=step[1])
            assert _run(clock).mode == "incremental"
            assert_as_a_full_run_would_leave_it(ids, clock)
        elif kind == "interact":
            _, who, what, days_ago, value = step
            _record(ids[who], what, clock, occurred=clock - timedelta(days=days_ago),
                    value=value if what == "survey_completed" else None)
        elif kind == "award":
            awards[step[1]].append(_award(ids[step[1]], step[2], clock))
        elif kind == "reverse" and awards[step[1]]:
            _reverse(awards[step[1]].pop(), clock)
        elif kind == "suspend":
            until = clock + timedelta(days=step[2])
            db.session.execute(update(User).where(User.id == ids[step[1]]).values(suspended_until=until))
            db.session.commit()
        elif kind == "lift":
            db.session.execute(update(User).where(User.id == ids[step[1]]).values(suspended_until=None))
            db.session.commit()
    clock += timedelta(days=3)
    assert _run(clock).mode == "incremental"
    assert_as_a_full_run_would_leave_it(ids, clock)
    _LAST_CLOCK[0] = clock
