"""The supervisor of `rebound run-all`, on small shell processes instead of the services."""

from __future__ import annotations

import asyncio
import io
import re

import pytest

from rebound import supervisor as supervisor_module
from rebound.supervisor import Supervisor


async def _until(out: io.StringIO, pattern: str, count: int = 1) -> list[str]:
    for _ in range(200):
        found = re.findall(pattern, out.getvalue(), re.MULTILINE)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} x {pattern!r} not in:\n{out.getvalue()}")


async def test_a_process_that_keeps_exiting_is_reported_and_started_again_ever_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor_module, "BACKOFF_S", (0.1, 0.4))
    out = io.StringIO()
    supervisor = Supervisor(["flaky"], out=out, command=lambda name: ["sh", "-c", f"echo {name} says hi; exit 3"])
    running = asyncio.create_task(supervisor.run())
    exited = r"^run-all \| flaky-0 exited with code 3 after [\d.]+ s; starting it again in ([\d.]+) s$"
    waits = await _until(out, exited, 4)
    assert [float(w) for w in waits[:4]] == [0.1, 0.2, 0.4, 0.4]  # doubling, up to the longest
    assert re.search(r"^flaky-0 \| flaky says hi$", out.getvalue(), re.MULTILINE)  # its lines, behind its name
    supervisor.stop()
    await asyncio.wait_for(running, 5)
    assert out.getvalue().endswith("run-all | stopped\n")


async def test_stop_ends_every_process_with_sigterm_and_kills_one_that_ignores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor_module, "STOP_TIMEOUT_S", 0.5)
    scripts = {
        "polite": "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        "stubborn": "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    }
    out = io.StringIO()
    supervisor = Supervisor(list(scripts), out=out, command=lambda name: ["sh", "-c", scripts[name]])
    running = asyncio.create_task(supervisor.run())
    await _until(out, r"\| ready$", 2)
    pids = {m.name: m.process.pid for m in supervisor.members if m.process is not None}
    supervisor.stop()
    await asyncio.wait_for(running, 5)
    text = out.getvalue()
    assert re.search(r"^polite-0 +\| bye$", text, re.MULTILINE)
    assert f"pid {pids['stubborn-0']} did not stop in 0.5 s: killed" in text
    assert "exited with code" not in text  # a process stopped by the supervisor is not reported as a failure
    assert all(m.process is not None and m.process.returncode is not None for m in supervisor.members)
