"""The relay's outer loop: it outlives any single failure, and ends only when it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import time

from rebound.messaging.relay import OutboxRelay


async def test_a_cancelled_error_from_inside_the_relay_restarts_it_and_a_stop_ends_it() -> None:
    relay = OutboxRelay("postgresql://unused", "127.0.0.1:1", "rebound-grading")
    leaderships: list[float] = []

    async def lead() -> None:
        leaderships.append(time.monotonic())
        if len(leaderships) == 1:
            raise asyncio.CancelledError  # what a client library's own task can let out, with no one stopping the relay
        await asyncio.sleep(3600)

    relay._run_as_leader = lead  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    deadline = time.monotonic() + 5
    while len(leaderships) < 2:
        assert time.monotonic() < deadline, "the relay did not start over after a CancelledError it was not asked for"
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled(), "a stop still ends the relay"
