"""Page-number pagination shared by every listing endpoint.

Every collection the API answers has one shape, ``{"items": [...], "meta": {page, per_page,
total, pages}}``, and takes ``page`` and ``per_page`` (at most 100) in the query string.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from sqlalchemy import Select, func, select

from contract import Schema
from contract import fields as f
from extensions import db

MAX_PER_PAGE = 100


class PageArgs(Schema):
    page = f.QueryInteger(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = f.QueryInteger(load_default=20, validate=ma.validate.Range(min=1, max=MAX_PER_PAGE))


class PageMeta(Schema):
    page = f.Integer(required=True)
    per_page = f.Integer(required=True)
    total = f.Integer(required=True, validate=ma.validate.Range(min=0))
    pages = f.Integer(required=True, validate=ma.validate.Range(min=0))


def page_schema(item_schema: type[ma.Schema] | ma.Schema, name: str) -> type[ma.Schema]:
    """A response schema ``{"items": [...], "meta": {...}}`` for ``item_schema``."""
    return Schema.from_dict(
        {"items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
         "meta": ma.fields.Nested(PageMeta, required=True)},
        name=name,
    )


def page_meta(page: int, per_page: int, total: int) -> dict[str, int]:
    return {"page": page, "per_page": per_page, "total": total, "pages": (total + per_page - 1) // per_page}


def page_of(items: list, page: int, per_page: int) -> dict[str, Any]:
    """One page of a list computed in full (small collections: boards, rules, a roster)."""
    start = (page - 1) * per_page
    return {"items": items[start : start + per_page], "meta": page_meta(page, per_page, len(items))}


def all_items(items: list) -> dict[str, Any]:
    """Every item on one page: the collection an action answers with (e.g. what it changed)."""
    return {"items": items, "meta": page_meta(1, max(len(items), 1), len(items))}


def paginate(query: Select, page: int, per_page: int, *, scalars: bool = True) -> dict[str, Any]:
    """Run ``query`` for one page; ``total`` comes from a COUNT over the same filters."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    paged = query.limit(per_page).offset((page - 1) * per_page)
    rows = list(db.session.scalars(paged)) if scalars else list(db.session.execute(paged))
    return {"items": rows, "meta": page_meta(page, per_page, total)}
