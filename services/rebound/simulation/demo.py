"""The main job in one command: run every service, send a return wave, wait for the pipeline
to catch up, then summarise what happened and check the guarantees independently."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from rebound_contracts import ALL_TOPICS
from rebound_contracts.outbound import (
    ExceptionRaised,
    MessageSource,
    MessageDeadLettered,
    StockAdjusted,
    UnitAllocated,
    UnitGraded,
    UnitReceived,
)
from rebound_contracts.topics import (
    ALLOCATIONS,
    DLQ,
    EXCEPTIONS,
    STOCK_ADJUSTMENTS,
    UNIT_GRADED,
    UNIT_RECEIVED,
)

from .. import simulation
from . import checker, reading
from ..connections import database_connect_kwargs, kafka_options, stop_consumer
from ..db import create_pool, migrate
from ..messaging.topic_admin import ensure_topics
from .fleet import SERVICES, Backlog, Fleet, wait_until_caught_up
from ..settings import Settings
from ..standins import serving
from ..standins.shopify import ShopifyStandIn
from ..standins.amazon import AmazonStandIn
from ..standins.ebay import EbayStandIn
from ..standins.shops import (
    DemoShops,
    close_shops,
    open_amazon_shops,
    open_ebay_shops,
    open_shopify_shops,
    open_tiktok_shops,
    unsynced,
)
from ..standins.tiktok import TikTokStandIn

INBOUND = tuple(topic for topic in ALL_TOPICS if topic.direction == "inbound")
FLEET = (*SERVICES, "connectors", "console")


@dataclass(frozen=True)
class DemoOptions:
    units: int = 2_000
    seed: int | None = None
    replicas: int = 1
    duplicate_rate: float = 0.02
    out_of_order_rate: float = 0.05
    bad_rate: float = 0.005
    hostile_rate: float = 0.005
    timeout: float = 900.0
    sell: float = 0.6
    """Share of the units offered on a listing after the wave that the warehouse then picks for orders."""
    log_dir: Path = Path(".state/logs/demo")


async def inbound_end_offsets(bootstrap: str, kafka: Mapping[str, Any] | None = None) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **(kafka or {}))
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in INBOUND for p in range(t.partitions)]
        return {(tp.topic, tp.partition): end for tp, end in (await consumer.end_offsets(partitions)).items()}
    finally:
        await stop_consumer(consumer)


async def run_demo(options: DemoOptions, settings: Settings, console: Console) -> bool:
    """Returns whether every guarantee held."""
    seed = options.seed if options.seed is not None else int(time.time())
    bootstrap = settings.kafka_bootstrap_servers
    console.print(
        f"[bold]Rebound demo[/] — {options.units:,} units, seed {seed} "
        f"(replay with --seed {seed}), {options.replicas} replica(s) per service"
    )
    kafka, database = kafka_options(settings), database_connect_kwargs(settings)
    await ensure_topics(bootstrap, wait_seconds=30, kafka_options=kafka)
    pool = await create_pool(settings.database_url, wait_seconds=30, connect_kwargs=database)
    try:
        await migrate(pool)
        wave = simulation.generate(
            simulation.WaveConfig(
                units=options.units,
                seed=seed,
                duplicate_rate=options.duplicate_rate,
                out_of_order_rate=options.out_of_order_rate,
                bad_rate=options.bad_rate,
                hostile_rate=options.hostile_rate,
                start=datetime.now(UTC) - dock_lead(options.units),
            )
        )
        await simulation.register_sellers(settings.database_url, wave.sellers, connect_kwargs=database)
        before = await inbound_end_offsets(bootstrap, kafka)
        secrets = options.log_dir / str(seed) / "shop-secrets"
        tiktok, shopify = TikTokStandIn(seed=seed), ShopifyStandIn(seed=seed)
        amazon, ebay = AmazonStandIn(seed=seed), EbayStandIn(seed=seed)
        async with (
            serving(tiktok.app) as tiktok_url,
            serving(shopify.app) as shopify_url,
            serving(amazon.app) as amazon_url,
            serving(ebay.app) as ebay_url,
        ):
            try:
                catalogue = simulation.catalogue()
                shops = [
                    await open_tiktok_shops(pool, tiktok, tiktok_url, wave.shops, wave.warehouses, catalogue, secrets),
                    await open_shopify_shops(
                        pool, shopify, shopify_url, wave.shops, wave.warehouses, catalogue, secrets
                    ),
                    await open_amazon_shops(pool, amazon, amazon_url, wave.shops, wave.warehouses, catalogue, secrets),
                    await open_ebay_shops(pool, ebay, ebay_url, wave.shops, wave.warehouses, catalogue, secrets),
                ]
                console.print(
                    "stand-ins: "
                    + ", ".join(f"{s.name} ({len(wave.shops)} shops, {len(s.keys):,} listings)" for s in shops)
                )
                with Fleet(log_dir=options.log_dir / str(seed), replicas=options.replicas, services=FLEET) as fleet:
                    started = time.monotonic()
                    await simulation.publish(wave, bootstrap, kafka_options=kafka)
                    published = time.monotonic()
                    await _catch_up(bootstrap, pool, wave, fleet, options.timeout, kafka, console)
                    done = time.monotonic()
                    console.print(
                        f"sent {len(wave.messages):,} messages in {published - started:.1f} s; "
                        f"caught up {done - started:.1f} s after the first one, the shops' numbers "
                        f"included ({wave.units / (done - started):,.0f} units/s end to end)"
                    )
                    unfilled: Counter[str] = Counter()
                    if options.sell > 0:
                        unfilled = await sell_offered(
                            options.sell, seed, wave, settings, pool, fleet, options.timeout, console, shops
                        )
            finally:
                await close_shops(pool, wave.sellers)
            storefronts = [await _storefront(pool, wave, shop, unfilled[shop.channel]) for shop in shops]
        sellers = set(wave.sellers)
        received = await reading.read_topic(bootstrap, UNIT_RECEIVED, sellers=sellers, kafka_options=kafka)
        graded = await reading.read_topic(bootstrap, UNIT_GRADED, sellers=sellers, kafka_options=kafka)
        allocated = await reading.read_topic(bootstrap, ALLOCATIONS, sellers=sellers, kafka_options=kafka)
        # with their Kafka keys, so the checker can hold each key to its seller
        adjustments = (
            await reading.read_records(bootstrap, STOCK_ADJUSTMENTS, sellers=sellers, kafka_options=kafka)
        ).records
        raised = await reading.read_topic(bootstrap, EXCEPTIONS, sellers=None, kafka_options=kafka)
        lettered = await reading.read_topic(bootstrap, DLQ, sellers=None, kafka_options=kafka)

        def ours(source: MessageSource) -> bool:
            return _inbound(source.topic) and source.offset >= before.get((source.topic, source.partition), 0)

        exceptions = [e for _, _, e in raised if ours(e.source)]
        letters = [d for _, _, d in lettered if ours(d.source)]
        parked = await pool.fetchval(
            "SELECT count(*) FROM intake.parked_scans WHERE seller_id = ANY($1::text[])", list(sellers)
        )
        sold = await pool.fetchval(
            "SELECT count(*) FROM ledger.units WHERE seller_id = ANY($1::text[]) AND place = 'sold'", list(sellers)
        )
        sellable: dict[str, int] = {
            row["condition"]: row["sum"]
            for row in await pool.fetch(
                "SELECT condition, sum(available)::int FROM ledger.stock WHERE seller_id = ANY($1::text[])"
                " GROUP BY condition",
                list(sellers),
            )
        }
        table = _summary(wave, received, graded, allocated, adjustments, exceptions, letters, parked, sold, sellable)
        table.add_section()
        for shop, storefront in zip(shops, storefronts, strict=True):
            table.add_row(
                f"{shop.name} (stand-in)",
                f"{storefront.quantity:,}",
                f"units on its listings, {storefront.ledger:,} by Rebound's ledger; {storefront.offered:,} "
                f"made available, {storefront.sold:,} sold by its buyers, {storefront.oversold:,} oversold, "
                f"{storefront.keys_off:,} listings off",
            )
        console.print(table)
        report = await checker.check_topics(bootstrap, sellers, wave.expected_stock, kafka_options=kafka)
        console.print(report.table())
        if not report.ok:
            for check, examples in report.examples.items():
                console.print(f"[red]{check}[/]: " + "; ".join(examples))
        for shop, storefront in zip(shops, storefronts, strict=True):
            if not storefront.ok:
                console.print(
                    f"[red]{shop.name}[/]: {storefront.oversold:,} units oversold, {storefront.keys_off:,} "
                    f"listings whose number differs from the ledger's: " + "; ".join(storefront.examples)
                )
        ok = report.ok and all(storefront.ok for storefront in storefronts)
        console.print("[bold green]all guarantees held[/]" if ok else "[bold red]a guarantee was broken[/]")
        await _console_hint(pool, wave.sellers, console)
        return ok
    finally:
        await pool.close()


async def _console_hint(pool: asyncpg.Pool, sellers: Sequence[str], console: Console) -> None:
    """Where the wave's open cases and its units' paths are, for the person who ran it."""
    cases = await pool.fetchval(
        "SELECT count(*) FROM console.cases WHERE status = 'open' AND seller_id = ANY($1::text[])", list(sellers)
    )
    lpn = await pool.fetchval(
        "SELECT k.value FROM console.event_keys k JOIN console.events e USING (event_id)"
        " WHERE k.kind = 'lpn' AND e.seller_id = ANY($1::text[]) AND e.topic = $2 LIMIT 1",
        list(sellers),
        STOCK_ADJUSTMENTS.name,
    )
    console.print(
        f"the work queue holds {cases:,} open cases of this wave's sellers: `rebound cases list`"
        + (f"; a unit from the dock to the shop: `rebound trace {lpn}`" if lpn else "")
        + "; in the browser: `rebound demo --keep-running` (or `make run`) serves the console"
    )


def dock_lead(units: int) -> timedelta:
    """How far before now the wave starts, so that every parcel reaches the dock before the run
    (scans come 24-121 h after their RMA, RMAs at most 30 s apart): dock-to-stock times are real."""
    return timedelta(hours=121, seconds=30 * units)


async def _catch_up(
    bootstrap: str,
    pool: asyncpg.Pool,
    wave: simulation.Wave,
    fleet: Fleet,
    timeout: float,
    kafka: Mapping[str, Any],
    console: Console,
) -> None:
    """Until every service has consumed and relayed everything, and every connected shop's
    listing has every adjustment applied."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the pipeline to catch up") as status:

        def show(state: Backlog) -> None:
            status.update(
                f"waiting for the pipeline to catch up: {state.lag:,} records to consume, "
                f"{state.outbox:,} events to relay"
            )

        while True:
            await wait_until_caught_up(
                bootstrap,
                pool,
                timeout=max(deadline - time.monotonic(), 1.0),
                on_poll=show,
                fleet=fleet,
                kafka_options=kafka,
                services=FLEET,
            )
            behind = await unsynced(pool, wave.sellers)
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{behind} listings still have adjustments to apply after {timeout:.0f} s")
            status.update(f"waiting for the shops: {behind:,} listings with adjustments to apply")
            await asyncio.sleep(0.5)


