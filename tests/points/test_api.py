"""HTTP tests of the points routes: happy paths and bad input (always the error envelope)."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from community.models import AuditLog, utcnow
from community.services import create_token
from extensions import db
from points import ledger, services
from points.models import Campaign, Interaction, JournalEntry
from tests.points.helpers import assert_ledger_consistent


def err(resp, status, code=None):
    assert resp.status_code == status, resp.get_json()
    body = resp.get_json()["error"]
    assert set(body) == {"code", "message", "fields"}
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture
def token_client(app, make_member):
    """An admin's API token and a client that sends it (no cookie)."""
    admin = make_member(roles=("admin",))
    _, secret = create_token(admin, "shop")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}

    def post(url, json):
        return client.post(url, json=json, headers=headers)

    return post


# --------------------------------------------------------------------------- member views


def test_my_points_and_history(make_member, login):
    m = make_member()
    ledger.award(m.id, 40, key="a", reason="Welcome")
    ledger.hold(m.id, 15, key="h", reason="Mug", source_type="redemption", source_id=1)
    db.session.commit()
    c = login(m)
    body = c.get("/api/v1/me/points").get_json()
    assert (body["available"], body["held"], body["lifetime_earned"]) == (25, 15, 40)
    assert body["expiring_soon"] == [] and body["expiring_soon_total"] == 0
    history = c.get("/api/v1/me/points/history?per_page=1").get_json()
    assert history["meta"]["total"] == 2
    assert history["items"][0]["kind"] == "hold"
    assert (history["items"][0]["available_change"], history["items"][0]["held_change"]) == (-15, 15)
    assert "key" not in history["items"][0]
    err(c.get("/api/v1/me/points/history?per_page=0"), 422, "validation_error")
    err(c.get("/api/v1/me/points/history?page=abc"), 422)


def test_expiring_soon(make_member, login):
    m = make_member()
    ledger.award(m.id, 7, key="a", reason="x")
    db.session.execute(db.update(ledger.PointLot).values(expires_at=utcnow() + timedelta(days=3)))
    db.session.commit()
    body = login(m).get("/api/v1/me/points").get_json()
    assert body["expiring_soon_total"] == 7 and body["expiring_soon"][0]["points"] == 7


def test_points_past_expiry_are_not_shown_as_available(make_member, login):
    """Between a lot's expiry time and the hourly job, the member sees them gone already."""
    m = make_member()
    ledger.award(m.id, 7, key="old", reason="x")
    db.session.execute(db.update(ledger.PointLot).values(expires_at=utcnow() - timedelta(minutes=5)))
    ledger.award(m.id, 3, key="new", reason="x")
    db.session.commit()
    assert login(m).get("/api/v1/me/points").get_json()["available"] == 3


def test_daily_visit_once_per_day(make_member, login):
    m = make_member()
    c = login(m)
    first = c.post("/api/v1/me/visits").get_json()
    second = c.post("/api/v1/me/visits").get_json()
    assert first["recorded"] is True and first["points"] == 2
    assert second["recorded"] is False and second["points"] == 0
    assert ledger.get_balance(m.id).available == 2
    err(c.post("/api/v1/me/visits", json={"x": 1}), 422)


def test_referral_overview_and_invites(make_member, login):
    m = make_member()
    c = login(m)
    body = c.get("/api/v1/me/referrals").get_json()
    assert body["referral_code"] == m.referral_code and body["referral_link"].endswith(m.referral_code)
    assert body["funnel"]["invited"] == 0
    r1 = c.post("/api/v1/me/referrals/invites", json={"email": "Friend@Example.com"})
    assert r1.status_code == 201 and r1.get_json() == {"created": True, "invited": 1}
    r2 = c.post("/api/v1/me/referrals/invites", json={"email": "friend@example.com "})
    assert r2.get_json() == {"created": False, "invited": 1}
    err(c.post("/api/v1/me/referrals/invites", json={"email": "not-an-email"}), 422)
    err(c.post("/api/v1/me/referrals/invites", json={"email": "a@b.co", "extra": 1}), 422)
    err(c.post("/api/v1/me/referrals/invites", json={}), 422)


def test_rules_visible_to_members(make_member, login):
    body = login(make_member()).get("/api/v1/points/rules").get_json()["items"]
    kinds = {r["kind"]: r for r in body}
    assert set(kinds) == set(services.INTERACTION_KINDS)
    assert kinds["post"]["points"] == 10 and kinds["post"]["custom"] is False


# --------------------------------------------------------------------------- integration


