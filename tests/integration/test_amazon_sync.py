"""The connectors' sync loop against the real PostgreSQL and the Amazon stand-in over loopback
HTTP: a write is queued and applied later, and the sales come from Orders v0 at its documented
quota, so a write's check waits until the orders are known as far as the number it read."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from rebound.connectors.app import Shops, spec
from rebound.connectors.sync import Syncer
from rebound.messaging.processor import BatchProcessor
from rebound.standins import serving
from rebound.standins.amazon import AmazonStandIn
from rebound.standins.shops import AmazonShops, open_amazon_shops
from rebound_contracts.topics import ACKS, STOCK_ADJUSTMENTS
from tests import factories as f

pytestmark = pytest.mark.integration


@dataclass
class World:
    pool: asyncpg.Pool
    market: AmazonStandIn
    shops: AmazonShops
    syncer: Syncer
    processor: BatchProcessor
    seller: str

    def key(self, sku: str) -> str:
        return f"{self.seller}:amazon:W1:{sku}:new"

    def listing(self, sku: str):
        self.market.apply_due()
        [ids] = [ids for ids, key in self.shops.keys.items() if key == self.key(sku)]
        return self.market.state.listings[ids]

    async def send(self, *adjustments) -> None:
        await self.processor.process(
            [
                f.Record(STOCK_ADJUSTMENTS.name, a.model_dump_json().encode(), 0, n, b"k")
                for n, a in enumerate(adjustments, start=1)
            ]
        )

    async def intent(self, sku: str) -> dict | None:
        intent = await self.pool.fetchval("SELECT intent FROM connectors.listings WHERE key = $1", self.key(sku))
        return orjson.loads(intent) if intent else None

    async def sync(self) -> None:
        while await self.syncer.round():
            pass


@pytest.fixture
async def world(pool, tmp_path: Path) -> AsyncIterator[World]:
    seller = f"amzn-{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    market = AmazonStandIn(seed=4)
    market.state.faults.accept_delay_s = 0.05
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        shops = await open_amazon_shops(pool, market, url, {seller: f"shop-{seller}"}, ["W1"], ["TEE", "CAP"], tmp_path)
        producer = f"it-amazon-{seller}"
        try:
            yield World(
                pool,
                market,
                shops,
                Syncer(pool, producer, Shops(pool, client)),
                BatchProcessor(producer, spec().routes, pool),
                seller,
            )
        finally:  # the stand-in stops with the test: no connector may keep calling it
            await pool.execute("DELETE FROM connectors.shops WHERE seller_id = $1", seller)
            await pool.execute("DELETE FROM rebound.outbox WHERE producer = $1", producer)


async def test_a_queued_write_lands_and_a_sale_it_overwrote_is_taken_back(world: World) -> None:
    world.market.state.faults.sales_before_write = 1  # sold just before the first write is applied
    await world.send(*(f.adjusted(world.seller, "TEE", s, +1, channel="amazon") for s in (1, 2)))
    world.listing("TEE").quantity = 1  # one unit on offer already, which the buyer buys
    await world.sync()
    listing = world.listing("TEE")
    assert (listing.quantity, listing.sold) == (2, 1)  # 1 + 2 - 1: the sale stays made
    assert await world.intent("TEE") is None
    acks = await world.pool.fetch("SELECT topic FROM rebound.outbox WHERE producer = $1", world.processor.consumer)
    assert [r["topic"] for r in acks] == [ACKS.name]


async def test_a_check_waits_until_the_orders_are_known_as_far_as_the_number_it_read(world: World) -> None:
    async with world.pool.acquire() as conn:  # orders are trusted 1.5 s after they are listed
        await conn.execute(
            "UPDATE connectors.shops SET settings = settings || '{\"settle_s\": 1.5}' WHERE seller_id = $1",
            world.seller,
        )
    await world.send(f.adjusted(world.seller, "CAP", 1, +1, channel="amazon"))
    await world.sync()
    assert world.listing("CAP").quantity == 1  # written and applied
    intent = await world.intent("CAP")
    assert intent is not None and intent["written_at"] is not None and intent["probe_now"] == 1
    waiting = await world.pool.fetchval(
        "SELECT not_before > now() FROM connectors.listings WHERE key = $1", world.key("CAP")
    )
    assert waiting  # the check is not done: the key waits, its shop does not
    await asyncio.sleep(1.6)
    await world.pool.execute("UPDATE connectors.listings SET not_before = NULL WHERE key = $1", world.key("CAP"))
    started = time.monotonic()
    while await world.intent("CAP") is not None:
        assert time.monotonic() - started < 30, "the check never completed"
        await world.sync()
        await world.pool.execute("UPDATE connectors.listings SET not_before = NULL WHERE key = $1", world.key("CAP"))
        await asyncio.sleep(0.2)
    assert world.listing("CAP").quantity == 1
