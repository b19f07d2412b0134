"""The eBay adapter against the eBay stand-in, over real HTTP on loopback: the stand-in checks what
the real Sell APIs check (tokens, shapes, the 250 revisions of a listing a day, daily quotas), and
the adapter reads its answers as the real ones. Time is the tests' own where a day must pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime

from decimal import Decimal

import httpx
import orjson
import pytest

from rebound.connectors.ebay import (
    PACE_BURST,
    PACIFIC,
    REVISIONS_A_DAY,
    Credentials,
    EbayShop,
    revision_day,
    seconds_to_next_day,
)
from rebound.connectors.marketplace import NotYet, Paused, Refused, Throttled, Unauthorized, Unavailable
from rebound.standins import serving
from rebound.standins.ebay import EbayStandIn

pytestmark = pytest.mark.integration

SKU, OFFER = "RB-WH1-0042-OPEN-BOX", "7401928374"
LISTING = {"sku": SKU, "offer_id": OFFER}
OTHER = {"sku": "RB-WH1-0077-NEW", "offer_id": "7401928399"}
BULK = "/sell/inventory/v1/bulk_update_price_quantity"
INVENTORY_SCOPE = "https://api.ebay.com/oauth/api_scope/sell.inventory"
FULFILLMENT_SCOPE = "https://api.ebay.com/oauth/api_scope/sell.fulfillment"


class Clock:
    """A clock the test moves: the adapter's and the stand-in's, the same."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def _pacific(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=PACIFIC).timestamp()


@pytest.fixture
async def standin() -> AsyncIterator[tuple[EbayStandIn, str, httpx.AsyncClient]]:
    market = EbayStandIn(seed=5)
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        yield market, url, client


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[EbayStandIn, str, httpx.AsyncClient, Clock]]:
    clock = Clock(_pacific(2026, 7, 14, 16, 30))  # 23:30 UTC: a UTC day ends before the Pacific one
    market = EbayStandIn(seed=6, clock=clock)
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        yield market, url, client, clock


def _credentials(clock: Clock | None = None, expires_in: float = 3600, **kw) -> Credentials:
    now = clock() if clock else time.time()
    given = {
        "client_id": "Rebound-Rebound-PRD-4e1c0f2a3-5b6d7e8f",
        "client_secret": "PRD-e1c0f2a35b6d-7e8f",
        "access_token": "v^1.1#i^1#seeded",
        "refresh_token": "v^1.1#i^1#r^1#refresh",
        "access_token_expires_at": now + expires_in,
    }
    return Credentials(**{**given, **kw})


async def _shop(
    url: str,
    client: httpx.AsyncClient,
    *,
    clock: Clock | None = None,
    quantity: int = 2,
    available: int | None = None,
    credentials: Credentials | None = None,
    seller: dict | None = None,
    **kw,
) -> EbayShop:
    """The seller and its listings on the stand-in, as an operator would set them up, and the
    adapter for it."""
    c = credentials or _credentials(clock)
    await client.post(
        f"{url}/_standin/sellers",
        content=orjson.dumps(
            {
                "name": "rebound-returns",
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "refresh_token": c.refresh_token,
                "access_token": c.access_token,
                "access_token_expires_at": c.access_token_expires_at,
                **(seller or {}),
            }
        ),
    )
    for ids, units in ((LISTING, quantity), (OTHER, 10)):
        await client.post(
            f"{url}/_standin/listings",
            content=orjson.dumps(
                {
                    "seller": "rebound-returns",
                    **ids,
                    "quantity": units,
                    **({"available": available} if available is not None and ids is LISTING else {}),
                }
            ),
        )
    return EbayShop(c, client, api=url, clock=clock or time.time, **kw)


def _listing(market: EbayStandIn, ids: dict = LISTING):
    return market.state.listings[("rebound-returns", ids["sku"])]


