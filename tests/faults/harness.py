"""Fault scenarios after Apache Kafka's transactions system test: a known wave is sent while
processes and servers are killed and restarted; the output is then read back with
read_committed and every duplicate, gap and loss is counted by the independent checker.

REBOUND_FAULT_PROFILE=short|full picks the size (CI runs short; `make soak` runs full);
REBOUND_FAULT_SEED replays a run: the seed is printed with every scenario."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from rich.console import Console

from rebound import simulator
from rebound.demo import inbound_end_offsets
from rebound.processes import Fleet, ServiceProcess, wait_until_caught_up
from rebound.settings import Settings
from tests.accounting import assert_bad_input_accounted_for, assert_no_secret_in_logs, guarantees

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Profile:
    units: int
    kills: int
    outage_s: float
    timeout_s: float


PROFILES = {
    "short": Profile(units=3_000, kills=4, outage_s=10.0, timeout_s=300.0),
    "full": Profile(units=20_000, kills=12, outage_s=30.0, timeout_s=1800.0),
}


def profile() -> Profile:
    name = os.environ.get("REBOUND_FAULT_PROFILE", "short")
    if name not in PROFILES:
        pytest.fail(f"REBOUND_FAULT_PROFILE={name!r}: use one of {', '.join(PROFILES)}", pytrace=False)
    return PROFILES[name]


def run_seed() -> int:
    return int(os.environ.get("REBOUND_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))


class Infra:
    """The local Kafka and PostgreSQL, through the project's own scripts."""

    def __init__(self, settings: Settings) -> None:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers) != "127.0.0.1:19092" or \
                os.environ.get("REBOUND_TESTCONTAINERS") == "1":
            pytest.fail("fault scenarios restart the local Kafka and PostgreSQL that `make up` starts;"
                        " unset KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL", pytrace=False)

    @staticmethod
    def _script(name: str, action: str) -> None:
        subprocess.run([str(REPO / "deploy" / "scripts" / name), action], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=180)

    async def kafka(self, action: str) -> None:
        await asyncio.to_thread(self._script, "kafka.sh", action)

    async def postgres(self, action: str) -> None:
        await asyncio.to_thread(self._script, "postgres.sh", action)


@dataclass
class Chaos:
    """What a scenario may do to the running system, with a log of what it did."""

    fleet: Fleet
    infra: Infra
    rng: random.Random
    profile: Profile
    started: float = field(default_factory=time.monotonic)
    done: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.done.append(f"{time.monotonic() - self.started:6.1f}s {what}")

    async def pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high))

    async def kill_and_restart(self, member: ServiceProcess, down_for: tuple[float, float]) -> None:
        member.kill()
        self.note(f"kill -9 {member.name}")
        await self.pause(*down_for)
        self.fleet.restart(member)
        self.note(f"restart {member.name}")

    def pick(self, service: str | None = None) -> ServiceProcess:
        alive = [m for m in self.fleet.members if m.alive() and service in (None, m.service)]
        return self.rng.choice(alive)


Scenario = Callable[[Chaos], Awaitable[None]]


async def run(name: str, scenario: Scenario, settings: Settings, pool: asyncpg.Pool, log_dir: Path,
              *, replicas: int = 1, env: dict[str, str] | None = None, duplicate_rate: float = 0.02,
              bad_rate: float = 0.02) -> None:
    shape = profile()
    seed = run_seed()
    rng = random.Random(seed ^ zlib.crc32(name.encode()))
    console = Console(force_terminal=False, width=120)
    console.print(f"\n[fault scenario] {name}: seed {seed} (replay: REBOUND_FAULT_SEED={seed}), "
                  f"{shape.units:,} units, {replicas} replica(s) per service")
    wave = simulator.generate(simulator.WaveConfig(
        units=shape.units, seed=rng.randrange(1 << 30), duplicate_rate=duplicate_rate, out_of_order_rate=0.05,
        bad_rate=bad_rate,
    ))
    if await pool.fetchval("SELECT count(*) FROM rebound.sellers WHERE seller_id = ANY($1::text[])", wave.sellers):
        pytest.fail(f"seed {seed} already ran against this database, so its wave would be all duplicates: "
                    "replay it on fresh state (make clean-state && make up)", pytrace=False)
    await simulator.register_sellers(settings.database_url, wave.sellers)
    before = await inbound_end_offsets(settings.kafka_bootstrap_servers)
    fleet = Fleet(log_dir=log_dir, replicas=replicas, env={**os.environ, **(env or {})})
    chaos = Chaos(fleet=fleet, infra=Infra(settings), rng=rng, profile=shape)
    fleet.start()
    try:
        await simulator.publish(wave, settings.kafka_bootstrap_servers, progress=False)
        chaos.note(f"wave of {len(wave.messages):,} messages sent")
        await scenario(chaos)
        for member in fleet.dead():  # whatever the scenario left down comes back
            fleet.restart(member)
        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=shape.timeout_s, fleet=fleet)
        chaos.note("caught up")
    finally:
        fleet.stop()
        for line in chaos.done:
            console.print(f"  {line}")
    report = await guarantees(settings.kafka_bootstrap_servers, wave)
    console.print(report.table())
    assert report.ok, f"{name} (seed {seed}): {report.as_dict()}"
    assert report.adjustments >= sum(wave.expected_stock.values()) > 0
    await assert_bad_input_accounted_for(settings.kafka_bootstrap_servers, wave, before)
    assert_no_secret_in_logs(log_dir, {**os.environ, **(env or {})})
