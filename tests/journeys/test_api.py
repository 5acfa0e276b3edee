"""The staff API end to end, and sends delivered by messaging over real SMTP with its rules."""

from __future__ import annotations

from sqlalchemy import select

from extensions import db
from journeys import engine
from journeys.models import Enrolment
from messaging.models import EmailDelivery
from messaging.services import deliver
from points.services import record_interaction

from .conftest import enrolments, executions

DEFN = {"trigger": {"type": "event", "event": "purchase.recorded"}, "audience": {"type": "everyone"},
        "entry": {"rule": "per_occurrence"}, "goal": {"event": "purchase.recorded", "within_days": 7},
        "steps": [{"id": "hello", "type": "action", "action": "send", "template": "api-hello", "next": "wait"},
                  {"id": "wait", "type": "wait", "delay_minutes": 60, "next": "bye"},
                  {"id": "bye", "type": "exit"}]}


def _advance_all():
    ids = list(db.session.scalars(select(Enrolment.id).where(Enrolment.state == "active")))
    db.session.commit()
    engine.advance(ids)


def test_create_version_migrate_pause_and_stats(app, login, make_member):
    marketer = login(make_member(roles=("marketer",)))
    resp = marketer.post("/api/v1/journeys/templates", json={
        "key": "api-hello", "category": "community", "subject": {"en": "Hello", "zh-CN": "你好"},
        "body": {"en": "Welcome", "zh-CN": "欢迎"}})
    assert resp.status_code == 201, resp.get_json()
    resp = marketer.post("/api/v1/journeys", json={"name": "API journey", "definition": DEFN, "holdout_share": 0.2})
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    assert resp.get_json()["status"] == "draft" and resp.get_json()["version"]["number"] == 1
    assert marketer.post(f"/api/v1/journeys/{jid}/status", json={"status": "active"}).status_code == 200

    member = make_member()
    record_interaction(member.id, "purchase", key="api-p1", value=20)
    db.session.commit()
    _advance_all()
    (e,) = enrolments(jid)
    assert e.current_step == "wait"

    # A new version; the member inside moves to it at the step they are on.
    new = {**DEFN, "steps": [*DEFN["steps"][:2], {"id": "bye", "type": "exit"}]}
    resp = marketer.patch(f"/api/v1/journeys/{jid}", json={"definition": new, "migrate": True})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["version"]["number"] == 2 and body["migrated"] == 1
    assert enrolments(jid)[0].version_id == body["version"]["id"]
    versions = marketer.get(f"/api/v1/journeys/{jid}/versions").get_json()
    assert [v["number"] for v in versions["items"]] == [2, 1]

    # A second purchase converts the member (the goal) and enters them again (per occurrence).
    record_interaction(member.id, "purchase", key="api-p2", value=20)
    db.session.commit()
    stats = login(make_member(roles=("moderator",))).get(f"/api/v1/journeys/{jid}/stats")
    assert stats.status_code == 200, stats.get_json()
    data = stats.get_json()
    assert data["entered"] == 2 and data["converted"] >= 1 and data["experiment_id"] is not None
    assert data["experiment_results"] is not None
    assert marketer.post(f"/api/v1/journeys/{jid}/status", json={"status": "paused"}).get_json()["status"] == "paused"
    assert marketer.post(f"/api/v1/journeys/{jid}/status", json={"status": "paused"}).status_code == 409


def test_sends_respect_the_weekly_cap_and_are_delivered_in_the_members_locale(mail_app, smtp, make_member,
                                                                             template, journey):
    from messaging.preferences import set_channel
    from tests.messaging.conftest import set_prefs

    template("offer", category="marketing")
    j = journey([{"id": "offer", "type": "action", "action": "send", "template": "offer"}],
                entry={"rule": "per_occurrence"})
    member = make_member()
    set_channel(member.id, "marketing", "email", True)  # marketing email is opt-in
    db.session.commit()
    set_prefs(member, locale="zh-CN")
    for i in range(4):  # four purchases, four journey sends; the cap is 3 a week
        record_interaction(member.id, "purchase", key=f"cap-{i}", value=5)
        db.session.commit()
    _advance_all()
    assert [x.outcome for x in executions(j.id)] == ["sent"] * 4
    ids = list(db.session.scalars(select(EmailDelivery.id).where(EmailDelivery.member_id == member.id)))
    db.session.commit()
    deliver(ids)
    got = smtp.to(member.email)
    assert len(got) == 3 and got[0].message["Subject"] == "主题 offer" and "正文 offer" in got[0].text
    assert got[0].message["List-Unsubscribe"]
    from journeys.stats import journey_stats

    step = journey_stats(j)["steps"][0]
    assert step["skipped_by_reason"] == {"email_frequency_cap": 1} and step["email"]["sent"] == 3
