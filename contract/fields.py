"""The field types every schema uses, so the API's number, time and text rules live in one place.

* **Integers are strict and bounded.**  ``Integer`` rejects floats (``1.9``), numeric strings
  (``"5"``) and booleans, and is limited to what a PostgreSQL ``INTEGER`` column holds unless a
  field declares its own ``Range``; ``Id`` is a row id (1 to 2^31 - 1).  An out-of-range value is
  a 422 naming the field, never a database overflow (500).
* **Decimals travel as JSON numbers**, in and out (``{"multiplier": 1.5}``), with their bounds
  declared as numbers; strings are rejected like for integers.  Input is rounded to the field's
  ``places``.
* **Timestamps are RFC 3339 with an explicit offset.**  Input must carry one (``Z`` or
  ``+02:00``) and is stored as naive UTC; output is always UTC with ``Z``.
* **Strings say what they carry**: ``String`` is plain text (no markup is interpreted), ``Html``
  is HTML sanitized by ``sanitize.py``.
"""

from __future__ import annotations

import datetime as dt
import decimal

import marshmallow as ma

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)

PLAIN_TEXT = "Plain text."
SANITIZED_HTML = "Sanitized HTML (only the allowed tags and attributes)."


def _has_range(validate) -> bool:
    """Whether a validator bounds the value on both sides."""
    if validate is None:
        return False
    validators = validate if isinstance(validate, list | tuple) else [validate]
    ranges = [v for v in validators if isinstance(v, ma.validate.Range)]
    return any(v.min is not None for v in ranges) and any(v.max is not None for v in ranges)


def _with_validator(kwargs: dict, validator) -> dict:
    validate = kwargs.get("validate")
    if validate is None:
        kwargs["validate"] = validator
    elif isinstance(validate, list | tuple):
        kwargs["validate"] = [*validate, validator]
    else:
        kwargs["validate"] = [validate, validator]
    return kwargs


class Integer(ma.fields.Integer):
    """A strict integer: JSON integers only, within INTEGER range unless the field says otherwise."""

    def __init__(self, **kwargs):
        kwargs["strict"] = True
        if not _has_range(kwargs.get("validate")):
            _with_validator(kwargs, ma.validate.Range(min=INT32_MIN, max=INT32_MAX))
        super().__init__(**kwargs)

    def _validated(self, value):
        # marshmallow's strict mode still takes True/False (bool is an int subclass).
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class QueryInteger(Integer):
    """An integer in a query string: the text must be a plain decimal integer ("5", not "5.0")."""

    def _validated(self, value):
        if isinstance(value, str):
            text = value.strip()
            if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())) or text != value:
                raise self.make_error("invalid")
            if len(text) > 20:
                raise ma.ValidationError("Out of range.")
            value = int(text)
        return super()._validated(value)


class Id(Integer):
    """A row id: 1 to 2^31 - 1 (an id out of that range cannot exist)."""

    def __init__(self, **kwargs):
        _with_validator(kwargs, ma.validate.Range(min=1, max=INT32_MAX))
        super().__init__(**kwargs)


class QueryId(QueryInteger):
    def __init__(self, **kwargs):
        _with_validator(kwargs, ma.validate.Range(min=1, max=INT32_MAX))
        super().__init__(**kwargs)


class Boolean(ma.fields.Boolean):
    """A JSON boolean only (marshmallow's own also takes 0/1 and "yes"/"no"); for bodies, not queries."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class Decimal(ma.fields.Decimal):
    """A decimal sent and answered as a JSON number; input rounded to ``places``."""

    def __init__(self, **kwargs):
        kwargs.pop("as_string", None)
        super().__init__(**kwargs)

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
            raise self.make_error("invalid")
        if isinstance(value, float):
            value = decimal.Decimal(repr(value))
        return super()._validated(value)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        number = decimal.Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)


class DateTime(ma.fields.DateTime):
    """RFC 3339 with an offset in; naive UTC to the services; ``...Z`` out."""

    default_error_messages = {"offset": "Include a UTC offset (e.g. 2026-05-01T12:00:00Z)."}

    def __init__(self, **kwargs):
        kwargs.pop("format", None)
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise self.make_error("offset")
        return parsed.astimezone(dt.UTC).replace(tzinfo=None)

    def _serialize(self, value, attr, obj, **kwargs):
        return rfc3339(value)


def rfc3339(value: dt.datetime | None) -> str | None:
    """A stored (naive UTC) or aware datetime as RFC 3339 in UTC with ``Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _describe(kwargs: dict, what: str) -> dict:
    metadata = dict(kwargs.pop("metadata", None) or {})
    description = metadata.get("description")
    metadata["description"] = f"{description.rstrip('.')}. {what}" if description else what
    kwargs["metadata"] = metadata
    return kwargs


# An http(s) URL with a host name: what the document declares is exactly what is enforced.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
URL_PATTERN = rf"^https?://{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}(?::[0-9]{{1,5}})?(?:[/?#][!-~]*)?$"


class Url(ma.fields.String):
    """An ``http://`` or ``https://`` URL with a dotted host name (at most 500 characters)."""

    def __init__(self, **kwargs):
        kwargs = _with_validator(kwargs, ma.validate.Length(max=500))
        kwargs = _with_validator(kwargs, ma.validate.Regexp(URL_PATTERN, error="Not a valid http(s) URL."))
        super().__init__(**kwargs)


class String(ma.fields.String):
    """Plain text: no markup is interpreted (clients escape it when they render HTML)."""

    def __init__(self, **kwargs):
        super().__init__(**_describe(kwargs, PLAIN_TEXT))


class Html(ma.fields.String):
    """HTML that the server sanitized (see ``sanitize.py``); safe to insert as markup."""

    def __init__(self, **kwargs):
        super().__init__(**_describe(kwargs, SANITIZED_HTML))
