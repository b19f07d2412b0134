"""The connectors against the real PostgreSQL and the TikTok Shop stand-in over loopback HTTP:
adjustments are kept by the real batch processor, then the sync loop applies them, in sequence
order, onto the marketplace's own number, exactly once, and answers on `storefront.acks.v1`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from rebound.connectors.adapters import DUE, PostgresConnectorRepository, connect_shop, map_listing
from rebound.connectors.app import Shops, shopify_settings, spec
from rebound.connectors.domain import Intent
from rebound.connectors.sync import Syncer
from rebound.connectors.tiktok import TikTokShop
from rebound.messaging.processor import BatchProcessor
from rebound.standins import serving
from rebound.standins.shopify import ShopifyStandIn, Store
from rebound.standins.tiktok import Stock, TikTokStandIn
from rebound_contracts import TOPICS_BY_NAME
from rebound_contracts import ListingRequested
from rebound_contracts.topics import ACKS, EXCEPTIONS, LISTINGS, STOCK_ADJUSTMENTS
from tests import factories as f
from tests.shops import connect_tiktok

pytestmark = pytest.mark.integration

WAREHOUSE = "7054915283043174149"


@dataclass
class World:
    pool: asyncpg.Pool
    market: TikTokStandIn
    syncer: Syncer
    processor: BatchProcessor
    seller: str
    offsets: Iterator[int]

    def stock(self, sku: str) -> Stock:
        return self.market.state.stock[(f"sku-{sku}", WAREHOUSE)]

    async def send(self, *adjustments) -> None:
        await self.processor.process(
            [
                f.Record(STOCK_ADJUSTMENTS.name, a.model_dump_json().encode(), 0, next(self.offsets), b"k")
                for a in adjustments
            ]
        )

    async def ask(self, *requests: ListingRequested) -> None:
        await self.processor.process(
            [f.Record(LISTINGS.name, r.model_dump_json().encode(), 0, next(self.offsets), b"k") for r in requests]
        )

    async def outbox(self) -> list:
        rows = await self.pool.fetch(
            "DELETE FROM rebound.outbox WHERE producer = $1 RETURNING id, topic, payload", self.processor.consumer
        )
        return [
            (r["topic"], TOPICS_BY_NAME[r["topic"]].model.model_validate_json(bytes(r["payload"])))
            for r in sorted(rows, key=lambda r: r["id"])
        ]

    async def sync(self) -> None:
        while await self.syncer.round():
            pass

    async def reconcile(self, key: str) -> int:
        """One reconciliation round, the shop's requests to spare; `key` must have been compared."""
        self.syncer.buckets.clear()
        before = await self.pool.fetchval("SELECT clock_timestamp()")
        drifted = await self.syncer.reconcile(older_than_s=0)
        assert await self.pool.fetchval("SELECT reconciled_at FROM connectors.listings WHERE key = $1", key) > before
        return drifted

    async def listing(self, sku: str, quantity: int = 0, *, mapped: bool = True) -> str:
        key = f"{self.seller}:tiktok:W1:{sku}:new"
        self.market.state.stock[(f"sku-{sku}", WAREHOUSE)] = Stock(f"prod-{sku}", f"sku-{sku}", WAREHOUSE, quantity)
        if mapped:
            async with self.pool.acquire() as conn:
                await map_listing(
                    conn,
                    key,
                    f"shop-{self.seller}",
                    {"product_id": f"prod-{sku}", "sku_id": f"sku-{sku}", "warehouse_id": WAREHOUSE},
                )
        return key


@pytest.fixture
async def world(pool, tmp_path: Path) -> AsyncIterator[World]:
    seller = f"conn-{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    market = TikTokStandIn(seed=3)
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        await connect_tiktok(pool, market, url, seller, tmp_path)
        producer = f"it-connectors-{seller}"
        try:
            yield World(
                pool,
                market,
                Syncer(pool, producer, Shops(pool, client)),
                BatchProcessor(producer, spec().routes, pool),
                seller,
                iter(range(1, 1 << 30)),
            )
        finally:  # the stand-in stops with the test: no connector may keep calling it
            await pool.execute("DELETE FROM connectors.shops WHERE seller_id = $1", seller)


def _acks(out: list) -> list[tuple[str, str]]:
    return [(event.status, event.reason) for topic, event in out if topic == ACKS.name]


