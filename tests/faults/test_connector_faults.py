"""The storefront connectors under faults, against the TikTok Shop, Shopify and eBay stand-ins
while their buyers buy (Amazon's Orders API, one page of orders a minute, is tried in
tests/integration/test_amazon_sync.py): two replicas killed with -9 again and again (and by their
own switch between a marketplace's answer and their bookkeeping), 429 and 5xx storms, answers that
come after the connectors gave up on them, tokens expiring, sales landing between a read and its
write, and a marketplace away for 30 s. At the end every unit Rebound offered on a listing is on it
or sold there, once: none lost, none doubled, none sold before it was offered."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from rich.console import Console

from rebound.simulation import reading
from rebound.connectors.sync import FAULT_KILL_AFTER_WRITE
from rebound.simulation.fleet import Fleet
from rebound.standins import serving
from rebound.standins.shopify import ShopifyStandIn
from rebound.standins.ebay import EbayStandIn
from rebound.standins.shops import (
    DemoShops,
    EbayShops,
    ShopifyShops,
    TikTokShops,
    close_shops,
    open_ebay_shops,
    open_shopify_shops,
    open_tiktok_shops,
    unsynced,
)
from rebound.standins.tiktok import TikTokStandIn
from rebound_contracts.topics import ACKS, STOCK_ADJUSTMENTS
from tests import factories as f

from .harness import log_events, run_seed

pytestmark = pytest.mark.faults

SKUS = [f"SKU-{n}" for n in range(6)]
UNITS_PER_KEY = 16
OUTAGE_S = 30.0
BUYERS_PER_S = 4.0
LATE_AT_MOST_S = 40.0
"""How long answers may keep coming late before the scenario gives up waiting for a timeout."""

MarketShops = TikTokShops | ShopifyShops | EbayShops
"""The shops of the three marketplaces tried here: each has its stand-in as `market`."""


class Served:
    """A stand-in's server that can go away and come back on the same address, its state kept."""

    def __init__(self, app) -> None:
        self.app = app
        self.port = 0
        self.url = ""
        self._serving: contextlib.AbstractAsyncContextManager[str] | None = None

    async def start(self) -> None:
        self._serving = serving(self.app, port=self.port)
        self.url = await self._serving.__aenter__()
        self.port = int(self.url.rsplit(":", 1)[1])

    async def stop(self) -> None:
        if self._serving is not None:
            serving_, self._serving = self._serving, None
            await serving_.__aexit__(None, None, None)


class Oversold(Exception):
    pass


def watch_sales(shops: DemoShops, sell_one: Callable, offered: Counter[str], oversold: Counter[str]) -> Callable:
    """The stand-in's buyers, watched: after each sale, the units each key has sold beyond all
    that was ever offered there by then."""

    def checked(*args: object) -> object:
        sold = sell_one(*args)
        for key, _quantity, units_sold in shops.stocks():
            oversold[key] = max(oversold[key], units_sold - offered[key])
        return sold

    return checked


