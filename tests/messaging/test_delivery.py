"""Email delivery through a real SMTP server: headers, both parts, locale, idempotence, retries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from community.models import Notification, utcnow
from extensions import db
from messaging.jobs import deliver_email, sweep_deliveries
from messaging.models import EmailDelivery

from .conftest import set_prefs


def make_due() -> None:
    """Every pending delivery's backoff or deferral is over."""
    db.session.rollback()  # a fresh transaction: the jobs wrote since this session last read
    db.session.execute(EmailDelivery.__table__.update().values(not_before=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_a_notification_is_emailed_once_with_both_parts_and_unsubscribe_headers(mail_app, smtp, make_member, notify,
                                                                                 run_jobs, deliveries):
    member = make_member(display_name="Alice")
    note = notify(member, "points.expiring", {"points": 1200, "first_expires_at": "2026-12-20T10:00:00"})
    run_jobs(["messaging"])

    [got] = smtp.received
    [row] = deliveries()
    assert row.notification_id == note.id and row.state == "sent" and row.attempts == 1
    msg = got.message
    assert got.rcpt_tos == [member.email] and msg["To"] == member.email
    assert msg["Message-ID"] == row.message_id
    assert msg["Subject"] == "1,200 of your points expire soon"
    assert msg["Content-Language"] == "en"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].strip().startswith("<http://127.0.0.1:5000/api/v1/unsubscribe/")
    assert "Hello Alice," in got.text and "1,200 points expire on Dec 20, 2026" in got.text
    assert "<p>Hello Alice,</p>" in got.html and "Unsubscribe from these emails" in got.html
    assert "/unsubscribe/" in got.text  # the footer link in the text part too

    # The same job again (RQ may run a job twice) and the sweeper send nothing more.
    deliver_email(row.id)
    sweep_deliveries()
    run_jobs(["messaging"])
    assert len(smtp.received) == 1


def test_the_members_locale_and_time_zone(mail_app, smtp, make_member, notify, run_jobs):
    member = make_member(display_name="Carol")
    set_prefs(member, locale="zh-CN", time_zone="Asia/Shanghai")
    notify(member, "points.expiring", {"points": 1200, "first_expires_at": "2026-12-20T10:00:00"})
    run_jobs(["messaging"])

    [got] = smtp.received
    assert got.message["Subject"] == "您有 1,200 积分即将过期"
    assert got.message["Content-Language"] == "zh-CN"
    assert "Carol，您好：" in got.text
    assert "2026年12月20日 18:00:00" in got.text  # 10:00 UTC in Shanghai
    assert "退订此类邮件" in got.html and 'lang="zh-CN"' in got.html


def test_transactional_mail_has_no_unsubscribe_and_user_data_is_escaped(mail_app, smtp, make_member, notify,
                                                                        run_jobs):
    member = make_member(display_name="<b>Bob</b>")
    notify(member, "forums.post_hidden", {"reason": "<script>x</script>"})
    run_jobs(["messaging"])
    [got] = smtp.received
    assert got.message["List-Unsubscribe"] is None
    assert "&lt;script&gt;" in got.html and "<script>" not in got.html
    assert "&lt;b&gt;Bob&lt;/b&gt;" in got.html
    assert "<script>x</script>" in got.text  # the text part is not HTML


def test_temporary_failure_is_retried_with_backoff_then_delivered(mail_app, smtp, make_member, notify, run_jobs,
                                                                  deliveries):
    member = make_member()
    smtp.reply(member.email, "451 4.3.0 try again later")
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    run_jobs(["messaging"])

    [row] = deliveries()
    assert row.state == "pending" and row.attempts == 1 and "451" in row.last_error
    assert row.not_before > utcnow() and smtp.received == []
    assert sweep_deliveries() == 0  # not due yet

    make_due()
    assert sweep_deliveries() == 1
    run_jobs(["messaging"])
    [row] = deliveries()
    assert row.state == "sent" and row.attempts == 2
    [got] = smtp.received
    assert got.message["Message-ID"] == row.message_id  # kept across attempts


def test_permanent_failure_marks_failed_and_stops(mail_app, smtp, make_member, notify, run_jobs, deliveries):
    member = make_member()
    smtp.reply(member.email, "550 5.1.1 no such mailbox")
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    run_jobs(["messaging"])
    [row] = deliveries()
    assert row.state == "failed" and "550" in row.last_error
    assert sweep_deliveries() == 0


def test_gives_up_after_the_last_backoff(mail_app, smtp, make_member, notify, run_jobs, deliveries):
    member = make_member()
    smtp.reply(member.email, *["421 busy"] * 10)
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    for _ in range(4):  # backoff (60, 120, 180): three retries after the first attempt
        run_jobs(["messaging"])
        make_due()
        sweep_deliveries()
    [row] = deliveries()
    assert row.state == "failed" and row.attempts == 4 and "gave up" in row.last_error


def test_smtp_server_down_is_a_temporary_failure(mail_app, smtp, make_member, notify, run_jobs, deliveries):
    member = make_member()
    smtp.stop()
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    run_jobs(["messaging"])
    [row] = deliveries()
    assert row.state == "pending" and row.attempts == 1 and "Connection" in row.last_error


def test_bulk_written_notifications_get_a_delivery_from_the_sweeper(mail_app, smtp, make_member, run_jobs,
                                                                    deliveries):
    members = [make_member() for _ in range(3)]
    # As the tier run writes them: INSERT ... with no call to community.notify.
    db.session.execute(insert(Notification), [
        {"member_id": m.id, "kind": "tiers.tier_changed", "payload": {"from_tier": "aware", "to_tier": "loyal"},
         "created_at": utcnow()} for m in members
    ])
    db.session.commit()
    assert deliveries() == []
    assert sweep_deliveries() == 3
    run_jobs(["messaging"])
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == sorted(m.email for m in members)
    assert {r.state for r in deliveries()} == {"sent"}
    assert sweep_deliveries() == 0


def test_email_switched_off_is_suppressed_but_stays_in_app(mail_app, smtp, make_member, notify, run_jobs,
                                                           deliveries, login):
    member = make_member()
    client = login(member)
    resp = client.patch("/api/v1/me/notification-preferences", json={"channels": {"tiers": {"email": False}}})
    assert resp.status_code == 200, resp.get_json()
    notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    run_jobs(["messaging"])
    [row] = deliveries()
    assert row.state == "suppressed" and row.reason == "preference"
    assert smtp.received == []
    assert client.get("/api/v1/me/inbox").get_json()["unread_count"] == 1


def test_marketing_email_is_opt_in(mail_app, smtp, make_member, notify, run_jobs, deliveries, login):
    member = make_member()
    notify(member, "marketing.campaign", {"subject": "Spring sale", "text": "Hello"})
    run_jobs(["messaging"])
    assert smtp.received == [] and deliveries()[0].reason == "preference"
    login(member).patch("/api/v1/me/notification-preferences", json={"channels": {"marketing": {"email": True}}})
    notify(member, "marketing.campaign", {"subject": "Summer sale", "text": "Hello"})
    run_jobs(["messaging"])
    assert [r.message["Subject"] for r in smtp.received] == ["Summer sale"]


def test_staff_see_the_delivery_state_of_a_notification(mail_app, smtp, make_member, notify, run_jobs, login):
    member = make_member()
    admin = login(make_member(roles=("admin",)))
    note = notify(member, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    assert admin.get(f"/api/v1/admin/notifications/{note.id}/delivery").get_json()["state"] == "pending"
    run_jobs(["messaging"])
    body = admin.get(f"/api/v1/admin/notifications/{note.id}/delivery").get_json()
    assert body["state"] == "sent" and body["attempts"] == 1 and body["message_id"].startswith("<")
    assert body["to_address"] == member.email
    listing = admin.get("/api/v1/admin/email-deliveries", query_string={"member_id": member.id}).get_json()
    assert [d["id"] for d in listing["items"]] == [body["id"]]
    assert admin.get("/api/v1/admin/notifications/999999/delivery").status_code == 404
    assert login(member).get(f"/api/v1/admin/notifications/{note.id}/delivery").status_code == 403


def test_embedded_default_writes_one_eml_file_each(app, make_member, notify, run_jobs, tmp_path):
    from messaging.mail import FILE_BACKEND, mail

    app.config.update(MAIL_BACKEND=FILE_BACKEND, MAIL_FILE_PATH=str(tmp_path / "mail"), MESSAGING_QUIET_HOURS=None)
    mail.init_app(app)
    a, b = make_member(), make_member()
    notify(a, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})
    notify(b, "forums.reply", {"title": "Hi", "by": "Carol"})
    run_jobs(["messaging"])
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 2
    import email
    import email.policy

    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(p["To"] for p in parsed) == sorted([a.email, b.email])
    assert all(p.get_body(("html",)) is not None and p.get_body(("plain",)) is not None for p in parsed)
    db.session.rollback()
    rows = db.session.scalars(select(EmailDelivery)).all()
    assert {r.state for r in rows} == {"sent"}


def test_unsendable_messages_fail_cleanly(mail_app, smtp, make_member, notify, run_jobs, deliveries):
    from community.models import User
    from messaging.preferences import set_channel

    big = make_member()
    set_channel(big.id, "marketing", "email", True)
    db.session.commit()
    notify(big, "marketing.campaign", {"subject": "Huge", "text": "x" * 300_000})  # oversized
    broken = make_member()
    db.session.execute(User.__table__.update().where(User.id == broken.id).values(email="a@b.c\r\nBcc: x@evil.test"))
    db.session.commit()
    notify(broken, "tiers.tier_changed", {"from_tier": "aware", "to_tier": "engaged"})  # header injection
    run_jobs(["messaging"])
    rows = deliveries()
    assert [r.state for r in rows] == ["failed", "failed"]
    assert "larger than" in rows[0].last_error and "bad message" in rows[1].last_error
    assert smtp.received == []


def test_a_tier_runs_promotion_emails_go_out_at_its_commit_in_batched_jobs(mail_app, smtp, make_member, run_jobs,
                                                                          deliveries):
    """The tier run writes notifications in bulk (no ``notify``); their emails need no sweeper."""
    from jobs import get_queue
    from tests.tiers.helpers import award
    from tiers import jobs as tier_jobs
    from tiers import services as tier_services

    mail_app.config["MESSAGING_BATCH_SIZE"] = 5
    admin = make_member(roles=("admin",))
    tier_services.ensure_default_rules()
    tier_services.save_rules(admin.id, {
        "requirements": {"engaged": {"points_earned": 100}, "satisfied": {"points_earned": 10**6},
                         "loyal": {"points_earned": 10**6}, "advocate": {"points_earned": 10**7}},
        "window_days": 365, "grace_days": 30, "keep_percent": 90, "note": "test",
        "expected_version": tier_services.current_rules().version})
    db.session.commit()
    members = [make_member() for _ in range(12)]
    for m in members:
        award(m, 150)
    get_queue("messaging").empty()
    tier_jobs.run_full_recompute(batch_size=1000)
    rows = deliveries()
    assert len(rows) == 12 and all(r.enqueued_at is not None for r in rows)  # written with the notifications
    assert get_queue("messaging").count == 3  # 12 deliveries in jobs of 5, not 12 jobs
    run_jobs(["messaging"])  # no sweep_deliveries: nothing waits for the sweeper
    got = {r.rcpt_tos[0]: r for r in smtp.received}
    assert sorted(got) == sorted(m.email for m in members)
    assert all(r.message["X-Kinship-Kind"] == "tiers.tier_changed" for r in got.values())
    assert {r.state for r in deliveries()} == {"sent"}
    assert sweep_deliveries() == 0