def test_purchase_and_refund_events(make_member, token_client):
    m = make_member()
    ev = {"event_id": "order-1", "type": "purchase", "member_id": m.id, "amount": 42.50}
    first = token_client("/api/v1/points/events", ev)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["status"] == "processed" and first.get_json()["points"] == 42
    again = token_client("/api/v1/points/events", ev)
    assert again.get_json()["status"] == "duplicate" and again.get_json()["interaction_id"] == first.get_json()[
        "interaction_id"]
    err(token_client("/api/v1/points/events", {**ev, "amount": 43.00}), 409, "idempotency_conflict")
    assert ledger.get_balance(m.id).available == 42

    refund = {"event_id": "refund-1", "type": "refund", "member_id": m.id, "refund_of": "order-1", "amount": 42.50}
    body = token_client("/api/v1/points/events", refund).get_json()
    assert body["status"] == "processed" and body["reversed_points"] == 42
    assert token_client("/api/v1/points/events", refund).get_json()["status"] == "duplicate"
    assert ledger.get_balance(m.id).available == 0
    assert_ledger_consistent()


def test_event_bad_input(make_member, token_client):
    m = make_member()
    base = {"event_id": "e1", "type": "purchase", "member_id": m.id, "amount": 1.00}
    err(token_client("/api/v1/points/events", {**base, "amount": None}), 422)
    err(token_client("/api/v1/points/events", {**base, "amount": -1}), 422)
    err(token_client("/api/v1/points/events", {**base, "type": "gift"}), 422)
    err(token_client("/api/v1/points/events", {**base, "event_id": "has space"}), 422)
    err(token_client("/api/v1/points/events", {**base, "member_id": 999999}), 404)
    err(token_client("/api/v1/points/events", {**base, "points": 1000}), 422)
    err(token_client("/api/v1/points/events", {**base, "occurred_at": "2999-01-01T00:00:00Z"}), 422)
    refund = {"event_id": "r1", "type": "refund", "member_id": m.id}
    err(token_client("/api/v1/points/events", refund), 422)
    err(token_client("/api/v1/points/events", {**refund, "refund_of": "nope"}), 404)
    err(token_client("/api/v1/points/events/batch", {"events": []}), 422)
    err(token_client("/api/v1/points/events/batch", {"events": [base] * 1001}), 422)
    assert db.session.scalar(select(func.count()).select_from(Interaction)) == 0


def test_events_need_a_token_and_the_permission(app, make_member, login):
    admin = make_member(roles=("admin",))
    ev = {"event_id": "e1", "type": "purchase", "member_id": admin.id, "amount": 1.00}
    err(login(admin).post("/api/v1/points/events", json=ev), 403, "token_required")
    member = make_member()
    _, secret = create_token(member, "mine")
    db.session.commit()
    resp = app.test_client().post("/api/v1/points/events", json=ev, headers={"Authorization": f"Bearer {secret}"})
    err(resp, 403)


def test_batch_reports_each_event(make_member, token_client):
    m = make_member()
    events = [
        {"event_id": f"o{i}", "type": "purchase", "member_id": m.id, "amount": 10} for i in range(3)
    ] + [
        {"event_id": "o0", "type": "purchase", "member_id": m.id, "amount": 10},
        {"event_id": "bad", "type": "refund", "member_id": m.id, "refund_of": "missing"},
        {"event_id": "r0", "type": "refund", "member_id": m.id, "refund_of": "o1"},
    ]
    body = token_client("/api/v1/points/events/batch", {"events": events}).get_json()
    assert (body["processed"], body["duplicates"], body["errors"]) == (4, 1, 1)
    assert [r["status"] for r in body["results"]] == ["processed"] * 3 + ["duplicate", "error", "processed"]
    assert body["results"][4]["error"]["code"] == "not_found"
    assert ledger.get_balance(m.id).available == 20
    assert_ledger_consistent()


def test_batch_of_1000(make_member, token_client):
    members = [make_member() for _ in range(10)]
    events = [
        {"event_id": f"big-{i}", "type": "purchase", "member_id": members[i % 10].id, "amount": 1.00}
        for i in range(1000)
    ]
    body = token_client("/api/v1/points/events/batch", {"events": events}).get_json()
    assert body["processed"] == 1000
    assert all(ledger.get_balance(m.id).available == 100 for m in members)


# --------------------------------------------------------------------------- staff


def test_marketing_edits_rules(make_member, login):
    marketer = make_member(roles=("marketer",))
    c = login(marketer)
    resp = c.put("/api/v1/admin/points/rules/post", json={"points": 12, "daily_cap": None})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["points"] == 12 and resp.get_json()["custom"] is True
    m = make_member()
    assert services.record_interaction(m.id, "post", key="p1", source_type="post", source_id=1).points == 12
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "points.rule.set")) is not None
    err(c.put("/api/v1/admin/points/rules/teleport", json={"points": 1}), 404)
    err(c.put("/api/v1/admin/points/rules/post", json={"points": -1}), 422)
    err(c.put("/api/v1/admin/points/rules/post", json={"kind": "reply"}), 422)
    listing = c.get("/api/v1/admin/points/rules").get_json()["items"]
    assert next(r for r in listing if r["kind"] == "post")["points"] == 12


