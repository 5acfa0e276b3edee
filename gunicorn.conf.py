"""gunicorn settings for Kinship: ``.venv/bin/gunicorn -c gunicorn.conf.py app:app``.

Worker class and count come from ``bench/wsgi.py`` (results in docs/benchmarks.md): on 2 cores
under 50 concurrent clients, ``gthread`` with one process per core and 4 threads each served
4.1x the requests per second of ``sync`` with one process per core (best of 3 rounds; 2 x cores
processes x 2 threads: 3.3x; sync with 2 x cores processes: 1.3x), with a p95 of 0.47 s against
1.3 s.  A request here is short Python work around database round trips: a thread waiting on
PostgreSQL or Redis leaves the process's core to another thread, where a sync process idles.
Override per host with the environment:

* ``WEB_CONCURRENCY`` — worker processes (default: one per core);
* ``GUNICORN_THREADS`` — threads per process (default 4; ``1`` with ``GUNICORN_WORKER_CLASS=sync``);
* ``GUNICORN_WORKER_CLASS`` — ``gthread`` (default) or ``sync``;
* ``GUNICORN_BIND`` — default ``0.0.0.0:8000``; ``GUNICORN_TIMEOUT`` — default 30 s.

Each process opens at most ``threads`` database connections at a time (SQLAlchemy's pool keeps
up to 5 + 10 overflow per process): size PostgreSQL's ``max_connections`` for
hosts x processes x threads, plus the workers (see README, "Scaling out").
"""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
threads = int(os.environ.get("GUNICORN_THREADS") or (4 if worker_class == "gthread" else 1))
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = 20  # a stopping worker finishes the requests it has
keepalive = 5
# Recycle a process now and then (bounded memory growth), staggered so they do not restart together.
max_requests = 20_000
max_requests_jitter = 2_000
# Build the app once in the master: a broken configuration stops the server at start, and
# workers fork with the code loaded.  No connection is open at that point (the app connects
# lazily; pools are dropped in forked children, see extensions.py).
preload_app = True
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# One log format for gunicorn and the app (logs.py): time, level, logger, request id.
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms req=%({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
_formatter = (
    {"()": "logs.JsonFormatter"}
    if (os.environ.get("LOG_FORMAT") or "text").lower() == "json"
    else {"()": "logs.UTCFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s [%(context)s] %(message)s"}
)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "logs.ContextFilter"}},
    "formatters": {"kinship": _formatter},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "kinship",
            "filters": ["context"],
        },
    },
    "root": {"level": loglevel.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    },
}