async def test_deltas_land_on_the_marketplaces_own_number_and_a_sale_is_never_overwritten(world: World) -> None:
    await world.listing("TEE")
    ups = [f.adjusted(world.seller, "TEE", s, +1, available=s) for s in (1, 2, 3)]
    await world.send(*ups)
    await world.sync()
    assert world.stock("TEE").quantity == 3
    assert _acks(await world.outbox()) == [("applied", "")]  # one call, one answer for the run
    world.market.sell_one(), world.market.sell_one()  # two orders the warehouse has not picked yet
    # Rebound's available (4) does not know them; the shop must end at 1 + 1, not at 4.
    await world.send(f.adjusted(world.seller, "TEE", 4, +1, available=4))
    await world.sync()
    assert world.stock("TEE").quantity == 2
    [(topic, ack)] = await world.outbox()
    assert (topic, ack.status, ack.sku, ack.condition) == (ACKS.name, "applied", "TEE", "new")


async def test_a_gap_is_waited_for_and_what_came_meanwhile_goes_in_one_call(world: World) -> None:
    await world.listing("CAP")
    first, second, third = (f.adjusted(world.seller, "CAP", s, +1) for s in (1, 2, 3))
    await world.send(first, third)
    await world.sync()
    assert world.stock("CAP").quantity == 1
    writes = world.market.state.writes
    await world.send(second, first)  # the gap filled, and a redelivery of what was applied
    await world.sync()
    assert world.stock("CAP").quantity == 3 and world.market.state.writes == writes + 1
    acks = [event for topic, event in await world.outbox() if topic == ACKS.name]
    assert [a.ref_event_id for a in acks] == [first.event_id, third.event_id]


async def test_the_keys_due_are_found_without_reading_the_listings_that_wait_for_nothing(world: World) -> None:
    """Thousands of listings of the connected shop are caught up, thousands more of a shop that is
    not connected have adjustments waiting: finding the one key due reads a few pages, not the
    listings' (the connectors look whenever work comes, and every 2 s)."""
    await world.listing("CAP")
    await world.send(f.adjusted(world.seller, "CAP", 1, +1))
    await world.sync()
    await world.send(f.adjusted(world.seller, "CAP", 2, +1))  # received as the connectors receive it
    other = f"{world.seller}-away"
    await world.pool.execute(
        "INSERT INTO connectors.listings (key, seller_id, channel, shop_id, applied_through, received_through)"
        " SELECT $1 || ':tiktok:W1:sku-' || n || ':new', $1, 'tiktok', $2, 0, 0 FROM generate_series(1, 10000) AS n"
        " UNION ALL SELECT $3 || ':tiktok:W1:sku-' || n || ':new', $3, 'tiktok', 'away', 0, 1"
        " FROM generate_series(1, 10000) AS n",
        world.seller,
        f"shop-{world.seller}",
        other,
    )
    await world.pool.execute(
        "INSERT INTO connectors.adjustments (key, sequence, delta, event, source)"
        " SELECT key, 1, 1, '{}', '{}' FROM connectors.listings WHERE seller_id = $1",
        other,
    )
    await world.pool.execute("ANALYZE connectors.listings, connectors.adjustments")
    pages = await world.pool.fetchval("SELECT relpages FROM pg_class WHERE oid = 'connectors.listings'::regclass")
    try:
        async with world.pool.acquire() as conn:
            explained = await conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                + DUE.replace("$1", "256").replace("$2", "2").replace("$3::text[]", "'{}'::text[]")
            )
            due = await PostgresConnectorRepository(conn).due(256, 2)
    finally:
        await world.pool.execute("DELETE FROM connectors.adjustments WHERE key LIKE $1 || ':%'", other)
        await world.pool.execute(
            "DELETE FROM connectors.listings WHERE seller_id = ANY($1::text[]) AND key <> $2",
            [world.seller, other],
            f"{world.seller}:tiktok:W1:CAP:new",
        )
    plan = orjson.loads(explained)[0]["Plan"]
    assert f"{world.seller}:tiktok:W1:CAP:new" in due
    assert not [key for key in due if key.startswith((f"{world.seller}:tiktok:W1:sku-", f"{other}:"))]
    # A few dozen; a scan reads every page of the listings, and more.
    assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] < pages / 4, (plan["Shared Hit Blocks"], pages)