async def sell_offered(
    share: float,
    seed: int,
    wave: simulation.Wave,
    settings: Settings,
    pool: asyncpg.Pool,
    fleet: Fleet,
    timeout: float,
    console: Console,
    shops: list[DemoShops],
) -> Counter[str]:
    """The second phase: the units on offer sell. On a marketplace with a stand-in its buyers buy
    a share of what its listings show, and the warehouse picks a unit of each order's key;
    elsewhere the warehouse picks a share of the units on offer. Then the ledger catches up again.
    Returns, per channel, the stand-in's units sold that the warehouse found no unit for."""
    kafka = kafka_options(settings)
    offered = await simulation.offered_units(
        settings.database_url, wave.sellers, connect_kwargs=database_connect_kwargs(settings)
    )
    by_shop = {shop.channel for shop in shops}
    elsewhere = [unit for unit in offered if unit.channel not in by_shop]
    picks = simulation.sales(elsewhere, share, seed, datetime.now(UTC))
    unfilled: Counter[str] = Counter()
    bought_total = 0
    for shop in shops:
        bought = shop.buy(round(share * shop.on_listings))
        bought_total += sum(bought.values())
        on_keys = await simulation.units_on_keys(
            settings.database_url, list(bought), connect_kwargs=database_connect_kwargs(settings)
        )
        shop_picks, unfilled[shop.channel] = simulation.picks_for_orders(
            on_keys, bought, seed, datetime.now(UTC), shop.channel
        )
        picks += shop_picks
    started = time.monotonic()
    await simulation.publish(picks, settings.kafka_bootstrap_servers, progress=False, kafka_options=kafka)
    with console.status("waiting for the ledger to apply the picks"):
        await wait_until_caught_up(
            settings.kafka_bootstrap_servers, pool, timeout=timeout, fleet=fleet, kafka_options=kafka, services=FLEET
        )
    console.print(
        f"sold {len(picks):,} units ({bought_total:,} by the stand-ins' buyers, "
        f"{len(picks) - bought_total + sum(unfilled.values()):,} of the {len(elsewhere):,} on other "
        f"channels): picks applied {time.monotonic() - started:.1f} s after the first one; "
        f"`rebound report --seller {wave.sellers[0]}` shows the resale figures"
    )
    return unfilled


