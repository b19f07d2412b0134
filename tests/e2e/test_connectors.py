"""The connectors as a process on the real Kafka and PostgreSQL, against the TikTok Shop stand-in:
stock adjustments read with read_committed reach the shop's own number while its buyers buy, and
every run is answered on `storefront.acks.v1`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from rebound.simulation import reading
from rebound.connectors.adapters import map_listing
from rebound.simulation.fleet import Fleet
from rebound.standins import serving
from rebound.standins.tiktok import Stock, TikTokStandIn
from rebound_contracts.topics import ACKS, STOCK_ADJUSTMENTS
from tests import factories as f
from tests.shops import connect_tiktok

pytestmark = pytest.mark.e2e


async def test_adjustments_reach_the_shop_and_are_acknowledged(settings, pool, tmp_path: Path) -> None:
    seller = f"e2e-conn-{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    market = TikTokStandIn(seed=5)
    skus = ["TEE-E2E", "CAP-E2E"]
    for sku in skus:
        market.state.stock[(f"sku-{sku}", "wh-1")] = Stock(f"prod-{sku}", f"sku-{sku}", "wh-1", 0)

    async with serving(market.app) as url:
        shop = await connect_tiktok(pool, market, url, seller, tmp_path)
        async with pool.acquire() as conn:
            for sku in skus:
                await map_listing(
                    conn,
                    f"{seller}:tiktok:W1:{sku}:new",
                    shop,
                    {"product_id": f"prod-{sku}", "sku_id": f"sku-{sku}", "warehouse_id": "wh-1"},
                )
        sent = {sku: [f.adjusted(seller, sku, s, +1, available=s) for s in range(1, 21)] for sku in skus}

        async def applied(through: int) -> bool:
            rows = await pool.fetch("SELECT applied_through FROM connectors.listings WHERE seller_id = $1", seller)
            return len(rows) == len(skus) and all(r["applied_through"] == through for r in rows)

        async def sold_some() -> bool:
            return sum(stock.sold for stock in market.state.stock.values()) >= 6

        with Fleet(log_dir=tmp_path / "logs", services=("connectors",)) as fleet:
            # The first half, then buyers buy some of it, then the second half: Rebound's
            # `available` (up to 20) does not know those sales, and they must stay made.
            await _send(settings.kafka_bootstrap_servers, [a for each in sent.values() for a in each[:10]])
            await _wait(lambda: applied(10), fleet)
            market.buyers.per_s = 50.0
            await _wait(sold_some, fleet)
            market.buyers.per_s = 0.0
            await _send(settings.kafka_bootstrap_servers, [a for each in sent.values() for a in each[10:]])
            await _wait(lambda: applied(20), fleet)
        await pool.execute("DELETE FROM connectors.shops WHERE seller_id = $1", seller)  # the stand-in stops

    for sku in skus:
        stock = market.state.stock[(f"sku-{sku}", "wh-1")]
        # Every unit Rebound offered is either still on the shop or sold there, never both or neither.
        assert stock.quantity + stock.sold == 20, (sku, stock)
    assert sum(stock.sold for stock in market.state.stock.values()) >= 6
    acks = (await reading.read_records(settings.kafka_bootstrap_servers, ACKS, sellers={seller})).records
    assert acks and {a.model.status for a in acks} == {"applied"}
    last = {adjustments[-1].event_id for adjustments in sent.values()}
    assert last <= {a.model.ref_event_id for a in acks}


async def _send(bootstrap: str, adjustments: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for adjustment in adjustments:
            await producer.send_and_wait(
                STOCK_ADJUSTMENTS.name,
                value=adjustment.model_dump_json().encode(),
                key=STOCK_ADJUSTMENTS.key_of(adjustment).encode(),
            )
    finally:
        await producer.stop()


async def _wait(done: Callable[[], Awaitable[bool]], fleet: Fleet, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not await done():
        assert fleet.dead() == [], (fleet.log_dir / "connectors-0.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the connector did not get there in time"
        await asyncio.sleep(0.2)