@pytest.mark.parametrize("landed", [True, False])
async def test_a_write_left_in_doubt_is_resolved_by_reading_the_marketplace_back(world: World, landed: bool) -> None:
    key = await world.listing("HAT", quantity=2)
    await world.send(f.adjusted(world.seller, "HAT", 1, +1))
    # The connector planned 2 -> 3 and died: before the write, or after it and before its bookkeeping.
    async with world.pool.acquire() as conn:
        await PostgresConnectorRepository(conn).plan(
            key, Intent(first=1, last=1, seen=2, written=3, at=int(time.time()))
        )
    if landed:
        world.stock("HAT").quantity = 3
    world.market.sell_one()  # and a buyer bought one meanwhile
    await world.sync()
    assert world.stock("HAT").quantity == 2  # 2 + 1 - 1, whichever happened: never applied twice or lost
    assert _acks(await world.outbox()) == [("applied", "")]


async def test_a_write_whose_outcome_cannot_be_told_waits_for_an_operator(world: World) -> None:
    key = await world.listing("BAG", quantity=2)
    await world.send(f.adjusted(world.seller, "BAG", 1, +1))
    async with world.pool.acquire() as conn:
        await PostgresConnectorRepository(conn).plan(
            key, Intent(first=1, last=1, seen=2, written=3, at=int(time.time()))
        )
    world.stock("BAG").quantity = 7  # someone else wrote
    await world.sync()
    assert world.stock("BAG").quantity == 7
    out = await world.outbox()
    assert [(t, e.kind) for t, e in out] == [(EXCEPTIONS.name, "storefront_in_doubt")]
    assert await world.pool.fetchval("SELECT blocked FROM connectors.listings WHERE key = $1", key) == "in doubt"
    # The operator sets the number by hand to what it should be, the write in doubt included.
    world.stock("BAG").quantity = 3
    async with world.pool.acquire() as conn:
        assert await PostgresConnectorRepository(conn).unblock(key)
    writes = world.market.state.writes
    await world.sync()
    assert world.stock("BAG").quantity == 3 and world.market.state.writes == writes  # not applied again
    assert await world.pool.fetchval("SELECT applied_through FROM connectors.listings WHERE key = $1", key) == 1


async def test_a_write_in_doubt_survives_its_shop_being_blocked_and_is_settled_once_unblocked(world: World) -> None:
    key = await world.listing("KEY", quantity=2)
    await world.send(f.adjusted(world.seller, "KEY", 1, +1))
    async with world.pool.acquire() as conn:
        await PostgresConnectorRepository(conn).plan(
            key, Intent(first=1, last=1, seen=2, written=3, at=int(time.time()))
        )
    world.stock("KEY").quantity = 3  # it had landed
    shop = world.market.state.shops[f"cipher-{world.seller}"]
    tokens = (shop.access_token, shop.refresh_token)
    shop.access_token, shop.refresh_token = "revoked", "revoked"  # the seller took the app's access away
    await world.sync()
    blocked = await world.pool.fetchval("SELECT blocked FROM connectors.listings WHERE key = $1", key)
    assert blocked.startswith("unauthorized")
    shop.access_token, shop.refresh_token = tokens  # and gave it back
    async with world.pool.acquire() as conn:
        assert await PostgresConnectorRepository(conn).unblock(key)
    await world.sync()
    assert world.stock("KEY").quantity == 3  # applied once, not twice
    assert await world.pool.fetchval("SELECT applied_through FROM connectors.listings WHERE key = $1", key) == 1


async def test_an_unmapped_key_is_rejected_once_and_moves_once_mapped(world: World) -> None:
    key = await world.listing("SOCK", mapped=False)
    await world.send(f.adjusted(world.seller, "SOCK", 1, +1))
    await world.sync()
    await world.sync()
    out = await world.outbox()
    assert [(t, getattr(e, "status", None) or e.kind) for t, e in out] == [
        (ACKS.name, "rejected"),
        (EXCEPTIONS.name, "unmapped_listing"),
    ]
    await world.send(f.adjusted(world.seller, "SOCK", 2, -1))  # the ledger moved the unit away
    await world.listing("SOCK")
    await world.sync()
    assert world.stock("SOCK").quantity == 0 and world.market.state.writes == 1
    assert _acks(await world.outbox()) == [("applied", "")]
    assert await world.pool.fetchval("SELECT applied_through FROM connectors.listings WHERE key = $1", key) == 2