async def test_connectors_under_kills_storms_expiring_tokens_and_an_outage(
    settings,
    pool,
    tmp_path: Path,
) -> None:
    seed = run_seed()
    rng = random.Random(seed)
    console = Console(force_terminal=False, width=120)
    console.print(f"\n[fault scenario] connectors: seed {seed} (replay: REBOUND_FAULT_SEED={seed})")
    seller = f"fault-conn-{uuid.uuid4().hex[:8]}"
    shop_id = f"shop-{seller}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    tiktok, shopify = TikTokStandIn(seed=seed), ShopifyStandIn(seed=seed)
    ebay = EbayStandIn(seed=seed)
    served = {"tiktok": Served(tiktok.app), "shopify": Served(shopify.app), "ebay": Served(ebay.app)}
    for server in served.values():
        await server.start()
    offered: Counter[str] = Counter()
    oversold: Counter[str] = Counter()
    notes: list[str] = []

    def note(what: str) -> None:
        notes.append(what)
        console.print(f"  {what}")

    try:
        shops: list[MarketShops] = [
            await open_tiktok_shops(
                pool, tiktok, served["tiktok"].url, {seller: shop_id}, ["W1"], SKUS, tmp_path / "secrets"
            ),
            await open_shopify_shops(
                pool, shopify, served["shopify"].url, {seller: shop_id}, ["W1"], SKUS, tmp_path / "secrets"
            ),
            await open_ebay_shops(
                pool, ebay, served["ebay"].url, {seller: shop_id}, ["W1"], SKUS, tmp_path / "secrets"
            ),
        ]
        for shop in shops:
            shop.market.buyers.sell_one = watch_sales(shop, shop.market.buyers.sell_one, offered, oversold)
        keys = [key for shop in shops for key in shop.keys.values()]
        # Unbuffered: a process killed with -9 loses no line of its log (the checks below read them).
        # Reconciled every few seconds: drift must never be seen where nobody but Rebound writes.
        plain = {**os.environ, "PYTHONUNBUFFERED": "1", "REBOUND_RECONCILE_EVERY_S": "2"}
        switched = {**plain, FAULT_KILL_AFTER_WRITE: str(rng.randrange(3, 9))}
        fleet = Fleet(log_dir=tmp_path / "logs", services=("connectors",), replicas=2, env=plain)
        fleet.start()
        try:
            async with _supervised(fleet, note) as kills:
                await asyncio.gather(
                    _send(settings.kafka_bootstrap_servers, keys, offered, rng),
                    _break(rng, fleet, switched, tiktok, shopify, ebay, served, shops, kills, note),
                )
                fleet.env = plain  # processes started from now on have no switch
                await _wait_applied(pool, seller, fleet, note)
            for shop in shops:
                shop.market.buyers.per_s = 0.0
            await _wait_reconciled(pool, seller, note)
        finally:
            fleet.stop()
    finally:
        await close_shops(pool, [seller])
        for server in served.values():
            await server.stop()

    logs = tmp_path / "logs"
    blocked = await pool.fetch(
        "SELECT key, blocked FROM connectors.listings WHERE seller_id = $1 AND blocked IS NOT NULL", seller
    )
    assert not blocked, f"keys blocked (seed {seed}): {[(r['key'], r['blocked']) for r in blocked]}"
    owed = {
        r["key"]: r["owed"]
        for r in await pool.fetch("SELECT key, owed FROM connectors.listings WHERE seller_id = $1", seller)
    }
    wrong = {
        key: (quantity, sold, offered[key], owed[key])
        for shop in shops
        for key, quantity, sold in shop.stocks()
        if quantity + sold != offered[key] + owed[key]
    }
    if wrong:
        offers = {
            key: offer
            for (_seller, _sku), key in shops[2].keys.items()
            for offer in [ebay.state.listings[(_seller, _sku)].offer_id]
        }
        for key in wrong:
            if key in offers:
                print(key, [h for h in ebay.state.history if h[1] == offers[key]])
    assert not wrong, f"units lost or doubled (seed {seed}), key: (on the listing, sold, offered, owed): {wrong}"
    # Without compare-and-set, a sale between a read and its write is overwritten until the check
    # after the write takes it back, a request later: a buyer of that listing in between buys a
    # unit that is not there. The connector finds it in the orders, reports it and owes the order
    # the key's next unit (the accounting above holds with it); it must never go unseen.
    reported: Counter[str] = Counter()
    for event in log_events(logs, "storefront_oversold"):
        reported[event["key"]] = max(reported[event["key"]], event["units"])
    unseen = {key: units for key, units in oversold.items() if units > reported[key]}
    assert not unseen, f"oversold and not reported (seed {seed}): {unseen} (reported: {dict(reported)})"
    assert not [key for key in oversold if oversold[key] > 0 and ":shopify:" in key], (
        f"oversold on Shopify, whose writes are compare-and-set (seed {seed}): {dict(oversold)}"
    )
    sold = sum(units for shop in shops for _, _, units in shop.stocks())
    acks = (await reading.read_records(settings.kafka_bootstrap_servers, ACKS, sellers={seller})).records
    assert {a.model.status for a in acks} == {"applied"}, Counter(a.model.status for a in acks)
    drifts = log_events(logs, "storefront_drift")
    assert not drifts, f"drift reported where only Rebound writes (seed {seed}): {drifts}"
    self_kills = log_events(logs, "fault_injected_connector_kill_after_write")
    resolved = log_events(logs, "storefront_in_doubt_resolved")
    restored = log_events(logs, "storefront_sales_restored")
    stale = log_events(logs, "storefront_stale")
    timed_out = _timed_out(logs)
    console.print(
        f"  {len(keys)} listings, {sum(offered.values())} units offered, {sold} sold by the buyers; "
        f"{len(self_kills)} kills between a write and its bookkeeping, {len(resolved)} writes in doubt "
        f"resolved, {len(restored)} overwritten sales restored ({sum(oversold.values())} sold again "
        f"first, reported), {len(stale)} stale writes read again; "
        f"{5 - shopify.faults.sales_before_write} Shopify sales made between a read and its write; "
        f"{len(timed_out)} calls timed out on a late answer"
    )
    assert self_kills and resolved, "no connector was killed between a write and its bookkeeping"
    assert timed_out, "no call timed out on a late answer"
    if shopify.faults.sales_before_write < 5:  # a forced sale needs a unit on the listing at that write
        assert stale, "a sale between Shopify's read and write did not make the write stale"
    assert sold > 0