def test_campaigns(make_member, login):
    c = login(make_member(roles=("marketer",)))
    now = utcnow()
    body = {"name": "Birthday double", "multiplier": 2, "starts_at": (now - timedelta(days=1)).isoformat() + "Z",
            "ends_at": (now + timedelta(days=1)).isoformat() + "+00:00", "birthday_only": True}
    resp = c.post("/api/v1/admin/points/campaigns", json=body)
    assert resp.status_code == 201, resp.get_json()
    campaign_id = resp.get_json()["id"]
    birthday_member = make_member(birthday=now.date().replace(year=1990))
    other = make_member(birthday=(now - timedelta(days=40)).date())
    assert services.record_interaction(birthday_member.id, "reply", key="b1").points == 10
    assert services.record_interaction(other.id, "reply", key="o1").points == 5
    resp = c.patch(f"/api/v1/admin/points/campaigns/{campaign_id}", json={"active": False})
    assert resp.get_json()["active"] is False
    assert services.record_interaction(birthday_member.id, "reply", key="b2").points == 5
    assert c.get("/api/v1/admin/points/campaigns").get_json()["meta"]["total"] == 1
    err(c.get("/api/v1/admin/points/campaigns?per_page=0"), 422)
    err(c.post("/api/v1/admin/points/campaigns", json={**body, "ends_at": body["starts_at"]}), 422)
    err(c.post("/api/v1/admin/points/campaigns", json={**body, "kinds": ["teleport"]}), 422)
    err(c.post("/api/v1/admin/points/campaigns", json={**body, "multiplier": 0.5}), 422)
    err(c.patch("/api/v1/admin/points/campaigns/9999", json={"active": True}), 404)
    err(c.patch(f"/api/v1/admin/points/campaigns/{campaign_id}",
                json={"ends_at": "2000-01-01T00:00:00Z"}), 422)


def test_campaign_windows_do_not_stack(make_member):
    now = utcnow()
    for mult in (2, 3):
        db.session.add(Campaign(name=f"x{mult}", multiplier=mult, starts_at=now - timedelta(hours=1),
                                ends_at=now + timedelta(hours=1), kinds=["reply"]))
    db.session.add(Campaign(name="past", multiplier=5, starts_at=now - timedelta(days=9),
                            ends_at=now - timedelta(days=8)))
    db.session.commit()
    m = make_member()
    assert services.record_interaction(m.id, "reply", key="r").points == 15
    assert services.record_interaction(m.id, "post", key="p", source_type="post", source_id=2).points == 10


