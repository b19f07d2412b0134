"""Shopify (Admin GraphQL): a listing's `available` quantity at one location, read, written with
compare-and-set, and sold.

`inventorySetQuantities` takes `changeFromQuantity`, the number the write expects to replace
(mandatory from API 2026-04): a sale the shop made since the connector's read makes the write
fail with `CHANGE_FROM_QUANTITY_STALE` instead of erasing the sale, and the connector reads
again. Each write carries `@idempotent(key:)` (mandatory from 2026-04): the same key repeats the
first result instead of a second write. Throttling is a leaky bucket per app and store: a
throttled answer is a GraphQL error `THROTTLED`, with the bucket's state in `extensions.cost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from .marketplace import Refused, Stale, Throttled, Unauthorized, Unavailable

VERSION = "2026-04"
MAXIMUM = 1_000_000_000

READ = """query Available($item: ID!, $location: ID!) {
  inventoryItem(id: $item) {
    inventoryLevel(locationId: $location) { quantities(names: ["available"]) { name quantity } }
  }
}"""

WRITE = """mutation SetAvailable($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { createdAt changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""

VARIANT = """query Variant($item: ID!) {
  shop { currencyCode }
  inventoryItem(id: $item) { variant { id product { id } } }
}"""

PRICE = """mutation SetPrice($product: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $product, variants: $variants) {
    productVariants { id price }
    userErrors { code field message }
  }
}"""

ORDERS = """query Sold($query: String!, $after: String) {
  orders(first: 100, after: $after, query: $query) {
    nodes { id cancelledAt lineItems(first: 100) { nodes { id quantity variant { inventoryItem { id } } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""


class ShopifyShop:
    """A Shopify store as the connector sees it (`marketplace.Marketplace`). `listing` holds
    `inventory_item_id` and `location_id` (global ids)."""

    maximum = MAXIMUM
    compare_and_set = True
    idempotent = True

    def __init__(self, shop_url: str, access_token: str, client: httpx.AsyncClient, *, version: str = VERSION) -> None:
        self.endpoint = f"{shop_url.rstrip('/')}/admin/api/{version}/graphql.json"
        self.access_token = access_token
        self.client = client

    def __repr__(self) -> str:  # never the token
        return f"ShopifyShop({self.endpoint!r})"

    async def quantity(self, listing: Mapping[str, str]) -> int:
        data = await self._call(READ, {"item": listing["inventory_item_id"], "location": listing["location_id"]})
        level = (data.get("inventoryItem") or {}).get("inventoryLevel")
        if level is None:
            raise Refused(f"inventory item {listing['inventory_item_id']} is not stocked at {listing['location_id']}")
        return next((q["quantity"] for q in level["quantities"] if q["name"] == "available"), 0)

    async def set_quantity(
        self, listing: Mapping[str, str], quantity: int, *, seen: int | None = None, key: str | None = None
    ) -> None:
        change = {
            "inventoryItemId": listing["inventory_item_id"],
            "locationId": listing["location_id"],
            "quantity": quantity,
            "changeFromQuantity": seen,
        }
        data = await self._call(
            WRITE,
            {
                "key": key or "",
                "input": {
                    "name": "available",
                    "reason": "restock",
                    "referenceDocumentUri": f"rebound://adjustments/{key}",
                    "quantities": [change],
                },
            },
        )
        errors = (data.get("inventorySetQuantities") or {}).get("userErrors") or []
        if any(e.get("code") == "CHANGE_FROM_QUANTITY_STALE" for e in errors):
            raise Stale("; ".join(e.get("message", "") for e in errors))
        if any(e.get("code") == "IDEMPOTENCY_CONCURRENT_REQUEST" for e in errors):
            raise Unavailable("the same write is in progress")
        if errors:
            raise Refused("; ".join(f"{e.get('code')} {e.get('message', '')}".strip() for e in errors))

    async def set_price(self, listing: Mapping[str, str], amount: Decimal, currency: str) -> None:
        """The price of the inventory item's variant; a store sells in its own currency only."""
        data = await self._call(VARIANT, {"item": listing["inventory_item_id"]})
        store_currency = (data.get("shop") or {}).get("currencyCode")
        if store_currency != currency:
            raise Refused(f"the store sells in {store_currency}, the price is in {currency}")
        variant = ((data.get("inventoryItem") or {}).get("variant")) or {}
        if not variant:
            raise Refused(f"inventory item {listing['inventory_item_id']} has no variant")
        data = await self._call(
            PRICE, {"product": variant["product"]["id"], "variants": [{"id": variant["id"], "price": str(amount)}]}
        )
        if errors := (data.get("productVariantsBulkUpdate") or {}).get("userErrors"):
            raise Refused("; ".join(f"{e.get('code')} {e.get('message', '')}".strip() for e in errors))

    async def sales_since(
        self, listing: Mapping[str, str], since_s: int, *, known_at: float | None = None
    ) -> frozenset[str]:
        """Units of `listing`'s inventory item in orders created since `since_s`, cancelled ones
        left out: each unit of a line item is one id."""
        from datetime import UTC, datetime

        since = datetime.fromtimestamp(since_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        sold: set[str] = set()
        after = None
        while True:
            data = await self._call(ORDERS, {"query": f"created_at:>={since}", "after": after})
            orders = data["orders"]
            for order in orders["nodes"]:
                if order.get("cancelledAt"):
                    continue
                for line in order["lineItems"]["nodes"]:
                    item = ((line.get("variant") or {}).get("inventoryItem") or {}).get("id")
                    if item == listing["inventory_item_id"]:
                        sold |= {f"{line['id']}#{n}" for n in range(line["quantity"])}
            if not orders["pageInfo"]["hasNextPage"]:
                return frozenset(sold)
            after = orders["pageInfo"]["endCursor"]

    async def _call(self, query: str, variables: Mapping[str, Any]) -> dict:
        try:
            response = await self.client.post(
                self.endpoint,
                json={"query": query, "variables": dict(variables)},
                headers={"X-Shopify-Access-Token": self.access_token},
            )
        except httpx.HTTPError as error:
            raise Unavailable(f"{type(error).__name__}: {error}") from error
        if response.status_code in (401, 403):
            raise Unauthorized(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code == 429:
            raise Throttled("HTTP 429", _retry_after(response, 1.0))
        if response.status_code >= 500:
            raise Unavailable(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as error:
            raise Unavailable(f"HTTP {response.status_code}: not JSON") from error
        errors = body.get("errors") or []
        if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
            raise Throttled("THROTTLED", _refill_wait(body))
        if errors:
            raise Refused("; ".join(e.get("message", "") for e in errors))
        return body.get("data") or {}


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(float(response.headers.get("retry-after", default)), 0.0)
    except ValueError:
        return default


def _refill_wait(body: Mapping[str, Any]) -> float:
    """How long until the bucket holds what the query asked for, from `extensions.cost`."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        missing = float(cost.get("requestedQueryCost", 0)) - float(status.get("currentlyAvailable", 0))
        return max(missing / float(status["restoreRate"]), 0.1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 1.0