@dataclass(frozen=True)
class Storefront:
    """The stand-in's listings beside the ledger's keys, after the sales were picked."""

    quantity: int
    ledger: int
    offered: int
    sold: int
    oversold: int
    keys_off: int
    examples: list[str]

    @property
    def ok(self) -> bool:
        return self.oversold == 0 and self.keys_off == 0


async def _storefront(pool: asyncpg.Pool, wave: simulation.Wave, shop: DemoShops, unfilled: int) -> Storefront:
    """Every listing shows what the ledger has on its key, and every sale had a unit to pick
    (`unfilled`: the units sold that the warehouse found no unit for, i.e. oversold)."""
    ledger: dict[str, int] = {
        row["key"]: row["available"]
        for row in await pool.fetch(
            "SELECT key, available FROM ledger.stock WHERE seller_id = ANY($1::text[])"
            " AND split_part(key, ':', 2) = $2",
            list(wave.sellers),
            shop.channel,
        )
    }
    stocks = shop.stocks()
    off = [
        f"{key}: shop {quantity}, ledger {ledger.get(key, 0)}"
        for key, quantity, _ in stocks
        if quantity != ledger.get(key, 0)
    ]
    return Storefront(
        quantity=sum(q for _, q, _ in stocks),
        ledger=sum(ledger.values()),
        offered=sum(q + sold for _, q, sold in stocks),
        sold=sum(sold for _, _, sold in stocks),
        oversold=unfilled,
        keys_off=len(off),
        examples=off[:5],
    )


