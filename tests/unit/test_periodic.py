"""Periodic jobs: on a timer, or woken by the work that makes them due, never more often than
their floor allows."""

from __future__ import annotations

import asyncio
import contextlib
import time

from rebound.service import Periodic, _every


async def _until(done, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def _running(job: Periodic):
    task = asyncio.create_task(_every(job, None, None, "p"))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    return task


async def test_a_woken_job_runs_at_once_and_no_more_often_than_its_floor() -> None:
    runs: list[float] = []

    async def run(*_: object) -> None:
        runs.append(time.monotonic())

    wake = asyncio.Event()
    task = await _running(Periodic("sync", 60.0, run, wake=wake, at_most_every_s=0.2))
    try:
        wake.set()
        await _until(lambda: len(runs) == 1, "woken, it runs without waiting for its timer (60 s)")
        for _ in range(5):  # woken again and again: once more, after its floor
            wake.set()
            await asyncio.sleep(0.02)
        await _until(lambda: len(runs) == 2, "woken again, it runs again")
        assert runs[1] - runs[0] >= 0.199, "never sooner than its floor (less the instant between deciding and running)"
        await asyncio.sleep(0.3)
        assert len(runs) == 2, "five wakes in its floor make one run; not woken, it waits for its timer"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_job_nothing_wakes_runs_on_its_timer() -> None:
    runs: list[float] = []

    async def run(*_: object) -> None:
        runs.append(time.monotonic())

    task = await _running(Periodic("sweep", 0.1, run, wake=asyncio.Event()))
    try:
        await _until(lambda: len(runs) >= 3, "runs every 0.1 s with nothing to wake it")
        assert all(later - earlier >= 0.099 for earlier, later in zip(runs, runs[1:]))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_cancelled_error_from_inside_a_job_does_not_end_it_and_a_stop_does() -> None:
    runs: list[float] = []

    async def run(*_: object) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise asyncio.CancelledError  # what a library's own task can let out, with no one stopping the job

    task = await _running(Periodic("sweep", 0.05, run))
    await _until(lambda: len(runs) >= 2, "the job runs again after the CancelledError it was not asked for")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled(), "a stop still ends it"
