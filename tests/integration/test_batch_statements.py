"""A batch costs each service the same number of SQL statements whatever its size and however
many sellers it holds: what the events need (sellers' rules and policies included) is read up
front and each kind of row is written once per batch. A statement per event (or per seller) is
what made every hop wait on PostgreSQL round trips, so a change that brings one back fails here.
Statements are counted with asyncpg's query logger on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from rebound.db import Connection, create_pool
from rebound.messaging.processor import BatchProcessor
from rebound.service import ServiceSpec
from rebound.grading.app import spec as grading_spec
from rebound.intake.app import spec as intake_spec
from rebound.ledger.app import spec as ledger_spec
from rebound.relisting.app import spec as relisting_spec
from rebound.settings import Settings
from rebound_contracts.topics import PARCEL_SCANNED, RMA, UNIT_GRADED, UNIT_INSPECTED, UNIT_RECEIVED
from tests import factories as f
from tests.factories import Record

from .pipeline import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def pipe(pool) -> Pipeline:
    return Pipeline(pool)


class Counting:
    """A one-connection pool whose statements are counted."""

    def __init__(self) -> None:
        self.statements = 0
        self.queries: list[str] = []

    def _log(self, record: asyncpg.connection.LoggedQuery) -> None:
        self.statements += 1
        self.queries.append(record.query)

    async def _init(self, conn: Connection) -> None:
        conn.add_query_logger(self._log)

    async def processor(self, settings: Settings, spec: ServiceSpec, tag: str) -> BatchProcessor:
        self.pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1, init=self._init)
        return BatchProcessor(f"it-count-{spec.name}-{tag}", spec.routes, self.pool, lock_keys=spec.lock_keys)

    async def statements_for(self, processor: BatchProcessor, records: list[Record]) -> int:
        before = self.statements
        stats = await processor.process(records)
        assert stats.applied == len(records) and stats.exceptions == 0, stats
        return self.statements - before


@pytest.fixture
async def counting() -> AsyncIterator[Counting]:
    counting = Counting()
    yield counting
    await counting.pool.close()


async def _sizes(counting: Counting, processor: BatchProcessor, batch: Callable[[int, int], list[Record]]) -> list[int]:
    """Statements for batches of 1 (to warm up: sellers are looked up once), 5 and 40 events."""
    return [await counting.statements_for(processor, batch(size, n)) for n, size in enumerate((1, 5, 40))]


SELLERS = ("s", "t", "u", "v")


def _locks_taken_by_the_claim(counting: Counting) -> bool:
    """Whether the batches' advisory locks were taken by the inbox claim's statement, not in a
    round trip of their own."""
    locking = [q for q in counting.queries if "pg_advisory_xact_lock" in q]
    return bool(locking) and all("INSERT INTO rebound.inbox" in q for q in locking)


def _seller_of(sellers: list[str], size: int, i: int) -> str:
    """The seller of a batch's i-th event: the bigger batch spreads over more sellers (1, 2, 4)."""
    return sellers[i % {1: 1, 5: 2, 40: 4}[size]]


async def test_intake_statements_do_not_grow_with_the_batch(pipe: Pipeline, counting: Counting, settings: Settings):
    sellers = await pipe.add_sellers(*SELLERS)
    processor = await counting.processor(settings, intake_spec(), pipe.tag)

    def batch(size: int, n: int) -> list[Record]:
        records = []
        for i in range(size):
            seller = _seller_of(sellers, size, i)
            order = f.rma(seller, lines=[("TEE-BLK-M", 1)])
            records.append(pipe.record(order, RMA.name))
            records.append(
                pipe.record(
                    f.scan(seller, order.tracking_number, [(pipe.id(f"L{n}-{i}"), "TEE-BLK-M")]), PARCEL_SCANNED.name
                )
            )
        return records

    _, five, forty = await _sizes(counting, processor, batch)
    assert five == forty
    assert (
        await pipe.pool.fetchval("SELECT count(*) FROM intake.units WHERE seller_id = ANY($1::text[])", sellers) == 46
    )


