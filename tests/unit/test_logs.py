"""Log set-up: structlog's events and the standard library's (aiokafka, faststream) are rendered
alike, one JSON object a line when asked for JSON."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog

from rebound import logs


@pytest.fixture
def restore_logging():
    root, faststream = logging.getLogger(), logging.getLogger("faststream")
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in (root, faststream)]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_json_logging_renders_standard_library_and_structlog_lines_alike(restore_logging) -> None:
    out = io.StringIO()
    logs.configure("info", "json", service="grading", stream=out)
    logs.configure("info", "json", service="grading", stream=out)  # configuring again adds no second handler
    logging.getLogger("aiokafka").warning("Heartbeat failed for group %s", "rebound-grading")
    logging.getLogger("aiokafka").info("below the standard library's threshold")
    logging.getLogger("faststream").info("below it too")
    try:
        raise ConnectionError("broker gone")
    except ConnectionError:
        logging.getLogger("faststream").exception("consumer stopped")
    structlog.get_logger("rebound.test").warning("dead_lettered", event_id="e-1", offset=7)

    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "Heartbeat failed for group rebound-grading",
        "consumer stopped",
        "dead_lettered",
    ]
    for line in lines:
        assert {"event", "level", "timestamp"} <= line.keys()
        assert line["timestamp"].endswith("Z") and line["service"] == "grading"
    aiokafka, faststream, ours = lines
    assert (aiokafka["level"], aiokafka["logger"]) == ("warning", "aiokafka")
    assert faststream["level"] == "error" and "ConnectionError: broker gone" in faststream["exception"]
    assert (ours["level"], ours["event_id"], ours["offset"]) == ("warning", "e-1", 7)


def test_a_console_traceback_never_shows_the_locals_of_its_frames(restore_logging) -> None:
    out = io.StringIO()
    logs.configure("info", "console", stream=out)

    def connect(password: str) -> None:
        raise ConnectionError("authentication failed")

    secret = "".join(reversed("1a7-terceS-gp"))  # not in the source lines a traceback quotes
    try:
        connect(secret)
    except ConnectionError:
        structlog.get_logger("rebound.test").exception("database_unavailable")
        logging.getLogger("asyncpg").exception("pool failed")
    text = out.getvalue()
    assert text.count("ConnectionError: authentication failed") == 2  # the tracebacks are there
    assert secret not in text
