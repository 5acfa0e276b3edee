"""Every catalogued event, raised by the real domain flows and received signed on loopback."""

from __future__ import annotations

import itertools
import uuid

import pytest
from standardwebhooks import Webhook

from community.models import utcnow
from extensions import db
from messaging.webhooks.models import WebhookEvent

from .conftest import ALL_TYPES

_keys = itertools.count(1)


@pytest.fixture
def hooked(register, receiver, deliver_all):
    """Subscribe to everything; ``hooked.events(type)`` -> verified payloads of that type so far."""
    _, secret = register(receiver.url, ALL_TYPES)

    class Hooked:
        @staticmethod
        def events(event_type: str) -> list[dict]:
            """In the order the events happened: deliveries run in parallel, so they may arrive
            in any order (docs/webhooks.md)."""
            deliver_all()
            order = dict(db.session.execute(db.select(WebhookEvent.event_id, WebhookEvent.id)).all())
            received = sorted(receiver.received, key=lambda r: order[r.headers["webhook-id"]])
            payloads = [Webhook(secret).verify(r.body, r.headers) for r in received]
            return [p["data"] for p in payloads if p["type"] == event_type]

    return Hooked


def award(member, amount=10):
    from points import ledger

    ledger.award(member.id, amount, key=f"test:events:{next(_keys)}", reason="test")
    db.session.commit()


def test_member_registered(hooked, client):
    resp = client.post("/api/v1/auth/register",
                       json={"email": "new@example.com", "password": "long enough pw", "display_name": "Newbie"})
    assert resp.status_code == 201
    (data,) = hooked.events("member.registered")
    assert data["member_id"] == resp.get_json()["member"]["id"]
    assert data["email"] == "new@example.com" and data["display_name"] == "Newbie"


def test_points_changed_on_every_ledger_movement(hooked, make_member, app):
    from points import ledger

    member = make_member()
    award(member, 100)
    entry = ledger.hold(member.id, 30, key="hold-1", reason="r", source_type="test", source_id=1)
    db.session.commit()
    ledger.release_hold(key="rel-1", source_type="test", source_id=1, reason="changed mind")
    db.session.commit()
    ledger.adjust(member.id, -5, key="adj-1", reason="correction", actor_id=member.id)
    db.session.commit()
    ledger.award(member.id, 100, key="replayed", reason="replayed")
    ledger.award(member.id, 100, key="replayed", reason="replayed")  # a replay: no second event
    db.session.commit()
    got = hooked.events("points.changed")
    assert [(d["kind"], d["available_change"], d["held_change"]) for d in got] == [
        ("award", 100, 0), ("hold", -30, 30), ("release", 30, -30), ("adjust", -5, 0), ("award", 100, 0),
    ]
    assert got[1]["entry_id"] == entry.id and all(d["member_id"] == member.id for d in got)


def test_tier_changed_by_pin_and_by_the_engine(hooked, make_member, admin):
    from tests.tiers.helpers import rules
    from tiers import engine, services

    member = make_member()
    services.pin(admin.id, member.id, "loyal", "VIP")
    db.session.commit()
    other = make_member()
    award(other, 50)
    engine.recompute_members(other.id, other.id, utcnow(), rules(points_earned=10))
    db.session.commit()
    got = hooked.events("tier.changed")
    assert [(d["member_id"], d["from_tier"], d["to_tier"], d["kind"]) for d in got] == [
        (member.id, "aware", "loyal", "pin"), (other.id, "aware", "engaged", "promotion"),
    ]
    assert all(d["change_id"] for d in got)


def test_redemption_state_changed(hooked, make_member):
    from rewards import services
    from rewards.models import Reward

    member = make_member()
    award(member, 500)
    reward = Reward(name="E-book", kind="digital", cost=100)
    db.session.add(reward)
    db.session.commit()
    redemption, _ = services.request_redemption(member, reward.id, "redeem-1")
    db.session.commit()
    services.process(redemption.id)  # what the redemptions worker does
    db.session.commit()
    got = hooked.events("redemption.state_changed")
    assert [(d["from_state"], d["state"]) for d in got] == [(None, "pending"), ("pending", "fulfilled")]
    assert got[0]["redemption_id"] == redemption.id and got[0]["member_id"] == member.id
    assert "code" not in got[1]


def test_survey_response_completed(hooked, make_member):
    from surveys import services
    from tests.surveys.helpers import answers, make_survey

    member = make_member()
    survey = make_survey()
    response, _ = services.submit_response(member, survey.id, uuid.uuid4().hex, answers())
    db.session.commit()
    (data,) = hooked.events("survey.response_completed")
    assert data == {"survey_id": survey.id, "response_id": response.id, "member_id": member.id,
                    "completed_at": data["completed_at"], "nps_score": 9}


def test_focus_group_signup_changed(hooked, make_member):
    from surveys import focus_groups
    from tests.surveys.helpers import make_session

    session = make_session(capacity=1)
    first, second = make_member(), make_member()
    focus_groups.sign_up(first, session.id)
    db.session.commit()
    focus_groups.sign_up(second, session.id)
    db.session.commit()
    focus_groups.cancel_signup(first, session.id)  # the waiting member moves up
    db.session.commit()
    got = hooked.events("focus_group.signup_changed")
    assert [(d["member_id"], d["status"]) for d in got] == [
        (first.id, "confirmed"), (second.id, "waitlisted"), (second.id, "confirmed"), (first.id, "cancelled"),
    ]


def test_referral_converted(hooked, make_member, client, admin):
    from community.services import create_token

    referrer = make_member()
    resp = client.post("/api/v1/auth/register", json={
        "email": "friend@example.com", "password": "long enough pw", "display_name": "Friend",
        "referral_code": referrer.referral_code})
    referee_id = resp.get_json()["member"]["id"]
    _, secret = create_token(admin, "shop")
    db.session.commit()
    resp = client.post("/api/v1/points/events", headers={"Authorization": f"Bearer {secret}"},
                       json={"event_id": "ord-1", "type": "purchase", "member_id": referee_id, "amount": 10})
    assert resp.status_code == 200, resp.get_json()
    (data,) = hooked.events("referral.converted")
    assert data["referrer_id"] == referrer.id and data["referee_id"] == referee_id and data["referral_id"]


def test_post_moderated(hooked, make_member):
    from forums import services
    from forums.models import Post

    admin = make_member(roles=("admin",))
    moderator = make_member(roles=("moderator",))
    board = services.create_board(admin, {"slug": "general", "name": "General"})
    db.session.commit()
    thread = services.create_thread(make_member(tier="advocate"), board.id, "Hello", "<p>First post</p>")
    db.session.commit()
    post_id = db.session.scalar(db.select(Post.id).where(Post.thread_id == thread.id))
    services.moderate_post(moderator, post_id, "hide", "off topic")
    db.session.commit()
    services.moderate_post(moderator, post_id, "restore", "on reflection fine")
    db.session.commit()
    got = hooked.events("post.moderated")
    assert [(d["post_id"], d["action"], d["moderator_id"], d["by"]) for d in got] == [
        (post_id, "hide", moderator.id, "moderator"), (post_id, "restore", moderator.id, "moderator"),
    ]
    assert got[0]["reason"] == "off topic" and got[0]["thread_id"] == thread.id


def test_event_ids_are_unique_per_event(hooked, make_member, receiver):
    member = make_member()
    for _ in range(5):
        award(member)
    hooked.events("points.changed")
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 5