def _timed_out(logs: Path) -> list[dict]:
    """The marketplace calls the connectors gave up on for want of an answer."""
    return [e for e in log_events(logs, "storefront_unavailable") if "Timeout" in e.get("error", "")]


async def _send(bootstrap: str, keys: list[str], offered: Counter[str], rng: random.Random) -> None:
    """Every key's units, +1 each in sequence order, over about 40 s: through every fault."""
    units = [(key, n) for key in keys for n in range(1, UNITS_PER_KEY + 1)]
    units.sort(key=lambda unit: (unit[1], rng.random()))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for number, (key, sequence) in enumerate(units):
            seller, channel, warehouse, sku, condition = key.split(":")
            adjustment = f.adjusted(
                seller, sku, sequence, +1, available=sequence, channel=channel, warehouse=warehouse, condition=condition
            )
            offered[key] += 1  # before it can reach the shop: a sale after it is not an oversell
            await producer.send_and_wait(
                STOCK_ADJUSTMENTS.name,
                value=adjustment.model_dump_json().encode(),
                key=STOCK_ADJUSTMENTS.key_of(adjustment).encode(),
            )
            if number % 20 == 19:
                await asyncio.sleep(40.0 / (len(units) / 20))
    finally:
        await producer.stop()


async def _break(
    rng: random.Random,
    fleet: Fleet,
    switched: dict[str, str],
    tiktok: TikTokStandIn,
    shopify: ShopifyStandIn,
    ebay: EbayStandIn,
    served: dict[str, Served],
    shops: list[MarketShops],
    kills: Counter[str],
    note: Callable[[str], None],
) -> None:
    for shop in shops:
        shop.market.buyers.per_s = BUYERS_PER_S
    # Without compare-and-set, a sale between a read and its write is overwritten until the check
    # after the write takes it back, milliseconds later: a buyer of that listing meanwhile buys a
    # unit that is not there (the connector reports it and owes it). Forced here on every write,
    # with buyers this busy, it would be an oversell by construction; the adapters' integration
    # tests force it with no buyer about. Shopify's compare-and-set turns it into a stale write.
    note("buyers buy; the next 5 Shopify writes in stock land just after a sale")
    shopify.faults.sales_before_write = 5
    await asyncio.sleep(rng.uniform(8.0, 10.0))
    # Before any kill: a connector killed while it waits for a late answer never times out on it.
    note(
        "a quarter of the answers come 12 s late on every marketplace, for 6 s and until a connector"
        " times out on one (they time out at 10 s)"
    )
    for faults in (tiktok.state.faults, ebay.state.faults, shopify.faults):
        faults.late = 0.25
    began = time.monotonic()
    while time.monotonic() - began < 6.0 or not _timed_out(fleet.log_dir):
        assert time.monotonic() - began < LATE_AT_MOST_S, f"no call timed out in {LATE_AT_MOST_S:.0f} s of late answers"
        await asyncio.sleep(0.5)
    for faults in (tiktok.state.faults, ebay.state.faults, shopify.faults):
        faults.late = 0.0
    note(
        "from now on each connector process kills itself at marketplace write number "
        f"{switched[FAULT_KILL_AFTER_WRITE]} of each start, once the write is made and before booking it"
    )
    fleet.env = switched
    for _ in range(4):
        victim = rng.choice([m for m in fleet.members if m.alive()] or fleet.members)
        if victim.alive():
            note(f"kill -9 {victim.name}")
            victim.kill()
            kills["chaos"] += 1
        await asyncio.sleep(rng.uniform(0.5, 2.0))
    note("429 and 5xx storm on every marketplace for 5 s")
    for faults in (tiktok.state.faults, ebay.state.faults):
        faults.rate_limited, faults.server_errors = 0.3, 0.2
    shopify.faults.throttled, shopify.faults.server_errors = 0.3, 0.2
    await asyncio.sleep(5.0)
    for faults in (tiktok.state.faults, ebay.state.faults):
        faults.rate_limited = faults.server_errors = 0.0
    shopify.faults.throttled = shopify.faults.server_errors = 0.0
    note("tokens expire on TikTok Shop and eBay")
    for faults in (tiktok.state.faults, ebay.state.faults):
        faults.expire_tokens = True
    await asyncio.sleep(rng.uniform(1.0, 3.0))
    note(f"TikTok Shop away for {OUTAGE_S:.0f} s")
    await served["tiktok"].stop()
    await asyncio.sleep(OUTAGE_S)
    await served["tiktok"].start()
    note("TikTok Shop back")


