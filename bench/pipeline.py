"""Rebound end to end: the services as processes, a simulated wave, timed from the first message
sent to the last adjustment readable with read_committed."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from rebound import simulation
from rebound.db import create_pool
from rebound.simulation.fleet import Fleet, wait_until_caught_up
from rebound.settings import Settings
from rebound_contracts import StockAdjusted
from rebound_contracts.topics import DISPOSITIONS, STOCK_ADJUSTMENTS, UNIT_GRADED, UNIT_INSPECTED, UNIT_REFURBISHED

from .cpu import CpuWindow
from .stats import percentiles


class AdjustmentWatcher:
    """Reads storefront.stock-adjustments.v1 with read_committed from its current end, and
    notes when each adjustment of the given sellers became readable."""

    def __init__(self, settings: Settings, sellers: set[str]) -> None:
        self.bootstrap = settings.kafka_bootstrap_servers
        # Held as long as the services hold theirs: a commit ends the hold, and a shorter one
        # only takes CPU from the services under test.
        self.fetch_max_wait_ms = settings.fetch_max_wait_ms
        self.sellers = sellers
        self.seen: list[tuple[float, StockAdjusted]] = []
        self.available: dict[str, int] = {}
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await self._consumer.start()
        partitions = [TopicPartition(STOCK_ADJUSTMENTS.name, p) for p in range(STOCK_ADJUSTMENTS.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # start() makes it before it starts this task
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    adjustment = StockAdjusted.model_validate_json(record.value)
                    if adjustment.seller_id in self.sellers:
                        self.seen.append((now, adjustment))
                        self.available[STOCK_ADJUSTMENTS.key_of(adjustment)] = adjustment.available

    async def wait(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.seen)} adjustments after {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()


async def throughput(settings: Settings, units: int, replicas: int, log_dir: Path, timeout: float) -> dict:
    wave = simulation.generate(simulation.WaveConfig(units=units, seed=random.randrange(1 << 30)))
    expected = sum(wave.expected_stock.values())
    await simulation.register_sellers(settings.database_url, wave.sellers)
    watcher = AdjustmentWatcher(settings, set(wave.sellers))
    await watcher.start()
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        with Fleet(log_dir=log_dir, replicas=replicas) as fleet:
            await asyncio.sleep(3.0)  # let the consumer groups settle before the clock starts
            started = time.time()
            await simulation.publish(wave, settings.kafka_bootstrap_servers, progress=False)
            await watcher.wait(lambda: sum(watcher.available.values()) == expected, timeout)
            finished = watcher.seen[-1][0]
            await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=timeout, fleet=fleet)
            rss = fleet.peak_rss_mb()
        elapsed = finished - started
        return {
            "units": units,
            "replicas": replicas,
            "messages": len(wave.messages),
            "adjustments": len(watcher.seen),
            "seconds": round(elapsed, 2),
            "units_per_s": round(units / elapsed, 1),
            "peak_rss_mb": rss,
        }
    finally:
        await watcher.stop()
        await pool.close()


def _split(wave: simulation.Wave, *, refurbishments: bool = False) -> tuple[simulation.Wave, list]:
    """The wave without its inspections and refurbishments (what intake needs first), and its
    inspections (with the refurbishments, in the wave's order, if asked)."""
    later = {UNIT_INSPECTED.name, UNIT_REFURBISHED.name}
    prep = [m for m in wave.messages if m.topic not in later]
    sent = [
        m
        for m in wave.messages
        if m.topic == UNIT_INSPECTED.name or (refurbishments and m.topic == UNIT_REFURBISHED.name)
    ]
    return simulation.Wave(**{**wave.__dict__, "messages": prep}), sent


async def inspections(settings: Settings, units: int, replicas: int, log_dir: Path, timeout: float) -> dict:
    """The step the ceiling measures, through Rebound: returns, parcels and units are registered
    first; then every inspection is sent at once, timed from the first one sent to the last
    adjustment readable with read_committed (grading, relisting and the ledger, three hops)."""
    wave = simulation.generate(simulation.WaveConfig(units=units, seed=random.randrange(1 << 30), reinspect_rate=0.0))
    await simulation.register_sellers(settings.database_url, wave.sellers)
    prep, sent = _split(wave, refurbishments=True)
    expected = sum(wave.expected_stock.values())
    units = sum(1 for m in sent if m.topic == UNIT_INSPECTED.name)
    pool = await create_pool(settings.database_url, max_size=2)
    watcher = AdjustmentWatcher(settings, set(wave.sellers))
    try:
        with Fleet(log_dir=log_dir, replicas=replicas) as fleet:
            await simulation.publish(prep, settings.kafka_bootstrap_servers, progress=False)
            await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=timeout, fleet=fleet)
            await watcher.start()
            started = time.time()
            await simulation.publish(
                simulation.Wave(**{**wave.__dict__, "messages": sent}), settings.kafka_bootstrap_servers, progress=False
            )
            await watcher.wait(lambda: sum(watcher.available.values()) == expected, timeout)
            finished = watcher.seen[-1][0]
            rss = fleet.peak_rss_mb()
        elapsed = finished - started
        return {
            "units": units,
            "replicas": replicas,
            "adjustments": len(watcher.seen),
            "seconds": round(elapsed, 2),
            "units_per_s": round(units / elapsed, 1),
            "peak_rss_mb": rss,
        }
    finally:
        await watcher.stop()
        await pool.close()


