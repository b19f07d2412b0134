"""`rebound run-all`: the whole local system in the foreground, until Ctrl-C.

Every service (the connectors and the console's consumer too) runs as a process of its own, as
in production, and so does the console's web app (`rebound console`); their log
lines are shown as they come, each behind the name of the process that wrote it. A process that
exits while the system runs is reported, with its exit code, and started again after a back-off
(1 s, doubling up to 30 s while it keeps failing within a minute of its start). Ctrl-C (SIGINT) or
SIGTERM stops every process gracefully (SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

NAME = "run-all"  # the supervisor's own lines go behind this name
STOP_TIMEOUT_S = 20.0
BACKOFF_S = (1.0, 30.0)  # first and longest wait before a process that exited is started again
HEALTHY_AFTER_S = 60.0  # a process that ran this long starts its next back-off from the first


@dataclass
class Member:
    service: str
    replica: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    backoff_s: float = 0.0  # the next wait before a start again
    starts: int = 0
    pump: asyncio.Task | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.replica}"


class Supervisor:
    """Runs `services` (`replicas` processes each) and keeps them running until `stop`."""

    def __init__(
        self,
        services: Sequence[str],
        *,
        replicas: int = 1,
        env: Mapping[str, str] | None = None,
        out: TextIO | None = None,
        command: Callable[[str], Sequence[str]] | None = None,
        once: Sequence[str] = (),
    ) -> None:
        self.members = [
            Member(service, replica, backoff_s=BACKOFF_S[0]) for service in services for replica in range(replicas)
        ] + [Member(service, 0, backoff_s=BACKOFF_S[0]) for service in once]
        self.env = dict(os.environ if env is None else env)
        self.out = out or sys.stdout
        self.width = max(len(name) for name in [NAME, *(m.name for m in self.members)])
        self.command = command or (lambda service: [sys.executable, "-m", "rebound", "run", service])
        self._stopping = asyncio.Event()

    def say(self, name: str, line: str) -> None:
        self.out.write(f"{name:<{self.width}} | {line}\n")
        self.out.flush()

    async def _start(self, member: Member) -> None:
        member.process = await asyncio.create_subprocess_exec(
            *self.command(member.service),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches the supervisor only, which stops them in order
        )
        member.started_at = time.monotonic()
        member.starts += 1
        self.say(NAME, f"{member.name} started (pid {member.process.pid})")
        member.pump = asyncio.create_task(self._pump(member, member.process), name=f"{member.name}-output")

    async def _pump(self, member: Member, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            self.say(member.name, raw.decode(errors="replace").rstrip("\n"))

    async def _watch(self, member: Member) -> None:
        """Start `member` and start it again each time it exits, until the supervisor stops."""
        while not self._stopping.is_set():
            await self._start(member)
            assert member.process is not None
            code = await member.process.wait()
            if member.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(member.pump, 5)
            if self._stopping.is_set():
                return
            ran_s = time.monotonic() - member.started_at
            if ran_s >= HEALTHY_AFTER_S:
                member.backoff_s = BACKOFF_S[0]
            self.say(
                NAME,
                f"{member.name} exited with code {code} after {ran_s:.1f} s; "
                f"starting it again in {member.backoff_s:g} s",
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), member.backoff_s)
            member.backoff_s = min(member.backoff_s * 2, BACKOFF_S[1])

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run until `stop` (a signal handler calls it), then stop every process."""
        watchers = [asyncio.create_task(self._watch(m), name=f"{m.name}-watch") for m in self.members]
        await self._stopping.wait()
        self.say(NAME, f"stopping {len(self.members)} processes ...")
        running = [m.process for m in self.members if m.process is not None and m.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), STOP_TIMEOUT_S)
        except TimeoutError:
            for process in running:
                if process.returncode is None:
                    self.say(NAME, f"pid {process.pid} did not stop in {STOP_TIMEOUT_S:g} s: killed")
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*(p.wait() for p in running))
        await asyncio.gather(*watchers, return_exceptions=True)
        self.say(NAME, "stopped")


WEB = "console-web"
"""The console's web app (`rebound console`), run once whatever the replicas: it serves one port."""


def command(service: str, console_port: int) -> list[str]:
    """The command line of a process of `service`."""
    if service == WEB:
        return [sys.executable, "-m", "rebound", "console", "--port", str(console_port)]
    return [sys.executable, "-m", "rebound", "run", service]


async def run_all(
    services: Sequence[str], *, replicas: int, env: Mapping[str, str], console_port: int | None = None
) -> None:
    """Supervise `services` and, on `console_port`, the console's web app, until SIGINT or SIGTERM."""
    environment = dict(env)
    # One secret for every start of the web app: its sessions outlive a restart.
    if not environment.get("REBOUND_CONSOLE_SECRET") and not environment.get("REBOUND_CONSOLE_SECRET_FILE"):
        environment["REBOUND_CONSOLE_SECRET"] = secrets.token_urlsafe(32)
    supervisor = Supervisor(
        services,
        replicas=replicas,
        env=environment,
        command=lambda service: command(service, console_port or 0),
        once=(WEB,) if console_port else (),
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, supervisor.stop)
    await supervisor.run()
