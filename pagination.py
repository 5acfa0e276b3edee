"""Page-number pagination shared by every listing endpoint."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from sqlalchemy import Select, func, select

from extensions import db

MAX_PER_PAGE = 100


class PageArgs(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=MAX_PER_PAGE))


class PageMeta(ma.Schema):
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()
    pages = ma.fields.Integer()


def page_schema(item_schema: type[ma.Schema] | ma.Schema, name: str) -> type[ma.Schema]:
    """A response schema ``{"items": [...], "meta": {...}}`` for ``item_schema``."""
    return ma.Schema.from_dict(
        {"items": ma.fields.List(ma.fields.Nested(item_schema)), "meta": ma.fields.Nested(PageMeta)},
        name=name,
    )


def paginate(query: Select, page: int, per_page: int, *, scalars: bool = True) -> dict[str, Any]:
    """Run ``query`` for one page; ``total`` comes from a COUNT over the same filters."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    paged = query.limit(per_page).offset((page - 1) * per_page)
    rows = list(db.session.scalars(paged)) if scalars else list(db.session.execute(paged))
    return {
        "items": rows,
        "meta": {"page": page, "per_page": per_page, "total": total, "pages": (total + per_page - 1) // per_page},
    }