async def test_grading_statements_do_not_grow_with_the_batch(pipe: Pipeline, counting: Counting, settings: Settings):
    sellers = await pipe.add_sellers(*SELLERS)
    processor = await counting.processor(settings, grading_spec(), pipe.tag)

    def batch(size: int, n: int) -> list[Record]:
        units = [(_seller_of(sellers, size, i), pipe.id(f"L{n}-{i}")) for i in range(size)]
        return [pipe.record(f.received(seller, lpn), UNIT_RECEIVED.name) for seller, lpn in units] + [
            pipe.record(f.inspection(seller, lpn, "A"), UNIT_INSPECTED.name) for seller, lpn in units
        ]

    _, five, forty = await _sizes(counting, processor, batch)
    assert five == forty
    assert (
        await pipe.pool.fetchval(
            "SELECT count(*) FROM grading.units WHERE seller_id = ANY($1::text[]) AND grade = 'A'", sellers
        )
        == 46
    )
    assert _locks_taken_by_the_claim(counting)
    # The sellers' rules are read with the units, not in a round trip of their own.
    rule_reads = [q for q in counting.queries if "grading_rules FROM rebound.sellers" in q]
    assert rule_reads and all("FROM grading.units" in q for q in rule_reads)


async def test_relisting_statements_do_not_grow_with_the_batch(pipe: Pipeline, counting: Counting, settings: Settings):
    sellers = await pipe.add_sellers(*SELLERS)
    processor = await counting.processor(settings, relisting_spec(), pipe.tag)

    def batch(size: int, n: int) -> list[Record]:
        return [
            pipe.record(f.graded(_seller_of(sellers, size, i), pipe.id(f"L{n}-{i}"), "A"), UNIT_GRADED.name)
            for i in range(size)
        ]

    _, five, forty = await _sizes(counting, processor, batch)
    assert five == forty
    assert (
        await pipe.pool.fetchval("SELECT count(*) FROM relisting.decisions WHERE seller_id = ANY($1::text[])", sellers)
        == 46
    )
    # The sellers' policies are read with the units' owners, not in a round trip of their own.
    policy_reads = [q for q in counting.queries if "FROM relisting.policies" in q]
    assert policy_reads and all("FROM relisting.decisions" in q for q in policy_reads)


async def test_ledger_statements_do_not_grow_with_the_batch(pipe: Pipeline, counting: Counting, settings: Settings):
    sellers = await pipe.add_sellers(*SELLERS)
    processor = await counting.processor(settings, ledger_spec(), pipe.tag)
    batches = {
        size: await pipe.decide(
            [
                f.graded(_seller_of(sellers, size, i), pipe.id(f"L{size}-{i}"), "A", sku=f"SKU-{i % 3}")
                for i in range(size)
            ]
        )
        for size in (1, 5, 40)
    }
    _, five, forty = await _sizes(counting, processor, lambda size, _n: batches[size])
    assert five == forty
    assert (
        await pipe.pool.fetchval("SELECT sum(available) FROM ledger.stock WHERE seller_id = ANY($1::text[])", sellers)
        == 46
    )
    # Which keys are blocked is read with their stock counters, not in a round trip of its own.
    blocked_reads = [q for q in counting.queries if "FROM ledger.blocked_listings" in q]
    assert blocked_reads and all("FROM ledger.stock" in q for q in blocked_reads)
    assert _locks_taken_by_the_claim(counting)


async def test_a_connection_given_back_to_the_pool_costs_no_statement(settings: Settings):
    """asyncpg's default pool resets each connection it gets back with a statement of its own:
    one more round trip after every batch."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    statements: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: statements.append(record.query))
            async with conn.transaction():
                await conn.execute("SELECT 1")
        async with pool.acquire() as conn:
            await conn.execute("SELECT 2")
    finally:
        await pool.close()
    assert statements == ["BEGIN;", "SELECT 1", "COMMIT;", "SELECT 2"]
