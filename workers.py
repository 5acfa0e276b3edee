"""The RQ worker and the two schedulers, made to ride out Redis outages.

RQ 3.0.0 (pinned) lets a Redis error escape from several places outside its dequeue loop, and
each ends the process: the worker's horse monitoring (``maintain_heartbeats``,
``job.get_status()`` after the horse exits), its heartbeats and suspension check, the forked
retry scheduler's loop, and ``CronScheduler.start``.  The subclasses here catch Redis
connection errors at exactly those points, back off (with jitter, capped) and carry on, so a
worker or scheduler never exits because Redis went away, and resumes when it returns:

* ``KinshipWorker`` — the worker.  A job whose horse finished while Redis was down has its
  bookkeeping retried once Redis is back (the horse retries its own result write first); the
  job itself (database work) never depends on Redis after it started.
* ``RetryScheduler`` — RQ's per-worker scheduler that enqueues due retries and ``enqueue_at``
  jobs.  It always runs (not only when its worker won the queue locks at start), tries the
  ``rq:scheduler-lock:<queue>`` locks every few seconds instead of every two minutes, and
  takes over a lock whose holder is a dead process on this host: due retries resume within
  seconds of Redis returning, and within the lock's 61 s lifetime after a worker died.
* ``KinshipCronScheduler`` — ``flask scheduler`` (the periodic schedule).  It holds the
  ``kinship:scheduler-lock`` lock (30 s TTL, refreshed every few seconds) so a second scheduler
  on the same Redis refuses to start (or, with ``--wait``, stands by until the first stops).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid

import redis
from rq.cron import CronScheduler
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.worker import SimpleWorker, Worker, WorkerStatus

log = logging.getLogger("kinship.workers")

REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)  # incl. BusyLoadingError

SCHEDULER_LOCK_KEY = "kinship:scheduler-lock"
SCHEDULER_LOCK_TTL = 30  # seconds; refreshed at least every SCHEDULER_TICK_MAX
SCHEDULER_TICK_MAX = 5.0
RETRY_LOCK_INTERVAL = 5.0  # how often a worker's retry scheduler tries the queue locks it lacks
HORSE_RESULT_RETRY_SECONDS = 60.0  # how long a horse keeps retrying its result write


class Backoff:
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... capped (default 10 s)."""

    def __init__(self, first: float = 0.5, cap: float = 10.0):
        self.first, self.cap = first, cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.attempt = 0

    @property
    def failing(self) -> bool:
        return self.attempt > 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_token() -> str:
    """``host:pid:random``: who holds a lock, and enough to tell a dead holder on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local_holder(token: str | None) -> bool:
    """True if ``token`` names a process on this host that no longer exists."""
    if not token:
        return False
    parts = token.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    return parts[0] == socket.gethostname() and int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))

# --------------------------------------------------------------------------- the worker's retry scheduler


class RetryScheduler(RQScheduler):
    """RQ's scheduler process (due retries, ``enqueue_at``), surviving Redis outages."""

    def _take_stale_locks(self) -> None:
        """Drop a queue lock whose holder (per its scheduler hash) is a dead process on this host."""
        for name in self._queue_names - self._acquired_locks:
            key = self.get_locking_key(name)
            holder = self.connection.get(key)
            if holder is None:
                continue
            holder = holder.decode() if isinstance(holder, bytes) else holder
            meta = self.connection.hgetall(f"rq:scheduler:{holder}")
            host = (meta.get(b"hostname") or b"").decode()
            pid = int(meta.get(b"pid") or 0)
            dead = host == socket.gethostname() and pid and pid != os.getpid() and not _pid_alive(pid)
            if dead and release_lock(self.connection, key, holder):
                log.info("retry scheduler: took over the lock for %s from dead scheduler pid %s", name, pid)

    def work(self):
        self._install_signal_handlers()
        parent = os.getppid()
        backoff = Backoff()
        registered = False
        last_lock_try = 0.0
        while not self._stop_requested:
            if os.getppid() != parent:  # the worker died (SIGKILL): do not live on as an orphan
                log.warning("retry scheduler: worker process %s is gone; stopping", parent)
                break
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                missing = self._acquired_locks != self._queue_names
                if missing and time.monotonic() - last_lock_try >= RETRY_LOCK_INTERVAL:
                    last_lock_try = time.monotonic()
                    self._take_stale_locks()
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                if backoff.failing:
                    log.info("retry scheduler: Redis is back; scheduling resumed")
                    backoff.reset()
                    last_lock_try = 0.0
            except REDIS_ERRORS as exc:
                self._status = self.Status.STARTED
                if not backoff.failing:
                    log.warning("retry scheduler: Redis unavailable (%s); retrying with backoff", exc)
                time.sleep(backoff.next())
                continue
            time.sleep(self.interval)
        try:
            self.stop()
        except REDIS_ERRORS as exc:
            log.warning("retry scheduler: could not release its locks (%s); they expire on their own", exc)