async def test_a_write_sets_both_quantities_and_a_read_is_what_buyers_can_buy(standin) -> None:
    market, url, client = standin
    shop = await _shop(url, client, quantity=9, available=4)
    assert await shop.quantity(LISTING) == 4  # the smaller of the item's and the offer's
    await shop.set_quantity(LISTING, 5)
    assert (_listing(market).quantity, _listing(market).available) == (5, 5)
    assert await shop.quantity(LISTING) == 5
    market.sell_one(_listing(market))
    assert (_listing(market).quantity, _listing(market).available) == (4, 4)
    assert await shop.quantity(LISTING) == 4
    with pytest.raises(Refused, match="could not be found"):
        await shop.quantity({"sku": "RB-NOPE", "offer_id": OFFER})


async def test_sales_are_counted_across_pages_and_cancelled_orders_left_out(standin) -> None:
    market, url, client = standin
    shop = await _shop(url, client, quantity=23, page_size=5)
    started = int(time.time())
    while market.sell_one() is not None:  # both listings, in random order
        pass
    sold = await shop.sales_since(LISTING, started)
    assert len(sold) == 23 and all(s.endswith("#0") for s in sold)
    assert market.state.requests["/sell/fulfillment/v1/order"] >= 7  # 33 orders, 5 a page
    orders = [o for _, o in market.state.sellers["rebound-returns"].orders if o["lineItems"][0]["sku"] == SKU]
    for order in orders[:3]:
        assert (await client.post(f"{url}/_standin/orders/{order['orderId']}/cancel")).status_code == 204
    remaining = await shop.sales_since(LISTING, started)
    assert len(remaining) == 20 and not any(s.startswith(o["orderId"]) for s in remaining for o in orders[:3])
    assert await shop.quantity(LISTING) == 3  # a cancellation gives its unit back
    assert await shop.sales_since(LISTING, started + 3600) == frozenset()  # eBay: "can't be in the future"


async def test_buyers_never_take_a_listing_below_zero(standin) -> None:
    market, url, client = standin
    await _shop(url, client, quantity=5, available=3)  # the offer shows 3 of the item's 5
    await client.put(f"{url}/_standin/buyers", content=orjson.dumps({"per_s": 1000}))
    for _ in range(200):  # they buy on their own, until nothing is left
        if _listing(market).buyable == _listing(market, OTHER).buyable == 0:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and go on trying
    await client.put(f"{url}/_standin/buyers", content=orjson.dumps({"per_s": 0}))
    listing = _listing(market)
    assert (listing.quantity, listing.available, listing.sold) == (2, 0, 3)
    assert _listing(market, OTHER).quantity == 0 and _listing(market, OTHER).sold == 10
    assert len(market.state.sellers["rebound-returns"].orders) == 13
    assert market.sell_one() is None


async def test_a_sale_between_the_read_and_the_write_is_a_sale_since_the_read(standin) -> None:
    market, url, client = standin
    shop = await _shop(url, client, quantity=4)
    read_at = int(time.time())
    before = await shop.sales_since(LISTING, read_at)
    seen = await shop.quantity(LISTING)
    market.state.faults.sales_before_write = 1
    await shop.set_quantity(LISTING, seen + 2)
    assert len(await shop.sales_since(LISTING, read_at) - before) == 1
    assert await shop.quantity(LISTING) == 6  # the write overwrote it: the connector restores 5


async def test_a_per_item_error_of_a_207_is_refused_with_ebays_message(standin) -> None:
    market, url, client = standin
    shop = await _shop(url, client)
    market.state.faults.listing_errors = 1.0
    answer = await client.post(
        url + BULK,
        headers={"Authorization": f"Bearer {shop.credentials.access_token}"},
        json={
            "requests": [
                {
                    "sku": SKU,
                    "shipToLocationAvailability": {"quantity": 3},
                    "offers": [{"offerId": OFFER, "availableQuantity": 3}],
                }
            ]
        },
    )
    assert answer.status_code == 207
    [result] = answer.json()["responses"]
    assert (result["statusCode"], result["sku"], result["offerId"], result["errors"][0]["errorId"]) == (
        400,
        SKU,
        OFFER,
        25097,
    )
    with pytest.raises(Paused, match="25097 This listing is on hold due to a policy violation"):
        await shop.set_quantity(LISTING, 3)  # held back, not refused for good
    market.state.faults.listing_errors = 0.0
    with pytest.raises(Refused, match="25713 This Offer is not available") as refused:
        await shop.set_quantity({"sku": SKU, "offer_id": "1"}, 3)
    assert not isinstance(refused.value, Paused)
    with pytest.raises(Refused, match=r"25002 .*not associated with SKU"):
        await shop.set_quantity({"sku": SKU, "offer_id": OTHER["offer_id"]}, 3)
    assert (_listing(market).quantity, _listing(market).available, market.state.writes) == (2, 2, 0)
    too_many = await client.post(
        url + BULK,
        headers={"Authorization": f"Bearer {shop.credentials.access_token}"},
        json={"requests": [{"sku": SKU}] * 26},
    )
    assert too_many.status_code == 400 and too_many.json()["errors"][0]["errorId"] == 25709


