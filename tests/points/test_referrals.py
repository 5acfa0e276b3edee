"""Referrals end to end: sign-up with a code, first purchase, guards, review, funnel."""

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from community.models import AuditLog, Notification, User, utcnow
from community.services import create_token
from extensions import db
from points import ledger, referrals
from points.models import Interaction, Referral
from tests.points.helpers import assert_ledger_consistent


def err(resp, status, code=None):
    assert resp.status_code == status, resp.get_json()
    if code:
        assert resp.get_json()["error"]["code"] == code


@pytest.fixture
def shop(app, make_member):
    admin = make_member(roles=("admin",))
    _, secret = create_token(admin, "shop")
    db.session.commit()
    client = app.test_client()
    counter = iter(range(1, 10_000))

    def purchase(member_id, amount=10.00):
        resp = client.post(
            "/api/v1/points/events",
            json={"event_id": f"ord-{next(counter)}", "type": "purchase", "member_id": member_id, "amount": amount},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    return purchase


def register(app, code, n, ip="10.0.0.1"):
    client = app.test_client()
    resp = client.post(
        "/api/v1/auth/register",
        json={"email": f"ref{n}@example.com", "password": "a long password 1", "display_name": f"R{n}",
              "referral_code": code},
        environ_base={"REMOTE_ADDR": ip},
    )
    assert resp.status_code == 201, resp.get_json()
    return db.session.scalar(select(User).where(User.email == f"ref{n}@example.com"))


def test_signup_then_first_purchase_rewards_both_once(app, make_member, shop):
    referrer = make_member()
    referee = register(app, referrer.referral_code, 1)
    referral = db.session.scalar(select(Referral))
    assert (referral.referrer_id, referral.referee_id, referral.status) == (referrer.id, referee.id, "signed_up")
    signup = db.session.scalar(select(Interaction).where(Interaction.kind == "referral_signup"))
    assert signup.member_id == referrer.id and signup.points == 0

    shop(referee.id)
    shop(referee.id)  # a second purchase converts nothing more
    db.session.expire_all()
    referral = db.session.scalar(select(Referral))
    assert (referral.status, referral.reward_status) == ("converted", "rewarded")
    assert ledger.get_balance(referrer.id).available == 200
    assert ledger.get_balance(referee.id).available == 200 + 20
    thanks = db.session.scalars(select(Notification).where(Notification.kind == "points.referral_rewarded")).all()
    assert sorted(n.member_id for n in thanks) == sorted([referrer.id, referee.id])
    assert_ledger_consistent()


def test_many_signups_from_one_ip_are_held_for_review(app, make_member, shop, login):
    app.config["REFERRAL_IP_THRESHOLD"] = 2
    referrer = make_member()
    clean = register(app, referrer.referral_code, 1, ip="10.0.0.7")
    flagged = register(app, referrer.referral_code, 2, ip="10.0.0.7")
    rows = {r.referee_id: r for r in db.session.scalars(select(Referral))}
    assert rows[clean.id].flag_reason is None and rows[flagged.id].flag_reason
    shop(flagged.id)
    db.session.expire_all()
    assert db.session.get(Referral, rows[flagged.id].id).reward_status == "held"
    assert ledger.get_balance(referrer.id).available == 0

    staff = login(make_member(roles=("marketer",)))
    listed = staff.get("/api/v1/admin/points/referrals?reward_status=held").get_json()
    assert [r["id"] for r in listed["items"]] == [rows[flagged.id].id]
    err(staff.get("/api/v1/admin/points/referrals?reward_status=maybe"), 422)
    resp = staff.post(f"/api/v1/admin/points/referrals/{rows[flagged.id].id}/approve", json={"reason": "Checked"})
    assert resp.status_code == 200 and resp.get_json()["reward_status"] == "rewarded"
    assert ledger.get_balance(referrer.id).available == 200
    err(staff.post(f"/api/v1/admin/points/referrals/{rows[flagged.id].id}/reject", json={"reason": "x"}), 409,
        "not_held")
    err(staff.post(f"/api/v1/admin/points/referrals/{rows[clean.id].id}/approve", json={"reason": "x"}), 409)
    err(staff.post("/api/v1/admin/points/referrals/99999/approve", json={"reason": "x"}), 404)
    err(staff.post(f"/api/v1/admin/points/referrals/{rows[flagged.id].id}/approve", json={}), 422)
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "points.referral.approve"))


def test_reject_held_referral(app, make_member, login):
    referrer = make_member(signup_ip="10.9.9.9")
    referee = register(app, referrer.referral_code, 1, ip="10.9.9.9")  # same address as the referrer
    referral = db.session.scalar(select(Referral).where(Referral.referee_id == referee.id))
    assert "referrer's own" in referral.flag_reason
    referrals.on_purchase(referee.id, utcnow())
    db.session.commit()
    staff = login(make_member(roles=("admin",)))
    resp = staff.post(f"/api/v1/admin/points/referrals/{referral.id}/reject", json={"reason": "Same household"})
    assert resp.get_json()["reward_status"] == "rejected"
    assert ledger.get_balance(referrer.id).available == 0


