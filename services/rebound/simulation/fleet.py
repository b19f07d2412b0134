"""Run the services as real processes (for the demo, end-to-end tests and fault scenarios),
and tell when the pipeline has caught up with its input."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    NotCoordinatorForGroupError,
)

from rebound_contracts import ALL_TOPICS, TOPICS_BY_NAME

from ..connections import stop_consumer
from ..db import TRANSIENT_ERRORS
from ..service import SERVICES

RETRIABLE = (
    GroupCoordinatorNotAvailableError,
    CoordinatorLoadInProgressError,
    NotCoordinatorForGroupError,
    KafkaConnectionError,
    *TRANSIENT_ERRORS,
)

log = structlog.get_logger(__name__)


DUMP_WAIT_S = 2.0
"""How long members are given to log their state when the fleet has not caught up in time."""


def consumed_topics(service: str) -> list[str]:
    return [t.name for t in ALL_TOPICS if service in t.consumers]


@dataclass
class ServiceProcess:
    service: str
    replica: int
    log_path: Path
    process: subprocess.Popen | None = None
    log_start: int = field(default=0, repr=False)  # where this start's lines begin in the log

    @property
    def name(self) -> str:
        return f"{self.service}-{self.replica}"

    def start(self, env: dict[str, str], launcher: Sequence[str] = ()) -> None:
        """Start the service; `launcher`, a command that runs the command after it (a wrapper,
        e.g. one that puts the process in a cgroup), goes first."""
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*launcher, sys.executable, "-m", "rebound", "run", self.service],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    def wait_started(self, timeout: float = 60.0) -> bool:
        """Wait until this start of the process has logged `service_starting` (it is running the
        app, with its graceful SIGTERM handler); False if it exited or the time ran out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self._logged(b"service_starting"):
                return True
            time.sleep(0.05)
        return False

    def _logged(self, marker: bytes) -> bool:
        """Whether this start of the process has logged `marker`."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_start)
            return marker in log.read()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def dump_state(self) -> bool:
        """Ask the process to log what it is doing (rebound.dump: its tasks and consumer, and its
        threads' stacks); False if it is not running or has not started its app (until then
        the signals would end it)."""
        if self.process is None or not self.alive() or not self._logged(b'"service_started"'):
            return False
        self.process.send_signal(signal.SIGUSR2)
        self.process.send_signal(signal.SIGUSR1)
        return True

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """`kill -9`: no goodbye, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def terminate(self) -> None:
        """SIGTERM, without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


@dataclass
class Fleet:
    """Every service as N replicas (one consumer group per service)."""

    log_dir: Path
    replicas: int = 1
    services: Iterable[str] = SERVICES
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    members: list[ServiceProcess] = field(default_factory=list)
    launcher: Callable[[str], Sequence[str]] | None = None  # a member's name -> see ServiceProcess.start

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            for replica in range(self.replicas):
                member = ServiceProcess(service, replica, self.log_dir / f"{service}-{replica}.log")
                self.members.append(member)
                self.restart(member)

    def peak_rss_mb(self) -> dict[str, float]:
        """The most resident memory (VmHWM, in MiB) each running member has had so far."""
        rss = {}
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                status = Path(f"/proc/{member.process.pid}/status").read_text()
                kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
                rss[member.name] = round(kib / 1024, 1)
        return rss

    def dead(self) -> list[ServiceProcess]:
        return [m for m in self.members if not m.alive()]

    def restart(self, member: ServiceProcess) -> None:
        launcher = self.launcher(member.name) if self.launcher is not None else ()
        member.start({**self.env, "REBOUND_LOG_FORMAT": "json"}, launcher)

    def stop(self) -> None:
        for member in self.members:
            member.terminate()
        deadline = time.monotonic() + 20
        for member in self.members:
            member.stop(max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Backlog:
    lag: int  # records not yet consumed and committed, over every service
    outbox: int  # events written but not yet in Kafka
    behind: Mapping[str, Mapping[TopicPartition, tuple[int, int]]] = field(default_factory=dict)
    """Each lagging service's partitions, with their committed and end offsets."""

    @property
    def empty(self) -> bool:
        return self.lag == 0 and self.outbox == 0

    def describe(self) -> str:
        """The figures, and which service lags where: e.g. `lag 12 (grading 12: wms.unit-inspected.v1-3
        at 40 of 52), outbox 0`."""
        parts = []
        for service, partitions in sorted(self.behind.items()):
            shown = sorted(partitions.items(), key=lambda item: item[1][0] - item[1][1])[:4]
            where = ", ".join(f"{tp.topic}-{tp.partition} at {start} of {end}" for tp, (start, end) in shown)
            more = f" and {len(partitions) - len(shown)} more" if len(partitions) > len(shown) else ""
            lag = sum(end - start for start, end in partitions.values())
            parts.append(f"{service} {lag}: {where}{more}")
        return f"lag {self.lag}" + (f" ({'; '.join(parts)})" if parts else "") + f", outbox {self.outbox}"


