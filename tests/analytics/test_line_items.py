"""Line items on purchase and refund events (POST /api/v1/points/events)."""

import pytest
from sqlalchemy import func, select

from community.services import create_token
from extensions import db
from points.models import Interaction, PurchaseLineItem
from tests.analytics.helpers import err


@pytest.fixture
def send(app, make_member):
    admin = make_member(roles=("admin",))
    _, secret = create_token(admin, "shop")
    db.session.commit()
    client = app.test_client()

    def post(json, batch=False):
        url = "/api/v1/points/events/batch" if batch else "/api/v1/points/events"
        return client.post(url, json=json, headers={"Authorization": f"Bearer {secret}"})

    return post


def _lines(event_id=None):
    query = select(PurchaseLineItem).order_by(PurchaseLineItem.id)
    return db.session.scalars(query.execution_options(populate_existing=True)).all()


def test_purchase_lines_are_stored_once(make_member, send):
    m = make_member()
    ev = {"event_id": "o-1", "type": "purchase", "member_id": m.id, "amount": 30, "line_items": [
        {"product_id": "SKU-1", "category": "shoes", "quantity": 2, "amount": 20},
        {"product_id": "SKU-2", "category": "socks"},
    ]}
    assert send(ev).status_code == 200
    assert send(ev).get_json()["status"] == "duplicate"
    lines = _lines()
    assert [(x.line_no, x.product_id, x.category, x.quantity, x.amount, x.kind) for x in lines] == [
        (1, "SKU-1", "shoes", 2, 20, "purchase"), (2, "SKU-2", "socks", 1, None, "purchase")]
    assert all(x.member_id == m.id for x in lines)


def test_refund_names_lines_of_its_purchase(make_member, send):
    m = make_member()
    send({"event_id": "o-2", "type": "purchase", "member_id": m.id, "amount": 50,
          "line_items": [{"product_id": "A", "quantity": 3, "amount": 30}, {"product_id": "B", "amount": 20}]})
    ok = send({"event_id": "r-1", "type": "refund", "member_id": m.id, "refund_of": "o-2", "amount": 10,
               "line_items": [{"product_id": "A", "quantity": 1, "amount": 10}]})
    assert ok.status_code == 200, ok.get_json()
    interactions = db.session.scalar(select(func.count()).select_from(Interaction))
    # More of A than is left to return, and a product the purchase did not have: 422, nothing written.
    err(send({"event_id": "r-2", "type": "refund", "member_id": m.id, "refund_of": "o-2",
              "line_items": [{"product_id": "A", "quantity": 3}]}), 422)
    err(send({"event_id": "r-3", "type": "refund", "member_id": m.id, "refund_of": "o-2",
              "line_items": [{"product_id": "Z"}]}), 422)
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Interaction)) == interactions
    assert [(x.kind, x.product_id, x.quantity) for x in _lines()] == [
        ("purchase", "A", 3), ("purchase", "B", 1), ("refund", "A", 1)]
    ok = send({"event_id": "r-4", "type": "refund", "member_id": m.id, "refund_of": "o-2",
               "line_items": [{"product_id": "A", "quantity": 2}, {"product_id": "B"}]})
    assert ok.status_code == 200, ok.get_json()


@pytest.mark.parametrize("lines", [
    [],
    [{"quantity": 1}],
    [{"product_id": "A", "quantity": 0}],
    [{"product_id": "A", "quantity": "2"}],
    [{"product_id": "A", "quantity": 1.5}],
    [{"product_id": "A", "amount": "-1"}],
    [{"product_id": "has space"}],
    [{"product_id": "A", "colour": "red"}],
    [{"product_id": "A", "amount": 31}],
    [{"product_id": "A", "amount": 20}, {"product_id": "B", "amount": 10.01}],
    [{"product_id": "A"}] * 201,
])
def test_bad_line_items_are_refused(make_member, send, lines):
    m = make_member()
    err(send({"event_id": "o-bad", "type": "purchase", "member_id": m.id, "amount": 30, "line_items": lines}), 422)
    assert _lines() == []


def test_batch_reports_a_bad_refund_and_keeps_the_rest(make_member, send):
    m = make_member()
    body = send({"events": [
        {"event_id": "b-1", "type": "purchase", "member_id": m.id, "amount": 5, "line_items": [{"product_id": "A"}]},
        {"event_id": "b-2", "type": "refund", "member_id": m.id, "refund_of": "b-1",
         "line_items": [{"product_id": "A", "quantity": 2}]},
    ]}, batch=True).get_json()
    assert [r["status"] for r in body["results"]] == ["processed", "error"]
    assert [(x.kind, x.product_id) for x in _lines()] == [("purchase", "A")]