def _gone(world: World) -> None:
    del world.market.state.stock[("sku-SHOE", WAREHOUSE)]  # the listing the key maps to is gone


def _held_back(world: World) -> None:
    world.market.state.faults.sku_errors = 1.0  # the product's status does not let it sell


@pytest.mark.parametrize(
    ("refuse", "status", "message"),
    [
        (_gone, "rejected", "has no stock record"),
        (_held_back, "paused", "can not be actiavted"),
    ],
)
async def test_a_refusal_is_acknowledged_once_with_the_marketplaces_message(
    world: World, refuse: Callable[[World], None], status: str, message: str
) -> None:
    key = await world.listing("SHOE")
    refuse(world)
    await world.send(f.adjusted(world.seller, "SHOE", 1, +1), f.adjusted(world.seller, "SHOE", 2, +1))
    await world.sync()
    await world.send(f.adjusted(world.seller, "SHOE", 3, -1))
    await world.sync()
    [(acked, reason)] = _acks(await world.outbox())
    assert acked == status and message in reason
    assert world.market.state.writes == 0
    assert (await world.pool.fetchval("SELECT blocked FROM connectors.listings WHERE key = $1", key)).startswith(
        f"{status}: "
    )


async def test_throttling_and_outages_write_nothing_twice_and_the_run_goes_through_after(world: World) -> None:
    await world.listing("BELT")
    await world.send(f.adjusted(world.seller, "BELT", 1, +1))
    world.market.state.faults.rate_limited = 1.0
    assert await world.syncer.round() == 0
    world.market.state.faults.rate_limited, world.market.state.faults.server_errors = 0.0, 1.0
    world.syncer.buckets.clear()  # the 429's back-off is the bucket's: not what is under test here
    assert await world.syncer.round() == 0
    world.market.state.faults.server_errors = 0.0
    await world.sync()
    assert world.stock("BELT").quantity == 1
    assert _acks(await world.outbox()) == [("applied", "")]


async def test_an_expired_token_is_refreshed_and_the_new_tokens_are_stored(world: World) -> None:
    await world.listing("TIE")
    await world.send(f.adjusted(world.seller, "TIE", 1, +1))
    world.market.state.faults.expire_tokens = True
    await world.sync()
    assert world.stock("TIE").quantity == 1
    tokens = orjson.loads(
        await world.pool.fetchval("SELECT tokens FROM connectors.shops WHERE seller_id = $1", world.seller)
    )
    shop = world.market.state.shops[f"cipher-{world.seller}"]
    assert (tokens["access_token"], tokens["refresh_token"]) == (shop.access_token, shop.refresh_token)
    assert "at-1" not in (shop.access_token, tokens["access_token"]) and tokens["refresh_token"] != "rt-1"


async def test_a_sale_made_between_the_read_and_the_write_is_restored_from_the_orders(world: World) -> None:
    await world.listing("SCARF", quantity=3)
    # Sold while the connector was between its read and its write, and again before its restoring write.
    world.market.state.faults.sales_before_write = 2
    await world.send(f.adjusted(world.seller, "SCARF", 1, +1))
    await world.sync()
    stock = world.stock("SCARF")
    assert (stock.quantity, stock.sold) == (2, 2)  # 3 + 1 - 2: both sales stay made
    assert _acks(await world.outbox()) == [("applied", "")]


async def test_on_shopify_a_sale_between_the_read_and_the_write_makes_it_stale_and_it_is_read_again(
    pool, tmp_path: Path
) -> None:
    seller = f"conn-{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    market = ShopifyStandIn(seed=8)
    market.stores["store-1"] = Store(token="shpat_1")
    item, location = "gid://shopify/InventoryItem/1", "gid://shopify/Location/1"
    level = market.add_level("store-1", item, location, quantity=2)
    token = tmp_path / "shopify-token"
    token.write_text("shpat_1")
    key = f"{seller}:shopify:W1:TEE:new"
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        async with pool.acquire() as conn:
            await connect_shop(
                conn, seller, "shopify", f"shop-{seller}", shopify_settings(f"{url}/store-1", token), None
            )
            await map_listing(conn, key, f"shop-{seller}", {"inventory_item_id": item, "location_id": location})
        producer = f"it-connectors-{seller}"
        processor = BatchProcessor(producer, spec().routes, pool)
        event = f.adjusted(seller, "TEE", 1, +1, channel="shopify")
        await processor.process([f.Record(STOCK_ADJUSTMENTS.name, event.model_dump_json().encode(), 0, 1, b"k")])
        market.faults.sales_before_write = 1
        syncer = Syncer(pool, producer, Shops(pool, client))
        while await syncer.round():
            pass
        await syncer.round()  # the stale write is planned again
        await pool.execute("DELETE FROM connectors.shops WHERE seller_id = $1", seller)  # the stand-in stops
        assert (level.quantity, level.sold, market.writes) == (2, 1, 1)  # 2 + 1 - 1, one write landed
        assert await pool.fetchval("SELECT applied_through FROM connectors.listings WHERE key = $1", key) == 1


