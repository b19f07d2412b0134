"""What a running service is doing, on request: `kill -USR1 <pid>` logs one `state_dumped` line.

The line holds every asyncio task with where it waits, and the consumer's view of its group and
partitions (member, generation, coordinator; per partition the next offset it will fetch, the
broker's end and last stable offsets, and when it last fetched). A service that has stopped
moving says with it whether it waits on Kafka, on PostgreSQL or on nothing at all.

`kill -USR2 <pid>` prints every thread's Python stack to standard error at once, from the
interpreter's signal handler: it answers even when the event loop is blocked and cannot log.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiokafka.errors import KafkaError

log = structlog.get_logger(__name__)

TASK_FRAMES = 8
"""Frames shown per task, innermost last."""


def install_thread_dump() -> None:
    """SIGUSR2: every thread's stack to standard error, even while the event loop is blocked."""
    faulthandler.register(signal.SIGUSR2, file=sys.stderr, all_threads=True)


def install_state_dump(loop: asyncio.AbstractEventLoop, consumer: Callable[[], Any]) -> None:
    """SIGUSR1: log `state_dumped` (tasks, and the consumer returned by `consumer()`, if any)."""

    def on_signal() -> None:
        loop.create_task(_log_state(consumer()), name="state-dump")

    loop.add_signal_handler(signal.SIGUSR1, on_signal)


def task_stacks() -> dict[str, str]:
    """Each task's name and the coroutines it waits in, outermost first (the last `TASK_FRAMES`)."""
    stacks = {}
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        frames = _awaiting(task.get_coro())[-TASK_FRAMES:]
        where = " > ".join(f"{f.f_code.co_name} ({_short(f.f_code.co_filename)}:{f.f_lineno})" for f in frames)
        stacks[task.get_name()] = where or ("done" if task.done() else "running")
    return stacks


def _awaiting(coro: Any) -> list[Any]:
    """The frames of a suspended coroutine and of each coroutine it awaits, down to the innermost.
    (A task's own `get_stack` gives only the outermost.)"""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


async def consumer_state(consumer: Any) -> dict[str, Any]:
    """The consumer's group membership and, per assigned partition, how far it has read."""
    coordinator = getattr(consumer, "_coordinator", None)
    state: dict[str, Any] = {
        "member_id": getattr(coordinator, "member_id", None),
        "generation": getattr(coordinator, "generation", None),
        "coordinator": getattr(coordinator, "coordinator_id", None),
    }
    now_ms = time.time() * 1000
    assigned = sorted(consumer.assignment())
    # A partition without a valid position waits for one: each is given a second, all at once.
    positions = await asyncio.gather(*(_position(consumer, tp) for tp in assigned))
    partitions = {}
    for tp, position in zip(assigned, positions, strict=True):
        polled = consumer.last_poll_timestamp(tp)
        partitions[f"{tp.topic}-{tp.partition}"] = {
            "position": position,
            "highwater": consumer.highwater(tp),
            "last_stable": consumer.last_stable_offset(tp),
            "fetched_s_ago": None if polled is None else round((now_ms - polled) / 1000, 1),
        }
    state["partitions"] = partitions
    return state


async def _position(consumer: Any, tp: Any) -> int | str:
    """The next offset the consumer will fetch, or why it has none (e.g. `TimeoutError`)."""
    try:
        return await asyncio.wait_for(consumer.position(tp), 1.0)
    except (TimeoutError, KafkaError) as error:  # e.g. moved away meanwhile: said, not raised
        return type(error).__name__


async def _log_state(consumer: Any) -> None:
    try:
        state = None if consumer is None else await consumer_state(consumer)
        log.warning("state_dumped", tasks=task_stacks(), consumer=state)
    except Exception:
        log.exception("state_dump_failed")


def _short(path: str) -> str:
    """A source path from its package on: `aiokafka/consumer/fetcher.py`, `asyncio/tasks.py`."""
    for marker in ("/site-packages/", "/services/", f"/python{sys.version_info.major}.{sys.version_info.minor}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
