"""The API contract shared by every domain: field types, schema bases, request checks and the
OpenAPI document's error responses and security (see ``docs/api.md``)."""

from .schema import PatchSchema, Schema, patch_of

__all__ = ["PatchSchema", "Schema", "patch_of"]