async def backlog(
    bootstrap: str,
    pool: asyncpg.Pool,
    services: Iterable[str] = SERVICES,
    *,
    count_records: bool = False,
    kafka_options: Mapping[str, Any] | None = None,
) -> Backlog:
    """Records not yet consumed-and-committed by each service's group, and outbox rows not yet
    relayed. A committed offset can stay behind the end of a partition by transaction markers
    (and aborted records) that no handler ever sees: with `count_records`, partitions that lag
    are read from their committed offset and only the records a consumer would get count."""
    # The outbox first: a row deleted from it is already committed in Kafka, so a lag read
    # afterwards includes it.
    outbox = await pool.fetchval(
        "SELECT count(*) FROM rebound.outbox WHERE producer = ANY($1::text[])", [f"rebound-{s}" for s in services]
    )
    options = kafka_options or {}  # connections.kafka_options
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        **options,
    )
    await admin.start()
    await consumer.start()
    try:
        by_service: dict[str, dict[TopicPartition, tuple[int, int]]] = {}
        for service in services:
            committed = await admin.list_consumer_group_offsets(f"rebound-{service}")
            partitions = [tp for t in set(consumed_topics(service)) for tp in _partitions(t)]
            for tp, end in (await consumer.end_offsets(partitions)).items():
                done = committed.get(tp)
                start = done.offset if done is not None and done.offset >= 0 else 0
                if end > start:
                    by_service.setdefault(service, {})[tp] = (start, end)
        # Each service apart: two groups (the console's and a pipeline service's) may both lag on
        # one partition.
        if count_records:
            lag = sum([await _visible_records(consumer, spans) for spans in by_service.values()])
        else:
            lag = sum(end - start for spans in by_service.values() for start, end in spans.values())
        return Backlog(lag=lag, outbox=outbox, behind=by_service)
    finally:
        await stop_consumer(consumer)
        await admin.close()


async def _visible_records(consumer: AIOKafkaConsumer, ranges: dict[TopicPartition, tuple[int, int]]) -> int:
    consumer.assign(list(ranges))
    for tp, (start, _) in ranges.items():
        consumer.seek(tp, start)
    visible = 0
    deadline = time.monotonic() + 10
    pending = set(ranges)
    while pending and time.monotonic() < deadline:
        for tp, records in (await consumer.getmany(*pending, timeout_ms=200)).items():
            visible += sum(1 for r in records if r.offset < ranges[tp][1])
        still = set()
        for tp in pending:
            if await consumer.position(tp) < ranges[tp][1]:
                still.add(tp)
        pending = still
    for tp in pending:  # could not read them in time: count them as not consumed
        visible += ranges[tp][1] - await consumer.position(tp)
    return visible


def _partitions(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(TOPICS_BY_NAME[topic].partitions)]


async def wait_until_caught_up(
    bootstrap: str,
    pool: asyncpg.Pool,
    *,
    timeout: float = 600.0,
    on_poll: Callable[[Backlog], None] | None = None,
    fleet: Fleet | None = None,
    quiet_polls: int = 3,
    kafka_options: Mapping[str, Any] | None = None,
    services: Iterable[str] = SERVICES,
) -> Backlog:
    """Poll until the backlog is empty on `quiet_polls` polls in a row (one empty poll can fall
    between a transaction's commit and its offset commit)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    previous: Backlog | None = None
    while True:
        try:
            # Count records (slower, exact) only once the raw figures stop moving.
            state = await backlog(
                bootstrap,
                pool,
                services,
                kafka_options=kafka_options,
                count_records=previous is not None and previous.lag < 5000 and previous.outbox == 0,
            )
        except RETRIABLE as error:
            # e.g. a fresh broker still creating __consumer_offsets: not known yet, so not empty
            log.info("backlog_unknown", error=f"{type(error).__name__}: {error}")
            quiet = 0
            await asyncio.sleep(0.5)
            continue
        # Who is down before the callback runs: it may restart members (the fault harness
        # revives those that killed themselves on purpose). One that dies while it runs is
        # the next poll's, when the callback has seen it too.
        down = fleet.dead() if fleet is not None else []
        if on_poll:
            on_poll(state)
        previous = state
        quiet = quiet + 1 if state.empty else 0
        if quiet >= quiet_polls:
            return state
        if fleet is not None and (still_down := [m for m in down if not m.alive()]):
            names = ", ".join(f"{m.name} (exit {m.exit_code})" for m in still_down)
            raise RuntimeError(f"service process exited: {names} (see {fleet.log_dir})")
        if time.monotonic() > deadline:
            if fleet is not None and any([m.dump_state() for m in fleet.members]):
                await asyncio.sleep(DUMP_WAIT_S)  # each member's state is in its log
            raise TimeoutError(f"not caught up after {timeout:.0f} s: {state.describe()}")
        await asyncio.sleep(0.5)
