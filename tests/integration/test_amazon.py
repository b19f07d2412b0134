"""The Amazon SP-API adapter against the Amazon stand-in, over real HTTP on loopback: tokens from
Login with Amazon, writes that are only queued when accepted, the Orders v0 quotas and the sales
cache built to live within them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from decimal import Decimal

import httpx
import orjson
import pytest

from rebound.connectors.amazon import QUOTAS, AmazonShop, Credentials
from rebound.connectors.marketplace import NotYet, Refused, Throttled, Unauthorized, Unavailable
from rebound.standins import serving
from rebound.standins.amazon import AmazonStandIn

pytestmark = pytest.mark.integration

SELLER, MARKETPLACE = "A3TESTSELLER01", "ATVPDKIKX0DER"
LISTING = {"seller_id": SELLER, "sku": "RB-TEE/M BLK", "marketplace_id": MARKETPLACE, "product_type": "SHIRT"}
OTHER = {**LISTING, "sku": "RB-MUG-01", "product_type": "DRINKING_CUP"}
CREDENTIALS = Credentials(
    client_id="amzn1.application-oa2-client.5f1e",
    client_secret="amzn1.oa2-cs.v1.9c3d",
    refresh_token="Atzr|IwEBIrefresh",
)


@pytest.fixture
async def standin() -> AsyncIterator[tuple[AmazonStandIn, str]]:
    market = AmazonStandIn(seed=11)
    async with serving(market.app) as url:
        yield market, url


async def _shop(url: str, client: httpx.AsyncClient, **kw) -> AmazonShop:
    c = CREDENTIALS
    await client.post(
        f"{url}/_standin/sellers",
        content=orjson.dumps(
            {
                "seller_id": SELLER,
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "refresh_token": c.refresh_token,
            }
        ),
    )
    for listing in (LISTING, OTHER):
        await client.post(
            f"{url}/_standin/listings",
            content=orjson.dumps(
                {
                    "seller_id": SELLER,
                    "sku": listing["sku"],
                    "marketplace_id": MARKETPLACE,
                    "product_type": listing["product_type"],
                    "quantity": 2,
                }
            ),
        )
    return AmazonShop(c, client, api=url, auth=url, **{"settle_s": 0.0, **kw})


def _shifted() -> tuple[list[float], Callable[[], float]]:
    """A clock the test moves forward (the stand-in keeps the real one)."""
    shift = [0.0]
    return shift, lambda: time.time() + shift[0]


async def _token(client: httpx.AsyncClient, url: str) -> str:
    c = CREDENTIALS
    answer = await client.post(
        f"{url}/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": c.refresh_token,
            "client_id": c.client_id,
            "client_secret": c.client_secret,
        },
    )
    return answer.json()["access_token"]


async def test_a_write_returns_only_once_applied_and_then_reads_back(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client)
        assert await shop.quantity(LISTING) == 2
        for quantity in (5, 7):  # the second is not mistaken for the first one's change
            started = time.monotonic()
            await shop.set_quantity(LISTING, quantity)
            assert time.monotonic() - started >= market.state.faults.accept_delay_s
            assert await shop.quantity(LISTING) == quantity
        state = (await client.get(f"{url}/_standin/state")).json()
        assert (state["writes"], state["queued"]) == (2, 0)


async def test_a_write_never_seen_applied_is_in_doubt(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client, applied_within_s=0.5)
        await shop.quantity(LISTING)
        market.state.faults.accept_delay_s = 30.0
        with pytest.raises(Unavailable, match="not seen applied"):
            await shop.set_quantity(LISTING, 9)
        assert await shop.quantity(LISTING) == 2 and market.state.writes == 0


async def test_sales_are_counted_by_id_across_pages_and_buyers_never_sell_below_zero(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client, page_size=10)
        started = int(time.time())
        await shop.set_quantity(LISTING, 23)
        sold = 0
        while market.sell_one() is not None:
            sold += 1
        assert sold == 25  # 23 of LISTING and the 2 of OTHER
        assert (await shop.quantity(LISTING), await shop.quantity(OTHER)) == (0, 0)
        known_at = time.time()
        units = await shop.sales_since(LISTING, started, known_at=known_at)
        assert len(units) == 23 and all(unit.endswith("#0") for unit in units)
        assert len(await shop.sales_since(OTHER, started, known_at=known_at)) == 2
        assert market.state.requests["getOrders"] == 3  # 25 orders, 10 a page
        assert market.state.requests["getOrderItems"] == 25  # each order's items once
        assert await shop.sales_since(LISTING, started + 3600) == frozenset()


async def test_sales_not_known_yet_wait_for_the_next_listing_the_quota_allows(standin) -> None:
    market, url = standin
    shift, clock = _shifted()
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client, clock=clock, quotas={**QUOTAS, "getOrders": (0.0167, 1.0)})
        started = int(time.time())
        assert await shop.sales_since(LISTING, started, known_at=clock()) == frozenset()
        market.sell_one(market.state.listings[(SELLER, LISTING["sku"])])
        with pytest.raises(NotYet) as not_yet:
            await shop.sales_since(LISTING, started, known_at=clock())
        assert 55.0 < not_yet.value.retry_after_s <= 60.0
        assert await shop.sales_since(LISTING, started) == frozenset()  # without known_at: what it holds
        assert market.state.requests["getOrders"] == 1  # no call beyond the quota
        shift[0] = not_yet.value.retry_after_s
        assert len(await shop.sales_since(LISTING, started, known_at=clock())) == 1


async def test_order_items_wait_for_their_own_quota() -> None:
    shift, clock = _shifted()
    market = AmazonStandIn(seed=3, clock=clock)  # one clock for both sides: the quotas agree
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        shop = await _shop(url, client, clock=clock)
        listing = market.state.listings[(SELLER, LISTING["sku"])]
        listing.quantity = 32
        started = int(clock())
        for _ in range(32):
            market.sell_one(listing)
        known_at = clock()
        with pytest.raises(NotYet) as not_yet:
            await shop.sales_since(LISTING, started, known_at=known_at)
        assert market.state.requests["getOrderItems"] == 30  # the burst, and not one more
        assert 0.1 <= not_yet.value.retry_after_s <= 2.0
        shift[0] += 4.0
        assert len(await shop.sales_since(LISTING, started, known_at=known_at)) == 32


async def test_callers_of_one_shop_share_one_refresh(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client)
        started = int(time.time())
        market.sell_one(), market.sell_one(), market.sell_one()
        known_at = time.time()
        answers = await asyncio.gather(
            *(shop.sales_since(listing, started, known_at=known_at) for listing in (LISTING, OTHER) * 3)
        )
        assert sum(map(len, answers[:2])) == 3 and answers[:2] * 3 == answers
        assert market.state.requests["getOrders"] == 1


async def test_a_sale_between_the_read_and_the_applied_write_is_a_sale_since_the_read(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client)
        read_at = int(time.time())
        before = await shop.sales_since(LISTING, read_at, known_at=time.time())
        seen = await shop.quantity(LISTING)
        market.state.faults.sales_before_write = 1
        await shop.set_quantity(LISTING, seen + 3)
        after = await shop.sales_since(LISTING, read_at, known_at=time.time())
        assert len(after - before) == 1  # the write overwrote it: the connector restores from this
        assert await shop.quantity(LISTING) == 5 and market.state.listings[(SELLER, LISTING["sku"])].sold == 1


async def test_a_token_is_fetched_once_and_again_before_or_when_it_expires(standin) -> None:
    market, url = standin
    shift, clock = _shifted()
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client, clock=clock)
        await shop.quantity(LISTING)
        await shop.quantity(LISTING)
        assert market.state.grants == 1
        market.state.faults.expire_tokens = True  # Amazon's 403 "has expired" mid-run
        await shop.set_quantity(LISTING, 4)
        assert await shop.quantity(LISTING) == 4 and market.state.grants == 2
        shift[0] = 3550.0  # within a minute of the hour it lasts
        await shop.quantity(LISTING)
        assert market.state.grants == 3
        for secret in (CREDENTIALS.client_secret, CREDENTIALS.refresh_token, "Atza|"):
            assert secret not in repr(shop) and secret not in repr(CREDENTIALS)
        wrong = Credentials(CREDENTIALS.client_id, "amzn1.oa2-cs.v1.wrong", CREDENTIALS.refresh_token)
        with pytest.raises(Unauthorized, match="invalid_client"):
            await AmazonShop(wrong, client, api=url, auth=url).quantity(LISTING)
        with pytest.raises(Unauthorized, match="denied"):  # a token of another seller
            await shop.quantity({**LISTING, "seller_id": "A9OTHERSELLER"})


async def test_quota_refusals_and_server_errors_are_told_apart(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client)
        market.state.faults.rate_limited = 1.0
        with pytest.raises(Throttled, match="QuotaExceeded") as throttled:
            await shop.quantity(LISTING)
        assert throttled.value.retry_after_s > 0
        market.state.faults.rate_limited, market.state.faults.server_errors = 0.0, 1.0
        with pytest.raises(Unavailable, match="InternalFailure"):
            await shop.quantity(LISTING)
        with pytest.raises(Unavailable):
            await shop.sales_since(LISTING, int(time.time()), known_at=time.time())
    async with httpx.AsyncClient() as client:
        with pytest.raises(Unavailable):
            await AmazonShop(CREDENTIALS, client, api="http://127.0.0.1:1", auth="http://127.0.0.1:1").quantity(LISTING)


async def test_an_invalid_submission_or_unknown_sku_is_refused_with_amazons_message(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client)
        with pytest.raises(Refused, match="INVALID: PRODUCT_TYPE_MISMATCH .* does not match the listing's"):
            await shop.set_quantity({**LISTING, "product_type": "LUGGAGE"}, 3)
        with pytest.raises(Refused, match="INVALID_QUANTITY"):
            await shop.set_quantity(LISTING, -1)
        with pytest.raises(Refused, match="NotFound"):
            await shop.quantity({**LISTING, "sku": "RB-NOPE"})
        with pytest.raises(Refused, match="NotFound"):
            await shop.set_quantity({**LISTING, "sku": "RB-NOPE"}, 1)
        assert await shop.quantity(LISTING) == 2 and market.state.writes == 0


async def test_the_stand_in_refuses_what_amazon_refuses() -> None:
    now = [time.time()]
    market = AmazonStandIn(seed=5, clock=lambda: now[0])  # a still clock: a burst is a burst
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        await _shop(url, client)
        headers = {"x-amz-access-token": await _token(client, url)}
        path = f"{url}/listings/2021-08-01/items/{SELLER}/RB-MUG-01"
        body = {
            "productType": "DRINKING_CUP",
            "patches": [
                {
                    "op": "merge",
                    "path": "/attributes/fulfillment_availability",
                    "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 1}],
                }
            ],
        }
        answers = [
            await client.patch(path, params={"marketplaceIds": MARKETPLACE}, json=body, headers=headers)
            for _ in range(6)
        ]
        assert [a.json()["status"] for a in answers[:5]] == ["ACCEPTED"] * 5
        assert answers[5].status_code == 429 and "x-amzn-ratelimit-limit" not in answers[5].headers
        assert answers[5].json() == {
            "errors": [
                {
                    "code": "QuotaExceeded",
                    "details": "",
                    "message": "You exceeded your quota for the requested resource.",
                }
            ]
        }
        read = await client.get(path, params={"marketplaceIds": MARKETPLACE}, headers=headers)
        assert read.status_code == 200  # a bucket per operation
        orders = [
            await client.get(
                f"{url}/orders/v0/orders",
                headers=headers,
                params={"MarketplaceIds": MARKETPLACE, "CreatedAfter": "2026-01-01T00:00:00Z"},
            )
            for _ in range(21)
        ]
        assert [o.status_code for o in orders] == [200] * 20 + [429]
        now[0] += 1.0  # the PATCH bucket refills
        unchecked = await client.patch(path, json=body, headers=headers)
        assert unchecked.status_code == 400 and unchecked.json()["errors"][0]["code"] == "BAD_REQUEST"
        shapeless = {"productType": "DRINKING_CUP", "patches": [{"op": "set", "path": "/attributes/x"}]}
        answer = await client.patch(path, params={"marketplaceIds": MARKETPLACE}, json=shapeless, headers=headers)
        assert answer.status_code == 400
        unknown = await client.patch(
            f"{url}/listings/2021-08-01/items/{SELLER}/RB-NOPE",
            params={"marketplaceIds": MARKETPLACE},
            json=body,
            headers=headers,
        )
        assert unknown.json()["status"] == "INVALID" and unknown.json()["issues"][0]["severity"] == "ERROR"
        market.state.faults.expire_tokens = True
        expired = await client.get(path, params={"marketplaceIds": MARKETPLACE}, headers=headers)
        assert (expired.status_code, expired.json()) == (
            403,
            {
                "errors": [
                    {
                        "code": "Unauthorized",
                        "message": "Access to requested resource is denied.",
                        "details": "The access token you provided has expired.",
                    }
                ]
            },
        )
        market.state.faults.expire_tokens = False
        now[0] += 3600.0  # and an hour after it was issued, without the fault
        assert (await client.get(path, params={"marketplaceIds": MARKETPLACE}, headers=headers)).status_code == 403


async def test_a_price_is_the_offers_our_price_once_applied(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(url, client)
        await shop.set_price(LISTING, Decimal("12.99"), "USD")
        listing = market.state.listings[(SELLER, LISTING["sku"])]
        assert listing.price == (12.99, "USD")  # applied before the call returned
        await shop.set_quantity(LISTING, 6)  # the price's change is not taken for the quantity's
        assert listing.quantity == 6
        with pytest.raises(Refused, match="INVALID_PURCHASABLE_OFFER"):
            await shop.set_price(LISTING, Decimal("-1"), "USD")
