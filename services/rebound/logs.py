"""structlog set-up: JSON lines when not on a terminal, readable key=value on one.

The standard library's loggers (aiokafka, faststream, asyncio) are rendered by the same
processors through the root handler, so every line of a process has one format."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

HANDLER_NAME = "rebound"


def configure(level: str = "info", fmt: str = "auto", service: str | None = None, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    on_terminal = stream.isatty()
    json_output = fmt == "json" or (fmt == "auto" and not on_terminal)
    renderer = (
        structlog.processors.JSONRenderer()
        if json_output
        # Tracebacks without the frames' locals: a local may hold a password or a token.
        else structlog.dev.ConsoleRenderer(
            colors=on_terminal,
            exception_formatter=structlog.dev.RichTracebackFormatter(
                show_locals=False, color_system="truecolor" if on_terminal else None
            ),
        )
    )
    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    exc_info = structlog.processors.format_exc_info if json_output else structlog.dev.set_exc_info
    threshold = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    # aiokafka and faststream log through the standard library; keep their warnings only.
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exc_info, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(logging.WARNING, threshold))
    # FastStream gives its logger a handler of its own when it is imported, and stops it there.
    import faststream  # noqa: F401 - creates that logger now, so it is rerouted once

    own = logging.getLogger("faststream")
    own.handlers.clear()
    own.setLevel(logging.NOTSET)
    own.propagate = True