async def test_429s_are_throttled_and_server_errors_unavailable(standin) -> None:
    market, url, client = standin
    shop = await _shop(url, client)
    market.state.faults.rate_limited = 1.0
    with pytest.raises(Throttled, match="2001 Too many requests") as throttled:
        await shop.set_quantity(LISTING, 3)
    assert throttled.value.retry_after_s == 60.0  # eBay sends no Retry-After with its quotas
    market.state.faults.retry_after_s = 7
    with pytest.raises(Throttled) as throttled:
        await shop.quantity(LISTING)
    assert throttled.value.retry_after_s == 7.0
    market.state.faults.rate_limited, market.state.faults.server_errors = 0.0, 1.0
    with pytest.raises(Unavailable, match="HTTP 500 25001"):
        await shop.quantity(LISTING)
    with pytest.raises(Unavailable, match="HTTP 500 30500"):
        await shop.sales_since(LISTING, int(time.time()))
    assert market.state.writes == 0
    async with httpx.AsyncClient() as closed:
        with pytest.raises(Unavailable):
            await EbayShop(_credentials(), closed, api="http://127.0.0.1:1").quantity(LISTING)


async def test_the_daily_call_quota_is_throttled_until_the_pacific_day_ends(clocked) -> None:
    _, url, client, clock = clocked
    shop = await _shop(url, client, clock=clock, seller={"daily_calls": {"inventory": 2, "fulfillment": 5}})
    assert await shop.quantity(LISTING) == 2  # two calls: the item and the offer
    with pytest.raises(Throttled, match="2001"):
        await shop.quantity(LISTING)
    assert await shop.sales_since(LISTING, int(clock())) == frozenset()  # another API, another quota
    clock.at += 3600  # 00:30 UTC, still the same Pacific day
    with pytest.raises(Throttled):
        await shop.quantity(LISTING)
    clock.at += seconds_to_next_day(clock.at)
    assert await shop.quantity(LISTING) == 2


async def test_an_expired_token_is_refreshed_once_and_stored_before_use(standin) -> None:
    market, url, client = standin
    stored: list[Credentials] = []

    async def store(credentials: Credentials) -> None:
        stored.append(credentials)

    shop = await _shop(url, client, on_refresh=store)
    market.state.faults.expire_tokens = True  # mid-run: eBay answers 401 with errorId 1001
    await shop.set_quantity(LISTING, 4)
    assert await shop.quantity(LISTING) == 4
    [fresh] = stored
    assert (market.state.unauthorized, market.state.refreshes) == (1, 1)
    assert fresh.access_token != "v^1.1#i^1#seeded" and fresh.refresh_token == "v^1.1#i^1#r^1#refresh"
    assert fresh.access_token_expires_at > time.time() + 7000 and shop.credentials == fresh
    assert "v^1.1" not in repr(fresh) and fresh.client_secret not in repr(fresh) and "v^1.1" not in repr(shop)
    revoked = EbayShop(_credentials(refresh_token="revoked"), client, api=url)
    with pytest.raises(Unauthorized, match="invalid_grant"):
        await revoked.quantity(LISTING)  # the seeded token expired, and this refresh token is no one's


