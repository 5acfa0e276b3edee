"""Benchmark: fan-out of notifications by email to a local SMTP sink, beside a bare SMTP loop.

Measured in one run, against the same sink (an aiosmtpd server in its own process that counts
and discards what it accepts), on the configured backends (``DATABASE_URL`` / ``REDIS_URL``;
without them a temporary SQLite file and an embedded Redis):

1. **baselines**, bare ``smtplib`` loops: (A) sending ``N`` copies of one pre-built message (one
   of our rendered emails as bytes) on one connection: the cost of SMTP alone; (A4) the same on
   ``MESSAGING_SMTP_CONNECTIONS`` (4) connections in parallel threads, as many as the product
   uses; (B) building a minimal text ``EmailMessage`` per iteration and ``send_message``;
2. **product**: ``N`` notifications (``points.expiring`` for ``N / 10`` members, half of them
   ``zh-CN`` in Asia/Shanghai, half ``en`` in UTC) given their
   deliveries by the sweeper's set-based backfill, then delivered by the job body
   (``messaging.services.deliver``, as ``deliver_emails`` runs it) in batches of
   ``MESSAGING_BATCH_SIZE`` ids read by keyset pagination: claim (locks, preferences, render in
   the member's locale, MIME), SMTP, and the per-message ``sent`` commit.

Target: product rate >= 50% of the best baseline's rate (A or A4, whichever is faster); memory
flat (RSS sampled during the product run; nothing holds the ``N`` rows).  The sink's own count
checks that every message arrived once.

Run: ``.venv/bin/python bench/messaging.py`` (``BENCH_N`` to change N, default 100,000).
Against PostgreSQL use a scratch database: the script runs the migrations and leaves its rows.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    os.environ["KINSHIP_INSTANCE_DIR"] = tempfile.mkdtemp(prefix="bench-messaging-")
os.environ.setdefault("KINSHIP_ENV", "development")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["MESSAGING_QUIET_HOURS"] = "off"

N = int(os.environ.get("BENCH_N", "100000"))
PROFILE = None
if os.environ.get("BENCH_PROFILE"):
    import cProfile

    PROFILE = cProfile.Profile()
PER_MEMBER = 10

SINK = r"""
import signal, sys, threading
from aiosmtpd.controller import Controller

class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"