PATH = (
    (UNIT_INSPECTED, "rebound-grading"),
    (UNIT_GRADED, "rebound-relisting"),
    (DISPOSITIONS, "rebound-ledger"),
    (STOCK_ADJUSTMENTS, None),
)
"""The hops from inspection to adjustment: each topic, and the consumer that takes it on."""


async def _ends(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.end_offsets([TopicPartition(t.name, p) for t, _ in PATH for p in range(t.partitions)])
    finally:
        await consumer.stop()


async def _records_since(bootstrap: str, start: dict[TopicPartition, int]) -> dict[tuple[str, str], tuple]:
    """(topic, lpn) -> (partition, offset, record time in s) of the first record of each unit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        found: dict[tuple[str, str], tuple] = {}
        while [tp for tp in start if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    document = orjson.loads(r.value)
                    lpn = document.get("lpn") or document["cause"]["lpn"]
                    found.setdefault((tp.topic, lpn), (tp.partition, r.offset, r.timestamp / 1000))
        return found
    finally:
        await consumer.stop()


async def hops(
    bootstrap: str, pool: asyncpg.Pool, start: dict[TopicPartition, int], readable: dict[str, float]
) -> dict:
    """Where each unit's time went, hop by hop: from a record's timestamp (when its producer built
    it: the benchmark for inspections, a relay for the rest) to the transaction of the consumer
    that applied it (the inbox's processed_at: the Kafka commit, the fetch and the batches before
    it), and from that transaction to the record it emitted (applying, committing, the relay's
    read of the outbox). p50, p95, p99 and max in ms, over the units whose every hop was found."""
    records = await _records_since(bootstrap, start)
    applied = {
        (r["consumer"], r["topic"], r["partition"], r["offset"]): r["processed_at"].timestamp()
        for r in await pool.fetch(
            'SELECT consumer, topic, partition, "offset", processed_at FROM rebound.inbox'
            " WHERE consumer = ANY($1::text[]) AND processed_at > now() - interval '1 hour'",
            [consumer for _, consumer in PATH if consumer],
        )
    }
    spans: dict[str, list[float]] = {}
    for lpn, seen in readable.items():
        times = []
        try:
            for topic, consumer in PATH:
                partition, offset, stamped = records[(topic.name, lpn)]
                times.append((f"{topic.name} record", stamped))
                if consumer:
                    times.append(
                        (
                            f"{consumer.removeprefix('rebound-')} transaction",
                            applied[(consumer, topic.name, partition, offset)],
                        )
                    )
        except KeyError:
            continue  # e.g. the inbox row was pruned: this unit says nothing of the hops
        times.append(("readable", seen))
        for (a, at), (b, bt) in zip(times, times[1:]):
            spans.setdefault(f"{a} → {b}", []).append((bt - at) * 1000)
    return {name: percentiles(sorted(values)) for name, values in spans.items()}


IDLE_SETTLE_S = 15.0
"""How long the fleet has had nothing to do before its idle CPU is measured. What a wave leaves
behind once its last record is applied (offset commits, the relays forgetting what they sent,
the broker's transaction markers) is not idle: idle is what a fleet with nothing to do keeps
paying."""


def _restamped(value: bytes, now: datetime) -> bytes:
    document = orjson.loads(value)
    document["occurred_at"] = now.isoformat()
    return orjson.dumps(document)


async def latency(
    settings: Settings, units_per_s: float, seconds: float, log_dir: Path, *, cpu: bool = False, idle_s: float = 0.0
) -> dict:
    """Inspections offered at a fixed rate, each stamped with the moment it is sent; latency is
    from that `occurred_at` to its adjustment being readable with read_committed. With `cpu`, the
    CPU the machine and each process used while the units were sent (`cpu`), and before that,
    with nothing sent, for `idle_s` (`idle`), once the fleet has had nothing to do for
    IDLE_SETTLE_S."""
    units = max(50, int(units_per_s * seconds))
    wave = simulation.generate(simulation.WaveConfig(units=units, seed=random.randrange(1 << 30), reinspect_rate=0.0))
    await simulation.register_sellers(settings.database_url, wave.sellers)
    prep, sent = _split(wave)
    expected = {lpn for lpn, grade in wave.expected_grades.items() if grade in ("A", "B")}
    pool = await create_pool(settings.database_url, max_size=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=0
    )
    watcher = AdjustmentWatcher(settings, set(wave.sellers))
    try:
        with Fleet(log_dir=log_dir) as fleet:
            await simulation.publish(prep, settings.kafka_bootstrap_servers, progress=False)
            await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=600, fleet=fleet)
            start = await _ends(settings.kafka_bootstrap_servers)
            await watcher.start()
            await producer.start()
            idle = CpuWindow(fleet)
            if cpu and idle_s:
                await asyncio.sleep(IDLE_SETTLE_S)
                idle.begin()
                await asyncio.sleep(idle_s)
                idle.end()
            window = CpuWindow(fleet)
            window.begin()
            sent_at: dict[str, float] = {}
            interval = 1.0 / units_per_s
            begin = time.perf_counter()
            for i, message in enumerate(sent):
                await asyncio.sleep(max(0.0, begin + i * interval - time.perf_counter()))
                now = datetime.now(UTC)
                sent_at[message.key.decode()] = now.timestamp()
                await producer.send(message.topic, _restamped(message.value, now), key=message.key)
            await producer.flush()
            window.end()
            firsts: dict[str, float] = {}
            cursor = 0

            def all_seen() -> bool:
                nonlocal cursor
                for at, adjustment in watcher.seen[cursor:]:
                    firsts.setdefault(adjustment.cause.lpn, at)
                cursor = len(watcher.seen)
                return expected <= firsts.keys()

            await watcher.wait(all_seen, timeout=300)
        samples = sorted((firsts[lpn] - sent_at[lpn]) * 1000 for lpn in expected)
        by_hop = await hops(settings.kafka_bootstrap_servers, pool, start, {lpn: firsts[lpn] for lpn in expected})
        measured = {
            "offered_units_per_s": round(units_per_s, 1),
            "units": len(samples),
            **percentiles(samples),
            "hops": by_hop,
        }
        if cpu:
            measured["cpu"] = window.as_dict(len(sent))
            if idle_s:
                measured["idle"] = idle.as_dict(0)
        return measured
    finally:
        await watcher.stop()
        await producer.stop()
        await pool.close()