async def test_a_token_about_to_expire_is_refreshed_before_the_call(standin) -> None:
    market, url, client = standin
    stored: list[Credentials] = []

    async def store(credentials: Credentials) -> None:
        stored.append(credentials)

    shop = await _shop(url, client, credentials=_credentials(expires_in=30), on_refresh=store)
    assert await shop.quantity(LISTING) == 2
    assert (market.state.unauthorized, market.state.refreshes, len(stored)) == (0, 1, 1)


async def test_a_token_without_the_scope_is_unauthorized(standin) -> None:
    _, url, client = standin
    readonly = _credentials(scopes=(INVENTORY_SCOPE + ".readonly", FULFILLMENT_SCOPE))
    shop = await _shop(
        url, client, credentials=readonly, seller={"scopes": [INVENTORY_SCOPE + ".readonly", FULFILLMENT_SCOPE]}
    )
    assert await shop.quantity(LISTING) == 2
    with pytest.raises(Unauthorized, match="1100 Access denied"):
        await shop.set_quantity(LISTING, 3)


async def test_the_251st_revision_of_a_pacific_day_is_refused_and_read_as_not_yet(clocked) -> None:
    market, url, client, clock = clocked
    # A restarted connector: its pacing starts afresh, but eBay counted the day's revisions.
    shop = await _shop(url, client, clock=clock, credentials=_credentials(clock, 30 * 86_400))
    market.state.revisions[(OFFER, revision_day(clock()))] = REVISIONS_A_DAY - 2
    await shop.set_quantity(LISTING, 7)
    await shop.set_quantity(LISTING, 8)  # the 250th
    with pytest.raises(NotYet, match="25019 Cannot revise listing") as refused:
        await shop.set_quantity(LISTING, 9)
    assert refused.value.retry_after_s == pytest.approx(7.5 * 3600 + 60)  # 16:30 PDT to midnight, and a minute
    assert (_listing(market).quantity, _listing(market).available, market.state.revisions_refused) == (8, 8, 1)
    sent = market.state.requests[BULK]
    clock.at += 3600  # 00:30 UTC: a new UTC day, the same Pacific one
    with pytest.raises(NotYet):
        await shop.set_quantity(LISTING, 9)  # the adapter knows: not sent
    assert market.state.requests[BULK] == sent
    with pytest.raises(NotYet, match="25019"):  # eBay's day is Pacific's
        await EbayShop(shop.credentials, client, api=url, clock=clock).set_quantity(LISTING, 9)
    clock.at += refused.value.retry_after_s - 3600
    await shop.set_quantity(LISTING, 9)
    assert _listing(market).quantity == 9


async def test_pacing_stops_a_hot_listing_before_it_spends_the_days_revisions(clocked) -> None:
    market, url, client, clock = clocked
    shop = await _shop(url, client, clock=clock)
    for n in range(PACE_BURST):
        await shop.set_quantity(LISTING, n)
    with pytest.raises(NotYet, match="paced") as paced:
        await shop.set_quantity(LISTING, 99)
    assert paced.value.retry_after_s == pytest.approx(450)  # then eight an hour: 50 + 25 h x 8 = 250
    assert market.state.requests[BULK] == PACE_BURST  # nothing sent
    clock.at += paced.value.retry_after_s
    await shop.set_quantity(LISTING, 99)
    with pytest.raises(NotYet):
        await shop.set_quantity(LISTING, 100)
    assert market.state.revisions[(OFFER, revision_day(clock()))] == PACE_BURST + 1 == market.state.writes
    assert _listing(market).quantity == 99


async def test_a_price_is_a_paced_revision_of_the_offer_in_the_marketplaces_currency(standin) -> None:
    market, url, client = standin
    shop = await _shop(url, client)
    revisions = sum(market.state.revisions.values())
    await shop.set_price(LISTING, Decimal("8.75"), "USD")
    assert _listing(market).price == ("8.75", "USD") and _listing(market).quantity == 2
    assert sum(market.state.revisions.values()) == revisions + 1
    with pytest.raises(Refused, match="Invalid value for price"):
        await shop.set_price(LISTING, Decimal("8.75"), "GBP")
