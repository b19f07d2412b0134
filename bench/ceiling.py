"""The ceiling: the core step with no framework. aiokafka consumes inspection events, asyncpg
writes the rows the pipeline writes for them (inbox, unit, stock counter, outbox) in one
transaction per batch, and a transactional producer emits one adjustment per unit."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from rebound.messaging.relay import shorten_concurrent_transactions_retry

PARTITIONS = 6
BATCH = 500


async def _fill(bootstrap: str, topic: str, units: int, run: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10)
    await producer.start()
    try:
        now = datetime.now(UTC).isoformat()
        futures = []
        for i in range(units):
            lpn = f"BENCH-{run}-{i}"
            value = orjson.dumps({
                "event_id": str(uuid.uuid4()), "occurred_at": now, "seller_id": f"bench-{run}",
                "warehouse_id": "W1", "lpn": lpn, "inspector_id": "qc",
                "checks": {"packaging": "intact", "appearance": "as_new", "function": "works",
                           "accessories": "complete", "irreparable": False},
            })
            futures.append(await producer.send(topic, value, key=lpn.encode()))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def measure(bootstrap: str, database_url: str, units: int) -> dict:
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench.ceiling.{run}.in", f"bench.ceiling.{run}.out"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (source, sink)])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await _fill(bootstrap, source, units, run)
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"bench-{run}",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed", max_poll_records=BATCH)
        shorten_concurrent_transactions_retry()  # as the relays do
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"bench-{run}",
                                    enable_idempotence=True, acks="all", linger_ms=5)
        await consumer.start()
        await producer.start()
        done, started = 0, None
        sequence = 0
        try:
            while done < units:
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                started = started or time.perf_counter()
                events = [orjson.loads(r.value) for r in records]
                async with pool.acquire() as conn, conn.transaction():
                    await conn.executemany(
                        "INSERT INTO rebound.inbox (consumer, event_id, fingerprint, topic, partition, \"offset\")"
                        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                        [(f"bench-{run}", uuid.UUID(e["event_id"]), b"x", r.topic, r.partition, r.offset)
                         for e, r in zip(events, records, strict=True)],
                    )
                    await conn.executemany(
                        "INSERT INTO grading.units (lpn, seller_id, inspection, grade, reasons, revision)"
                        " VALUES ($1, $2, $3, 'A', '{}', 1) ON CONFLICT (lpn) DO UPDATE SET revision = 2",
                        [(e["lpn"], e["seller_id"], orjson.dumps(e["checks"]).decode()) for e in events],
                    )
                    key = f"bench-{run}:tiktok:W1:SKU:new"
                    await conn.execute(
                        "INSERT INTO ledger.stock AS s (key, seller_id, shop_id, channel, warehouse_id, sku, condition,"
                        " available, sequence) VALUES ($1, $2, 'shop', 'tiktok', 'W1', 'SKU', 'new', $3::int, $3::int)"
                        " ON CONFLICT (key) DO UPDATE SET available = s.available + $3::int, sequence = s.sequence + $3::int",
                        key, f"bench-{run}", len(events),
                    )
                    adjustments = []
                    for e in events:
                        sequence += 1
                        adjustments.append((e["lpn"], orjson.dumps({"lpn": e["lpn"], "delta": 1, "sequence": sequence})))
                    ids = await conn.fetch(
                        "INSERT INTO rebound.outbox (producer, topic, key, payload)"
                        " SELECT $1, $2, k, p FROM unnest($3::text[], $4::bytea[]) AS t(k, p) RETURNING id",
                        f"bench-{run}", sink, [a[0] for a in adjustments], [a[1] for a in adjustments],
                    )
                async with producer.transaction():
                    futures = [await producer.send(sink, payload, key=k.encode()) for k, payload in adjustments]
                    await asyncio.gather(*futures)
                await pool.execute("DELETE FROM rebound.outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in ids])
                await consumer.commit()
                done += len(records)
            elapsed = time.perf_counter() - started
        finally:
            await consumer.stop()
            await producer.stop()
        return {"units": units, "seconds": round(elapsed, 2), "units_per_s": round(units / elapsed, 1)}
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM rebound.inbox WHERE consumer = $1", f"bench-{run}")
            await conn.execute("DELETE FROM grading.units WHERE seller_id = $1", f"bench-{run}")
            await conn.execute("DELETE FROM ledger.stock WHERE seller_id = $1", f"bench-{run}")
        await pool.close()
        await admin.delete_topics([source, sink])
        await admin.close()
