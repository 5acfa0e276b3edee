"""The console pages: the list pauses and resumes; a journey's page shows per-step counts."""

from __future__ import annotations

from sqlalchemy import select

from extensions import db
from journeys import engine
from journeys.models import Enrolment, Journey
from points.services import record_interaction


def test_list_pause_resume_and_journey_page(app, login, make_member, template, journey):
    template("thanks")
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks"}])
    member = make_member()
    record_interaction(member.id, "purchase", key="console-p1", value=5)
    db.session.commit()
    engine.advance(list(db.session.scalars(select(Enrolment.id))))
    client = login(make_member(roles=("marketer",)))
    page = client.get("/console/journeys")
    assert page.status_code == 200 and j.name in page.get_data(as_text=True)
    resp = client.post(f"/console/journeys/{j.id}/status", data={"status": "paused",
                                                                "csrf_token": client.csrf_token})
    assert resp.status_code == 303
    db.session.expire_all()
    assert db.session.get(Journey, j.id).status == "paused"
    detail = client.get(f"/console/journeys/{j.id}")
    html = detail.get_data(as_text=True)
    assert detail.status_code == 200 and "data:image/svg+xml" in html and "thanks" in html
    assert "Content-Security-Policy" in detail.headers
    moderator = login(make_member(roles=("moderator",)))
    assert moderator.get(f"/console/journeys/{j.id}").status_code == 200
    assert moderator.post(f"/console/journeys/{j.id}/status", data={"status": "active",
                                                                   "csrf_token": moderator.csrf_token}
                          ).status_code == 403


def test_status_and_totals_words_are_translated_in_zh_cn(app, login, make_member, template, journey):
    """The words shown by value (status, totals, arms) are literal _() calls: zh-CN shows Chinese."""
    template("thanks")
    member = make_member()
    j = journey([{"id": "thanks", "type": "action", "action": "send", "template": "thanks"}], holdout_share=0.2)
    record_interaction(member.id, "purchase", key="console-zh", value=5)
    db.session.commit()
    engine.advance(list(db.session.scalars(select(Enrolment.id))))
    client = login(make_member(roles=("marketer",)))
    client.post("/console/language", data={"csrf_token": client.csrf_token, "lang": "zh_CN"})
    html = client.get(f"/console/journeys/{j.id}").get_data(as_text=True)
    for word in ("已退出", "已转化", "等待中"):  # Exited, Converted, Waiting (totals)
        assert word in html, word
    assert "<strong>启用</strong>" in html  # the status
    assert '<th scope="row">测试组</th>' in html or '<th scope="row">保留组</th>' in html  # the arm
    assert ">exited<" not in html and ">converted<" not in html
    listing = client.get("/console/journeys").get_data(as_text=True)
    assert "启用" in listing
    client.post(f"/console/journeys/{j.id}/status", data={"status": "paused", "csrf_token": client.csrf_token})
    assert "<strong>已暂停</strong>" in client.get(f"/console/journeys/{j.id}").get_data(as_text=True)
    listing = client.get("/console/journeys").get_data(as_text=True)
    assert "<td>已暂停\n<form" in listing, listing  # the list's status cell (a macro)