# --------------------------------------------------------------------------- the worker


class KinshipWorker(Worker):
    """A forking RQ worker that never exits on a Redis connection error."""

    max_connection_wait_time = 10.0  # the dequeue loop's backoff cap (RQ's default is 60 s)
    log_result_lifespan = False  # not a line per job about its result's TTL

    # --- the retry scheduler: always running, restarted if it dies

    def _start_scheduler(self, burst=False, logging_level="INFO", date_format=None, log_format=None):
        kwargs = {k: v for k, v in (("date_format", date_format), ("log_format", log_format)) if v}
        self.scheduler = RetryScheduler(
            self.queues, connection=self.connection, serializer=self.serializer,
            logging_level=logging_level if logging_level is not None else self.log.level, **kwargs,
        )
        if burst:
            self.scheduler.acquire_locks()
            if self.scheduler.acquired_locks:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            return
        self.scheduler.start()

    def run_maintenance_tasks(self):
        process = self.scheduler._process if self.scheduler is not None else None
        if process is not None and not process.is_alive():
            log.warning("worker %s: retry scheduler process exited; starting it again", self.name)
            self.scheduler.start()
        # A Redis error here propagates into the dequeue loop, which backs off and retries.
        self.clean_registries()
        self.clean_group_registries()

    # --- Redis writes that must never end the worker

    def heartbeat(self, timeout=None, pipeline=None):
        try:
            super().heartbeat(timeout, pipeline)
        except REDIS_ERRORS as exc:
            log.debug("worker %s: heartbeat failed: %s", self.name, exc)

    def maintain_heartbeats(self, job, execution):
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_ERRORS as exc:
            log.warning("worker %s: Redis unavailable while job %s runs (%s); it carries on", self.name, job.id, exc)

    def check_for_suspension(self, burst):
        with contextlib.suppress(*REDIS_ERRORS):  # the dequeue that follows meets it and backs off
            super().check_for_suspension(burst)

    def set_state(self, state, pipeline=None):
        try:
            super().set_state(state, pipeline)
        except REDIS_ERRORS:
            self._state = state

    def set_shutdown_requested_date(self):
        with contextlib.suppress(*REDIS_ERRORS):
            super().set_shutdown_requested_date()

    def register_death(self):
        try:
            super().register_death()
        except REDIS_ERRORS as exc:
            log.warning("worker %s: could not register its stop with Redis (%s); the entry expires", self.name, exc)

    def unsubscribe(self):
        with contextlib.suppress(*REDIS_ERRORS):
            super().unsubscribe()

    # --- running a job

    def execute_job(self, job, queue):
        self._horse_result = None
        try:
            super().execute_job(job, queue)
        except REDIS_ERRORS as exc:
            # Only before the fork (preparing the execution): the job never started.  RQ's
            # registry cleanup and our sweepers find it again.
            log.warning("worker %s: Redis went away before job %s started (%s)", self.name, job.id, exc)

    def wait_for_horse(self):
        cached = getattr(self, "_horse_result", None)
        if cached is not None:
            return cached
        result = super().wait_for_horse()
        if result[0] is not None:
            self._horse_result = result
        return result

    def monitor_work_horse(self, job, queue, execution):
        """RQ's monitoring; the bookkeeping after the horse exited is retried through an outage."""
        backoff = Backoff()
        while True:
            try:
                super().monitor_work_horse(job, queue, execution)
                if backoff.failing:
                    log.info("worker %s: Redis is back; job %s settled", self.name, job.id)
                return
            except REDIS_ERRORS as exc:
                if self._stop_requested and backoff.attempt > 5:
                    log.warning("worker %s: stopping with job %s unsettled in Redis (%s)", self.name, job.id, exc)
                    return
                if not backoff.failing:
                    log.warning("worker %s: Redis unavailable after job %s ended (%s)", self.name, job.id, exc)
                time.sleep(backoff.next())

    # --- in the work horse: the result write waits for Redis (bounded)

    def perform_job(self, job, queue, execution):
        from logs import ROUTINE_QUEUES, routine_job

        token = routine_job.set(queue.name in ROUTINE_QUEUES)
        try:
            return super().perform_job(job, queue, execution)
        finally:
            routine_job.reset(token)

    def _retrying_in_horse(self, what, fn, *args):
        backoff = Backoff()
        deadline = time.monotonic() + HORSE_RESULT_RETRY_SECONDS
        while True:
            try:
                return fn(*args)
            except REDIS_ERRORS as exc:
                if time.monotonic() > deadline:
                    raise
                if not backoff.failing:
                    log.warning("job %s: Redis unavailable while recording its %s (%s)", args[0].id, what, exc)
                time.sleep(backoff.next())

    def _finalize_success(self, job, queue, execution, return_value):
        self._retrying_in_horse("result", super()._finalize_success, job, queue, execution, return_value)

    def _finalize_failure(self, job, queue, execution, exc_info):
        self._retrying_in_horse("failure", super()._finalize_failure, job, queue, execution, exc_info)