@contextlib.asynccontextmanager
async def _supervised(fleet: Fleet, note: Callable[[str], None]) -> AsyncIterator[Counter[str]]:
    """Restarts every member that died (killed by the chaos or by its own switch)."""
    kills: Counter[str] = Counter()

    async def supervise() -> None:
        while True:
            for member in fleet.dead():
                kills["restarts"] += 1
                fleet.restart(member)
            await asyncio.sleep(0.3)

    task = asyncio.create_task(supervise())
    try:
        yield kills
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        note(f"{kills['chaos']} kills by the scenario, {kills['restarts']} restarts in all")


async def _wait_reconciled(
    pool,
    seller: str,
    note: Callable[[str], None],
    timeout: float = 60.0,
) -> None:
    """Until every listing has been compared with its marketplace since now."""
    since = await pool.fetchval("SELECT now()")
    deadline = time.monotonic() + timeout
    while left := await pool.fetch(
        "SELECT key, blocked, intent, owed, applied_through, received_through, not_before, reconciled_at"
        " FROM connectors.listings WHERE seller_id = $1 AND reconciled_at <= $2",
        seller,
        since,
    ):
        # What keeps each one from being found idle (a write in flight, a block, an adjustment
        # not applied) or compared (its shop paused, its sales not known that far yet).
        assert time.monotonic() < deadline, f"{len(left)} listings not reconciled after {timeout:.0f} s: " + "; ".join(
            str(dict(row)) for row in left
        )
        await asyncio.sleep(0.5)
    note("every listing reconciled once more after the run")


async def _wait_applied(
    pool,
    seller: str,
    fleet: Fleet,
    note: Callable[[str], None],
    timeout: float = 300.0,
) -> None:
    deadline = time.monotonic() + timeout
    keys = len(SKUS) * 2 * 3
    while True:
        applied = await pool.fetchval(
            "SELECT count(*) FROM connectors.listings WHERE seller_id = $1 AND applied_through = $2 AND intent IS NULL",
            seller,
            UNITS_PER_KEY,
        )
        blocked = await pool.fetchval(
            "SELECT count(*) FROM connectors.listings WHERE seller_id = $1 AND blocked IS NOT NULL", seller
        )
        if applied == keys or blocked:
            note(f"{applied} of {keys} listings applied, {blocked} blocked")
            return
        assert time.monotonic() < deadline, (
            f"not applied after {timeout:.0f} s: {applied} of {keys} ({await unsynced(pool, [seller])} unsynced)"
        )
        await asyncio.sleep(0.5)