def test_admin_adjustments(make_member, login):
    admin = make_member(roles=("admin",))
    m = make_member()
    c = login(admin)
    resp = c.post("/api/v1/admin/points/adjustments",
                  json={"member_id": m.id, "delta": 30, "reason": "Goodwill", "request_id": "t-1"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["available_change"] == 30 and resp.get_json()["actor_id"] == admin.id
    replay = c.post("/api/v1/admin/points/adjustments",
                    json={"member_id": m.id, "delta": 30, "reason": "Goodwill", "request_id": "t-1"})
    assert replay.get_json()["id"] == resp.get_json()["id"]
    assert ledger.get_balance(m.id).available == 30
    audits = db.session.scalars(select(AuditLog).where(AuditLog.action == "points.member.adjust")).all()
    assert len(audits) == 1 and audits[0].reason == "Goodwill" and audits[0].actor_id == admin.id
    err(c.post("/api/v1/admin/points/adjustments", json={"member_id": m.id, "delta": 5}), 422)
    err(c.post("/api/v1/admin/points/adjustments", json={"member_id": m.id, "delta": 5, "reason": " "}), 422)
    err(c.post("/api/v1/admin/points/adjustments", json={"member_id": m.id, "delta": 0, "reason": "x"}), 422)
    err(c.post("/api/v1/admin/points/adjustments", json={"member_id": m.id, "delta": -31, "reason": "x"}), 409,
        "insufficient_points")
    err(c.post("/api/v1/admin/points/adjustments", json={"member_id": 99999, "delta": 5, "reason": "x"}), 404)


def test_admin_reversal(make_member, login):
    admin = make_member(roles=("admin",))
    m = make_member()
    entry = ledger.award(m.id, 10, key="a", reason="x")
    db.session.commit()
    c = login(admin)
    resp = c.post(f"/api/v1/admin/points/entries/{entry.id}/reversal", json={"reason": "Mistake"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["available_change"] == -10
    again = c.post(f"/api/v1/admin/points/entries/{entry.id}/reversal", json={"reason": "again"})
    assert again.get_json()["id"] == resp.get_json()["id"]  # a replay, not a second reversal
    err(c.post(f"/api/v1/admin/points/entries/{resp.get_json()['id']}/reversal", json={"reason": "x"}), 409,
        "not_reversible")
    assert ledger.get_balance(m.id).available == 0
    err(c.post("/api/v1/admin/points/entries/99999/reversal", json={"reason": "x"}), 404)
    err(c.post(f"/api/v1/admin/points/entries/{entry.id}/reversal", json={}), 422)


def test_staff_member_views(make_member, login):
    staff = make_member(roles=("redemption_staff",))
    m = make_member()
    ledger.award(m.id, 10, key="a", reason="x")
    db.session.commit()
    c = login(staff)
    assert c.get(f"/api/v1/admin/points/members/{m.id}").get_json()["available"] == 10
    items = c.get(f"/api/v1/admin/points/members/{m.id}/history").get_json()["items"]
    assert items[0]["key"] == "a"
    err(c.get("/api/v1/admin/points/members/99999"), 404)
    err(c.get("/api/v1/admin/points/members/99999/history"), 404)
    err(c.get(f"/api/v1/admin/points/members/{m.id}/history?per_page=1000"), 422)


def test_liability(make_member, login):
    a, b = make_member(), make_member()
    ledger.award(a.id, 100, key="a1", reason="x")
    ledger.award(b.id, 50, key="b1", reason="x")
    ledger.hold(b.id, 20, key="h", reason="x", source_type="redemption", source_id=1)
    old = ledger.award(a.id, 5, key="a2", reason="x")
    db.session.execute(db.update(ledger.PointLot).where(ledger.PointLot.entry_id == old.id)
                       .values(earned_at=utcnow() - timedelta(days=200), expires_at=utcnow() + timedelta(days=10)))
    db.session.commit()
    body = login(make_member(roles=("marketer",))).get("/api/v1/admin/points/liability").get_json()
    assert (body["outstanding"], body["available"], body["held"]) == (155, 135, 20)
    ages = {x["age"]: x["points"] for x in body["by_age"]}
    assert ages["0-30 days"] == 130 and ages["181-365 days"] == 5
    assert body["expiring_30_days"] == 5 and body["members_with_points"] == 2
    assert body["system_accounts"]["issued"] == -155


def test_verify_checks_owed_against_the_reversals_and_repayments(app, make_member):
    from points import reports

    m = make_member()
    award = ledger.award(m.id, 100, key="owed:award", reason="x")
    ledger.hold(m.id, 80, key="owed:hold", reason="r", source_type="redemption", source_id=1)
    ledger.settle_hold(key="owed:settle", source_type="redemption", source_id=1)
    ledger.reverse(award.id, key="owed:reverse", reason="refunded")  # takes the 20 left, 80 owed
    db.session.commit()
    assert ledger.get_balance(m.id).owed == 80
    assert reports.verify() == []
    ledger.award(m.id, 50, key="owed:repay", reason="x")  # repays 50 of it
    db.session.commit()
    assert ledger.get_balance(m.id).owed == 30
    assert reports.verify() == []

    db.session.execute(db.update(ledger.MemberBalance).values(owed=31))
    db.session.commit()
    assert [(d.kind, d.member_id) for d in reports.verify()] == [("owed", m.id)]
    # Less owed than the entries allow cannot be told from a write-off of expired points: not reported.
    db.session.execute(db.update(ledger.MemberBalance).values(owed=0))
    db.session.commit()
    assert reports.verify() == []
    other = make_member()
    ledger.award(other.id, 10, key="owed:other", reason="x")
    db.session.execute(db.update(ledger.MemberBalance).where(ledger.MemberBalance.member_id == other.id)
                       .values(owed=5))
    db.session.commit()
    kinds = sorted(d.detail.split(",")[0].split(" while")[0] for d in reports.verify() if d.member_id == other.id)
    assert kinds == ["owed 5", "owed 5"]  # more than any reversal left, and owed beside available points


def test_cli_verify_reports_drift(app, make_member):
    m = make_member()
    ledger.award(m.id, 10, key="a", reason="x")
    db.session.commit()
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["points", "verify"])
    assert ok.exit_code == 0, ok.output
    db.session.execute(db.update(ledger.MemberBalance).values(available=11))
    db.session.commit()
    bad = runner.invoke(args=["points", "verify"])
    assert bad.exit_code == 1
    assert "DRIFT balance" in bad.output and "DRIFT lots" in bad.output
    assert db.session.scalar(select(func.count()).select_from(JournalEntry)) == 1