class KinshipSimpleWorker(KinshipWorker):
    """``flask worker --no-fork``: jobs run in the worker process itself (rq's ``SimpleWorker``).

    Connections and caches stay warm, so short idempotent jobs (redemptions) run several times
    faster than in a forked work horse; the outage handling above applies unchanged.
    """

    def execute_job(self, job, queue):
        try:
            execution = self.prepare_execution(job)
        except REDIS_ERRORS as exc:
            log.warning("worker %s: Redis went away before job %s started (%s)", self.name, job.id, exc)
            return
        self.perform_job(job, queue, execution)
        with contextlib.suppress(*REDIS_ERRORS):
            self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return SimpleWorker.get_heartbeat_ttl(self, job, working_time)


# --------------------------------------------------------------------------- flask scheduler


class SchedulerAlreadyRunning(RuntimeError):
    pass


class KinshipCronScheduler(CronScheduler):
    """RQ's cron scheduler with a singleton lock, surviving Redis outages."""

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self.token = holder_token()
        self._holding = False

    # --- the singleton lock

    def lock_holder(self) -> str | None:
        value = self.connection.get(SCHEDULER_LOCK_KEY)
        return value.decode() if isinstance(value, bytes) else value

    def acquire_lock(self, wait: bool = False) -> None:
        """Take ``kinship:scheduler-lock``; a dead holder on this host is replaced at once."""
        backoff = Backoff(first=1.0, cap=SCHEDULER_TICK_MAX)
        announced = False
        while True:
            try:
                holder = self.lock_holder()
                if holder and holder != self.token and _dead_local_holder(holder):
                    release_lock(self.connection, SCHEDULER_LOCK_KEY, holder)
                    log.info("scheduler: took over the lock of dead scheduler %s", holder)
                outcome = acquire_or_refresh_lock(self.connection, SCHEDULER_LOCK_KEY, self.token, SCHEDULER_LOCK_TTL)
                if outcome != "taken":
                    self._holding = True
                    log.info("scheduler: holding %s as %s", SCHEDULER_LOCK_KEY, self.token)
                    return
                holder = self.lock_holder()
                if not wait:
                    raise SchedulerAlreadyRunning(
                        f"another scheduler ({holder}) is running on this Redis; run exactly one "
                        f"(or start this one with --wait to stand by)"
                    )
                if not announced:
                    log.info("scheduler: %s is active; standing by", holder)
                    announced = True
                time.sleep(SCHEDULER_TICK_MAX)
            except REDIS_ERRORS as exc:
                if not backoff.failing:
                    log.warning("scheduler: Redis unavailable (%s); retrying with backoff", exc)
                time.sleep(backoff.next())

    def refresh_lock(self) -> None:
        outcome = acquire_or_refresh_lock(self.connection, SCHEDULER_LOCK_KEY, self.token, SCHEDULER_LOCK_TTL)
        if outcome == "taken":
            self._holding = False
            raise SchedulerAlreadyRunning(f"scheduler lock taken over by {self.lock_holder()}; stopping")
        if outcome == "acquired":
            log.info("scheduler: lock re-acquired (Redis lost it)")

    # --- the loop

    def start(self, wait: bool = False):  # noqa: C901 - one loop, its error paths spelled out
        log.info("scheduler %s: starting", self.name)
        self._install_signal_handlers()
        registered = False
        try:
            self.acquire_lock(wait=wait)
            backoff = Backoff()
            while True:
                try:
                    self.refresh_lock()
                    if not registered:
                        self.register_birth()
                        registered = True
                    if self.enqueue_jobs():
                        self.save()
                    self.heartbeat()
                    if backoff.failing:
                        log.info("scheduler: Redis is back; schedule resumed")
                        backoff.reset()
                    sleep_time = min(self.calculate_sleep_interval(), SCHEDULER_TICK_MAX)
                except REDIS_ERRORS as exc:
                    if not backoff.failing:
                        log.warning("scheduler: Redis unavailable (%s); retrying with backoff", exc)
                    sleep_time = backoff.next()
                if sleep_time > 0:
                    time.sleep(sleep_time)
        except (KeyboardInterrupt, StopRequested):
            log.info("scheduler %s: stop requested", self.name)
        finally:
            try:
                if registered:
                    self.register_death()
                if self._holding:
                    release_lock(self.connection, SCHEDULER_LOCK_KEY, self.token)
            except REDIS_ERRORS as exc:
                log.warning("scheduler: could not deregister (%s); the lock expires in %ss", exc, SCHEDULER_LOCK_TTL)
            log.info("scheduler %s: stopped", self.name)

    def _request_stop(self, signum, frame):
        raise StopRequested()
