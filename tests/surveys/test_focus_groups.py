"""Focus groups: sign-up, waitlist order and promotion, eligibility, attendance, calendar, reminders."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select, update

from community.models import Notification, utcnow
from extensions import db
from jobs import enqueue_now
from points.ledger import get_balance
from points.models import Interaction
from surveys.jobs import PERIODIC, queue_session_reminders
from surveys.models import FocusGroupSession, FocusGroupSignup
from tests.surveys.helpers import answers, client_id, error, make_session, make_survey

ATTEND_POINTS = 75  # the session's own attendance points; the default rule pays 1 point per unit at "aware"


def signup(client, session_id):
    return client.post(f"/api/v1/focus-groups/{session_id}/signup")


def move_start(session_id, **delta):
    """Shift a session in time (setting up 'it has started' without waiting)."""
    start = utcnow() + timedelta(**delta)
    db.session.execute(
        update(FocusGroupSession).where(FocusGroupSession.id == session_id).values(
            starts_at=start, ends_at=start + timedelta(hours=2), cancellation_cutoff=None, signup_deadline=None
        )
    )
    db.session.commit()


def test_marketer_creates_a_session_with_defaults(marketer):
    _, staff = marketer
    start = utcnow() + timedelta(days=3)
    resp = staff.post("/api/v1/admin/focus-groups", json={
        "title": "Rewards catalogue", "starts_at": start.isoformat() + "Z",
        "ends_at": (start + timedelta(hours=1)).isoformat() + "Z", "online_url": "https://meet.example.com/abc",
    })
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["capacity"] == 30 and body["confirmed_count"] == 0 and body["waitlisted_count"] == 0


def test_session_input_errors(marketer):
    _, staff = marketer
    start = (utcnow() + timedelta(days=3)).isoformat() + "Z"
    body = error(staff.post("/api/v1/admin/focus-groups", json={"title": "x", "starts_at": start, "ends_at": start}),
                 422)
    assert set(body["fields"]) == {"ends_at", "location"}
    assert error(staff.post("/api/v1/admin/focus-groups", json={"title": "x", "capacity": 0}), 422)
    assert error(staff.post("/api/v1/admin/focus-groups", json={
        "title": "x", "starts_at": start, "ends_at": start, "online_url": "javascript:alert(1)"}), 422)
    session = make_session(capacity=2)
    assert error(staff.patch(f"/api/v1/admin/focus-groups/{session.id}", json={"screener_survey_id": 999}), 422)
    assert error(staff.patch(f"/api/v1/admin/focus-groups/{session.id}",
                             json={"eligibility_rule": {"question": "nps", "in": [9]}}), 422)
    for path in ("", "/signups"):
        assert error(staff.get(f"/api/v1/admin/focus-groups/999{path}"), 404)
    assert error(staff.patch("/api/v1/admin/focus-groups/999", json={"title": "x"}), 404)
    assert error(staff.post("/api/v1/admin/focus-groups/999/attendance", json={}), 404)
    assert error(staff.post(f"/api/v1/admin/focus-groups/{session.id}/attendance", json={"attended": "all"}), 422)
    for path in ("", "/signup", "/calendar.ics"):
        assert error(staff.get(f"/api/v1/focus-groups/999{path}"), 404)
    assert error(signup(staff, 999), 404)
    assert error(staff.delete("/api/v1/focus-groups/999/signup"), 404)
    assert error(staff.get(f"/api/v1/focus-groups/{session.id}/signup"), 404)
    assert error(staff.get("/api/v1/admin/focus-groups", query_string={"page": 0}), 422)


def test_waitlist_by_priority_then_time_and_promotion_on_cancel(make_member, login):
    session = make_session(capacity=1)
    first, second = login(make_member()), login(make_member())
    advocate_user = make_member(tier="advocate")
    advocate = login(advocate_user)
    assert signup(first, session.id).get_json()["status"] == "confirmed"
    waiting = signup(second, session.id).get_json()
    assert waiting["status"] == "waitlisted" and waiting["waitlist_position"] == 1
    # A higher tier waits less: the advocate goes ahead of the earlier aware member.
    assert signup(advocate, session.id).get_json()["waitlist_position"] == 1
    assert second.get(f"/api/v1/focus-groups/{session.id}/signup").get_json()["waitlist_position"] == 2
    # Signing up again changes nothing.
    assert signup(second, session.id).get_json()["id"] == waiting["id"]

    cancelled = first.delete(f"/api/v1/focus-groups/{session.id}/signup").get_json()
    assert cancelled["status"] == "cancelled"
    assert advocate.get(f"/api/v1/focus-groups/{session.id}/signup").get_json()["status"] == "confirmed"
    assert second.get(f"/api/v1/focus-groups/{session.id}/signup").get_json()["waitlist_position"] == 1
    assert db.session.get(FocusGroupSession, session.id).confirmed_count == 1
    note = db.session.scalar(select(Notification).where(Notification.member_id == advocate_user.id))
    assert note.kind == "surveys.focus_group_promoted"
    # The member who cancelled re-joins at the back of the line.
    assert signup(first, session.id).get_json()["waitlist_position"] == 2
    assert error(first.delete("/api/v1/focus-groups/999/signup"), 404)


def test_raising_capacity_promotes_waiting_members(marketer, make_member, login):
    _, staff = marketer
    session = make_session(capacity=1)
    clients = [login(make_member()) for _ in range(3)]
    for c in clients:
        signup(c, session.id)
    assert error(staff.patch(f"/api/v1/admin/focus-groups/{session.id}", json={"capacity": 0}), 422)
    body = staff.patch(f"/api/v1/admin/focus-groups/{session.id}", json={"capacity": 2}).get_json()
    assert body["confirmed_count"] == 2 and body["waitlisted_count"] == 1
    roster = staff.get(f"/api/v1/admin/focus-groups/{session.id}/signups").get_json()["items"]
    assert [r["status"] for r in roster] == ["confirmed", "confirmed", "waitlisted"]
    assert [r["waitlist_position"] for r in roster] == [None, None, 1]  # documented, and now sent


def test_roster_reports_each_waiting_members_position(marketer, make_member, login):
    _, staff = marketer
    session = make_session(capacity=1)
    clients = [login(make_member()) for _ in range(4)]
    for c in clients:
        signup(c, session.id)
    page = staff.get(f"/api/v1/admin/focus-groups/{session.id}/signups", query_string={"per_page": 2}).get_json()
    assert page["meta"] == {"page": 1, "per_page": 2, "total": 4, "pages": 2}
    rest = staff.get(f"/api/v1/admin/focus-groups/{session.id}/signups",
                     query_string={"page": 2, "per_page": 2}).get_json()["items"]
    positions = [r["waitlist_position"] for r in page["items"] + rest]
    assert positions == [None, 1, 2, 3]
    mine = [c.get(f"/api/v1/focus-groups/{session.id}/signup").get_json()["waitlist_position"] for c in clients]
    assert mine == positions


def test_deadline_and_cancellation_cutoff(make_member, login):
    client = login(make_member())
    closed = make_session(signup_deadline=utcnow() - timedelta(minutes=1))
    assert error(signup(client, closed.id), 409)["code"] == "signup_closed"
    strict = make_session(cancellation_cutoff=utcnow() + timedelta(seconds=2))
    assert signup(client, strict.id).status_code == 201
    db.session.execute(update(FocusGroupSession).where(FocusGroupSession.id == strict.id)
                       .values(cancellation_cutoff=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    assert error(client.delete(f"/api/v1/focus-groups/{strict.id}/signup"), 409)["code"] == "cancellation_closed"


def test_screener_eligibility(make_member, login, marketer):
    staff_user, staff = marketer
    screener = make_survey(staff_user.id)
    session = make_session(screener_survey_id=screener.id,
                           eligibility_rule={"question": "channel", "in": ["shop", "phone"]})
    newcomer = login(make_member())
    assert error(signup(newcomer, session.id), 403)["code"] == "screener_required"
    online = login(make_member())
    online.post(f"/api/v1/surveys/{screener.id}/response", json={"client_id": client_id(), "answers": answers()})
    assert error(signup(online, session.id), 403)["code"] == "not_eligible"
    in_store = login(make_member())
    in_store.post(f"/api/v1/surveys/{screener.id}/response",
                  json={"client_id": client_id(), "answers": answers(channel="shop")})
    assert signup(in_store, session.id).get_json()["status"] == "confirmed"
    bad_rule = {"eligibility_rule": {"question": "channel", "in": ["carrier pigeon"]}}
    assert error(staff.patch(f"/api/v1/admin/focus-groups/{session.id}", json=bad_rule), 422)["fields"] == {
        "eligibility_rule": ["show_if values must be possible answers of that question."]
    }


def test_attendance_awards_points_once_and_no_shows_block_sign_up(app, marketer, make_member, login):
    app.config["FOCUS_GROUP_NO_SHOW_LIMIT"] = 1
    _, staff = marketer
    session = make_session(capacity=3, attendance_points=ATTEND_POINTS)
    came, missed, waiting = make_member(), make_member(), make_member()
    for user in (came, missed):
        signup(login(user), session.id)
    url = f"/api/v1/admin/focus-groups/{session.id}/attendance"
    assert error(staff.post(url, json={"attended": [came.id]}), 409)  # not started yet
    move_start(session.id, minutes=-5)

    marked = staff.post(url, json={"attended": [came.id], "no_show": [missed.id]})
    assert marked.status_code == 200, marked.get_json()
    assert sorted(s["status"] for s in marked.get_json()["items"]) == ["attended", "no_show"]
    assert staff.post(url, json={"attended": [came.id]}).get_json()["items"] == []  # a repeat is a no-op
    assert get_balance(came.id).available == ATTEND_POINTS
    signup_id = db.session.scalar(select(FocusGroupSignup.id).where(FocusGroupSignup.member_id == came.id))
    interaction = db.session.scalar(select(Interaction).where(Interaction.member_id == came.id))
    assert interaction.key == f"focus_group_signup:{signup_id}" and interaction.kind == "focus_group_attended"
    assert get_balance(missed.id).available == 0

    remark = error(staff.post(url, json={"no_show": [came.id]}), 422)
    assert remark["fields"] == {str(came.id): ["Already marked attended."]}
    assert error(staff.post(url, json={"attended": [waiting.id]}), 422)
    assert error(staff.post(url, json={"attended": [came.id], "no_show": [came.id]}), 422)

    later = make_session()
    body = error(signup(login(missed), later.id), 403)
    assert body["code"] == "too_many_no_shows"
    assert signup(login(came), later.id).status_code == 201


def test_calendar_file_is_valid_rfc5545(make_member, login):
    title = "Café, tea; and \\ more: a very long title that certainly needs folding at seventy-five octets"
    session = make_session(title=title, description="Line one\nLine two", online_url="https://meet.example.com/x")
    resp = login(make_member()).get(f"/api/v1/focus-groups/{session.id}/calendar.ics")
    assert resp.status_code == 200 and resp.mimetype == "text/calendar"
    raw = resp.get_data()
    text = raw.decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 75
    unfolded = text.replace("\r\n ", "")
    lines = unfolded.split("\r\n")
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR"
    assert f"UID:focus-group-session-{session.id}@kinship.test" in lines  # PUBLIC_BASE_URL's host
    assert any(re.fullmatch(r"DTSTAMP:\d{8}T\d{6}Z", line) for line in lines)
    assert f"DTSTART:{session.starts_at:%Y%m%dT%H%M%S}Z" in lines
    summary = next(line for line in lines if line.startswith("SUMMARY:"))
    assert summary == "SUMMARY:Café\\, tea\\; and \\\\ more: a very long title that certainly needs folding at " \
                      "seventy-five octets"
    assert "DESCRIPTION:Tell us\\, honestly\\; we listen." not in lines  # overridden description
    assert "DESCRIPTION:Line one\\nLine two\\n\\nJoin online: https://meet.example.com/x" in lines
    assert "LOCATION:HQ\\, room 3" in lines


def test_reminders_are_queued_and_sent_once(make_member, login, run_jobs):
    soon = make_session(capacity=1)
    later = make_session()
    confirmed, waiting = make_member(), make_member()
    signup(login(confirmed), soon.id)
    signup(login(waiting), soon.id)
    signup(login(confirmed), later.id)
    move_start(soon.id, hours=3)
    assert queue_session_reminders in [p.fn for p in PERIODIC]

    for _ in range(2):
        enqueue_now(queue_session_reminders)
        run_jobs()
    notes = db.session.scalars(select(Notification).where(Notification.kind == "surveys.focus_group_reminder")).all()
    assert [(n.member_id, n.payload["session_id"]) for n in notes] == [(confirmed.id, soon.id)]


def test_member_views(make_member, login):
    client = login(make_member())
    session = make_session()
    past = make_session()
    move_start(past.id, days=-1)
    signup(client, session.id)
    listing = client.get("/api/v1/focus-groups").get_json()["items"]
    assert [(s["id"], s["my_status"]) for s in listing] == [(session.id, "confirmed")]
    detail = client.get(f"/api/v1/focus-groups/{past.id}").get_json()
    assert detail["my_status"] is None and "eligibility_rule" not in detail
    assert error(signup(client, past.id), 409)["code"] == "signup_closed"


def test_cancelling_a_session_notifies_members_once(marketer, make_member, login):
    _, staff = marketer
    session = make_session(capacity=1)
    confirmed, waiting = make_member(), make_member()
    signup(login(confirmed), session.id)
    waiting_client = login(waiting)
    signup(waiting_client, session.id)
    url = f"/api/v1/admin/focus-groups/{session.id}/cancel"
    assert error(staff.post(url, json={}), 422)["fields"] == {"reason": ["Missing data for required field."]}
    assert error(staff.post("/api/v1/admin/focus-groups/999/cancel", json={"reason": "x"}), 404)
    for _ in range(2):
        assert staff.post(url, json={"reason": "venue closed"}).get_json()["cancelled_at"] is not None
    cancelled = Notification.kind == "surveys.focus_group_cancelled"
    notes = db.session.scalars(select(Notification.member_id).where(cancelled))
    assert sorted(notes) == sorted([confirmed.id, waiting.id])
    assert error(signup(login(make_member()), session.id), 409)["code"] == "session_cancelled"
    assert error(waiting_client.delete(f"/api/v1/focus-groups/{session.id}/signup"), 409)
    assert "STATUS:CANCELLED" in waiting_client.get(f"/api/v1/focus-groups/{session.id}/calendar.ics").get_data(
        as_text=True)
    move_start(session.id, minutes=-5)
    assert error(staff.post(f"/api/v1/admin/focus-groups/{session.id}/attendance",
                            json={"attended": [confirmed.id]}), 409)["code"] == "session_cancelled"
