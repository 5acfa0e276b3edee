"""Log lines: timestamp, level, request or job id; JSON as an option; routine RQ lines at debug."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

import logs
from tests.conftest import unused_port


@pytest.fixture
def captured():
    """Our handler (as every process installs it) on the root logger, writing to a buffer."""
    handlers = []

    def attach(fmt: str) -> io.StringIO:
        stream = io.StringIO()
        handler = logs.make_handler(stream, fmt)
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
        return stream

    yield attach
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


def _backend_down_request(make_app, headers=None):
    down = make_app(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    with down.app_context():
        resp = down.test_client().post("/api/v1/auth/login", json={"email": "x@example.com", "password": "y" * 12},
                                       headers=headers or {})
    assert resp.status_code == 503
    return resp


def test_text_lines_carry_time_level_logger_and_the_request_id(make_app, captured):
    stream = captured("text")
    resp = _backend_down_request(make_app)
    rid = resp.headers["X-Request-ID"]
    [line] = [x for x in stream.getvalue().splitlines() if "backend unavailable" in x]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING errors \[req=" + rid + r"\] ", line), line
    assert "Traceback" not in stream.getvalue()


def test_json_lines_and_a_sane_client_request_id_is_kept(make_app, captured):
    stream = captured("json")
    resp = _backend_down_request(make_app, {"X-Request-ID": "lb-1234.abc"})
    assert resp.headers["X-Request-ID"] == "lb-1234.abc"
    entries = [json.loads(x) for x in stream.getvalue().splitlines()]
    [entry] = [e for e in entries if "backend unavailable" in e["message"]]
    assert entry["level"] == "WARNING" and entry["request_id"] == "lb-1234.abc" and entry["ts"].endswith("Z")


def test_an_unsafe_client_request_id_is_replaced(client):
    resp = client.get("/healthz", headers={"X-Request-ID": "bad id; with <spaces>" + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{16}", resp.headers["X-Request-ID"])


def test_job_lines_carry_the_job_id(captured):
    stream = captured("text")
    token = logs.job_id.set("job-42")
    try:
        logging.getLogger("kinship.test").warning("inside a job")
    finally:
        logs.job_id.reset(token)
    assert "[job=job-42] inside a job" in stream.getvalue()


def test_routine_rq_lines_about_the_periodic_queue_are_debug(captured):
    stream = captured("text")
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        rq_log = logging.getLogger("rq.worker")
        rq_log.info("Worker %s: %s: %s (%s)", "w1", "periodic", "rewards.jobs.sweep_pending_redemptions()", "j1")
        rq_log.info("Worker %s: %s: %s (%s)", "w1", "redemptions", "rewards.jobs.process_redemption(1)", "j2")
        logging.getLogger("rq.cron").info("Enqueued job sweep_pending_redemptions to queue periodic")
    finally:
        root.setLevel(old_level)
    text = stream.getvalue()
    assert "process_redemption" in text
    assert "sweep_pending_redemptions" not in text


def test_no_colour_codes_when_the_output_is_not_a_terminal():
    from rq.logutils import colorizer, green

    logs._no_colour_unless_tty(False)
    assert colorizer.notty and green("queue") == "queue"
