"""In-app notifications: cursor pagination, unread count, mark one / all read, in-app preference."""

from __future__ import annotations

from community.services import notify as community_notify
from extensions import db


def _fill(member, n: int, kind: str = "forums.reply") -> None:
    for i in range(n):
        community_notify(member.id, kind, {"title": f"T{i}", "by": "Bob"})
    db.session.commit()


def test_cursor_pagination_walks_every_notification_once(app, make_member, login):
    member, other = make_member(), make_member()
    _fill(member, 7)
    _fill(other, 2)
    client = login(member)
    seen, cursor, pages = [], None, 0
    while True:
        body = client.get("/api/v1/me/inbox", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert body.status_code == 200
        body = body.get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        assert body["unread_count"] == 7
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and seen == sorted(seen, reverse=True)
    assert {item["category"] for item in client.get("/api/v1/me/inbox").get_json()["items"]} == {"community"}


def test_bad_and_foreign_cursors_are_422(app, make_member, login):
    member, other = make_member(), make_member()
    _fill(member, 3)
    mine = login(member).get("/api/v1/me/inbox", query_string={"limit": 1}).get_json()["next_cursor"]
    for cursor in ("garbage", mine):
        resp = login(other).get("/api/v1/me/inbox", query_string={"cursor": cursor})
        assert resp.status_code == 422, cursor
    assert login(member).get("/api/v1/me/inbox", query_string={"limit": 0}).status_code == 422
    assert login(member).get("/api/v1/me/inbox", query_string={"limit": 101}).status_code == 422


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
    _fill(member, 1, "redemption.fulfilled")
    _fill(member, 1, "something.unknown")  # unknown kinds count as community
    client = login(member)
    client.patch("/api/v1/me/notification-preferences", json={"channels": {"community": {"in_app": False}}})
    body = client.get("/api/v1/me/inbox").get_json()
    assert [i["kind"] for i in body["items"]] == ["redemption.fulfilled"]
    assert body["unread_count"] == 1
    client.patch("/api/v1/me/notification-preferences", json={"channels": {"community": {"in_app": True}}})
    assert client.get("/api/v1/me/inbox/unread-count").get_json() == {"unread_count": 4}


def test_category_condition_agrees_with_kind_info(app):
    """The SQL form of the kind -> category mapping is the Python one."""
    from sqlalchemy import literal, select, union_all

    from messaging.catalog import CATEGORIES, category_condition, kind_info

    kinds = ["points.expiring", "redemption.shipped", "tier_changed", "forums.reply", "forums.post_hidden",
             "forums.suspend", "focus_group_reminder", "surveys.invitation", "marketing.birthday", "odd_kind",
             "account.verify_email", "redemption_like"]
    rows = union_all(*[select(literal(k).label("kind")) for k in kinds]).subquery()
    for category in CATEGORIES:
        got = set(db.session.scalars(select(rows.c.kind).where(category_condition(rows.c.kind, category))))
        assert got == {k for k in kinds if kind_info(k).category == category}, category
