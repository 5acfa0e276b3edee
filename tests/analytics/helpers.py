"""Synthetic data for the analytics tests, written with Core (fast, and through no analytics code)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert

from community.models import User, utcnow
from extensions import db
from points.models import Interaction, PurchaseLineItem
from tests.conftest import FAST_HASH

_n = [0]


def members(count: int, *, tier: str = "aware", created_at: datetime | None = None, **fields) -> list[int]:
    """``count`` committed members; returns their ids in order."""
    start = _n[0]
    _n[0] += count
    rows = [{"email": f"syn{start + i}@example.com", "display_name": f"Syn {start + i}", "password_hash": FAST_HASH,
             "tier": tier, "referral_code": f"S{start + i:011d}",
             "created_at": created_at or utcnow() - timedelta(days=400),
             "updated_at": utcnow(), "bio": "", "is_active_account": True, **fields} for i in range(count)]
    ids = list(db.session.scalars(insert(User).returning(User.id), rows))
    db.session.commit()
    return ids


_k = [0]


def interactions(rows: list[tuple]) -> None:
    """rows: (member_id, kind, value, occurred_at[, line_items]) -> interactions (+ line items), committed."""
    payload = []
    for row in rows:
        _k[0] += 1
        member_id, kind, value, at = row[:4]
        payload.append({"member_id": member_id, "kind": kind, "value": None if value is None else Decimal(str(value)),
                        "occurred_at": at, "key": f"syn:{_k[0]}", "points": 0, "meta": {}, "created_at": at,
                        "source_type": None, "source_id": None, "entry_id": None})
    ids = list(db.session.scalars(insert(Interaction).returning(Interaction.id), payload)) if payload else []
    lines = []
    for interaction_id, row in zip(ids, rows, strict=True):
        for n, (product, category, qty) in enumerate(row[4] if len(row) > 4 else [], start=1):
            lines.append({"interaction_id": interaction_id, "line_no": n, "member_id": row[0], "kind": row[1],
                          "product_id": product, "category": category, "quantity": qty, "amount": None,
                          "occurred_at": row[3]})
    if lines:
        db.session.execute(insert(PurchaseLineItem), lines)
    db.session.commit()


def err(resp, status, code=None):
    assert resp.status_code == status, (resp.status_code, resp.get_json())
    body = resp.get_json()["error"]
    assert set(body) == {"code", "message", "fields"}
    if code:
        assert body["code"] == code, body
    return body
