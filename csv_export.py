"""Streaming CSV responses with constant memory, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator

from flask import Response, stream_with_context

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _safe(value):
    """Neutralise spreadsheet formula injection in text cells (OWASP CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return "" if value is None else value


def iter_csv(header: Iterable[str], rows: Iterable[Iterable]) -> Iterator[str]:
    """Yield CSV text a row at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    yield buf.getvalue()
    for row in rows:
        buf.seek(0)
        buf.truncate()
        writer.writerow([_safe(v) for v in row])
        yield buf.getvalue()


def csv_response(
    filename: str, header: Iterable[str], rows: Iterable[Iterable] | Callable[[], Iterable[Iterable]]
) -> Response:
    """Stream ``rows`` as ``filename``.

    The body is produced after the view has returned, when the request's database session
    has been closed: ``rows`` must not have started a query yet.  Pass a generator function's
    result (its body runs only when iterated) or a zero-argument callable returning the rows;
    a generator *expression* over ``db.session.scalars(...)`` runs its query at once and fails.
    """

    def body() -> Iterator[str]:
        yield from iter_csv(header, rows() if callable(rows) else rows)

    return Response(
        stream_with_context(body()),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )
