"""``GET /api/v1/me/points/multipliers``: what multiplies a member's earning, as earning applies it
(campaigns that reach them, their own windows running or to come), and nothing of anyone else's."""

from __future__ import annotations

from datetime import datetime, timedelta

from community.models import utcnow
from extensions import db
from points.models import Campaign
from points.services import grant_multiplier, record_interaction


def test_a_member_sees_the_campaigns_that_reach_them_and_their_own_windows(app, login, make_member):
    member, other = make_member(), make_member()
    now = utcnow()
    db.session.add_all([
        Campaign(name="Autumn", multiplier=1.5, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=3)),
        Campaign(name="Not yet", multiplier=3, starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=2)),
        Campaign(name="Over", multiplier=3, starts_at=now - timedelta(days=3), ends_at=now - timedelta(days=1)),
        Campaign(name="Switched off", multiplier=3, starts_at=now - timedelta(days=1),
                 ends_at=now + timedelta(days=1), active=False),
        Campaign(name="Birthdays", multiplier=2, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=1),
                 birthday_only=True),  # the member has no birthday set
    ])
    grant_multiplier(member.id, 2, now - timedelta(minutes=5), now + timedelta(hours=2), key="mine-now",
                     source_type="journey", kinds=["purchase"])
    grant_multiplier(member.id, 3, now + timedelta(days=5), now + timedelta(days=6), key="mine-later",
                     source_type="journey")
    grant_multiplier(member.id, 4, now - timedelta(days=2), now - timedelta(days=1), key="mine-over",
                     source_type="journey")
    grant_multiplier(other.id, 5, now - timedelta(minutes=5), now + timedelta(hours=1), key="theirs",
                     source_type="journey")
    db.session.commit()

    resp = login(member).get("/api/v1/me/points/multipliers")
    assert resp.status_code == 200, resp.get_json()
    items = resp.get_json()["items"]
    assert [(i["source"], i["name"], i["multiplier"], i["kinds"]) for i in items] == [
        ("personal", None, 2, ["purchase"]),   # ends in 2 hours
        ("campaign", "Autumn", 1.5, None),       # ends in 3 days
        ("personal", None, 3, None),           # still to come
    ]
    assert all(i["starts_at"].endswith("Z") and i["ends_at"].endswith("Z") for i in items)

    # What the page says is what earning does: a purchase now earns the 2, not 2 + 1.5.
    record_interaction(member.id, "purchase", key="seen-double", value=10)
    db.session.commit()
    from points.models import Interaction

    assert db.session.scalar(db.select(Interaction.points).where(Interaction.key == "seen-double")) == 20

    other_items = login(other).get("/api/v1/me/points/multipliers").get_json()["items"]
    assert [(i["source"], i["multiplier"]) for i in other_items] == [("personal", 5), ("campaign", 1.5)]


def test_the_programme_holdout_sees_no_campaign_and_earns_none(app, login, make_member):
    """The programme holdout earns no campaign multiplier, so none is shown to it; its own
    windows (a journey's birthday gift is not a campaign) still are."""
    from analytics import experiments

    staff = make_member(roles=("marketer",))
    people = [make_member() for _ in range(12)]
    db.session.add(Campaign(name="Everyone", multiplier=2, starts_at=datetime(2000, 1, 1),
                            ends_at=datetime(2100, 1, 1)))
    db.session.commit()
    exp = experiments.create(staff.id, {"name": "global control", "kind": "holdout", "test_share": 0.5,
                                        "salt": "multipliers-holdout"})
    experiments.start(staff.id, exp.id)
    db.session.commit()
    held = [p for p in people if experiments.in_holdout(p.id)]
    reached = [p for p in people if not experiments.in_holdout(p.id)]
    assert held and reached  # 12 members, a 50 % share: both arms exist with this salt
    for i, p in enumerate(people):
        record_interaction(p.id, "purchase", key=f"holdout-{i}", value=10)
    db.session.commit()
    from points.models import Interaction

    for i, p in enumerate(people):
        shown = [m["name"] for m in login(p).get("/api/v1/me/points/multipliers").get_json()["items"]]
        earned = db.session.scalar(db.select(Interaction.points).where(Interaction.key == f"holdout-{i}"))
        if p in held:
            assert (shown, earned) == ([], 10)
        else:
            assert (shown, earned) == (["Everyone"], 20)


def test_bad_page_arguments_are_422_and_a_visitor_is_401(app, client, login, make_member):
    member = login(make_member())
    for query, field in (("per_page=0", "per_page"), ("page=0", "page"), ("page=x", "page")):
        resp = member.get(f"/api/v1/me/points/multipliers?{query}")
        assert resp.status_code == 422, (query, resp.get_json())
        assert field in resp.get_json()["error"]["fields"], resp.get_json()
    assert client.get("/api/v1/me/points/multipliers").status_code == 401