async def test_the_sales_check_of_a_write_survives_the_connectors_death(world: World) -> None:
    key = await world.listing("GLOVE", quantity=3)
    await world.send(f.adjusted(world.seller, "GLOVE", 1, +1))
    # The connector read 3, a buyer bought one, it wrote 4 (overwriting the sale), booked the
    # adjustment applied with its check pending, and died before checking.
    read_at = int(time.time())
    world.market.sell_one(world.stock("GLOVE"))
    world.stock("GLOVE").quantity = 4
    async with world.pool.acquire() as conn:
        repo = PostgresConnectorRepository(conn)
        await repo.applied(key, 1, Intent(first=1, last=1, seen=3, written=4, at=read_at, written_at=time.time()))
        await conn.execute("DELETE FROM connectors.adjustments WHERE key = $1", key)
    await world.sync()
    stock = world.stock("GLOVE")
    assert (stock.quantity, stock.sold) == (3, 1)  # 3 + 1 - 1: the sale stays made
    assert await world.pool.fetchval("SELECT intent FROM connectors.listings WHERE key = $1", key) is None
    assert _acks(await world.outbox()) == []  # the adjustment was acknowledged before it died


async def test_a_throttled_read_back_keeps_the_write_in_doubt(world: World) -> None:
    key = await world.listing("MUG", quantity=2)
    await world.send(f.adjusted(world.seller, "MUG", 1, +1))
    async with world.pool.acquire() as conn:
        await PostgresConnectorRepository(conn).plan(
            key, Intent(first=1, last=1, seen=2, written=3, at=int(time.time()))
        )
    world.stock("MUG").quantity = 3  # it had landed
    world.market.state.faults.rate_limited = 1.0
    assert await world.syncer.round() == 0
    intent = await world.pool.fetchval("SELECT intent FROM connectors.listings WHERE key = $1", key)
    assert intent is not None and orjson.loads(intent)["written"] == 3
    world.market.state.faults.rate_limited = 0.0
    world.syncer.buckets.clear()
    await world.sync()
    assert world.stock("MUG").quantity == 3  # applied once, not twice
    assert _acks(await world.outbox()) == [("applied", "")]


async def test_a_key_that_must_wait_waits_alone_and_moves_when_its_time_comes(world: World) -> None:
    from rebound.connectors.marketplace import NotYet

    waiting, other = await world.listing("PEN"), await world.listing("INK")
    await world.send(f.adjusted(world.seller, "PEN", 1, +1), f.adjusted(world.seller, "INK", 1, +1))
    shops = world.syncer.marketplace_of

    class Hold:
        def __init__(self, market) -> None:
            self.market, self.maximum = market, market.maximum
            self.compare_and_set, self.idempotent = market.compare_and_set, market.idempotent

        async def quantity(self, listing):
            return await self.market.quantity(listing)

        async def sales_since(self, listing, since_s, *, known_at=None):
            return await self.market.sales_since(listing, since_s, known_at=known_at)

        async def set_quantity(self, listing, quantity, *, seen=None, key=None) -> None:
            if listing["sku_id"] == "sku-PEN":
                raise NotYet("no revision left for now", 3600)
            await self.market.set_quantity(listing, quantity, seen=seen, key=key)

    async def holding(repo, listing):
        return Hold(await shops(repo, listing))

    world.syncer.marketplace_of = holding
    await world.sync()
    assert (world.stock("PEN").quantity, world.stock("INK").quantity) == (0, 1)
    row = await world.pool.fetchrow(
        "SELECT intent, not_before > now() + interval '50 minutes' AS later FROM connectors.listings WHERE key = $1",
        waiting,
    )
    assert row is not None
    assert row["intent"] is None and row["later"]  # nothing was written; not due for an hour
    world.syncer.marketplace_of = shops
    await world.sync()
    assert world.stock("PEN").quantity == 0  # not before its time
    await world.pool.execute("UPDATE connectors.listings SET not_before = now() WHERE key = $1", waiting)
    await world.sync()
    assert world.stock("PEN").quantity == 1
    assert other.endswith(":INK:new")


