"""In-app notifications: {items, meta} pages, unread count, mark one / all read, in-app preference."""

from __future__ import annotations

from community.services import notify as community_notify
from extensions import db


def _fill(member, n: int, kind: str = "forums.reply") -> None:
    for i in range(n):
        community_notify(member.id, kind, {"title": f"T{i}", "by": "Bob"})
    db.session.commit()


def test_pages_walk_every_notification_once(app, make_member, login):
    member, other = make_member(), make_member()
    _fill(member, 7)
    _fill(other, 2)
    client = login(member)
    seen, page = [], 1
    while True:
        body = client.get("/api/v1/me/inbox", query_string={"per_page": 3, "page": page})
        assert body.status_code == 200
        body = body.get_json()
        seen += [item["id"] for item in body["items"]]
        assert body["unread_count"] == 7
        assert body["meta"] == {"page": page, "per_page": 3, "total": 7, "pages": 3}
        if page == body["meta"]["pages"]:
            break
        page += 1
    assert page == 3 and len(seen) == 7 and seen == sorted(seen, reverse=True)
    assert {item["category"] for item in client.get("/api/v1/me/inbox").get_json()["items"]} == {"community"}


def test_bad_page_arguments_are_422(app, make_member, login):
    member = make_member()
    _fill(member, 3)
    for query in ({"per_page": 0}, {"per_page": 101}, {"page": 0}, {"page": "x"}):
        assert login(member).get("/api/v1/me/inbox", query_string=query).status_code == 422, query


def test_mark_one_and_all_read(app, make_member, login):
    member, other = make_member(), make_member()
    _fill(member, 4)
    _fill(other, 1)
    client = login(member)
    items = client.get("/api/v1/me/inbox").get_json()["items"]
    resp = client.post(f"/api/v1/me/inbox/{items[0]['id']}/read")
    assert resp.status_code == 200 and resp.get_json()["read_at"] is not None
    assert client.post(f"/api/v1/me/inbox/{items[0]['id']}/read").status_code == 200  # idempotent
    assert client.get("/api/v1/me/inbox/unread-count").get_json() == {"unread_count": 3}
    unread = client.get("/api/v1/me/inbox", query_string={"unread": "true"}).get_json()["items"]
    assert [i["id"] for i in unread] == [i["id"] for i in items[1:]]

    others = login(other).get("/api/v1/me/inbox").get_json()["items"][0]["id"]
    assert client.post(f"/api/v1/me/inbox/{others}/read").status_code == 404
    assert client.post("/api/v1/me/inbox/read-all").get_json() == {"marked": 3}
    assert client.get("/api/v1/me/inbox/unread-count").get_json() == {"unread_count": 0}
    assert login(other).get("/api/v1/me/inbox/unread-count").get_json() == {"unread_count": 1}


def test_in_app_switched_off_hides_the_category(app, make_member, login):
    member = make_member()
    _fill(member, 2, "forums.reply")
    _fill(member, 1, "rewards.redemption_fulfilled")
    _fill(member, 1, "something.unknown")  # unknown kinds count as community
    client = login(member)
    client.patch("/api/v1/me/notification-preferences", json={"channels": {"community": {"in_app": False}}})
    body = client.get("/api/v1/me/inbox").get_json()
    assert [i["kind"] for i in body["items"]] == ["rewards.redemption_fulfilled"]
    assert body["unread_count"] == 1
    client.patch("/api/v1/me/notification-preferences", json={"channels": {"community": {"in_app": True}}})
    assert client.get("/api/v1/me/inbox/unread-count").get_json() == {"unread_count": 4}


def test_category_condition_agrees_with_kind_info(app):
    """The SQL form of the kind -> category mapping is the Python one."""
    from sqlalchemy import literal, select, union_all

    from messaging.catalog import CATEGORIES, category_condition, kind_info

    kinds = ["points.expiring", "rewards.redemption_shipped", "tiers.tier_changed", "forums.reply",
             "forums.post_hidden", "forums.sanction_suspend", "surveys.focus_group_reminder", "surveys.invitation",
             "marketing.birthday", "odd_kind",
             "account.verify_email", "redemption_like"]
    rows = union_all(*[select(literal(k).label("kind")) for k in kinds]).subquery()
    for category in CATEGORIES:
        got = set(db.session.scalars(select(rows.c.kind).where(category_condition(rows.c.kind, category))))
        assert got == {k for k in kinds if kind_info(k).category == category}, category
