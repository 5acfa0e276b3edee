"""Schema bases shared by every domain's ``schemas.py``.

* ``Schema``: unknown fields are rejected (422), like marshmallow's default, said once.
* ``PatchSchema``: every field optional, no defaults applied, and at least one field required
  (``minProperties: 1`` in the OpenAPI document; 422 "Send at least one field" otherwise).
* ``patch_of(SchemaClass)``: the PATCH twin of a create schema (same fields and rules, every
  field optional, without the create schema's defaults).
"""

from __future__ import annotations

import copy

import marshmallow as ma


class Schema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class PatchSchema(Schema):
    """A partial update: only the fields sent change; sending none is a 422."""

    openapi_extra = {"minProperties": 1}

    @ma.validates_schema
    def _at_least_one_field(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("Send at least one field to change.", "_schema")


def patch_of(schema_cls: type[ma.Schema], name: str | None = None) -> type[PatchSchema]:
    """``schema_cls`` with every field optional and no load defaults, as a ``PatchSchema``."""
    fields = {}
    for field_name, field in schema_cls._declared_fields.items():
        clone = copy.deepcopy(field)
        clone.required = False
        clone.load_default = ma.missing
        fields[field_name] = clone
    hooks = {}
    for attr in dir(schema_cls):
        member = getattr(schema_cls, attr, None)
        if callable(member) and hasattr(member, "__marshmallow_hook__") and attr not in fields:
            hooks[attr] = member
    return type(name or schema_cls.__name__.replace("In", "PatchIn"), (PatchSchema,), {**fields, **hooks})
