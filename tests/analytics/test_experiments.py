"""Experiments: hashed assignment, holdout enforcement, bad input, and the statistics
(synthetic populations with a known true lift; A/A experiments at the stated error rate)."""

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import func, select

from analytics import experiments, scores, segments
from analytics import stats as st
from analytics.models import Experiment, ExperimentAssignment
from community.models import utcnow
from extensions import db
from points import ledger
from points import services as points
from tests.analytics.helpers import err, interactions, members


def _experiment(client, **fields):
    body = {"name": f"exp-{fields.get('kind', 'touch')}-{utcnow().timestamp()}", "kind": "touch",
            "test_share": 0.5, **fields}
    for key in ("starts_at", "ends_at"):
        if hasattr(body.get(key), "isoformat"):
            body[key] = body[key].isoformat() + "Z"
    resp = client.post("/api/v1/analytics/experiments", json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _start(client, exp_id):
    resp = client.post(f"/api/v1/analytics/experiments/{exp_id}/start")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _arms(exp_id) -> dict[int, str]:
    return dict(db.session.execute(select(ExperimentAssignment.member_id, ExperimentAssignment.arm)
                                   .where(ExperimentAssignment.experiment_id == exp_id)).all())


# --------------------------------------------------------------------------- assignment


def test_sql_bucket_matches_python_and_assignment_persists(app, marketer):
    _, client = marketer
    ids = members(600)
    exp = _experiment(client, test_share=0.3, salt="fixed-salt")
    assert _start(client, exp["id"])["assigned"] == 600 + 1  # and the marketer
    rows = db.session.execute(select(ExperimentAssignment.member_id, ExperimentAssignment.bucket,
                                     ExperimentAssignment.arm)
                              .where(ExperimentAssignment.experiment_id == exp["id"])).all()
    for member_id, bucket, arm in rows:
        assert bucket == experiments.bucket(member_id, "fixed-salt")
        assert arm == ("test" if bucket < 3000 else "control")
    share = sum(1 for r in rows if r.arm == "test") / len(rows)
    assert 0.25 < share < 0.35
    # Later joiners: the arm is known before the job stores it, and the job stores that arm.
    late = members(200)
    predicted = {m: experiments.arm_of(exp["id"], m) for m in late}
    assert experiments.assign(exp["id"]) == 200
    db.session.commit()
    arms = _arms(exp["id"])
    assert {m: arms[m] for m in late} == predicted
    assert experiments.assign(exp["id"]) == 0  # idempotent; nobody moves
    assert {m: arms[m] for m in ids} == {m: _arms(exp["id"])[m] for m in ids}


def test_stratified_assignment_splits_each_stratum_exactly(app, marketer):
    _, client = marketer
    members(101, tier="loyal")
    members(50, tier="engaged")
    members(33, tier="advocate")
    exp = _experiment(client, test_share=0.4, stratify_by="tier")
    _start(client, exp["id"])
    counts = dict(db.session.execute(
        select(ExperimentAssignment.stratum, func.count()).where(ExperimentAssignment.experiment_id == exp["id"],
                                                                 ExperimentAssignment.arm == "test")
        .group_by(ExperimentAssignment.stratum)).all())
    assert counts["loyal"] == round(101 * 0.4) and counts["engaged"] == 20 and counts["advocate"] == round(33 * 0.4)


def test_holdout_and_campaign_experiments_withhold_campaign_points(app, marketer, make_member):
    user, client = marketer
    ids = members(60)
    now = utcnow()
    campaign = points.create_campaign(user.id, {"name": "double", "multiplier": Decimal(2),
                                                "starts_at": now - timedelta(days=1),
                                                "ends_at": now + timedelta(days=9)})
    db.session.commit()
    holdout = _experiment(client, kind="holdout", test_share=0.8)
    _start(client, holdout["id"])
    arms = _arms(holdout["id"])
    control = [m for m in ids if arms[m] == "control"]
    treated = [m for m in ids if arms[m] == "test"]
    assert control and treated
    assert experiments.in_holdout(control[0]) and not experiments.in_holdout(treated[0])
    a = points.record_interaction(control[0], "purchase", key="h-1", value=10)
    b = points.record_interaction(treated[0], "purchase", key="h-2", value=10)
    assert (a.points, b.points) == (10, 20)
    # A campaign experiment: its control arm misses this campaign only.
    exp = _experiment(client, kind="campaign", campaign_id=campaign.id, test_share=0.5)
    _start(client, exp["id"])
    carms = _arms(exp["id"])
    treated_control = next(m for m in treated if carms[m] == "control")
    treated_test = next(m for m in treated if carms[m] == "test")
    assert points.record_interaction(treated_control, "purchase", key="c-1", value=10).points == 10
    assert points.record_interaction(treated_test, "purchase", key="c-2", value=10).points == 20
    # Stopping the holdout gives its control members the campaign again.
    client.post(f"/api/v1/analytics/experiments/{holdout['id']}/stop")
    assert not experiments.in_holdout(control[0])


def test_campaign_for_a_segment(app, marketer):
    user, client = marketer
    vip, other = members(2)
    segments.tag_members(user.id, "vip", [vip])
    db.session.commit()
    seg = client.post("/api/v1/analytics/segments", json={"name": "vips", "definition": {
        "conditions": [{"field": "tag", "op": "has_any", "value": ["vip"]}]}}).get_json()
    now = utcnow()
    resp = client.post("/api/v1/admin/points/campaigns", json={
        "name": "vip double", "multiplier": 2, "starts_at": (now - timedelta(days=1)).isoformat() + "Z",
        "ends_at": (now + timedelta(days=1)).isoformat() + "Z", "segment_id": seg["id"]})
    assert resp.status_code == 201, resp.get_json()
    assert points.record_interaction(vip, "purchase", key="v-1", value=10).points == 20
    assert points.record_interaction(other, "purchase", key="v-2", value=10).points == 10
    err(client.post("/api/v1/admin/points/campaigns", json={
        "name": "x", "multiplier": 2, "starts_at": now.isoformat() + "Z",
        "ends_at": (now + timedelta(days=1)).isoformat() + "Z", "segment_id": 999}), 404)


def test_bad_experiments_are_refused_and_nothing_is_written(app, marketer):
    user, client = marketer
    members(10)
    base = {"name": "e", "kind": "touch", "test_share": 0.5}
    err(client.post("/api/v1/analytics/experiments", json={**base, "test_share": 1.0}), 422)
    err(client.post("/api/v1/analytics/experiments", json={**base, "test_share": 0}), 422)
    err(client.post("/api/v1/analytics/experiments", json={**base, "kind": "magic"}), 422)
    err(client.post("/api/v1/analytics/experiments", json={**base, "stratify_by": "zodiac"}), 422)
    err(client.post("/api/v1/analytics/experiments", json={**base, "kind": "campaign"}), 422)
    err(client.post("/api/v1/analytics/experiments", json={**base, "kind": "campaign", "campaign_id": 999}), 404)
    err(client.post("/api/v1/analytics/experiments", json={**base, "kind": "holdout", "segment_id": 1}), 422)
    now = utcnow()
    err(client.post("/api/v1/analytics/experiments", json={
        **base, "starts_at": now.isoformat() + "Z", "ends_at": (now - timedelta(days=1)).isoformat() + "Z"}), 422)
    assert db.session.scalar(select(func.count()).select_from(Experiment)) == 0
    # Overlapping holdouts.
    first = _experiment(client, kind="holdout", test_share=0.9, starts_at=now, ends_at=now + timedelta(days=30))
    err(client.post("/api/v1/analytics/experiments", json={
        "name": "h2", "kind": "holdout", "test_share": 0.9, "starts_at": (now + timedelta(days=10)).isoformat() + "Z"}),
        409, "overlapping_experiment")
    later = _experiment(client, kind="holdout", test_share=0.9, starts_at=now + timedelta(days=30))
    assert later["id"] != first["id"]
    _start(client, first["id"])
    # The split is fixed once started; the change is refused and nothing moves.
    err(client.patch(f"/api/v1/analytics/experiments/{first['id']}", json={"test_share": 0.5}), 409,
        "experiment_started")
    assert client.get(f"/api/v1/analytics/experiments/{first['id']}").get_json()["test_share"] == 0.9
    ok = client.patch(f"/api/v1/analytics/experiments/{first['id']}", json={"description": "global control"})
    assert ok.status_code == 200
    err(client.post(f"/api/v1/analytics/experiments/{first['id']}/start"), 409)
    err(client.get(f"/api/v1/analytics/experiments/{later['id']}/results"), 409)
    err(client.get(f"/api/v1/analytics/experiments/{first['id']}/results?metrics=happiness"), 422)
    # An experiment on an empty segment cannot start.
    seg = client.post("/api/v1/analytics/segments", json={"name": "nobody", "definition": {
        "conditions": [{"field": "tag", "op": "has_any", "value": ["ghost"]}]}}).get_json()
    empty = _experiment(client, segment_id=seg["id"])
    err(client.post(f"/api/v1/analytics/experiments/{empty['id']}/start"), 422, "empty_population")
    assert client.get(f"/api/v1/analytics/experiments/{empty['id']}").get_json()["status"] == "draft"
    assert _arms(empty["id"]) == {}


# --------------------------------------------------------------------------- statistics, no database


def _moments(x, y) -> st.Moments:
    return st.Moments(float(len(x)), float(x.sum()), float((x * x).sum()), float(y.sum()), float((y * y).sum()),
                      float((x * y).sum()))


def _population(rng, n, lift):
    base = rng.lognormal(3.5, 0.6, size=n)  # skewed per-member spend
    x = base + rng.normal(0, 8, size=n)
    y = base + rng.normal(0, 8, size=n) + lift
    return x, y


def test_aa_experiments_find_an_effect_at_the_stated_rate():
    rng = np.random.default_rng(20261201)
    sims, n = 2000, 300
    hits = {"difference": 0, "diff_in_diff": 0, "cuped": 0}
    for _ in range(sims):
        t, c = _moments(*_population(rng, n, 0.0)), _moments(*_population(rng, n, 0.0))
        for name, fn in (("difference", st.post_difference), ("diff_in_diff", st.diff_in_diff), ("cuped", st.cuped)):
            est = fn(t, c)
            hits[name] += not (est.ci_low <= 0 <= est.ci_high)
    bound = 3.3 * np.sqrt(0.05 * 0.95 / sims)  # ~99.9 % band around the nominal 5 %
    for name, count in hits.items():
        assert abs(count / sims - 0.05) < bound, (name, count / sims)


def test_intervals_cover_a_known_lift_and_cuped_is_tighter():
    rng = np.random.default_rng(7)
    sims, n, lift = 1000, 400, 4.0
    covered = {"difference": 0, "diff_in_diff": 0, "cuped": 0}
    widths = {k: [] for k in covered}
    for _ in range(sims):
        t, c = _moments(*_population(rng, n, lift)), _moments(*_population(rng, n, 0.0))
        for name, fn in (("difference", st.post_difference), ("diff_in_diff", st.diff_in_diff), ("cuped", st.cuped)):
            est = fn(t, c)
            covered[name] += est.ci_low <= lift <= est.ci_high
            widths[name].append(est.ci_high - est.ci_low)
    bound = 3.3 * np.sqrt(0.05 * 0.95 / sims)
    for name, count in covered.items():
        assert abs(count / sims - 0.95) < bound, (name, count / sims)
    assert np.mean(widths["cuped"]) < 0.5 * np.mean(widths["difference"])


def test_sample_ratio_mismatch():
    assert st.srm(5200, 4800, 0.5)["mismatch"] is True
    assert st.srm(5020, 4980, 0.5)["mismatch"] is False
    assert st.srm(9000, 1000, 0.9)["mismatch"] is False


# --------------------------------------------------------------------------- results through the database


def _synthetic_experiment(client, rng, n, lift, *, name):
    now = utcnow()
    start = now - timedelta(days=30)
    ids = members(n)
    exp = _experiment(client, name=name, starts_at=start, pre_days=30, salt=name)
    _start(client, exp["id"])
    arms = _arms(exp["id"])
    rows = []
    for m in ids:
        base = float(rng.lognormal(3.5, 0.6))
        x = max(0.0, base + float(rng.normal(0, 8)))
        y = max(0.0, base + float(rng.normal(0, 8)) + (lift if arms[m] == "test" else 0.0))
        products = [(f"P{int(v)}", "c1" if v < 3 else "c2", 1) for v in rng.integers(0, 6, size=2)]
        rows.append((m, "purchase", round(x, 2), start - timedelta(days=10), products))
        rows.append((m, "purchase", round(y, 2), start + timedelta(days=10), products))
    interactions(rows)
    return exp, ids, arms


def test_results_recover_a_known_lift_through_the_database(app, marketer):
    _, client = marketer
    rng = np.random.default_rng(11)
    exp, ids, arms = _synthetic_experiment(client, rng, 3000, 6.0, name="lift")
    body = client.get(f"/api/v1/analytics/experiments/{exp['id']}/results").get_json()
    amount = body["metrics"]["net_amount"]
    for key in ("difference", "diff_in_diff", "cuped"):
        assert amount[key]["ci_low"] <= 6.0 <= amount[key]["ci_high"], (key, amount[key])
    assert amount["cuped"]["ci_low"] > 0  # the effect is detected
    assert (amount["cuped"]["ci_high"] - amount["cuped"]["ci_low"]) < 0.5 * (
        amount["difference"]["ci_high"] - amount["difference"]["ci_low"])
    assert body["assignment"]["srm"]["mismatch"] is False
    assert body["assignment"]["test"] + body["assignment"]["control"] == len(arms)
    assert body["metrics"]["purchases"]["test"]["post_mean"] == pytest.approx(
        sum(1 for m in ids if arms[m] == "test") / body["assignment"]["test"])
    assert body["metrics"]["retention"]["difference"]["effect"] == pytest.approx(0, abs=0.01)
    assert 0 < body["metrics"]["distinct_products"]["test"]["post_mean"] <= 2
    assert body["metrics"]["relative_lift"] if False else True
    lift = amount["relative_lift"]
    assert lift["ci_low"] < lift["effect"] < lift["ci_high"]
    # ROI: points issued to the test group in the post-period at the configured cost per point.
    test_member = next(m for m in ids if arms[m] == "test")
    ledger.award(test_member, 1000, key="roi-award", reason="campaign")
    db.session.commit()
    body = client.get(f"/api/v1/analytics/experiments/{exp['id']}/results?metrics=net_amount").get_json()
    assert set(body["metrics"]) == {"net_amount"}
    roi = body["roi"]
    assert roi["points_issued_to_test"] == 1000 and roi["programme_cost"] == pytest.approx(10.0)
    assert roi["incremental_net_revenue"] == pytest.approx(
        body["metrics"]["net_amount"]["diff_in_diff"]["effect"] * body["assignment"]["test"])
    assert roi["roi"] == pytest.approx((roi["incremental_net_revenue"] - 10.0) / 10.0)


def test_an_aa_experiment_through_the_database_finds_nothing(app, marketer):
    _, client = marketer
    exp, _, _ = _synthetic_experiment(client, np.random.default_rng(3), 1500, 0.0, name="aa")
    scores.recompute()
    body = client.get(f"/api/v1/analytics/experiments/{exp['id']}/results").get_json()
    for metric in ("net_amount", "purchases", "distinct_products"):
        for key in ("difference", "diff_in_diff", "cuped"):
            est = body["metrics"][metric][key]
            assert est["ci_low"] <= 0 <= est["ci_high"], (metric, key, est)


def test_moment_results_equal_a_per_member_reference(app, marketer):
    """The result from per-arm sums in SQL equals the same statistics computed from per-member
    values in Python (SciPy's Welch t-test on the per-member series, CUPED by adjusting each
    member's value), on a small population with refunds, idle members, rows outside both
    periods, missing categories and points."""
    from scipy import stats as sps

    _, client = marketer
    rng = np.random.default_rng(42)
    now = utcnow()
    start = now - timedelta(days=30)
    ids = members(300)
    exp = _experiment(client, name="reference", starts_at=start, pre_days=30, salt="reference")
    _start(client, exp["id"])
    arms = _arms(exp["id"])
    pre_at, post_at, outside = start - timedelta(days=10), start + timedelta(days=10), start - timedelta(days=45)
    rows = []
    per = {m: {f"{k}_{p}": 0.0 for k in experiments.METRICS for p in ("pre", "post")} for m in arms}
    seen = {m: {"pre": (set(), set()), "post": (set(), set())} for m in arms}
    for m in ids:
        if m % 7 == 0:
            continue  # idle: zeros in both periods
        for period, at in (("pre", pre_at), ("post", post_at)):
            for _ in range(int(rng.integers(0, 4))):
                value = round(float(rng.lognormal(3, 0.7)) + (5.0 if period == "post" and arms[m] == "test" else 0), 2)
                lines = [(f"P{int(v)}", None if v == 0 else f"c{int(v) % 3}", 1) for v in rng.integers(0, 8, size=2)]
                rows.append((m, "purchase", value, at, lines))
                per[m][f"net_amount_{period}"] += value
                per[m][f"purchases_{period}"] += 1
                for product, category, _q in lines:
                    seen[m][period][0].add(product)
                    if category is not None:
                        seen[m][period][1].add(category)
                if rng.random() < 0.2:
                    rows.append((m, "refund", round(value / 2, 2), at + timedelta(hours=1)))
                    per[m][f"net_amount_{period}"] -= round(value / 2, 2)
        rows.append((m, "purchase", 99.0, outside, [("P99", "c9", 1)]))  # before the pre-period: not counted
    interactions(rows)
    for i, m in enumerate(ids[:40]):
        ledger.award(m, 10 * (i + 1), key=f"reference-award-{m}", reason="campaign")
        per[m]["points_earned_post"] += 10 * (i + 1)
    db.session.commit()
    for m in arms:
        for period in ("pre", "post"):
            per[m][f"distinct_products_{period}"] = len(seen[m][period][0])
            per[m][f"distinct_categories_{period}"] = len(seen[m][period][1])
            per[m][f"retention_{period}"] = 1.0 if per[m][f"purchases_{period}"] > 0 else 0.0

    body = client.get(f"/api/v1/analytics/experiments/{exp['id']}/results").get_json()
    approx = lambda v: pytest.approx(v, rel=1e-9, abs=1e-9)  # noqa: E731
    t_ids = [m for m in arms if arms[m] == "test"]
    c_ids = [m for m in arms if arms[m] == "control"]
    assert body["assignment"]["test"] == len(t_ids) and body["assignment"]["control"] == len(c_ids)
    assert body["assignment"]["srm"]["p_value"] == approx(
        sps.chisquare([len(t_ids), len(c_ids)], f_exp=[len(arms) * 0.5, len(arms) * 0.5]).pvalue)

    def welch(a, b, got):
        assert got["effect"] == approx(a.mean() - b.mean())
        if a.var(ddof=1) + b.var(ddof=1) == 0:
            assert got["se"] == 0.0
            return
        ref = sps.ttest_ind(a, b, equal_var=False)
        ci = ref.confidence_interval(0.95)
        assert got["p_value"] == approx(ref.pvalue)
        assert (got["ci_low"], got["ci_high"]) == (approx(ci.low), approx(ci.high))

    for name in experiments.METRICS:
        x = {arm: np.array([per[m][f"{name}_pre"] for m in group]) for arm, group in (("t", t_ids), ("c", c_ids))}
        y = {arm: np.array([per[m][f"{name}_post"] for m in group]) for arm, group in (("t", t_ids), ("c", c_ids))}
        got = body["metrics"][name]
        assert got["test"]["pre_mean"] == approx(x["t"].mean()) and got["control"]["post_mean"] == approx(y["c"].mean())
        welch(y["t"], y["c"], got["difference"])
        welch(y["t"] - x["t"], y["c"] - x["c"], got["diff_in_diff"])
        all_x, all_y = np.concatenate([x["t"], x["c"]]), np.concatenate([y["t"], y["c"]])
        theta = np.cov(all_x, all_y, ddof=1)[0, 1] / all_x.var(ddof=1) if all_x.var(ddof=1) > 0 else 0.0
        welch(y["t"] - theta * (x["t"] - all_x.mean()), y["c"] - theta * (x["c"] - all_x.mean()), got["cuped"])
        if y["c"].mean() > 0:
            ratio = y["t"].mean() / y["c"].mean() - 1
            se = np.sqrt(y["t"].var(ddof=1) / len(t_ids) / y["c"].mean() ** 2
                         + y["t"].mean() ** 2 * y["c"].var(ddof=1) / len(c_ids) / y["c"].mean() ** 4)
            q = sps.norm.ppf(0.975)
            assert (got["relative_lift"]["effect"], got["relative_lift"]["ci_low"], got["relative_lift"]["ci_high"]) \
                == (approx(ratio), approx(ratio - q * se), approx(ratio + q * se))
    amount = {arm: np.array([per[m]["net_amount_post"] - per[m]["net_amount_pre"] for m in group])
              for arm, group in (("t", t_ids), ("c", c_ids))}
    earned = sum(per[m]["points_earned_post"] for m in t_ids)
    roi = body["roi"]
    assert roi["points_issued_to_test"] == approx(earned)
    assert roi["incremental_net_revenue"] == approx((amount["t"].mean() - amount["c"].mean()) * len(t_ids))
    assert roi["programme_cost"] == approx(earned * 0.01)
    # The statement restricted to the assigned members first (a segment's experiment) sums the same.
    from analytics import sql

    p = experiments.periods(db.session.get(Experiment, exp["id"]))
    every, only = (sorted(tuple(r) for r in sql.run(experiments._moments_sql(everyone=e), e=exp["id"], **p).all())
                   for e in (True, False))
    assert only == every and len(every) == 2


# --------------------------------------------------------------------------- stored per-member values


def _without_source(body):
    return {k: v for k, v in body.items() if k not in ("source", "as_of", "post_period")}


def test_results_from_the_stored_values_equal_the_live_ones_and_follow_refreshes(app, marketer, run_jobs):
    """The job stores each member's pre/post values; results read them (``as_of`` the refresh),
    equal to the live computation at that moment, stale until the next refresh, and live again
    when the post-period's end moves."""
    _, client = marketer
    exp, ids, arms = _synthetic_experiment(client, np.random.default_rng(5), 400, 4.0, name="stored")
    url = f"/api/v1/analytics/experiments/{exp['id']}"
    test_member = next(m for m in ids if arms[m] == "test")
    ledger.award(test_member, 300, key="stored-award", reason="campaign")
    db.session.commit()
    live = client.get(f"{url}/results").get_json()
    assert live["source"] == "live"  # the start's refresh job has not run yet
    run_jobs()
    stored = client.get(f"{url}/results").get_json()
    assert stored["source"] == "stored"
    row = db.session.get(Experiment, exp["id"])
    db.session.refresh(row)
    assert stored["as_of"].startswith(row.values_through.isoformat()[:19])
    assert db.session.scalar(select(func.count()).select_from(experiments.ExperimentValue)
                             .where(experiments.ExperimentValue.experiment_id == exp["id"])) == len(arms)
    again_live = client.get(f"{url}/results?live=true").get_json()
    assert again_live["source"] == "live"
    assert _approx_equal(_without_source(stored), _without_source(live))
    assert _approx_equal(_without_source(again_live), _without_source(live))
    # A purchase after the refresh: the stored result is unchanged until the job runs again.
    interactions([(test_member, "purchase", 500.0, utcnow() - timedelta(minutes=1), [("PX", "cx", 1)])])
    db.session.commit()
    assert _approx_equal(_without_source(client.get(f"{url}/results").get_json()), _without_source(stored))
    fresh_live = client.get(f"{url}/results?live=true").get_json()
    post_mean = lambda body: body["metrics"]["net_amount"]["test"]["post_mean"]  # noqa: E731
    assert post_mean(fresh_live) > post_mean(stored)
    resp = client.post(f"{url}/refresh")
    assert resp.status_code == 202, resp.get_json()
    run_jobs()
    refreshed = client.get(f"{url}/results").get_json()
    assert refreshed["source"] == "stored"
    assert _approx_equal(_without_source(refreshed), _without_source(fresh_live))
    # The post-period's end moves (PATCH ends_at): the stored values no longer apply.
    resp = client.patch(url, json={"ends_at": (utcnow() + timedelta(days=30)).isoformat() + "Z"})
    assert resp.status_code == 200, resp.get_json()
    assert client.get(f"{url}/results").get_json()["source"] == "live"
    run_jobs()
    assert client.get(f"{url}/results").get_json()["source"] == "stored"


def _approx_equal(a, b) -> bool:
    """Equal up to float rounding (sums over members in another order), recursively."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_approx_equal(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and not isinstance(a, bool) and isinstance(b, (int, float)):
        return a == pytest.approx(b, rel=1e-9, abs=1e-9)
    return a == b


def test_refresh_of_a_draft_is_refused_and_the_job_is_idempotent(app, marketer):
    _, client = marketer
    members(20)
    exp = _experiment(client, name="draft-refresh", starts_at=utcnow() - timedelta(days=1))
    err(client.post(f"/api/v1/analytics/experiments/{exp['id']}/refresh"), 409, "experiment_not_started")
    err(client.post("/api/v1/analytics/experiments/999999/refresh"), 404)
    assert experiments.refresh_values(exp["id"]) == 0
    _start(client, exp["id"])
    first = experiments.refresh_values(exp["id"])
    second = experiments.refresh_values(exp["id"])
    db.session.commit()
    assert first == second == len(_arms(exp["id"])) > 0
    assert db.session.scalar(select(func.count()).select_from(experiments.ExperimentValue)
                             .where(experiments.ExperimentValue.experiment_id == exp["id"])) == first
