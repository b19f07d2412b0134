"""Fault scenarios after Apache Kafka's transactions system test: a known wave is sent while
processes and servers are killed and restarted; the output is then read back with
read_committed and every duplicate, gap and loss is counted by the independent checker.

REBOUND_FAULT_PROFILE=short|full picks the size (CI runs short; `make soak` runs full);
REBOUND_FAULT_SEED replays a run: the seed is printed with every scenario."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiokafka.errors import KafkaError
from rich.console import Console

from rebound import simulation
from rebound.connections import being_cancelled
from rebound.simulation import checker
from rebound.simulation.demo import inbound_end_offsets
from rebound.messaging.relay import FAULT_KILL_AFTER_COMMIT, FAULT_KILL_BEFORE_COMMIT
from rebound.simulation.fleet import RETRIABLE, Fleet, ServiceProcess, backlog, wait_until_caught_up
from rebound.settings import LOCAL_DATABASE_PASSWORD, Settings
from tests.accounting import assert_bad_input_accounted_for, assert_no_secret_in_logs, guarantees

from .network import Network

REPO = Path(__file__).resolve().parents[2]

HOSTILE_RATE = 0.01
"""Every scenario's wave writes this share of its own events as a hostile sender would: they are
the wave's events, so even the scenarios without bad input or duplicates carry them."""


@dataclass(frozen=True)
class Profile:
    units: int
    kills: int
    outage_s: float
    timeout_s: float
    slices: int  # the wave is sent in this many slices: see Chaos
    send_s: float  # the first half of them over this long


PROFILES = {
    "short": Profile(units=3_000, kills=4, outage_s=10.0, timeout_s=300.0, slices=16, send_s=8.0),
    "full": Profile(units=20_000, kills=12, outage_s=30.0, timeout_s=1800.0, slices=32, send_s=30.0),
}


def profile() -> Profile:
    name = os.environ.get("REBOUND_FAULT_PROFILE", "short")
    if name not in PROFILES:
        pytest.fail(f"REBOUND_FAULT_PROFILE={name!r}: use one of {', '.join(PROFILES)}", pytrace=False)
    return PROFILES[name]


