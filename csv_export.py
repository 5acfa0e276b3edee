"""Streaming CSV responses with constant memory, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator

from flask import Response, stream_with_context

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice or
# Google Sheets; NUL truncates the cell in some readers.  OWASP "CSV injection".
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _safe(value):
    """One cell as text that no spreadsheet runs: formula prefixes get a leading ``'``, NUL
    characters are dropped, and every cell is quoted (``QUOTE_ALL``), so a ``;``-separated
    locale cannot split ``x;=cmd`` into a formula cell."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # our own numbers: a negative one is a number, not a formula
    value = value if isinstance(value, str) else str(value)
    if value.startswith(_FORMULA_PREFIXES):
        value = "'" + value
    return value.replace("\0", "")


def iter_csv(header: Iterable[str], rows: Iterable[Iterable]) -> Iterator[str]:
    """Yield CSV text a row at a time; header cells are escaped like the others."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL)
    writer.writerow([_safe(h) for h in header])
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
