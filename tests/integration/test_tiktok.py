"""The TikTok Shop adapter against the TikTok Shop stand-in, over real HTTP on loopback: the
stand-in checks what the real API checks, and the adapter reads its answers as the real ones."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import asdict

from decimal import Decimal

import httpx
import orjson
import pytest

from rebound.connectors.marketplace import Paused, Refused, Throttled, Unauthorized, Unavailable
from rebound.connectors.tiktok import Credentials, TikTokShop, sign
from rebound.standins import serving
from rebound.standins.tiktok import Shop, TikTokStandIn

pytestmark = pytest.mark.integration

LISTING = {"product_id": "1729592969712207008", "sku_id": "1729388324987897824", "warehouse_id": "7054915283043174149"}


@pytest.fixture
async def standin() -> AsyncIterator[tuple[TikTokStandIn, str]]:
    market = TikTokStandIn(seed=7)
    async with serving(market.app) as url:
        yield market, url


def _credentials() -> Credentials:
    return Credentials(
        app_key="68xu9ks5p4i8",
        app_secret="e59af819cc",
        shop_cipher="ROW_xkMbgAAAeVAQra0eZ",
        access_token="at-1",
        refresh_token="rt-1",
        access_token_expire_in=int(time.time()) + 3600,
    )


async def _shop(market: TikTokStandIn, url: str, client: httpx.AsyncClient, **kw) -> TikTokShop:
    c = _credentials()
    await client.post(
        f"{url}/_standin/shops",
        content=orjson.dumps(
            asdict(
                Shop(c.app_key, c.app_secret, c.shop_cipher, c.access_token, c.refresh_token, c.access_token_expire_in)
            )
        ),
    )
    await client.post(f"{url}/_standin/listings", content=orjson.dumps({**LISTING, "quantity": 2}))
    return TikTokShop(c, client, api=url, auth=url, **kw)


async def test_a_quantity_written_reads_back_and_sales_are_counted(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(market, url, client)
        started = int(time.time())
        assert await shop.quantity(LISTING) == 2
        await shop.set_quantity(LISTING, 5)
        assert await shop.quantity(LISTING) == 5
        for _ in range(3):
            market.sell_one()
        assert await shop.quantity(LISTING) == 2
        assert len(await shop.sales_since(LISTING, started)) == 3
        assert await shop.sales_since(LISTING, started + 3600) == frozenset()


async def test_the_sales_of_many_pages_are_all_counted(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(market, url, client)
        await shop.set_quantity(LISTING, 250)
        while market.sell_one() is not None:
            pass
        assert await shop.quantity(LISTING) == 0
        assert len(await shop.sales_since(LISTING, 0)) == 250
        assert market.sell_one() is None  # buyers never take a listing below zero


async def test_a_request_whose_bytes_differ_from_what_was_signed_is_refused(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        await _shop(market, url, client)
        c = _credentials()
        path = f"/product/202309/products/{LISTING['product_id']}/inventory/update"
        body = orjson.dumps(
            {
                "skus": [
                    {"id": LISTING["sku_id"], "inventory": [{"warehouse_id": LISTING["warehouse_id"], "quantity": 9}]}
                ]
            }
        )
        query = {"app_key": c.app_key, "timestamp": str(int(time.time())), "shop_cipher": c.shop_cipher}
        signed = {**query, "sign": sign(c.app_secret, path, query, body)}
        headers = {"x-tts-access-token": c.access_token, "content-type": "application/json"}
        spaced = body.replace(b":", b": ")  # the same JSON, other bytes
        refused = await client.post(url + path, params=signed, content=spaced, headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (401, 106001)
        stale = {**query, "timestamp": str(int(time.time()) - 600)}
        late = await client.post(
            url + path, params={**stale, "sign": sign(c.app_secret, path, stale, body)}, content=body, headers=headers
        )
        assert late.json()["code"] == 36009004
        accepted = await client.post(url + path, params=signed, content=body, headers=headers)
        assert accepted.json()["code"] == 0
        assert market.state.stock[(LISTING["sku_id"], LISTING["warehouse_id"])].quantity == 9


async def test_code_zero_with_per_sku_errors_is_a_refusal_with_the_marketplaces_message(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(market, url, client)
        with pytest.raises(Refused, match="The warehouse does not exist") as refused:
            await shop.set_quantity({**LISTING, "warehouse_id": "1"}, 3)
        assert not isinstance(refused.value, Paused)
        market.state.faults.sku_errors = 1.0  # the product's status does not let it sell: held back
        with pytest.raises(Paused, match="can not be actiavted"):
            await shop.set_quantity(LISTING, 3)
        assert await shop.quantity(LISTING) == 2


async def test_rate_limits_and_server_errors_are_told_apart(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(market, url, client)
        market.state.faults.rate_limited = 1.0
        with pytest.raises(Throttled) as throttled:
            await shop.set_quantity(LISTING, 3)
        assert "36009002" in str(throttled.value) and throttled.value.retry_after_s > 0
        market.state.faults.rate_limited, market.state.faults.server_errors = 0.0, 1.0
        with pytest.raises(Unavailable, match="503"):
            await shop.quantity(LISTING)
    with pytest.raises(Unavailable):
        await TikTokShop(_credentials(), httpx.AsyncClient(), api="http://127.0.0.1:1").quantity(LISTING)


async def test_an_expired_token_is_refreshed_and_both_new_tokens_stored_before_use(standin) -> None:
    market, url = standin
    stored = []

    async def store(credentials: Credentials) -> None:
        stored.append(credentials)

    async with httpx.AsyncClient() as client:
        shop = await _shop(market, url, client, on_refresh=store)
        market.state.faults.expire_tokens = True
        await shop.set_quantity(LISTING, 4)
        assert await shop.quantity(LISTING) == 4
        [fresh] = stored
        assert fresh.access_token != "at-1" and fresh.refresh_token != "rt-1"
        assert shop.credentials == fresh and "at-" not in repr(fresh) and fresh.app_secret not in repr(fresh)
        stale = TikTokShop(_credentials(), client, api=url, auth=url)  # the old tokens are gone
        with pytest.raises(Unauthorized):
            await stale.quantity(LISTING)


async def test_a_price_is_set_on_the_sku_and_an_unknown_sku_is_refused(standin) -> None:
    market, url = standin
    async with httpx.AsyncClient() as client:
        shop = await _shop(market, url, client)
        await shop.set_price(LISTING, Decimal("19.90"), "USD")
        assert market.state.prices[LISTING["sku_id"]] == ("19.90", "USD")
        with pytest.raises(Refused, match="is not a sku of product"):
            await shop.set_price({**LISTING, "sku_id": "1729388324987890000"}, Decimal("5"), "USD")
