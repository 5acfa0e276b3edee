"""Preferences, RFC 8058 one-click unsubscribe, the footer page, the frequency cap, quiet hours."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from community.models import utcnow
from extensions import db
from messaging import services
from messaging.catalog import DEFAULT_CHANNELS
from messaging.models import EmailDelivery, Unsubscribe

from .conftest import set_prefs
from .test_delivery import make_due


def test_defaults_and_changes(app, make_member, login):
    member = make_member()
    client = login(member)
    body = client.get("/api/v1/me/notification-preferences").get_json()
    assert body["channels"] == DEFAULT_CHANNELS and body["locale"] == "en" and body["time_zone"] == "UTC"
    assert body["channels"]["marketing"]["email"] is False  # opt-in

    resp = client.patch("/api/v1/me/notification-preferences", json={
        "locale": "zh-CN", "time_zone": "Asia/Shanghai", "channels": {"research": {"email": False}}})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["locale"] == "zh-CN" and body["time_zone"] == "Asia/Shanghai"
    assert body["channels"]["research"] == {"email": False, "in_app": True}
    [unsub] = db.session.scalars(select(Unsubscribe)).all()
    assert (unsub.category, unsub.source) == ("research", "preferences")


def test_bad_preferences_are_422_and_change_nothing(app, make_member, login):
    member = make_member()
    client = login(member)
    for body in ({"channels": {"transactional": {"email": False}}}, {"channels": {"nope": {"email": False}}},
                 {"channels": {"tiers": {"sms": False}}}, {"locale": "fr"}, {"time_zone": "Mars/Olympus"},
                 {"time_zone": "Asia/Shanghai", "locale": "xx"}, {"tier": "advocate"}):
        resp = client.patch("/api/v1/me/notification-preferences", json=body)
        assert resp.status_code == 422, (body, resp.get_json())
        assert resp.get_json()["error"]["code"] == "validation_error"
    body = client.get("/api/v1/me/notification-preferences").get_json()
    assert body["time_zone"] == "UTC" and body["channels"] == DEFAULT_CHANNELS


def _one_click_url(received) -> str:
    return received.message["List-Unsubscribe"].strip().strip("<>")


def test_one_click_unsubscribe_from_the_header(mail_app, smtp, make_member, notify, run_jobs, client):
    member = make_member()
    notify(member, "forums.reply", {"title": "T", "by": "Bob"})
    run_jobs(["messaging"])
    url = _one_click_url(smtp.received[0])
    path = url.split("127.0.0.1:5000", 1)[1]
    # RFC 8058: a POST with this form body and no cookies.
    resp = client.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"category": "community", "email": False}
    [unsub] = db.session.scalars(select(Unsubscribe)).all()
    assert (unsub.member_id, unsub.category, unsub.source) == (member.id, "community", "one_click")
    assert unsub.created_at is not None and unsub.delivery_id is not None
    assert client.post(path).status_code == 200  # again: same answer, nothing new recorded
    assert db.session.scalar(select(Unsubscribe.id).where(Unsubscribe.id != unsub.id)) is None

    notify(member, "forums.reply", {"title": "T2", "by": "Bob"})
    run_jobs(["messaging"])
    assert len(smtp.received) == 1  # no more community mail


def test_footer_page_asks_first_then_unsubscribes(mail_app, smtp, make_member, notify, run_jobs, client):
    member = make_member()
    notify(member, "points.expiring", {"points": 5, "first_expires_at": "2026-12-20T10:00:00"})
    run_jobs(["messaging"])
    link = re.search(r'href="http://127\.0\.0\.1:5000(/unsubscribe/[^"]+)"', smtp.received[0].html).group(1)
    page = client.get(link)
    assert page.status_code == 200 and b"<form method=\"post\">" in page.data
    assert db.session.scalar(select(Unsubscribe.id)) is None  # a GET (link scanners) changes nothing
    done = client.post(link)
    assert done.status_code == 302
    assert b"no longer receive points redemptions" in client.get(done.headers["Location"]).data
    assert db.session.scalar(select(Unsubscribe.source)) == "footer_link"


def test_forged_and_expired_tokens(app, make_member, client):
    from messaging.preferences import unsubscribe_token

    member = make_member()
    token = unsubscribe_token(member.id, "marketing")
    forged = token[:-3] + ("abc" if token[-3:] != "abc" else "xyz")
    resp = client.post(f"/api/v1/unsubscribe/{forged}")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "invalid_token"
    assert client.get(f"/unsubscribe/{forged}").status_code == 404
    app.config["MESSAGING_UNSUBSCRIBE_MAX_AGE_DAYS"] = -1
    resp = client.post(f"/api/v1/unsubscribe/{token}")
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "token_expired"
    assert db.session.scalar(select(Unsubscribe.id)) is None


def _marketing_opt_in(member) -> None:
    from messaging.preferences import set_channel

    set_channel(member.id, "marketing", "email", True)
    db.session.commit()


def test_frequency_cap_counts_marketing_and_research_together(mail_app, smtp, make_member, notify, run_jobs,
                                                              deliveries):
    member = make_member()
    _marketing_opt_in(member)
    notify(member, "marketing.campaign", {"subject": "One", "text": "1"})
    notify(member, "surveys.invitation", {"title": "Two"})
    notify(member, "marketing.campaign", {"subject": "Three", "text": "3"})
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})  # not capped
    notify(member, "marketing.campaign", {"subject": "Four", "text": "4"})  # over: dropped
    notify(member, "surveys.invitation", {"title": "Five"})  # over: deferred
    run_jobs(["messaging"])

    assert len(smtp.received) == 4
    rows = {r.kind + ":" + str(r.id): r for r in deliveries()}
    dropped = [r for r in rows.values() if r.state == "suppressed"]
    deferred = [r for r in rows.values() if r.state == "pending"]
    assert [(r.kind, r.reason) for r in dropped] == [("marketing.campaign", "frequency_cap")]
    assert [(r.kind, r.reason) for r in deferred] == [("surveys.invitation", "frequency_cap")]
    first_claim = min(r.claimed_at for r in rows.values() if r.state == "sent")
    assert deferred[0].not_before > first_claim + timedelta(days=7)

    # A week later the first slot is free again: the deferred invitation goes out.
    db.session.rollback()
    db.session.execute(EmailDelivery.__table__.update().where(EmailDelivery.state == "sent")
                       .values(claimed_at=EmailDelivery.claimed_at - timedelta(days=8)))
    db.session.commit()
    make_due()
    from messaging.jobs import sweep_deliveries

    assert sweep_deliveries() == 1
    run_jobs(["messaging"])
    assert len(smtp.received) == 5


def test_frequency_cap_holds_under_concurrent_senders(mail_app, smtp, make_member, notify, deliveries):
    from tests.conftest import in_threads

    member = make_member()
    _marketing_opt_in(member)
    for i in range(8):
        notify(member, "marketing.campaign", {"subject": f"M{i}", "text": "x"})
    ids = [d.id for d in deliveries()]
    db.session.commit()

    def send(i):
        with mail_app.app_context():
            return services.deliver(ids[i::4])

    results = in_threads(4, send)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(smtp.received) == 3
    assert sorted(d.state for d in deliveries()) == ["sent"] * 3 + ["suppressed"] * 5


def test_frequency_cap_counts_sends_claimed_earlier_in_the_same_batch(mail_app, smtp, make_member, notify,
                                                                     deliveries):
    member = make_member()
    _marketing_opt_in(member)
    for i in range(3):
        notify(member, "marketing.campaign", {"subject": f"M{i}", "text": "x"})
    notify(member, "surveys.invitation", {"title": "Over: deferred"})
    notify(member, "marketing.campaign", {"subject": "Over: dropped", "text": "x"})
    ids = [d.id for d in deliveries()]
    db.session.commit()

    assert services.deliver(ids)["sent"] == 3  # one batch: the claims are written together

    assert len(smtp.received) == 3
    rows = sorted(deliveries(), key=lambda r: r.id)
    assert [(r.state, r.reason) for r in rows] == [("sent", None)] * 3 + [
        ("pending", "frequency_cap"), ("suppressed", "frequency_cap")]
    assert rows[3].not_before > rows[0].claimed_at + timedelta(days=7)


def test_quiet_hours_defer_non_urgent_mail_in_the_members_time_zone(mail_app, smtp, make_member, notify, run_jobs,
                                                                    deliveries):
    from zoneinfo import ZoneInfo

    member = make_member()
    set_prefs(member, time_zone="America/New_York")
    local_hour = utcnow().replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo("America/New_York")).hour
    mail_app.config["MESSAGING_QUIET_HOURS"] = (local_hour, (local_hour + 2) % 24)
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    notify(member, "surveys.focus_group_reminder", {"title": "Panel", "starts_at": "2026-12-02T10:00:00Z"})  # urgent
    run_jobs(["messaging"])

    assert [r.message["X-Kinship-Kind"] for r in smtp.received] == ["surveys.focus_group_reminder"]
    tier = next(d for d in deliveries() if d.kind == "tiers.tier_changed")
    assert tier.state == "pending" and tier.reason == "quiet_hours"
    ends = tier.not_before.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo("America/New_York"))
    assert ends.hour == (local_hour + 2) % 24 and ends.minute == 0
    assert timedelta(hours=1) <= tier.not_before - utcnow() <= timedelta(hours=2)


def test_quiet_until_wraps_midnight():
    # 23:30 in Shanghai is 15:30 UTC; quiet 22-8 ends at 08:00 Shanghai = 00:00 UTC next day.
    assert services.quiet_until(datetime(2026, 5, 1, 15, 30), "Asia/Shanghai", (22, 8)) == datetime(2026, 5, 2, 0, 0)
    assert services.quiet_until(datetime(2026, 5, 1, 5, 0), "Asia/Shanghai", (22, 8)) is None  # 13:00 local
    assert services.quiet_until(datetime(2026, 5, 1, 23, 0), "Asia/Shanghai", (22, 8)) == datetime(2026, 5, 2, 0, 0)
    assert services.quiet_until(datetime(2026, 5, 1, 15, 30), "Asia/Shanghai", None) is None


@settings(max_examples=300, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
    zone=st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Adelaide"]),
    start=st.integers(0, 23), end=st.integers(0, 23),
)
def test_quiet_until_invariants(now, zone, start, end):
    """Deferred iff inside the local window, always to its end: later than now, within a day,
    on the hour (local), and outside the window."""
    from zoneinfo import ZoneInfo

    if start == end:
        return
    until = services.quiet_until(now, zone, (start, end))
    local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone))
    inside = (start <= local.hour or local.hour < end) if start > end else (start <= local.hour < end)
    assert (until is not None) == inside
    if until is not None:
        assert now < until <= now + timedelta(hours=25)
        ends = until.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone))
        assert ends.minute == 0 and ends.second == 0
        if ends.utcoffset() == local.utcoffset():  # no DST change in between
            assert ends.hour == end and services.quiet_until(until, zone, (start, end)) is None