c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
done.wait()
c.stop()
print(Count.n, flush=True)
"""


class Sink:
    def __init__(self, port: int):
        self.proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> int:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=60)
        return int(out.strip().splitlines()[-1])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.samples: list[int] = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(0.5):
            self.samples.append(self.proc.memory_info().rss)

    def stop(self) -> list[int]:
        self.stop_event.set()
        self.join()
        return self.samples


def mb(n: int) -> float:
    return n / 1024 / 1024


def baseline_b(port: int) -> float:
    """Seconds for N minimal text messages built and sent one by one (the sink checks the count)."""
    from email.message import EmailMessage

    sink = Sink(port)
    t = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(N):
            plain = EmailMessage()
            plain["From"], plain["To"], plain["Subject"] = "no-reply@kinship.local", f"b-{i}@example.com", "Hi"
            plain.set_content(f"Hello {i}, 100 points expire soon.")
            smtp.send_message(plain)
    elapsed = time.perf_counter() - t
    assert sink.stop() == N
    return elapsed


def baseline_a(port: int, data: bytes, connections: int) -> float:
    """Seconds for N sends of ``data`` over ``connections`` parallel smtplib connections."""
    sink = Sink(port)

    def loop(part: range) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for i in part:
                smtp.sendmail("no-reply@kinship.local", [f"bench-{i}@example.com"], data)

    parts = [range(k, N, connections) for k in range(connections)]
    threads = [threading.Thread(target=loop, args=(part,)) for part in parts]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t
    assert sink.stop() == N
    return elapsed


def main() -> None:
    from flask_migrate import upgrade
    from sqlalchemy import func, insert, select

    from app import create_app
    from community.models import Notification, User, utcnow
    from extensions import db
    from messaging import services
    from messaging.mail import mail
    from messaging.models import EmailDelivery
    from messaging.render import render

    port = free_port()
    app = create_app()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_BACKEND="smtp")
    with app.app_context():
        mail.init_app(app)
        upgrade(revision="heads")
        dialect = db.engine.dialect.name
        print(f"N = {N:,} notifications, {N // PER_MEMBER:,} members, {dialect}")

        # -- data: members and notifications, in chunks (never N objects at once)
        base = db.session.scalar(select(func.coalesce(func.max(User.id), 0)))
        tag = f"{int(time.time())}"
        for lo in range(0, N // PER_MEMBER, 5000):
            db.session.execute(insert(User), [
                {"email": f"bench{tag}-{i}@example.com", "password_hash": "x", "display_name": f"Bench {i}",
                 "referral_code": f"B{tag[-6:]}{i:07d}"}
                for i in range(lo, min(lo + 5000, N // PER_MEMBER))
            ])
            db.session.commit()
        first_member = base + 1
        from messaging.models import MemberPreferences

        for lo in range(0, N // PER_MEMBER, 10000):  # every other member reads Chinese, in Shanghai
            db.session.execute(insert(MemberPreferences), [
                {"member_id": first_member + i, "locale": "zh-CN", "time_zone": "Asia/Shanghai"}
                for i in range(lo, min(lo + 10000, N // PER_MEMBER), 2)
            ])
            db.session.commit()
        now = utcnow()
        first_note = db.session.scalar(select(func.coalesce(func.max(Notification.id), 0))) + 1
        for lo in range(0, N, 10000):
            db.session.execute(insert(Notification), [
                {"member_id": first_member + (i // PER_MEMBER), "kind": "points.expiring",
                 "payload": {"points": 100 + i % 900, "first_expires_at": "2027-01-31T10:00:00"}, "created_at": now}
                for i in range(lo, min(lo + 10000, N))
            ])
            db.session.commit()
        t = time.perf_counter()
        created = services.backfill_deliveries(48)
        db.session.commit()
        print(f"backfill: {created:,} deliveries in {time.perf_counter() - t:.2f} s (one INSERT ... SELECT)")

        # -- baseline: bare smtplib loop with one of our messages
        sample = render("points.expiring", {"payload": {"points": 500, "first_expires_at": "2027-01-31T10:00:00"},
                                            "member_name": "Bench", "action_url": None,
                                            "unsubscribe_url": "http://127.0.0.1:5000/unsubscribe/" + "x" * 90,
                                            "preferences_url": "http://127.0.0.1:5000/p"},
                        locale="en", time_zone="UTC")
        from messaging.mail import build

        data = build(to="bench@example.com", subject=sample.subject, text=sample.text, html=sample.html,
                     message_id="<bench@kinship.local>", headers={}).data
        bare = baseline_a(port, data, 1)
        print(f"baseline A: smtplib loop, pre-built bytes      {N / bare:8.0f} msg/s  ({bare:.1f} s)")
        connections = app.config["MESSAGING_SMTP_CONNECTIONS"]
        bare4 = baseline_a(port, data, connections)
        print(f"baseline A{connections}: the same on {connections} connections        {N / bare4:8.0f} msg/s  "
              f"({bare4:.1f} s)")
        minimal = baseline_b(port)
        print(f"baseline B: smtplib loop, minimal text message {N / minimal:8.0f} msg/s  ({minimal:.1f} s)")

        # -- product: the delivery job body over keyset-paged batches
        from sqlalchemy import event

        statements = {"n": 0, "commits": 0}

        def count(conn, cursor, statement, *args):
            statements["n"] += 1
            if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
                statements["commits"] += 1  # a statement in autocommit is its own transaction

        def commit(conn):
            statements["commits"] += 1

        event.listen(db.engine, "before_cursor_execute", count)
        event.listen(db.engine, "commit", commit)
        sink = Sink(port)
        sampler = RssSampler()
        sampler.start()
        size = app.config["MESSAGING_BATCH_SIZE"]
        counts = {"sent": 0}
        last = 0
        cpu = time.process_time()
        t = time.perf_counter()
        while True:
            ids = list(db.session.scalars(
                select(EmailDelivery.id).where(EmailDelivery.id > last, EmailDelivery.state == "pending",
                                               EmailDelivery.notification_id >= first_note)
                .order_by(EmailDelivery.id).limit(size)
            ))
            db.session.rollback()
            if not ids:
                break
            last = ids[-1]
            if PROFILE is not None:
                PROFILE.enable()
            counts["sent"] += services.deliver(ids)["sent"]
            if PROFILE is not None:
                PROFILE.disable()
            db.session.expunge_all()
        ours = time.perf_counter() - t
        cpu = time.process_time() - cpu
        samples = sampler.stop()
        event.remove(db.engine, "before_cursor_execute", count)
        event.remove(db.engine, "commit", commit)
        got = sink.stop()
        print(f"product: messaging.deliver                     {N / ours:8.0f} msg/s  ({ours:.1f} s, "
              f"sent {counts['sent']:,}, sink counted {got:,})")
        # The machine's load changes over a long run: baseline B again, after the product.
        minimal_after = baseline_b(port)
        print(f"baseline B again, after:                       {N / minimal_after:8.0f} msg/s  ({minimal_after:.1f} s)")
        print(f"product process CPU per message: {cpu / N * 1000:.3f} ms (all its threads; {cpu / ours * 100:.0f}% "
              f"of one core over the run)")
        print(f"SQL per message: {statements['n'] / N:.2f} statements, {statements['commits'] / N:.2f} commits "
              f"(an autocommit statement counts as one; keyset reads of the bench loop included)")
        print(f"ratio: {bare / ours * 100:.0f}% of baseline A's rate, {bare4 / ours * 100:.0f}% of A{connections}'s, "
              f"{minimal / ours * 100:.0f}% / {minimal_after / ours * 100:.0f}% of baseline B's before / after; "
              f"against the best of A and A{connections}: {min(bare, bare4) / ours * 100:.0f}% (target >= 50%)")
        if samples:
            tenth = max(1, len(samples) // 10)
            print(f"RSS: first tenth max {mb(max(samples[:tenth])):.1f} MB, last tenth max "
                  f"{mb(max(samples[-tenth:])):.1f} MB, peak {mb(max(samples)):.1f} MB over {len(samples)} samples")


if __name__ == "__main__":
    main()
    if PROFILE is not None:
        import pstats

        PROFILE.dump_stats("/tmp/bench-messaging.prof")
        pstats.Stats(PROFILE).sort_stats("cumulative").print_stats(45)
