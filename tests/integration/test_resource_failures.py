"""Errors classified by what they mean, against the real PostgreSQL: a statement or lock timeout is
retried, a record that keeps failing for want of resources is parked (kept, reported, applied again
on command), a batch that keeps failing is split, and a batch's advisory locks are bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from rebound.grading.adapters import PostgresGradingRepository
from rebound.messaging.processor import BatchProcessor, Context, Route
from rebound_contracts import UnitInspected
from rebound_contracts.topics import DLQ, EXCEPTIONS, UNIT_INSPECTED
from tests import factories as f
from tests.integration.pipeline import Pipeline


@pytest.fixture
def pipe(pool) -> Pipeline:
    return Pipeline(pool)


def processor(pipe: Pipeline, name: str, handle, **options) -> BatchProcessor:
    return BatchProcessor(
        f"it-{name}-{pipe.tag}", [Route(UNIT_INSPECTED, handle, PostgresGradingRepository)], pipe.pool, **options
    )


async def claimed(pipe: Pipeline, consumer: str, event: UnitInspected) -> bool:
    query = "SELECT EXISTS (SELECT 1 FROM rebound.inbox WHERE consumer = $1 AND event_id = $2)"
    return await pipe.pool.fetchval(query, consumer, event.event_id)


async def test_a_record_that_keeps_timing_out_is_parked_reported_and_applied_again_on_command(
    pipe: Pipeline,
) -> None:
    [seller] = await pipe.add_sellers("s")
    slow = {"on": True}
    tries: list[str] = []

    async def handle(ctx: Context, event: UnitInspected, _repo: object) -> None:
        tries.append(event.lpn)
        if event.lpn.startswith("SLOW") and slow["on"]:
            await ctx.conn.execute("SET LOCAL statement_timeout = '20ms'")
            await ctx.conn.execute("SELECT pg_sleep(1)")

    parking = processor(pipe, "park", handle, attempts=2)
    first, stuck, last = (f.inspection(seller, pipe.id(name)) for name in ("L1", "SLOW", "L2"))
    records = [pipe.record(e, UNIT_INSPECTED.name) for e in (first, stuck, last)]
    stats = await parking.process(records)
    assert (stats.applied, stats.parked, stats.dead_lettered) == (2, 1, 0)
    assert tries.count(stuck.lpn) >= 2  # tried with its batch, in a half, then alone, twice
    [reported] = [e.event for e in await pipe.take_outbox(parking) if e.topic == EXCEPTIONS.name]
    assert (reported.kind, reported.source_event_id) == ("processing_parked", stuck.event_id)
    assert reported.seller_id == seller
    assert "QueryCanceledError" in reported.detail and parking.consumer in reported.detail
    row = await pipe.pool.fetchrow(
        'SELECT topic, partition, "offset", value, attempts, error FROM rebound.parked_records WHERE consumer = $1',
        parking.consumer,
    )
    assert row is not None
    assert (row["topic"], row["offset"], bytes(row["value"])) == (
        UNIT_INSPECTED.name,
        records[1].offset,
        records[1].value,
    )
    assert row["attempts"] == 2 and "statement timeout" in row["error"]
    assert not await claimed(pipe, parking.consumer, stuck)  # its event_id stays free for the retry

    again = await parking.process(records)  # redelivered: applied or parked once, nothing twice
    assert (again.applied, again.duplicates, again.parked) == (0, 2, 0)
    assert await pipe.take_outbox(parking) == []

    still = await parking.retry_parked()  # the cause is not fixed: it stays, with its new count
    assert [(r.offset, r.outcome) for r in still] == [(records[1].offset, "parked")]
    assert (
        await pipe.pool.fetchval("SELECT attempts FROM rebound.parked_records WHERE consumer = $1", parking.consumer)
        == 4
    )

    slow["on"] = False
    [retried] = await parking.retry_parked()
    assert (retried.offset, retried.outcome) == (records[1].offset, "applied")
    assert await claimed(pipe, parking.consumer, stuck)
    assert await parking.retry_parked() == []  # forgotten once applied
    assert (
        await pipe.pool.fetchval("SELECT count(*) FROM rebound.parked_records WHERE consumer = $1", parking.consumer)
        == 0
    )


async def test_a_lock_timeout_is_retried_instead_of_dead_lettered(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    resource = f"lock-{pipe.tag}"

    async def handle(ctx: Context, event: UnitInspected, _repo: object) -> None:
        await ctx.conn.execute("SET LOCAL lock_timeout = '50ms'")
        await ctx.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", resource)

    waiting = processor(pipe, "lock", handle, attempts=100)
    holder = await pipe.pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", resource)

        async def release_soon() -> None:
            await asyncio.sleep(0.5)
            await holder.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", resource)

        releasing = asyncio.create_task(release_soon())
        event = f.inspection(seller, pipe.id("L1"))
        stats = await waiting.process([pipe.record(event, UNIT_INSPECTED.name)])
        await releasing
    finally:
        await pipe.pool.release(holder)
    assert (stats.applied, stats.dead_lettered, stats.parked) == (1, 0, 0)
    assert [e.topic for e in await pipe.take_outbox(waiting) if e.topic in (DLQ.name, EXCEPTIONS.name)] == []


async def test_a_failing_batch_is_split_so_the_record_at_fault_is_found_in_few_transactions(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    attempts: list[int] = []
    transactions: set[int] = set()

    async def handle(ctx: Context, event: UnitInspected, _repo: object) -> None:
        transactions.add(await ctx.conn.fetchval("SELECT txid_current()"))
        if event.lpn.startswith("BAD"):
            attempts.append(1)
            raise RuntimeError("this record cannot be applied")

    splitting = processor(pipe, "split", handle)
    events = [f.inspection(seller, pipe.id(f"L{n}")) for n in range(63)] + [f.inspection(seller, pipe.id("BAD"))]
    stats = await splitting.process([pipe.record(e, UNIT_INSPECTED.name) for e in events])
    assert (stats.applied, stats.dead_lettered) == (63, 1)
    # 64 records: the whole batch, then halves of 32, 16, 8, 4 and 2, then the record alone;
    # each failing half's other half applied once: 13 transactions, not one per record
    assert len(attempts) == 7
    assert len(transactions) == 1 + 2 * 6
    [letter] = [e.event for e in await pipe.take_outbox(splitting) if e.topic == DLQ.name]
    assert letter.kind == "processing_failed" and "cannot be applied" in letter.error


async def test_a_batch_takes_at_most_its_budget_of_advisory_locks_per_transaction(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    transactions: dict[str, int] = {}

    async def handle(ctx: Context, event: UnitInspected, _repo: object) -> None:
        transactions[event.lpn] = await ctx.conn.fetchval("SELECT txid_current()")
        held = await ctx.conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert held <= 2, held

    def lock_keys(event: UnitInspected) -> Iterable[str]:
        return (f"lpn:{event.lpn}",)

    budget = processor(pipe, "locks", handle, lock_keys=lock_keys, max_locks=2)
    events = [f.inspection(seller, pipe.id(f"L{n}")) for n in range(5)]
    stats = await budget.process([pipe.record(e, UNIT_INSPECTED.name) for e in events])
    assert stats.applied == 5
    assert [transactions[e.lpn] for e in events].count(transactions[events[0].lpn]) == 2
    assert len(set(transactions.values())) == 3  # 2 + 2 + 1 locks