def test_monthly_cap_of_rewarded_referrals(app, make_member, shop):
    app.config["REFERRAL_MONTHLY_CAP"] = 2
    referrer = make_member()
    referees = [register(app, referrer.referral_code, n, ip=f"10.1.0.{n}") for n in range(3)]
    for r in referees:
        shop(r.id)
    db.session.expire_all()
    statuses = sorted(r.reward_status for r in db.session.scalars(select(Referral)))
    assert statuses == ["capped", "rewarded", "rewarded"]
    assert ledger.get_balance(referrer.id).available == 400


def test_unknown_code_and_no_code(app, make_member):
    resp = app.test_client().post(
        "/api/v1/auth/register",
        json={"email": "x@example.com", "password": "a long password 1", "display_name": "X", "referral_code": "NOPE"},
    )
    err(resp, 422)
    make_member()
    assert db.session.scalar(select(Referral)) is None


def test_funnels(app, make_member, shop, login):
    referrer = make_member()
    c = login(referrer)
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        c.post("/api/v1/me/referrals/invites", json={"email": email})
    a = register(app, referrer.referral_code, 1, ip="10.2.0.1")
    register(app, referrer.referral_code, 2, ip="10.2.0.2")
    db.session.execute(db.update(Referral).where(Referral.referee_id == a.id)
                       .values(signed_up_at=utcnow() - timedelta(days=3)))
    db.session.commit()
    shop(a.id)
    mine = c.get("/api/v1/me/referrals").get_json()
    assert mine["funnel"] == {"invited": 3, "signed_up": 2, "converted": 1, "rewarded": 1,
                              "avg_days_to_conversion": pytest.approx(3, abs=0.01)}
    assert len(mine["referrals"]) == 2 and "referee_id" not in mine["referrals"][0]
    staff = login(make_member(roles=("marketer",)))
    weeks = staff.get("/api/v1/admin/points/referrals/funnel?weeks=2").get_json()["weeks"]
    assert len(weeks) == 2
    assert sum(w["invited"] for w in weeks) == 3 and sum(w["signed_up"] for w in weeks) == 2
    assert sum(w["converted"] for w in weeks) == 1
    err(staff.get("/api/v1/admin/points/referrals/funnel?weeks=0"), 422)
    admin = login(make_member(roles=("admin",)))
    assert admin.get(f"/api/v1/admin/points/members/{referrer.id}").get_json()["referral_funnel"]["signed_up"] == 2


def test_monthly_cap_counts_the_conversion_month_only(app, make_member):
    app.config["REFERRAL_MONTHLY_CAP"] = 1
    referrer = make_member()
    now_referee = register(app, referrer.referral_code, 1, ip="10.3.0.1")
    earlier_referee = register(app, referrer.referral_code, 2, ip="10.3.0.2")
    db.session.execute(db.update(Referral).where(Referral.referee_id == earlier_referee.id)
                       .values(signed_up_at=utcnow() - timedelta(days=50)))
    assert referrals.on_purchase(earlier_referee.id, utcnow() - timedelta(days=51)) is None  # before sign-up
    referrals.on_purchase(now_referee.id, utcnow())
    # A purchase reported late, dated last month: this month's reward does not use up its cap.
    referrals.on_purchase(earlier_referee.id, utcnow() - timedelta(days=40))
    db.session.commit()
    assert [r.reward_status for r in db.session.scalars(select(Referral).order_by(Referral.id))] == [
        "rewarded", "rewarded"]


class _Statements:
    def __init__(self, app):
        self.app, self.seen = app, []

    def _on(self, _conn, _cursor, statement, *_args):
        word = statement.lstrip().split()[0].upper()
        if word not in ("BEGIN", "SAVEPOINT", "RELEASE", "PRAGMA", "ROLLBACK"):
            self.seen.append(" ".join(statement.split()[:3]))

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._on)


def test_a_purchase_reads_member_rule_and_referral_in_one_statement(app, make_member):
    """The earning path's reads before the award are one statement (member, earning rule, a
    waiting referral) plus the campaigns; a purchase by a member with no waiting referral sends
    no referral UPDATE, and a referee's first purchase still converts."""
    from points import services

    plain = make_member().id  # an id: reading an expired User inside the block would reload it
    services.record_interaction(plain, "purchase", key="warm", value=1)
    db.session.commit()
    with _Statements(app) as sql:
        services.record_interaction(plain, "purchase", key="p-1", value=10)
        db.session.commit()
    assert sql.seen[0].startswith("SELECT users.id,") and sum(s.startswith("SELECT") for s in sql.seen) == 2, sql.seen
    assert not any("referrals" in s for s in sql.seen), sql.seen
    assert len(sql.seen) <= 8, sql.seen  # 2 reads, the interaction, the award (4), its entry id
    assert ledger.get_balance(plain).available == 1 + 10

    referrer = make_member()
    referee = register(app, referrer.referral_code, 99).id
    with _Statements(app) as sql:
        services.record_interaction(referee, "purchase", key="p-2", value=10)
        db.session.commit()
    assert any(s.startswith("UPDATE referrals") for s in sql.seen), sql.seen
    assert db.session.scalar(select(Referral.status).where(Referral.referee_id == referee)) == "converted"
    assert_ledger_consistent()
