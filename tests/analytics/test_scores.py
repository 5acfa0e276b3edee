"""RFM, value and health recompute: known populations, class rules, history, the job."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from analytics import scores, settings
from analytics.models import SCORE_COLUMNS, MemberScore, RfmClassChange
from community.models import utcnow
from extensions import db
from tests.analytics.helpers import err, interactions, members


def _score(member_id) -> MemberScore:
    return db.session.scalars(select(MemberScore).where(MemberScore.member_id == member_id)
                              .execution_options(populate_existing=True)).one()


def test_rfm_quintiles_net_of_refunds_and_classes(app):
    now = utcnow()
    ids = members(10)
    rows = []
    # member i: i+1 purchases of 10 * (i+1) each, the last one (i+1) * 20 days ago.
    for i, m in enumerate(ids):
        for k in range(i + 1):
            rows.append((m, "purchase", 10 * (i + 1), now - timedelta(days=(10 - i) * 20 + k)))
    # Member 9 refunds everything it bought: net monetary 0 despite the most purchases.
    rows.append((ids[9], "refund", 10 * 10 * 10, now - timedelta(days=1)))
    interactions(rows)
    idle = members(1)[0]
    stats = scores.recompute(now=now)
    db.session.commit()
    assert stats["members"] == 11
    s = {m: _score(m) for m in ids}
    # Frequencies 1..10 -> two members per quintile.
    assert [s[m].f_score for m in ids] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [s[m].r_score for m in ids] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert s[ids[9]].monetary == 0
    assert s[ids[8]].monetary == 9 * 90
    assert s[ids[9]].m_score == 1 and s[ids[8]].m_score == 5
    assert s[ids[0]].recency_days == pytest.approx(200, abs=0.01)
    # Default rules: high value = r,f,m >= 4; at risk = r <= 2 and (f or m >= 3); potential r >= 3.
    assert s[ids[8]].rfm_class == "high_value"
    assert s[ids[9]].rfm_class == "potential"  # recent and frequent, but refunded everything
    assert s[ids[0]].rfm_class == "low_value"
    idle_score = _score(idle)
    assert (idle_score.r_score, idle_score.f_score, idle_score.m_score, idle_score.rfm_class) == (1, 1, 1, "low_value")
    for m in ids + [idle]:
        row = _score(m)
        parts = (row.health_recency + row.health_frequency_trend + row.health_community + row.health_survey
                 + row.health_nps + row.health_flags)
        assert row.health == pytest.approx(parts)
        assert 0 <= row.health <= 100 and 0 <= row.value_score <= 100
    # Idle member: no activity (0), no trend (0), no community/survey (0), NPS unknown (50 * 15 %),
    # no flags (100 * 10 %).
    assert idle_score.health == pytest.approx(0.15 * 50 + 0.10 * 100)


def test_class_rules_are_configurable_and_history_records_moves(app, make_member):
    now = utcnow()
    ids = members(5)
    interactions([(m, "purchase", 10 * (i + 1), now - timedelta(days=i + 1)) for i, m in enumerate(ids)])
    scores.recompute(now=now)
    db.session.commit()
    first = {m: _score(m).rfm_class for m in ids}
    assert db.session.query(RfmClassChange).filter(RfmClassChange.from_class.is_(None)).count() == 5
    admin = make_member(roles=("admin",))
    settings.save(admin.id, {"rfm": {"classes": [{"class": "at_risk", "m_min": 1}], "default_class": "low_value"}})
    db.session.commit()
    scores.recompute(now=now)
    db.session.commit()
    assert all(_score(m).rfm_class == "at_risk" for m in ids)
    moves = db.session.scalars(select(RfmClassChange).where(RfmClassChange.from_class.is_not(None))).all()
    assert {(c.member_id, c.from_class, c.to_class) for c in moves} == {
        (m, first[m], "at_risk") for m in ids if first[m] != "at_risk"}
    # A recompute that changes nothing records nothing.
    before = db.session.query(RfmClassChange).count()
    scores.recompute(now=now)
    db.session.commit()
    assert db.session.query(RfmClassChange).count() == before


def test_strategic_flag_weights_the_value_score(app, marketer, login, make_member):
    user, client = marketer
    a, b = members(2)
    resp = client.put(f"/api/v1/analytics/members/{a}/strategic", json={"strategic": True, "note": "key account"})
    assert resp.status_code == 200, resp.get_json()
    scores.recompute()
    db.session.commit()
    assert _score(a).strategic == 100 and _score(b).strategic == 0
    assert _score(a).value_score - _score(b).value_score == pytest.approx(20)
    body = client.get(f"/api/v1/analytics/members/{a}").get_json()
    assert body["strategic"] is True and body["score"]["value"]["strategic"] == 100
    assert set(body["score"]["health"]["contributions"]) == {
        "recency", "frequency_trend", "community", "survey", "nps", "flags"}
    err(client.put("/api/v1/analytics/members/999999/strategic", json={"strategic": True}), 404)


def test_settings_validation(app, make_member, login):
    admin = login(make_member(roles=("admin",)))
    err(admin.put("/api/v1/analytics/settings", json={"value": {"weights": {"historical": 1}}}), 422)
    err(admin.put("/api/v1/analytics/settings", json={"rfm": {"classes": [{"class": "vip"}]}}), 422)
    err(admin.put("/api/v1/analytics/settings", json={"rfm": {"window_days": 2}}), 422)
    err(admin.put("/api/v1/analytics/settings", json={"bogus": 1}), 422)
    assert settings.version() == 0
    ok = admin.put("/api/v1/analytics/settings",
                   json={"value": {"weights": {"historical": 50, "potential": 50, "strategic": 0}}, "note": "n"})
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["version"] == 1
    assert ok.get_json()["settings"]["rfm"]["window_days"] == 365


def test_recompute_runs_as_a_job_and_chains_segments(app, marketer, run_jobs):
    _, client = marketer
    ids = members(3)
    interactions([(m, "purchase", 5, utcnow() - timedelta(days=2)) for m in ids])
    seg = client.post("/api/v1/analytics/segments", json={
        "name": "buyers", "definition": {"match": "all", "conditions": [
            {"field": "rfm_class", "op": "in", "value": ["potential", "high_value", "at_risk", "low_value"]}]}})
    assert seg.status_code == 201, seg.get_json()
    resp = client.post("/api/v1/analytics/runs", json={"kind": "scores"})
    assert resp.status_code == 202 and resp.get_json()["status"] == "queued"
    again = client.post("/api/v1/analytics/runs", json={"kind": "scores"})
    assert again.get_json()["id"] == resp.get_json()["id"]  # one pending run per kind
    run_jobs()
    run = client.get(f"/api/v1/analytics/runs/{resp.get_json()['id']}").get_json()
    assert run["status"] == "done" and run["stats"]["members"] >= 3
    assert all(_score(m).frequency == 1 for m in ids)
    detail = client.get(f"/api/v1/analytics/segments/{seg.get_json()['id']}").get_json()
    assert detail["member_count"] >= 3
    err(client.post("/api/v1/analytics/runs", json={"kind": "everything"}), 422)


def _catalogue():
    from analytics import sql

    indexes = sorted(tuple(r) for r in sql.run(
        "SELECT indexname, replace(indexdef, indexname, '') FROM pg_indexes WHERE tablename = 'member_scores'"))
    constraints = sorted(tuple(r) for r in sql.run(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST('member_scores' AS regclass)"))
    return indexes, constraints


def test_the_swapped_in_table_keeps_indexes_constraints_and_equals_the_upsert(app):
    """PostgreSQL swaps a freshly built ``member_scores`` in: same indexes (journeys' included),
    constraints and names afterwards; with a view over the table (which would block the DROP)
    it upserts in place instead, and both write the same rows."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the swap is PostgreSQL's path; SQLite writes through the scratch table")
    from sqlalchemy import text

    now = utcnow()
    ids = members(30)
    interactions([(m, "purchase", 5 + i, now - timedelta(days=3 * i + 1)) for i, m in enumerate(ids)]
                 + [(m, "post", None, now - timedelta(days=i)) for i, m in enumerate(ids[::3])])
    before = _catalogue()
    assert any(name == "ix_member_scores_last_activity" for name, _ in before[0])
    stats = scores.recompute(now=now)
    db.session.commit()
    assert stats["members"] == db.session.scalar(text("SELECT COUNT(*) FROM users"))
    assert _catalogue() == before
    assert not db.session.scalar(text("SELECT to_regclass('member_scores_next') IS NOT NULL"))
    columns = ", ".join(SCORE_COLUMNS)
    swapped = sorted(tuple(r) for r in db.session.execute(text(f"SELECT {columns} FROM member_scores")))
    db.session.execute(text("CREATE VIEW bench_scores_view AS SELECT member_id FROM member_scores"))
    try:
        scores.recompute(now=now)
        db.session.flush()
        upserted = sorted(tuple(r) for r in db.session.execute(text(f"SELECT {columns} FROM member_scores")))
        assert upserted == swapped and len(swapped) == stats["members"]
        assert _catalogue() == before
    finally:
        db.session.rollback()
    # A second swap moves nobody (same data, same now): no class movements appended.
    again = scores.recompute(now=now)
    db.session.commit()
    assert again["class_changes"] == 0 and _catalogue() == before
