"""The ceiling: the core step with no framework. aiokafka consumes inspection events, asyncpg
writes the rows the pipeline writes for them (inbox, unit, stock counter, outbox) in one
transaction per batch, and a transactional producer emits one adjustment per unit.

The same loop chained three times, one process per hop as the services run, is what three hops
cost on this machine without Rebound: the first two hops send as Rebound sends grades and
dispositions (acknowledged, idempotent, no transaction), the last in a transaction. Its
units/s is what three hops can do here when each does no more than the core step."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from queue import Empty
from typing import TypeVar

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from rebound.messaging.relay import DELETE_SENT, connect_leader, shorten_concurrent_transactions_retry

from .cpu import CpuWindow
from .stats import percentiles

T = TypeVar("T")

PARTITIONS = 6
BATCH = 500
COMMIT_EVERY_S = 0.5  # a paced hop's offsets, as the services commit theirs


@dataclass(frozen=True)
class Hop:
    """One bare loop: from `source` to `sink`, as consumer, producer and stock key `name`."""

    run: str
    number: int
    source: str
    sink: str
    transactional: bool
    paced: bool = False
    """Tuned for latency as the services are: sends do not linger, held fetches end after 100 ms,
    offsets are committed at most every 500 ms. Without it, tuned for throughput."""

    @property
    def name(self) -> str:
        return f"bench-{self.run}-{self.number}"

    @property
    def seller_id(self) -> str:
        return f"bench-{self.run}"


def _chain(run: str, hops: int, *, paced: bool = False) -> list[Hop]:
    topics = [
        f"bench.ceiling.{run}.in",
        *(f"bench.ceiling.{run}.hop{n}" for n in range(1, hops)),
        f"bench.ceiling.{run}.out",
    ]
    return [Hop(run, n + 1, topics[n], topics[n + 1], transactional=n + 1 == hops, paced=paced) for n in range(hops)]


def _inspection(run: str, i: int, now: str) -> tuple[bytes, bytes]:
    lpn = f"BENCH-{run}-{i}"
    return lpn.encode(), orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": now,
            "seller_id": f"bench-{run}",
            "warehouse_id": "W1",
            "lpn": lpn,
            "inspector_id": "qc",
            "checks": {
                "packaging": "intact",
                "appearance": "as_new",
                "function": "works",
                "accessories": "complete",
                "irreparable": False,
            },
        }
    )


async def _fill(bootstrap: str, topic: str, units: int, run: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10)
    await producer.start()
    try:
        now = datetime.now(UTC).isoformat()
        futures = []
        for i in range(units):
            key, value = _inspection(run, i, now)
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _apply(
    pool: asyncpg.Pool, hop: Hop, records: list, sequence: int
) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """One batch's transaction: inbox, unit and stock rows, and the outbox rows of what it emits."""
    events = [orjson.loads(r.value) for r in records]
    emitted = []
    for e in events:
        sequence += 1
        if hop.transactional:  # the adjustment, as the one-hop ceiling has always emitted it
            emitted.append((e["lpn"], orjson.dumps({"lpn": e["lpn"], "delta": 1, "sequence": sequence})))
        else:  # an event the next hop reads as it reads an inspection
            emitted.append(
                (
                    e["lpn"],
                    orjson.dumps(
                        {
                            "event_id": str(uuid.uuid4()),
                            "occurred_at": e["occurred_at"],
                            "seller_id": e["seller_id"],
                            "lpn": e["lpn"],
                            "checks": e["checks"],
                            "delta": 1,
                            "sequence": sequence,
                        }
                    ),
                )
            )
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            'INSERT INTO rebound.inbox (consumer, seller_id, event_id, fingerprint, topic, partition, "offset")'
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                (hop.name, e["seller_id"], uuid.UUID(e["event_id"]), b"x", r.topic, r.partition, r.offset)
                for e, r in zip(events, records, strict=True)
            ],
        )
        await conn.executemany(
            "INSERT INTO grading.units (lpn, seller_id, inspection, grade, reasons, revision)"
            " VALUES ($1, $2, $3, 'A', '{}', 1) ON CONFLICT (lpn) DO UPDATE SET revision = 2",
            [(f"{e['lpn']}/{hop.number}", e["seller_id"], orjson.dumps(e["checks"]).decode()) for e in events],
        )
        await conn.execute(
            "INSERT INTO ledger.stock AS s (key, seller_id, shop_id, channel, warehouse_id, sku, condition,"
            " available, sequence) VALUES ($1, $2, 'shop', 'tiktok', 'W1', 'SKU', 'new', $3::int, $3::int)"
            " ON CONFLICT (key) DO UPDATE SET available = s.available + $3::int, sequence = s.sequence + $3::int",
            f"{hop.name}:tiktok:W1:SKU:new",
            hop.seller_id,
            len(events),
        )
        ids = await conn.fetch(
            "INSERT INTO rebound.outbox (producer, topic, key, payload)"
            " SELECT $1, $2, k, p FROM unnest($3::text[], $4::bytea[]) AS t(k, p) RETURNING id",
            hop.name,
            hop.sink,
            [k for k, _ in emitted],
            [p for _, p in emitted],
        )
    return [(k.encode(), p) for k, p in emitted], [r["id"] for r in ids]