async def _drifts(world: World) -> list:
    return [
        event for topic, event in await world.outbox() if topic == EXCEPTIONS.name and event.kind == "storefront_drift"
    ]


async def test_sales_are_no_drift_and_a_number_changed_behind_the_connectors_back_is_reported_once(
    world: World,
) -> None:
    key = await world.listing("BELT", quantity=2)
    await world.send(*(f.adjusted(world.seller, "BELT", s, +1, available=s) for s in (1, 2)))
    await world.sync()
    assert world.stock("BELT").quantity == 4
    await world.outbox()
    world.market.sell_one(world.stock("BELT")), world.market.sell_one(world.stock("BELT"))
    assert await world.reconcile(key) == 0  # 4 less 2 sold: as written
    assert await _drifts(world) == []
    world.stock("BELT").quantity = 7  # the seller typed a number in Seller Center
    world.market.sell_one(world.stock("BELT"))
    assert await world.reconcile(key) == 1
    [drift] = await _drifts(world)
    assert drift.seller_id == world.seller and drift.detail.startswith(key)
    assert "shows 6" in drift.detail and "leaves 1 (+5" in drift.detail and "2 available" in drift.detail
    assert drift.original["sequence"] == 2  # the key's last adjustment applied
    # Reported once: the number found is compared with from then on, the next deltas land on it.
    assert await world.reconcile(key) == 0
    await world.send(f.adjusted(world.seller, "BELT", 3, +1, available=3))
    await world.sync()
    assert world.stock("BELT").quantity == 7
    world.market.sell_one(world.stock("BELT"))
    assert await world.reconcile(key) == 0
    assert await _drifts(world) == []


async def test_a_key_compared_lately_or_with_a_write_in_flight_is_left_alone(world: World) -> None:
    key = await world.listing("SOCK", quantity=1)
    await world.send(f.adjusted(world.seller, "SOCK", 1, +1))
    await world.sync()
    world.stock("SOCK").quantity = 9
    world.syncer.buckets.clear()
    requests = dict(world.market.state.requests)
    assert await world.syncer.reconcile(older_than_s=3600) == 0  # just written: compared then
    async with world.pool.acquire() as conn:
        await PostgresConnectorRepository(conn).plan(
            key, Intent(first=2, last=2, seen=2, written=3, at=int(time.time()))
        )
    assert await world.syncer.reconcile(older_than_s=0) == 0  # a write in flight: its own check decides
    assert world.market.state.requests == requests  # not even read
    async with world.pool.acquire() as conn:
        await PostgresConnectorRepository(conn).forget_intent(key)
    assert await world.reconcile(key) == 1


async def test_a_unit_sold_twice_is_reported_and_owed_even_with_nothing_pending(world: World) -> None:
    key = await world.listing("HAT", quantity=1)
    await world.send(f.adjusted(world.seller, "HAT", 1, +1))
    # The connector read 1; a buyer bought it; the write of 2 overwrote that sale; two buyers bought
    # both units before the check; the connector booked the run and died before checking.
    read_at = int(time.time())
    stock = world.stock("HAT")
    world.market.sell_one(stock)
    stock.quantity = 2
    world.market.sell_one(stock), world.market.sell_one(stock)
    async with world.pool.acquire() as conn:
        repo = PostgresConnectorRepository(conn)
        [adjustment] = await repo.pending(key, 0, 10)
        await repo.applied(
            key, 1, Intent(first=1, last=1, seen=1, written=2, at=read_at, written_at=time.time()), last=adjustment
        )
    await world.outbox()
    await world.sync()
    [short] = [event for topic, event in await world.outbox() if topic == EXCEPTIONS.name]
    assert short.kind == "storefront_short" and short.original["sequence"] == 1 and "1 unit(s) more" in short.detail
    assert await world.pool.fetchval("SELECT owed FROM connectors.listings WHERE key = $1", key) == 1
    await world.send(f.adjusted(world.seller, "HAT", 2, +1))
    await world.sync()
    assert (world.stock("HAT").quantity, world.stock("HAT").sold) == (0, 3)  # the next unit went to that order


