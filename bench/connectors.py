"""The connectors against the four marketplace stand-ins, each holding its marketplace's limits:
how fast adjustments reach the shops' numbers, how many go in one call, and the lag from an
adjustment being readable on `storefront.stock-adjustments.v1` to the marketplace's number having
moved by it.

One connectors process; the stand-ins run in this process and their listings are watched every
few milliseconds (the lag is late by at most that). Their buyers do not buy: a listing's number is
then exactly the units applied to it. First one +1 per listing (the shops' tokens, the orders
caches and the consumer warmed up, not timed); then `steady`: adjustments offered at a fixed rate
spread over the listings (the lag); then `burst`: many at once (adjustments/s delivered, the
coalescing: adjustments per marketplace write)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from rebound.simulation.fleet import Fleet
from rebound.settings import Settings
from rebound.standins import serving
from rebound.standins.amazon import AmazonStandIn
from rebound.standins.ebay import EbayStandIn
from rebound.standins.shopify import ShopifyStandIn
from rebound.standins.shops import (
    DemoShops,
    close_shops,
    open_amazon_shops,
    open_ebay_shops,
    open_shopify_shops,
    open_tiktok_shops,
)
from rebound.standins.tiktok import TikTokStandIn
from rebound_contracts import StockAdjusted
from rebound_contracts.outbound import AdjustmentCause
from rebound_contracts.topics import STOCK_ADJUSTMENTS

from .stats import percentiles

SKUS = [f"BENCH-{n}" for n in range(8)]
SELLERS = 4
"""As in `make demo`: four sellers, each with a shop on every marketplace (rate limits are a shop's)."""
WATCH_EVERY_S = 0.002


class Watch:
    """Each listing's number, looked at every few milliseconds: when it reached each count."""

    def __init__(self, shops: list[DemoShops]) -> None:
        self.shops = shops
        self.channel = {key: shop.channel for shop in shops for key in shop.keys.values()}
        self.landed: dict[tuple[str, int], float] = {}
        self.reached: Counter[str] = Counter()

    def look(self) -> None:
        now = time.monotonic()
        for shop in self.shops:
            for key, quantity, sold in shop.stocks():
                while self.reached[key] < quantity + sold:
                    self.reached[key] += 1
                    self.landed[(key, self.reached[key])] = now

    async def run(self) -> None:
        while True:
            self.look()
            await asyncio.sleep(WATCH_EVERY_S)


class Sender:
    """+1 adjustments of the listings, each key's in sequence, timed once the broker has them."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sequence: Counter[str] = Counter()
        self.sent: dict[tuple[str, int], float] = {}

    async def send(self, key: str) -> None:
        seller, channel, warehouse, sku, condition = key.split(":")
        self.sequence[key] += 1
        sequence = self.sequence[key]
        adjustment = StockAdjusted(
            event_id=uuid.uuid4(),
            occurred_at=datetime.now(UTC),
            seller_id=seller,
            adjustment_id=uuid.uuid4(),
            shop_id=f"shop-{seller}",
            channel=channel,
            warehouse_id=warehouse,
            sku=sku,
            condition=condition,
            delta=1,
            available=sequence,
            sequence=sequence,
            cause=AdjustmentCause(kind="unit_graded", lpn=f"LPN-{uuid.uuid4().hex[:12]}", source_event_id=uuid.uuid4()),
        )
        await self.producer.send_and_wait(
            STOCK_ADJUSTMENTS.name,
            value=adjustment.model_dump_json().encode(),
            key=STOCK_ADJUSTMENTS.key_of(adjustment).encode(),
        )
        self.sent[(key, sequence)] = time.monotonic()


async def _landed(watch: Watch, sender: Sender, timeout: float, progress: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    while any(watch.reached[key] < sequence for key, sequence in sender.sequence.items()):
        if time.monotonic() > deadline:
            late = {key: (watch.reached[key], n) for key, n in sender.sequence.items() if watch.reached[key] < n}
            raise TimeoutError(f"adjustments not on the marketplaces after {timeout:.0f} s: {late}")
        await asyncio.sleep(0.05)
    progress(f"  all {sum(sender.sequence.values()):,} adjustments on the marketplaces")


@dataclass(frozen=True)
class _Markets:
    """The four stand-ins."""

    tiktok: TikTokStandIn
    shopify: ShopifyStandIn
    amazon: AmazonStandIn
    ebay: EbayStandIn


def _writes(markets: _Markets) -> dict[str, int]:
    return {
        "tiktok": markets.tiktok.state.writes,
        "shopify": markets.shopify.writes,
        "amazon": markets.amazon.state.writes,
        "ebay": markets.ebay.state.writes,
    }


def _lags(watch: Watch, sender: Sender, since: dict[tuple[str, int], float]) -> dict[str, dict]:
    by_channel: dict[str, list[float]] = {}
    for (key, sequence), sent in sender.sent.items():
        if (key, sequence) in since:
            continue
        by_channel.setdefault(watch.channel[key], []).append((watch.landed[(key, sequence)] - sent) * 1000)
    return {
        channel: {"adjustments": len(samples), **percentiles(sorted(samples))}
        for channel, samples in sorted(by_channel.items())
    }


async def measure(
    settings: Settings,
    pool: asyncpg.Pool,
    log_dir: Path,
    *,
    rate: float = 10.0,
    seconds: float = 30.0,
    burst: int = 2000,
    timeout: float = 900.0,
    progress: Callable[[str], None] = print,
) -> dict:
    run = uuid.uuid4().hex[:8]
    sellers = {f"bench-{run}-{n}": f"shop-bench-{run}-{n}" for n in range(1, SELLERS + 1)}
    await pool.executemany(
        "INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", [(seller,) for seller in sellers]
    )
    markets = _Markets(
        tiktok=TikTokStandIn(seed=1),
        shopify=ShopifyStandIn(seed=1),
        amazon=AmazonStandIn(seed=1),
        ebay=EbayStandIn(seed=1),
    )
    rng = random.Random(1)
    async with (
        serving(markets.tiktok.app) as tiktok,
        serving(markets.shopify.app) as shopify,
        serving(markets.amazon.app) as amazon,
        serving(markets.ebay.app) as ebay,
    ):
        secrets = log_dir / "secrets"
        shops: list[DemoShops] = [
            await open_tiktok_shops(pool, markets.tiktok, tiktok, sellers, ["W1"], SKUS, secrets),
            await open_shopify_shops(pool, markets.shopify, shopify, sellers, ["W1"], SKUS, secrets),
            await open_amazon_shops(pool, markets.amazon, amazon, sellers, ["W1"], SKUS, secrets),
            await open_ebay_shops(pool, markets.ebay, ebay, sellers, ["W1"], SKUS, secrets),
        ]
        keys = sorted(key for shop in shops for key in shop.keys.values())
        watch = Watch(shops)
        watching = asyncio.create_task(watch.run())
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True, linger_ms=0
        )
        await producer.start()
        sender = Sender(producer)
        fleet = Fleet(log_dir=log_dir, services=("connectors",), replicas=1)
        fleet.start()
        try:
            progress(
                f"connectors: warming up, one adjustment on each of {len(keys)} listings "
                f"({', '.join(shop.name for shop in shops)}) ..."
            )
            await asyncio.gather(*(sender.send(key) for key in keys))
            await _landed(watch, sender, timeout, progress)
            warm = dict(sender.sent)
            progress(
                f"connectors: steady, {rate:.0f} adjustments/s over the {len(keys)} listings for {seconds:.0f} s ..."
            )
            began = time.monotonic()
            for n in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
                await sender.send(rng.choice(keys))
            await _landed(watch, sender, timeout, progress)
            steady = _lags(watch, sender, warm)
            before = dict(sender.sent)
            writes = _writes(markets)
            progress(f"connectors: burst, {burst:,} adjustments at once ...")
            began = time.monotonic()
            await asyncio.gather(*(sender.send(key) for key in rng.choices(keys, k=burst)))
            await _landed(watch, sender, timeout, progress)
            burst_sent = [k for k in sender.sent if k not in before]
            took = max(watch.landed[k] for k in burst_sent) - began
            after = _writes(markets)
            delivered = {}
            for channel in sorted({watch.channel[key] for key, _ in burst_sent}):
                mine = [k for k in burst_sent if watch.channel[k[0]] == channel]
                seconds_ = max(watch.landed[k] for k in mine) - began
                writes_ = after[channel] - writes[channel]
                delivered[channel] = {
                    "adjustments": len(mine),
                    "seconds": round(seconds_, 1),
                    "per_s": round(len(mine) / seconds_, 1),
                    "writes": writes_,
                    "per_write": round(len(mine) / max(writes_, 1), 1),
                }
        finally:
            fleet.stop()
            watching.cancel()
            await producer.stop()
            await close_shops(pool, list(sellers))
    return {
        "listings": len(keys),
        "steady": {"offered_per_s": rate, "seconds": seconds, "lag_ms": steady},
        "burst": {
            "adjustments": burst,
            "seconds": round(took, 1),
            "per_s": round(burst / took),
            "by_marketplace": delivered,
        },
    }


def markdown(result: dict) -> list[str]:
    steady, burst = result["steady"], result["burst"]
    lines = [
        "",
        f"Connectors, {result['listings']} listings of {SELLERS} sellers' shops on the four stand-ins (one "
        "process): lag from an "
        f"adjustment readable to the marketplace's number moved, {steady['offered_per_s']:.0f} adjustments/s "
        f"offered for {steady['seconds']:.0f} s",
        "",
        "| Marketplace | Adjustments | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {channel} | {lag['adjustments']:,} | {lag['p50']} | {lag['p95']} | {lag['p99']} | {lag['max']} |"
        for channel, lag in steady["lag_ms"].items()
    ]
    lines += [
        "",
        f"A burst of {burst['adjustments']:,} adjustments at once: all on the marketplaces in "
        f"{burst['seconds']} s ({burst['per_s']:,} adjustments/s)",
        "",
        "| Marketplace | Adjustments | All on it after (s) | Adjustments/s | Writes | Adjustments per write |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {channel} | {row['adjustments']:,} | {row['seconds']} | {row['per_s']} | {row['writes']:,} "
        f"| {row['per_write']} |"
        for channel, row in burst["by_marketplace"].items()
    ]
    return lines
