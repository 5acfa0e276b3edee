"""Logging for every process (web, worker, scheduler, ``serve.py``): one line per record.

``2026-12-01T09:30:00.123Z INFO kinship.workers [req=3f2a...] message`` — UTC timestamp, level,
logger, and the request id (``X-Request-ID``, taken from the client if sane, else generated, and
echoed on the response) or the RQ job id the line belongs to.  ``LOG_FORMAT=json`` writes one
JSON object per line instead (``ts``, ``level``, ``logger``, ``request_id``/``job_id``,
``message``, ``exc``).  Never any colour: RQ's ANSI codes are switched off unless the output is
a terminal.  RQ's lines about routine runs on the ``periodic`` queue (the sweeper every minute)
are logged at debug.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
# Set by the worker's horse while it runs a job from a routine queue: RQ's lines about it are debug.
routine_job: contextvars.ContextVar[bool] = contextvars.ContextVar("routine_job", default=False)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(context)s] %(message)s"
ROUTINE_QUEUES = ("periodic",)


class ContextFilter(logging.Filter):
    """Adds ``context`` (``req=...``, ``job=...`` or ``-``) and demotes routine RQ lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid, jid = request_id.get(), job_id.get()
        record.request_id, record.job_id = rid, jid
        record.context = f"req={rid}" if rid else f"job={jid}" if jid else "-"
        if record.name.startswith("rq.") and record.levelno == logging.INFO and _routine(record):
            if not logging.getLogger().isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _routine(record: logging.LogRecord) -> bool:
    """RQ's per-run lines for jobs on a routine queue ("periodic: ... (id)", "Job OK", enqueued)."""
    if routine_job.get():
        return True
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) >= 2 and str(args[1]) in ROUTINE_QUEUES:
        return True
    message = str(record.msg)
    return any(message.endswith(f"to queue {q}") for q in ROUTINE_QUEUES)


class UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's API
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(UTCFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        if getattr(record, "job_id", None):
            entry["job_id"] = record.job_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def make_handler(stream=None, fmt: str | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    fmt = (fmt or os.environ.get("LOG_FORMAT") or "text").lower()
    handler.setFormatter(JsonFormatter() if fmt == "json" else UTCFormatter(TEXT_FORMAT))
    return handler


def configure_logging(level: str | int | None = None, fmt: str | None = None) -> None:
    """Install our handler on the root logger (once; not where one is already installed, e.g.
    under pytest, which captures logs itself) and set the level (``LOG_LEVEL``, INFO)."""
    root = logging.getLogger()
    level = level or os.environ.get("LOG_LEVEL") or "INFO"
    if not root.handlers:
        handler = make_handler(fmt=fmt)
        root.addHandler(handler)
        stream = getattr(handler, "stream", None)
        _no_colour_unless_tty(bool(stream is not None and hasattr(stream, "isatty") and stream.isatty()))
    root.setLevel(level.upper() if isinstance(level, str) else level)


def _no_colour_unless_tty(tty: bool) -> None:
    try:
        from rq.logutils import colorizer
    except ImportError:  # pragma: no cover - rq is a dependency
        return
    if not tty:
        colorizer.notty = True
