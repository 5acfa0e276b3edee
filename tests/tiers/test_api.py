"""The tiers API: the member's progress, the ladder, admin tools, marketing views, bad input."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from community.models import AuditLog, User, utcnow
from extensions import db
from tiers import jobs
from tiers.models import TierRuleSet
from tiers.rules import DEFAULT_RULES

from .authz_cases import RULES
from .helpers import award, interact


def _error(resp, status, code=None):
    assert resp.status_code == status, resp.get_json()
    body = resp.get_json()["error"]
    assert set(body) == {"code", "message", "fields"}
    if code:
        assert body["code"] == code
    return body


def test_me_tier_shows_benefits_and_progress(app, make_member, login):
    m = make_member()
    award(m, 40)
    interact(m, "daily_visit")
    body = login(m).get("/api/v1/me/tier").get_json()
    assert body["tier"] == "aware"
    assert body["benefits"]["earning_multiplier"] == 1.0
    assert body["next"]["tier"] == "engaged"
    assert body["metrics"]["points_earned"] > 40  # the visit earned a little too
    need = DEFAULT_RULES.requirements["engaged"]["points_earned"] - body["metrics"]["points_earned"]
    assert body["next"]["summary"] == f"{need} more points, 1 more active week to reach engaged"
    assert body["metrics"]["active_weeks"] == 1 and body["pinned"] is False


def test_me_tier_shows_the_grace_deadline(app, make_member, login):
    m = make_member(tier="engaged")
    jobs.run_full_recompute()
    body = login(m).get("/api/v1/me/tier").get_json()
    assert body["tier"] == "engaged"
    assert body["demotion_after"] is not None and body["below_bar_since"] is not None


def test_my_history_lists_my_changes_only(app, make_member, login):
    admin, m, other = make_member(roles=("admin",)), make_member(), make_member()
    c = login(admin)
    for member, tier in ((m, "loyal"), (other, "engaged")):
        resp = c.post(f"/api/v1/admin/tiers/members/{member.id}/pin", json={"tier": tier, "reason": "ambassador"})
        assert resp.status_code == 200
    items = login(m).get("/api/v1/me/tier/history").get_json()["items"]
    assert [(i["from_tier"], i["to_tier"], i["kind"]) for i in items] == [("aware", "loyal", "pin")]
    _error(login(m).get("/api/v1/me/tier/history?per_page=1000"), 422)


def test_ladder_is_public(client):
    body = client.get("/api/v1/tiers").get_json()
    assert [t["tier"] for t in body["tiers"]] == ["aware", "engaged", "satisfied", "loyal", "advocate"]
    assert body["tiers"][4]["requirements"] == DEFAULT_RULES.requirements["advocate"]
    assert body["tiers"][4]["benefits"]["focus_group_priority"] == 4
    assert body["keep_percent"] == 90 and body["grace_days"] == 30


def test_rules_edit_creates_versions_and_audits(app, make_member, login):
    admin = make_member(roles=("admin",))
    c = login(admin)
    assert c.get("/api/v1/admin/tiers/rules").get_json()["version"] == 1
    resp = c.put("/api/v1/admin/tiers/rules", json={**RULES, "expected_version": 1, "note": "easier start"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["version"] == 2
    assert resp.get_json()["requirements"]["advocate"] == {"points_earned": 5000, "nps_promoter": 1}
    assert [v["version"] for v in c.get("/api/v1/admin/tiers/rules/versions").get_json()["items"]] == [2, 1]
    assert db.session.scalar(select(AuditLog.reason).where(AuditLog.action == "tiers.rules.update")) == "easier start"
    # the ladder and the engine now use version 2
    assert login(make_member()).get("/api/v1/tiers").get_json()["version"] == 2
    # editing a stale version is refused
    body = _error(c.put("/api/v1/admin/tiers/rules", json={**RULES, "expected_version": 1}), 409)
    assert "expected_version" in body["fields"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"requirements": {"loyal": {"karma": 3}}}, "requirements.loyal.karma"),
        ({"requirements": {"gold": {"points_earned": 3}}}, "requirements"),
        ({"keep_percent": 0}, "keep_percent"),
        ({"keep_percent": 101}, "keep_percent"),
        ({"grace_days": -1}, "grace_days"),
        ({"window_days": 0}, "window_days"),
        ({"surprise": 1}, "surprise"),
        ({"requirements": {**RULES["requirements"], "loyal": {}}}, "requirements.loyal"),
    ],
)
def test_rules_bad_input(app, make_member, login, change, field):
    c = login(make_member(roles=("admin",)))
    body = _error(c.put("/api/v1/admin/tiers/rules", json={**RULES, "expected_version": 1, **change}), 422)
    assert field in body["fields"]
    body = _error(c.post("/api/v1/admin/tiers/what-if", json={**RULES, **change}), 422)
    assert field in body["fields"]
    assert db.session.scalar(select(TierRuleSet.id)) is None


def test_what_if_counts_without_saving(app, make_member, login):
    admin = make_member(roles=("admin",))
    members = [make_member() for _ in range(4)]
    for i, m in enumerate(members[1:], start=1):
        award(m, 100 * i)
    jobs.run_full_recompute()
    proposal = {**RULES, "requirements": {"engaged": {"points_earned": 100}, "satisfied": {"points_earned": 200},
                                          "loyal": {"points_earned": 300}, "advocate": {"points_earned": 9999}}}
    body = login(admin).post("/api/v1/admin/tiers/what-if", json=proposal).get_json()
    assert body["proposed"] == {"aware": 2, "engaged": 1, "satisfied": 1, "loyal": 1, "advocate": 0}
    assert body["current"]["aware"] == 5
    assert body["metrics_as_of"] is not None
    assert db.session.scalar(select(TierRuleSet.version).order_by(TierRuleSet.version.desc())) == 1


def test_runs_listing_and_trigger(app, make_member, login, run_jobs):
    c = login(make_member(roles=("admin",)))
    assert c.post("/api/v1/admin/tiers/runs").get_json() == {"queued": True}
    assert c.post("/api/v1/admin/tiers/runs").get_json() == {"queued": False}  # one pending at a time
    db.session.commit()
    run_jobs(["tiers"])
    items = c.get("/api/v1/admin/tiers/runs").get_json()["items"]
    assert items[0]["status"] == "done" and items[0]["processed"] == items[0]["total"] == 1
    assert c.get(f"/api/v1/admin/tiers/runs/{items[0]['id']}").get_json()["status"] == "done"
    assert items[0]["mode"] == "full"  # the first run
    _error(c.get("/api/v1/admin/tiers/runs/999999"), 404)
    _error(c.get("/api/v1/admin/tiers/runs?page=0"), 422)
    # Later runs are incremental unless a full one is asked for.
    assert c.post("/api/v1/admin/tiers/runs").get_json() == {"queued": True}
    db.session.commit()
    run_jobs(["tiers"])
    assert c.post("/api/v1/admin/tiers/runs?full=true").get_json() == {"queued": True}
    db.session.commit()
    run_jobs(["tiers"])
    modes = [r["mode"] for r in c.get("/api/v1/admin/tiers/runs").get_json()["items"]]
    assert modes == ["full", "incremental", "full"]
    _error(c.post("/api/v1/admin/tiers/runs?full=maybe"), 422)


def test_pin_and_unpin_api(app, make_member, login):
    admin, m = make_member(roles=("admin",)), make_member()
    c = login(admin)
    body = c.post(f"/api/v1/admin/tiers/members/{m.id}/pin", json={"tier": "advocate", "reason": "brand ambassador"})
    assert body.status_code == 200, body.get_json()
    body = body.get_json()
    assert (body["tier"], body["pinned_tier"], body["pin_reason"]) == ("advocate", "advocate", "brand ambassador")
    assert body["history"][0]["kind"] == "pin"
    assert c.get(f"/api/v1/admin/tiers/members/{m.id}").get_json()["pinned_by_id"] == admin.id
    body = c.post(f"/api/v1/admin/tiers/members/{m.id}/unpin", json={"reason": "campaign over"}).get_json()
    assert body["pinned_tier"] is None and body["tier"] == "advocate"  # demotion waits for the grace period
    _error(c.post(f"/api/v1/admin/tiers/members/{m.id}/unpin", json={"reason": "again"}), 409)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/admin/tiers/members/999999/pin", {"tier": "loyal", "reason": "nobody"}, 404),
        ("/api/v1/admin/tiers/members/999999/unpin", {"reason": "nobody"}, 404),
        ("/api/v1/admin/tiers/members/{id}/pin", {"tier": "platinum", "reason": "no such tier"}, 422),
        ("/api/v1/admin/tiers/members/{id}/pin", {"tier": "loyal"}, 422),
        ("/api/v1/admin/tiers/members/{id}/pin", {"tier": "loyal", "reason": "ok!", "pinned_by_id": 1}, 422),
        ("/api/v1/admin/tiers/members/{id}/unpin", {}, 422),
    ],
)
def test_pin_bad_input(app, make_member, login, path, body, status):
    m = make_member()
    c = login(make_member(roles=("admin",)))
    _error(c.post(path.format(id=m.id), json=body), status)
    assert db.session.get(User, m.id, populate_existing=True).tier == "aware"


def test_member_view_404(app, make_member, login):
    _error(login(make_member(roles=("admin",))).get("/api/v1/admin/tiers/members/999999"), 404)


def test_distribution_movements_and_leaderboard(app, make_member, login):
    admin, marketer = make_member(roles=("admin",)), make_member(roles=("marketer",))
    a, b, c = make_member(display_name="Ann"), make_member(display_name="Ben"), make_member(display_name="Cy")
    ca = login(admin)
    for m in (a, b, c):
        resp = ca.post(f"/api/v1/admin/tiers/members/{m.id}/pin", json={"tier": "advocate", "reason": "top"})
        assert resp.status_code == 200
    interact(b, "referral_converted")
    jobs.run_full_recompute()
    cm = login(marketer)
    dist = cm.get("/api/v1/tiers/stats/distribution").get_json()
    assert dist["current"]["advocate"] == 3
    assert dist["history"][0]["distribution"]["advocate"] == 3
    today = utcnow().date()
    moves = cm.get("/api/v1/tiers/stats/movements", query_string={
        "since": (utcnow() - timedelta(days=1)).isoformat() + "Z",
        "until": (utcnow() + timedelta(days=1)).isoformat() + "Z",
        "bucket": "day"}).get_json()
    assert {"period": today.isoformat(), "from_tier": "aware", "to_tier": "advocate", "kind": "pin",
            "count": 3} in moves["items"]
    board = cm.get("/api/v1/tiers/leaderboard").get_json()
    assert [r["display_name"] for r in board["items"]][0] == "Ben"
    assert board["items"][0]["referrals_converted"] == 1 and board["meta"]["total"] == 3


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"since": "yesterday", "until": "2026-01-01T00:00:00Z"},
        {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z", "bucket": "year"},
        {"until": "2026-02-01T00:00:00Z"},
    ],
)
def test_movements_bad_input(app, make_member, login, query):
    _error(login(make_member(roles=("marketer",))).get("/api/v1/tiers/stats/movements", query_string=query), 422)


def test_leaderboard_bad_tier(app, make_member, login):
    _error(login(make_member(roles=("marketer",))).get("/api/v1/tiers/leaderboard?tier=gold"), 422)