async def _send(producer: AIOKafkaProducer, hop: Hop, emitted: list[tuple[bytes, bytes]]) -> None:
    async def out() -> None:
        futures = [await producer.send(hop.sink, payload, key=key) for key, payload in emitted]
        await asyncio.gather(*futures)

    if hop.transactional:
        async with producer.transaction():
            await out()
    else:
        await out()


async def _loop(
    bootstrap: str,
    database_url: str,
    hop: Hop,
    units: int,
    ready: multiprocessing.Queue[int] | None = None,
    go: EventType | None = None,
) -> tuple[float, float]:
    """Run one hop until it has carried `units`; (first batch, last batch done) in epoch seconds.
    In a chain it says when its clients are up (`ready`, a queue) and waits for `go` (an event)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    relay = await connect_leader(database_url)  # deletes what was sent, planned as the relays' statements are
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=hop.name,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=BATCH,
        fetch_max_wait_ms=100 if hop.paced else 500,
    )
    shorten_concurrent_transactions_retry()  # as the relays do
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=0 if hop.paced else 5,
        transactional_id=hop.name if hop.transactional else None,
    )
    await consumer.start()
    await producer.start()
    partitions = [TopicPartition(hop.source, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    if ready is not None and go is not None:
        ready.put(hop.number)
        await asyncio.to_thread(go.wait)
    done, sequence, started, committed = 0, 0, None, time.monotonic()
    try:
        while done < units:
            batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            started = started or time.time()
            emitted, ids = await _apply(pool, hop, records, sequence)
            sequence += len(records)
            await _send(producer, hop, emitted)
            await relay.execute(DELETE_SENT, ids, hop.name, min(ids), max(ids))  # as the relays forget a sent batch
            done += len(records)
            if not hop.paced or done >= units or time.monotonic() - committed >= COMMIT_EVERY_S:
                await consumer.commit()
                committed = time.monotonic()
        assert started is not None  # units > 0: the loop took at least one batch
        return started, time.time()
    finally:
        await consumer.stop()
        await producer.stop()
        await relay.close()
        await pool.close()


def _hop_process(
    bootstrap: str,
    database_url: str,
    hop: Hop,
    units: int,
    ready: multiprocessing.Queue[int],
    go: EventType,
    results: multiprocessing.Queue[tuple[int, tuple[float, float]]],
) -> None:
    results.put((hop.number, asyncio.run(_loop(bootstrap, database_url, hop, units, ready, go))))


class _Chain:
    """Hops as processes, started and waiting for one signal, so none of them pays its start-up
    inside the measurement."""

    def __init__(self, bootstrap: str, database_url: str, hops: list[Hop], units: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.go, self.ready, self.results = context.Event(), context.Queue(), context.Queue()
        self.processes = [
            context.Process(
                target=_hop_process,
                daemon=True,
                args=(bootstrap, database_url, hop, units, self.ready, self.go, self.results),
            )
            for hop in hops
        ]

    async def start(self) -> None:
        for process in self.processes:
            process.start()
        for _ in self.processes:
            await self._get(self.ready, 120)
        self.go.set()

    def pids(self) -> list[int]:
        """The hops' process ids, in chain order (once started)."""
        return [p.pid for p in self.processes if p.pid is not None]

    async def finish(self, timeout: float) -> dict[int, tuple[float, float]]:
        times = dict([await self._get(self.results, timeout) for _ in self.processes])
        for process in self.processes:
            process.join(10)
        return times

    async def _get(self, queue: multiprocessing.Queue[T], timeout: float) -> T:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return queue.get_nowait()
            except Empty:
                dead = [p for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a hop of the chain exited with code {dead[0].exitcode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the chain did not answer within {timeout:.0f} s") from None
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()


async def _topics(bootstrap: str, hops: list[Hop]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in [hops[0].source, *(h.sink for h in hops)]])
    return admin


async def _clean(database_url: str, admin: AIOKafkaAdminClient, hops: list[Hop]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM rebound.inbox WHERE consumer = ANY($1::text[])", [h.name for h in hops])
        await conn.execute("DELETE FROM rebound.outbox WHERE producer = ANY($1::text[])", [h.name for h in hops])
        await conn.execute("DELETE FROM grading.units WHERE seller_id = $1", hops[0].seller_id)
        await conn.execute("DELETE FROM ledger.stock WHERE seller_id = $1", hops[0].seller_id)
    finally:
        await conn.close()
    await admin.delete_topics([hops[0].source, *(h.sink for h in hops)])
    await admin.close()


async def measure(bootstrap: str, database_url: str, units: int) -> dict:
    """One hop, in this process: the core step's units/s."""
    hops = _chain(uuid.uuid4().hex[:8], 1)
    admin = await _topics(bootstrap, hops)
    try:
        await _fill(bootstrap, hops[0].source, units, hops[0].run)
        started, finished = await _loop(bootstrap, database_url, hops[0], units)
        elapsed = finished - started
        return {"units": units, "seconds": round(elapsed, 2), "units_per_s": round(units / elapsed, 1)}
    finally:
        await _clean(database_url, admin, hops)


async def measure_chain(bootstrap: str, database_url: str, units: int, hops: int = 3) -> dict:
    """`hops` bare loops in series, a process each, all inspections waiting: from the first
    batch of the first hop to the last batch of the last."""
    chain = _chain(uuid.uuid4().hex[:8], hops)
    admin = await _topics(bootstrap, chain)
    processes = _Chain(bootstrap, database_url, chain, units)
    try:
        await _fill(bootstrap, chain[0].source, units, chain[0].run)
        await processes.start()
        times = await processes.finish(timeout=1800)
        elapsed = times[hops][1] - times[1][0]
        return {"units": units, "hops": hops, "seconds": round(elapsed, 2), "units_per_s": round(units / elapsed, 1)}
    finally:
        processes.stop()
        await _clean(database_url, admin, chain)


async def _read_until(bootstrap: str, topic: str, keys: set[bytes], timeout: float) -> dict[bytes, float]:
    """When each key was first readable on `topic` with read_committed (epoch seconds)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed", fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: dict[bytes, float] = {}
        deadline = time.monotonic() + timeout
        while not keys <= seen.keys():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(keys - seen.keys())} of {len(keys)} units not out of the chain in {timeout:.0f} s"
                )
            batches = await consumer.getmany(timeout_ms=200)
            at = time.time()
            for records in batches.values():
                for record in records:
                    seen.setdefault(record.key, at)
        return seen
    finally:
        await consumer.stop()


async def measure_chain_latency(
    bootstrap: str,
    database_url: str,
    units_per_s: float,
    seconds: float,
    hops: int = 3,
    warm_up: int = 100,
    *,
    cpu: bool = False,
) -> dict:
    """Inspections offered to `hops` bare loops in series at a fixed rate, each hop tuned for
    latency as the services are: from each inspection's send to its adjustment being readable.
    `warm_up` units go through first, one at a time, so that no hop's first fetch, metadata
    lookup or transaction is among the samples. With `cpu`, the CPU the machine, Kafka,
    PostgreSQL and each hop's process used while the units were sent, as the light-load step
    measures Rebound's (`cpu`)."""
    units = max(50, int(units_per_s * seconds))
    chain = _chain(uuid.uuid4().hex[:8], hops, paced=True)
    admin = await _topics(bootstrap, chain)
    processes = _Chain(bootstrap, database_url, chain, warm_up + units)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    run, out = chain[0].run, chain[-1].sink

    async def send(i: int) -> tuple[bytes, float]:
        now = datetime.now(UTC)
        key, value = _inspection(run, i, now.isoformat())
        await producer.send(chain[0].source, value, key=key)
        return key, now.timestamp()

    try:
        await processes.start()
        await producer.start()
        for i in range(warm_up):
            key, _ = await send(i)
            await _read_until(bootstrap, out, {key}, timeout=60)
        keys = {_inspection(run, i, "")[0] for i in range(warm_up, warm_up + units)}
        reader = asyncio.create_task(_read_until(bootstrap, out, keys, timeout=seconds + 300))
        window = CpuWindow(others={f"hop {hop.number}": pid for hop, pid in zip(chain, processes.pids(), strict=True)})
        if cpu:
            window.begin()
        sent_at: dict[bytes, float] = {}
        interval = 1.0 / units_per_s
        begin = time.perf_counter()
        for n, i in enumerate(range(warm_up, warm_up + units)):
            await asyncio.sleep(max(0.0, begin + n * interval - time.perf_counter()))
            key, at = await send(i)
            sent_at[key] = at
        await producer.flush()
        if cpu:
            window.end()
        seen = await reader
        await processes.finish(timeout=60)
        samples = sorted((seen[key] - sent_at[key]) * 1000 for key in keys)
        measured = {"offered_units_per_s": round(units_per_s, 1), "units": units, "hops": hops, **percentiles(samples)}
        if cpu:
            measured["cpu"] = window.as_dict(units)
        return measured
    finally:
        await producer.stop()
        processes.stop()
        await _clean(database_url, admin, chain)