def run_seed() -> int:
    return int(os.environ.get("REBOUND_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))


class Infra:
    """The local Kafka and PostgreSQL, through the project's own scripts. `env`: what those
    scripts are told besides the environment (another cluster: KAFKA_STATE, KAFKA_BROKERS,
    KAFKA_PORT..., PGDATABASE_REBOUND)."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.away: set[str] = set()  # what a scenario has stopped or killed and not brought back yet
        self.env = {**os.environ, **(env or {})}
        # What deploy/scripts/kafka.sh and postgres.sh start (and would leave alone if these named
        # anything else): the scenarios kill and restart them, so they must be exactly those.
        self.kafka_port = int(self.env.get("KAFKA_PORT") or 19092)
        self.postgres_port = int(self.env.get("PGPORT_REBOUND") or 15432)
        brokers = int(self.env.get("KAFKA_BROKERS") or 1)
        nodes = [f"127.0.0.1:{self.kafka_port + 100 * node}" for node in range(brokers)]
        database_name = self.env.get("PGDATABASE_REBOUND") or "rebound"
        database = f"postgresql://rebound:{LOCAL_DATABASE_PASSWORD}@127.0.0.1:{self.postgres_port}/{database_name}"
        if (
            settings.kafka_bootstrap_servers not in (nodes[0], ",".join(nodes))
            or settings.database_url != database
            or os.environ.get("REBOUND_TESTCONTAINERS") == "1"
        ):
            pytest.fail(
                f"fault scenarios restart the local Kafka ({','.join(nodes)}, from KAFKA_PORT) and PostgreSQL"
                " (from PGPORT_REBOUND) that `make up` starts, not an external broker, database or"
                " containers: unset KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REBOUND_TESTCONTAINERS",
                pytrace=False,
            )

    def script(self, name: str, *args: str) -> str:
        done = subprocess.run(
            [str(REPO / "deploy" / "scripts" / name), *args],
            check=True,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
        )
        return done.stdout

    async def _run(self, server: str, action: str) -> None:
        # Away from the moment the script starts stopping it until it answers again.
        if action != "up":
            self.away.add(server)
        await asyncio.to_thread(self.script, f"{server}.sh", action)
        if action == "up":
            self.away.discard(server)

    async def kafka(self, action: str) -> None:
        await self._run("kafka", action)

    async def kafka_node(self, action: str, node: int) -> None:
        """`kill` or `up` one node of a cluster of several: the cluster stays up meanwhile."""
        await asyncio.to_thread(self.script, "kafka.sh", action, str(node))

    async def postgres(self, action: str) -> None:
        await self._run("postgres", action)


@dataclass
class Fault:
    """One thing done to the system, with the backlog (records not yet consumed, plus outbox rows
    not yet relayed) just before it: None when it could not be read (Kafka or PostgreSQL away)."""

    what: str
    service: str | None
    backlog: int | None
    while_sending: bool  # the wave was still being sent
    away: tuple[str, ...] = ()  # what the scenario had stopped or killed when the backlog was read
    unknown: str | None = None  # why the backlog could not be read


@dataclass
class Chaos:
    """What a scenario may do to the running system, with a log of what it did.

    The wave flows while the scenario runs: its first half is sent in slices over `send_s`, the
    rest a slice at a time when a fault would otherwise find the system idle, and whatever is left
    once the scenario is over. So every fault falls in the middle of the wave, with work in flight."""

    fleet: Fleet
    infra: Infra
    rng: random.Random
    profile: Profile
    bootstrap: str
    pool: asyncpg.Pool
    network: Network | None = None  # with it, each member runs in a cgroup a scenario can cut off
    started: float = field(default_factory=time.monotonic)
    done: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # the whole wave is in Kafka
    scenario_done: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0  # slices of the wave not sent yet
    _wanted: asyncio.Event = field(default_factory=asyncio.Event)  # a fault asks for the next slice now
    _slice_sent: asyncio.Event = field(default_factory=asyncio.Event)
    # Held while a slice of the wave is sent, and by a broker fault while the broker is away: the
    # simulator stands for the warehouses' producers, which are not under test, so it sends its
    # slices only to a running broker (the rest of the wave follows once it is back).
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)
    self_killed: int = 0  # processes that SIGKILLed themselves (the relay's fault switch) and were restarted
    _handling: set[str] = field(default_factory=set)  # members a scenario took down and will bring back
    _rotation: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.done.append(f"{time.monotonic() - self.started:6.1f}s {what}")

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))

    async def _backlog(self) -> tuple[int | None, str | None, tuple[str, ...]]:
        """Records not yet consumed plus outbox rows not yet relayed, or None and why not; with
        what the scenario had down then. While it has Kafka or PostgreSQL down, None is the answer;
        while both run, a failed read (a broker just back, its group coordinator still loading) is
        tried again for a while."""
        deadline = time.monotonic() + 20
        while True:
            try:
                state = await asyncio.wait_for(backlog(self.bootstrap, self.pool, count_records=True), 15)
                return state.lag + state.outbox, None, tuple(sorted(self.infra.away))
            except (
                TimeoutError,
                OSError,
                KafkaError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                *RETRIABLE,
            ) as error:
                why = f"{type(error).__name__}: {error}"
            if self.infra.away or time.monotonic() > deadline:
                return None, why, tuple(sorted(self.infra.away))  # a fault under way: no figure, not a zero
            await asyncio.sleep(0.5)

    async def fault(self, what: str, member: ServiceProcess | None = None) -> None:
        """Measure the backlog and log the fault about to be done. A fault on an idle system tries
        nothing: when everything sent so far has been processed, the next slice of the wave goes first."""
        pending, unknown, away = await self._backlog()
        if pending == 0 and self.held:
            self._slice_sent.clear()
            self._wanted.set()
            await self._slice_sent.wait()
            pending, unknown, away = await self._backlog()
        self.faults.append(
            Fault(what, member.service if member else None, pending, not self.sent.is_set(), away, unknown)
        )
        measured = f"unknown, {' and '.join(away) or 'nothing'} away: {unknown}" if pending is None else pending
        self.note(
            f"{what}{f' {member.name}' if member else ''} (backlog {measured}"
            f"{', wave still being sent' if not self.sent.is_set() else ''})"
        )

    async def kill_and_restart(self, member: ServiceProcess, down_for: tuple[float, float]) -> None:
        self._handling.add(member.name)
        try:
            await self.fault("kill -9", member)
            member.kill()
            await self.pause(*down_for)
            self.fleet.restart(member)
            self.note(f"restart {member.name}")
        finally:
            self._handling.discard(member.name)

    async def stop_and_restart(self, member: ServiceProcess, down_for: tuple[float, float]) -> int | None:
        """SIGTERM a running member (one still loading has nothing to hand back yet), then restart it."""
        self._handling.add(member.name)
        try:
            await asyncio.to_thread(member.wait_started)
            await self.fault("SIGTERM", member)
            code = await asyncio.to_thread(member.stop)
            self.note(f"{member.name} exited {code}")
            await self.pause(*down_for)
            self.fleet.restart(member)
            self.note(f"restart {member.name}")
            return code
        finally:
            self._handling.discard(member.name)

    def pick(self, service: str | None = None) -> ServiceProcess:
        """A live replica of `service`, or of the next service in a round (every service in turn,
        in a seeded order), so that each service is hit once per round."""
        if service is None:
            services = list(dict.fromkeys(m.service for m in self.fleet.members))
            for _ in range(len(services)):
                if not self._rotation:
                    self._rotation = self.rng.sample(services, len(services))
                candidate = self._rotation.pop(0)
                if any(m.alive() and m.service == candidate for m in self.fleet.members):
                    service = candidate
                    break
        alive = [m for m in self.fleet.members if m.alive() and service in (None, m.service)]
        return self.rng.choice(alive)

    def hits(self, what: str) -> Counter[str]:
        return Counter(f.service for f in self.faults if f.what == what and f.service)

    def assert_every_service_hit(self, what: str) -> None:
        hits = self.hits(what)
        missed = [s for s in dict.fromkeys(m.service for m in self.fleet.members) if not hits[s]]
        assert not missed, f"no {what} of {missed} (only {dict(hits)})"

    def revive_self_killed(self, *_: object) -> None:
        """Restart the members that SIGKILLed themselves (the relay's fault switch); a member that
        exited any other way stays down, for `wait_until_caught_up` to report."""
        for member in self.fleet.dead():
            if member.name not in self._handling and member.exit_code == -signal.SIGKILL:
                self.self_killed += 1
                self.note(f"{member.name} killed itself (the relay's fault switch); restart")
                self.fleet.restart(member)

    async def supervise(self) -> None:
        while True:
            self.revive_self_killed()
            await asyncio.sleep(0.5)

    def summary(self) -> list[str]:
        measured = [f.backlog for f in self.faults if f.backlog is not None]
        kinds = ", ".join(f"{what} {n}" for what, n in Counter(f.what for f in self.faults).items()) or "none"
        by_service = dict(sorted(Counter(f.service for f in self.faults if f.service).items()))
        sending = sum(f.while_sending for f in self.faults)
        lines = [f"faults: {len(self.faults)} ({kinds}), by service {by_service}; {sending} while the wave was sent"]
        if measured:
            lines.append(
                f"backlog before the faults: {min(measured):,} to {max(measured):,} "
                f"({len(self.faults) - len(measured)} unmeasured: infrastructure away)"
            )
        if self.self_killed:
            lines.append(f"relay kills by its fault switch: {self.self_killed}")
        return lines


Scenario = Callable[[Chaos], Awaitable[None]]


LOG_TAIL_LINES = 60  # of each service's log, in the report of a failed scenario
LOG_LINE_CHARS = 2000


def service_log_tails(log_dir: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Where the services' logs of a scenario are, and the last `lines` lines of each: a process
    that exited by itself ends its log with why (its traceback goes to the same file)."""
    parts = [f"full logs: {log_dir}"]
    for path in sorted(log_dir.glob("*.log")):
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        parts.append(f"\n--- {path.name}, last {len(tail)} lines")
        parts += [line if len(line) <= LOG_LINE_CHARS else f"{line[:LOG_LINE_CHARS]}… (cut)" for line in tail]
    return "\n".join(parts)


@dataclass(frozen=True)
class Outcome:
    chaos: Chaos
    report: checker.Report
    log_dir: Path

    def log_events(self, event: str) -> list[dict]:
        return log_events(self.log_dir, event)


def log_events(log_dir: Path, event: str) -> list[dict]:
    """The JSON log lines of every service in `log_dir` with this event name."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if f'"{event}"' in line:
                with contextlib.suppress(ValueError):
                    document = json.loads(line)
                    if document.get("event") == event:
                        found.append(document)
    return found


async def _not_cut_short(name: str, part: str, work: Awaitable[None]) -> None:
    """`work`, failing the run if it ends on a CancelledError that nobody asked for (a client
    library's own, see `rebound.connections.stop_consumer`): a task group takes such a child for a
    cancelled one and ends without an error, and the run would go on with the rest of `part` never
    done."""
    try:
        await work
    except asyncio.CancelledError as error:
        if being_cancelled():
            raise
        raise AssertionError(f"{name}: {part} ended on a CancelledError no one asked for") from error


async def run(
    name: str,
    scenario: Scenario,
    settings: Settings,
    pool: asyncpg.Pool,
    log_dir: Path,
    *,
    replicas: int = 1,
    env: dict[str, str] | None = None,
    duplicate_rate: float = 0.02,
    bad_rate: float = 0.02,
    bad_kinds: tuple[str, ...] = (),
    partitions: bool = False,
    infra_env: dict[str, str] | None = None,
) -> Outcome:
    """Start the services, send the wave while `scenario` runs (faults overlap the sending), wait
    until everything is caught up, then hold the output to the guarantees."""
    shape = profile()
    seed = run_seed()
    rng = random.Random(seed ^ zlib.crc32(name.encode()))
    console = Console(force_terminal=False, width=120)
    console.print(
        f"\n[fault scenario] {name}: seed {seed} (replay: REBOUND_FAULT_SEED={seed}), "
        f"{shape.units:,} units, {replicas} replica(s) per service"
    )
    wave = simulation.generate(
        simulation.WaveConfig(
            units=shape.units,
            seed=rng.randrange(1 << 30),
            duplicate_rate=duplicate_rate,
            out_of_order_rate=0.05,
            bad_rate=bad_rate,
            bad_kinds=bad_kinds,
            hostile_rate=HOSTILE_RATE,
        )
    )
    if await pool.fetchval("SELECT count(*) FROM rebound.sellers WHERE seller_id = ANY($1::text[])", wave.sellers):
        pytest.fail(
            f"seed {seed} already ran against this database, so its wave would be all duplicates: "
            "replay it on fresh state (make clean-state && make up)",
            pytrace=False,
        )
    await simulation.register_sellers(settings.database_url, wave.sellers)
    before = await inbound_end_offsets(settings.kafka_bootstrap_servers)
    service_env = {**os.environ, **(env or {})}
    network = Network("fleet") if partitions else None
    fleet = Fleet(log_dir=log_dir, replicas=replicas, env=service_env, launcher=network.launcher if network else None)
    chaos = Chaos(
        fleet=fleet,
        infra=Infra(settings, infra_env),
        rng=rng,
        profile=shape,
        bootstrap=settings.kafka_bootstrap_servers,
        pool=pool,
        network=network,
    )
    relay_kills = bool(service_env.get(FAULT_KILL_AFTER_COMMIT) or service_env.get(FAULT_KILL_BEFORE_COMMIT))

    async def send() -> None:
        step = -(-len(wave.messages) // shape.slices)
        slices = [wave.messages[start : start + step] for start in range(0, len(wave.messages), step)]
        chaos.held = len(slices)
        for number, part in enumerate(slices):
            if number and not chaos.scenario_done.is_set():
                asked = asyncio.ensure_future(chaos._wanted.wait())
                over = asyncio.ensure_future(chaos.scenario_done.wait())
                timed = (
                    [asyncio.ensure_future(asyncio.sleep(shape.send_s / (len(slices) // 2)))]
                    if number < len(slices) // 2
                    else []
                )
                _, waiting = await asyncio.wait([asked, over, *timed], return_when=asyncio.FIRST_COMPLETED)
                for future in waiting:
                    future.cancel()
            async with chaos.sending:
                await simulation.publish(part, settings.kafka_bootstrap_servers, progress=False)
            chaos.held -= 1
            chaos._wanted.clear()
            chaos._slice_sent.set()
        chaos.note(f"wave of {len(wave.messages):,} messages sent")
        chaos.sent.set()

    async def break_things() -> None:
        try:
            await _not_cut_short(name, "the scenario", scenario(chaos))
        finally:
            chaos.scenario_done.set()

    fleet.start()
    supervisor = asyncio.create_task(chaos.supervise()) if relay_kills else None
    try:
        async with asyncio.TaskGroup() as both:
            both.create_task(_not_cut_short(name, "the sending of the wave", send()))
            both.create_task(break_things())
        chaos.note("scenario done")
        if relay_kills:
            chaos.revive_self_killed()
        # Scenarios bring back what they take down: a member still down now exited by itself,
        # which wait_until_caught_up reports.
        await wait_until_caught_up(
            settings.kafka_bootstrap_servers,
            pool,
            timeout=shape.timeout_s,
            fleet=fleet,
            on_poll=chaos.revive_self_killed if relay_kills else None,
        )
        chaos.note("caught up")
    finally:
        if supervisor is not None:
            supervisor.cancel()
        if network is not None:
            network.heal()
        fleet.stop()
        if network is not None:
            network.close()
        # A scenario that failed half-way may have left the broker or the database down: the
        # scenarios after it must start on running infrastructure (`up` is a no-op when it runs).
        await chaos.infra.kafka("up")
        await chaos.infra.postgres("up")
        for line in chaos.done + chaos.summary():
            console.print(f"  {line}")
    report = await guarantees(settings.kafka_bootstrap_servers, wave)
    console.print(report.table())
    assert report.ok, f"{name} (seed {seed}): {report.as_dict()}"
    assert report.adjustments >= sum(wave.expected_stock.values()) > 0
    idle = [f"{f.what} {f.service or ''}".strip() for f in chaos.faults if f.backlog == 0]
    assert not idle, f"{name} (seed {seed}): faults on an idle system, after the wave had been processed: {idle}"
    # A backlog is unknown only while the scenario has Kafka or PostgreSQL down (in a combined
    # scenario that may be the case before every fault); one that could not be read while both ran
    # would leave the idle check above blind.
    unmeasured = [f"{f.what} {f.service or ''}: {f.unknown}" for f in chaos.faults if f.backlog is None and not f.away]
    assert not unmeasured, (
        f"{name} (seed {seed}): the backlog could not be read with Kafka and PostgreSQL up: {unmeasured}"
    )
    if chaos.faults:
        assert any(f.while_sending for f in chaos.faults), f"{name} (seed {seed}): no fault while the wave was sent"
    await assert_bad_input_accounted_for(settings.kafka_bootstrap_servers, wave, before)
    assert_no_secret_in_logs(log_dir, service_env)
    return Outcome(chaos, report, log_dir)
