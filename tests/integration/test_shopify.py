"""The Shopify adapter against the Shopify stand-in, over real HTTP on loopback: GraphQL executed
against Shopify's schema, compare-and-set and idempotency keys mandatory, the throttle."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from decimal import Decimal
from typing import Any

import httpx
import pytest

from rebound.connectors.marketplace import Refused, Stale, Throttled, Unauthorized
from rebound.connectors.shopify import WRITE, ShopifyShop
from rebound.standins import serving
from rebound.standins.shopify import ShopifyStandIn, Store

pytestmark = pytest.mark.integration

ITEM, LOCATION = "gid://shopify/InventoryItem/30322695", "gid://shopify/Location/124656943"
LISTING = {"inventory_item_id": ITEM, "location_id": LOCATION}


@pytest.fixture
async def shop() -> AsyncIterator[tuple[ShopifyStandIn, ShopifyShop, httpx.AsyncClient, str]]:
    market = ShopifyStandIn(seed=4)
    market.stores["rebound-test"] = Store(token="shpat_test")
    market.add_level("rebound-test", ITEM, LOCATION, quantity=2)
    async with serving(market.app) as url, httpx.AsyncClient() as client:
        yield market, ShopifyShop(f"{url}/rebound-test", "shpat_test", client), client, url


async def test_a_quantity_written_with_compare_and_set_reads_back_and_sales_are_counted(shop) -> None:
    market, store, _, _ = shop
    started = int(time.time())
    assert await store.quantity(LISTING) == 2
    await store.set_quantity(LISTING, 5, seen=2, key="k-1")
    assert await store.quantity(LISTING) == 5
    market.sell_one(), market.sell_one()
    assert await store.quantity(LISTING) == 3
    assert len(await store.sales_since(LISTING, started)) == 2
    assert await store.sales_since(LISTING, started + 3600) == frozenset()


async def test_a_write_over_a_number_that_moved_is_stale_and_writes_nothing(shop) -> None:
    market, store, _, _ = shop
    market.sell_one()  # the shop sold after the connector read 2
    with pytest.raises(Stale):
        await store.set_quantity(LISTING, 3, seen=2, key="k-2")
    assert await store.quantity(LISTING) == 1


async def test_the_same_idempotency_key_repeats_the_first_result_and_other_input_is_refused(shop) -> None:
    market, store, _, _ = shop
    await store.set_quantity(LISTING, 4, seen=2, key="k-3")
    await store.set_quantity(LISTING, 4, seen=2, key="k-3")  # a retry: no second write, no stale
    assert (await store.quantity(LISTING), market.writes) == (4, 1)
    with pytest.raises(Refused, match="IDEMPOTENCY_KEY_PARAMETER_MISMATCH"):
        await store.set_quantity(LISTING, 9, seen=4, key="k-3")


async def test_the_directive_and_change_from_quantity_are_mandatory_as_from_2026_04(shop) -> None:
    _, _, client, url = shop
    endpoint, headers = f"{url}/rebound-test/admin/api/2026-04/graphql.json", {"X-Shopify-Access-Token": "shpat_test"}
    write: dict[str, Any] = {
        "name": "available",
        "reason": "restock",
        "quantities": [{"inventoryItemId": ITEM, "locationId": LOCATION, "quantity": 1, "changeFromQuantity": 2}],
    }
    without = WRITE.replace(" @idempotent(key: $key)", "").replace(", $key: String!", "")
    answer = (
        await client.post(endpoint, headers=headers, json={"query": without, "variables": {"input": write}})
    ).json()
    assert "@idempotent directive is required" in answer["errors"][0]["message"]
    unchecked = {
        **write,
        "quantities": [{k: v for k, v in write["quantities"][0].items() if k != "changeFromQuantity"}],
    }
    answer = (
        await client.post(
            endpoint, headers=headers, json={"query": WRITE, "variables": {"input": unchecked, "key": "k-4"}}
        )
    ).json()
    assert "changeFromQuantity" in answer["errors"][0]["message"]
    wrong_field = {"query": '{ inventoryItem(id: "x") { sku } }'}
    answer = (await client.post(endpoint, headers=headers, json=wrong_field)).json()
    assert "Cannot query field 'sku'" in answer["errors"][0]["message"]


async def test_throttling_says_how_long_to_wait_and_a_bad_token_is_unauthorized(shop) -> None:
    market, store, client, url = shop
    market.faults.throttled = 1.0
    with pytest.raises(Throttled) as throttled:
        await store.quantity(LISTING)
    assert throttled.value.retry_after_s > 0
    market.faults.throttled = 0.0
    with pytest.raises(Unauthorized):
        await ShopifyShop(f"{url}/rebound-test", "shpat_wrong", client).quantity(LISTING)
    with pytest.raises(Refused, match="not stocked"):
        await store.quantity({**LISTING, "location_id": "gid://shopify/Location/1"})


async def test_a_price_is_set_on_the_items_variant_in_the_stores_currency_only(shop) -> None:
    market, store, _, _ = shop
    await store.set_price(LISTING, Decimal("24.5"), "USD")
    assert market.stores["rebound-test"].variants[ITEM].price == "24.50"
    with pytest.raises(Refused, match="the store sells in USD, the price is in EUR"):
        await store.set_price(LISTING, Decimal("20"), "EUR")
    assert market.stores["rebound-test"].variants[ITEM].price == "24.50"