async def test_a_listing_request_tells_whoever_maps_the_key_what_to_create(world: World, settings) -> None:
    key = f"{world.seller}:tiktok:W1:LAMP:open_box"
    await world.ask(
        f.listing(world.seller, "LAMP", "19.90", "Open box: inspected, like new", later=2),
        f.listing(world.seller, "LAMP", "24.00", "an older request", later=1),
    )  # late: ignored
    shown = subprocess.run(
        [sys.executable, "-m", "rebound", "connect", "unmapped", "--seller", world.seller],
        env={**os.environ, "DATABASE_URL": settings.database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if key in line]
    assert "open_box LAMP-OB" in line and "19.90 USD" in line and "like new" in line and "24.00" not in line
    await world.send(f.adjusted(world.seller, "LAMP", 1, +1, condition="open_box"))
    await world.sync()
    [(_, rejected), (_, exception)] = await world.outbox()
    assert rejected.status == "rejected" and exception.kind == "unmapped_listing"
    assert (
        "create it in shop shop-" in exception.detail
        and "open_box at 19.90 USD (listed as SKU LAMP-OB)" in exception.detail
        and "like new" in exception.detail
    )


async def test_a_listing_requests_price_is_set_before_its_first_unit_is_offered(world: World) -> None:
    await world.listing("VASE")
    await world.ask(f.listing(world.seller, "VASE", "31.00", "New: returned unopened", later=1, condition="new"))
    seen = []
    set_quantity = TikTokShop.set_quantity

    async def watched(shop, listing, quantity, **kw):
        seen.append(world.market.state.prices.get(listing["sku_id"]))
        return await set_quantity(shop, listing, quantity, **kw)

    with pytest.MonkeyPatch.context() as patch:  # put back when the block ends, however it ends
        patch.setattr(TikTokShop, "set_quantity", watched)
        await world.send(f.adjusted(world.seller, "VASE", 1, +1))
        await world.sync()
    assert seen == [("31.00", "USD")] and world.stock("VASE").quantity == 1
    await world.outbox()
    # a refused price is reported once; the quantity still moves
    await world.ask(f.listing(world.seller, "VASE", "29.00", "New", later=2, condition="new", currency="XTS"))
    await world.send(f.adjusted(world.seller, "VASE", 2, +1))
    await world.sync()
    out = await world.outbox()
    assert [e.kind for t, e in out if t == EXCEPTIONS.name] == ["storefront_listing_refused"]
    assert "invalid request body" in next(e.detail for t, e in out if t == EXCEPTIONS.name)
    assert world.stock("VASE").quantity == 2 and world.market.state.prices["sku-VASE"] == ("31.00", "USD")
    await world.sync()
    assert await world.outbox() == []  # not tried again until a new request


async def test_a_write_whose_answer_comes_too_late_is_settled_as_in_doubt_and_lands_once(world: World) -> None:
    key = await world.listing("COAT", quantity=2)
    await world.send(f.adjusted(world.seller, "COAT", 1, +1))
    write = TikTokShop.set_quantity

    async def answered_late(shop, listing, quantity, **kw):
        world.market.state.faults.late, world.market.state.faults.late_s = 1.0, 1.0  # the write's answer only
        return await write(shop, listing, quantity, **kw)

    with pytest.MonkeyPatch.context() as patch:  # put back when the block ends, however it ends
        patch.setattr(TikTokShop, "set_quantity", answered_late)
        async with httpx.AsyncClient(timeout=0.3) as impatient:
            syncer = Syncer(world.pool, world.processor.consumer, Shops(world.pool, impatient))
            assert await syncer.round() == 0  # the client gave up on the answer
    assert world.stock("COAT").quantity == 3  # though the write landed
    assert await world.pool.fetchval("SELECT intent IS NOT NULL FROM connectors.listings WHERE key = $1", key)
    world.market.state.faults.late = 0.0
    await world.sync()
    assert world.stock("COAT").quantity == 3  # applied once, not twice
    assert _acks(await world.outbox()) == [("applied", "")]