def _inbound(topic: str) -> bool:
    return topic in {t.name for t in INBOUND}


def _summary(
    wave: simulation.Wave,
    received: list[tuple[int, int, UnitReceived]],
    graded: list[tuple[int, int, UnitGraded]],
    allocated: list[tuple[int, int, UnitAllocated]],
    adjustments: list[reading.Record[StockAdjusted]],
    exceptions: list[ExceptionRaised],
    letters: list[MessageDeadLettered],
    parked: int,
    sold: int,
    sellable: dict[str, int],
) -> Table:
    latest: dict[str, UnitGraded] = {}
    for _, _, g in graded:
        if g.lpn not in latest or g.revision > latest[g.lpn].revision:
            latest[g.lpn] = g
    placed: dict[str, UnitAllocated] = {}  # the last allocation of each unit, in topic order (one LPN, one partition)
    for _, _, a in allocated:
        placed[a.lpn] = a
    destinations = Counter(a.destination.kind if a.destination else "held" for a in placed.values())
    channels = Counter(
        f"{a.destination.channel} {a.destination.condition or a.destination.kind}"
        for a in placed.values()
        if a.destination and a.destination.channel
    )
    lanes = Counter(u.lane for _, _, u in received)
    grades = Counter(g.grade for g in latest.values())
    moves = Counter((r.model.condition, "+1" if r.model.delta > 0 else "-1") for r in adjustments)

    table = Table(title="Return wave", show_header=True)
    table.add_column("What")
    table.add_column("Count", justify="right")
    table.add_column("Detail")
    table.add_row("parcels sent", f"{wave.parcels:,}", f"{wave.out_of_order:,} returns out of order")
    table.add_row("units sent", f"{wave.units:,}", f"{wave.unexpected_units:,} unexpected units")
    table.add_row("duplicates sent", f"{wave.duplicates:,}", "same event_id, same content")
    table.add_row(
        "bad messages sent",
        f"{sum(wave.bad_by_kind.values()):,}",
        ", ".join(f"{k} {v}" for k, v in sorted(wave.bad_by_kind.items())),
    )
    table.add_row(
        "hostile but valid",
        f"{sum(wave.hostile_by_kind.values()):,}",
        ", ".join(f"{k} {v}" for k, v in sorted(wave.hostile_by_kind.items())) + ": applied like any other",
    )
    table.add_row(
        "event ids shared",
        f"{wave.shared_event_ids:,}",
        "valid events with an event_id another seller's event has too: each applied",
    )
    table.add_section()
    table.add_row("parcels still parked", f"{parked:,}", "waiting for their RMA")
    table.add_row(
        "units received", f"{sum(lanes.values()):,}", ", ".join(f"{k} {v:,}" for k, v in sorted(lanes.items()))
    )
    table.add_row(
        "units graded", f"{len(latest):,}", ", ".join(f"{g} {grades.get(g, 0):,}" for g in ("A", "B", "C", "SCRAP"))
    )
    table.add_row("units placed", f"{len(placed):,}", ", ".join(f"{k} {v:,}" for k, v in sorted(destinations.items())))
    table.add_row(
        "offered per channel",
        f"{sum(channels.values()):,}",
        ", ".join(f"{k} {v:,}" for k, v in sorted(channels.items())),
    )
    table.add_row(
        "stock adjustments", f"{len(adjustments):,}", ", ".join(f"{c} {s} {n:,}" for (c, s), n in sorted(moves.items()))
    )
    table.add_row("sold", f"{sold:,}", "picked for storefront orders: no -1 sent, the shop counted the sale")
    table.add_row(
        "sellable now", f"{sum(sellable.values()):,}", ", ".join(f"{c} {n:,}" for c, n in sorted(sellable.items()))
    )
    table.add_section()
    table.add_row(
        "exceptions",
        f"{len(exceptions):,}",
        ", ".join(f"{k} {v:,}" for k, v in sorted(Counter(e.kind for e in exceptions).items())),
    )
    table.add_row(
        "dead letters",
        f"{len(letters):,}",
        ", ".join(f"{k} {v:,}" for k, v in sorted(Counter(d.kind for d in letters).items())),
    )
    return table


def main(options: DemoOptions, settings: Settings) -> int:
    console = Console()
    try:
        ok = asyncio.run(run_demo(options, settings, console))
    except (TimeoutError, RuntimeError) as error:
        console.print(f"[bold red]rebound demo: {error}[/]")
        return 2
    return 0 if ok else 1
