"""The Amazon adapter's sales cache: what it knows, up to when, and when it may ask again, on a
fake clock (no network; Amazon's answers come from an httpx mock transport)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from rebound.connectors.amazon import CANCELED, OVERLAP_S, AmazonShop, Credentials, SalesCache
from rebound.connectors.marketplace import NotYet

LISTING = {"seller_id": "A3TESTSELLER01", "sku": "RB-1", "marketplace_id": "ATVPDKIKX0DER", "product_type": "SHIRT"}


def test_each_unit_of_an_item_has_its_own_id_and_canceled_orders_and_other_skus_are_left_out() -> None:
    cache = SalesCache(settle_s=0.0)
    cache.listed(
        1000.0,
        2000.0,
        [
            ("111-1-1", 1100.0, "Unshipped"),
            ("111-1-2", 1200.0, "Pending"),
            ("111-1-3", 1300.0, CANCELED),
            ("111-1-4", 900.5, "Shipped"),
        ],
    )
    cache.itemized("111-1-1", [("10", "RB-1", 3), ("11", "RB-2", 1)])
    cache.itemized("111-1-2", [("20", "RB-1", 1)])
    cache.itemized("111-1-4", [("40", "RB-1", 1)])
    assert cache.unitemized() == []  # a canceled order needs no items
    assert cache.units("RB-1", 1000) == {"111-1-1/10#0", "111-1-1/10#1", "111-1-1/10#2", "111-1-2/20#0"}
    assert cache.units("RB-1", 1150) == {"111-1-2/20#0"}
    cache.merge([("111-1-2", 1200.0, CANCELED)])  # a later listing sees it canceled
    assert cache.units("RB-1", 1150) == frozenset()


def test_it_knows_through_the_listing_less_the_settling_time_and_not_past_an_order_without_items() -> None:
    cache = SalesCache(settle_s=120.0)
    assert not cache.covers(1000, None)
    cache.listed(1000.0, 2000.0, [("111-1-1", 1500.0, "Unshipped")])
    assert cache.listed_through == 1880.0
    assert cache.known_through == pytest.approx(1500.0, abs=0.01) and cache.known_through < 1500.0
    assert cache.covers(1000, 1499.0) and not cache.covers(1000, 1500.0) and not cache.covers(999, None)
    cache.itemized("111-1-1", [("10", "RB-1", 1)])
    assert cache.known_through == 1880.0 and cache.covers(1000, 1880.0) and not cache.covers(1000, 1881.0)


def test_listings_overlap_and_join_and_one_further_back_extends_the_start() -> None:
    cache = SalesCache(settle_s=0.0)
    cache.listed(1000.0, 2000.0, [])
    assert cache.created_after(1500) == 2000.0 - OVERLAP_S  # continues, overlapping
    cache.listed(cache.created_after(1500), 2600.0, [])
    assert (cache.start, cache.listed_through) == (1000.0, 2600.0)
    assert cache.created_after(500) == 500  # a question further back lists from there
    cache.listed(500.0, 2700.0, [])
    assert (cache.start, cache.listed_through) == (500.0, 2700.0)
    cache.listed(5000.0, 6000.0, [])  # with a gap, the older coverage no longer joins up
    assert (cache.start, cache.listed_through) == (5000.0, 6000.0)


def test_old_orders_are_forgotten_and_coverage_moves_with_them() -> None:
    cache = SalesCache(settle_s=0.0)
    cache.listed(1000.0, 2000.0, [("111-1-1", 1100.0, "Unshipped"), ("111-1-2", 1900.0, "Unshipped")])
    cache.prune(1500.0)
    assert list(cache.orders) == ["111-1-2"] and cache.start == 1500.0
    cache.prune(2500.0)
    assert cache.start is None and not cache.covers(2500, None)


class FakeAmazon:
    """Login with Amazon and Orders v0 answering from a list, counting calls."""

    def __init__(self) -> None:
        self.orders: list[tuple[str, float]] = []
        self.calls: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        name = "token" if path == "/auth/o2/token" else "items" if path.endswith("/orderItems") else "orders"
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == "token":
            return httpx.Response(200, json={"access_token": "Atza|x", "token_type": "bearer", "expires_in": 3600})
        if name == "items":
            order_id = path.split("/")[-2]
            return httpx.Response(
                200,
                json={
                    "payload": {
                        "AmazonOrderId": order_id,
                        "OrderItems": [
                            {"OrderItemId": f"{order_id}-1", "SellerSKU": "RB-1", "QuantityOrdered": 2, "ASIN": "B0X"}
                        ],
                    }
                },
            )
        after = datetime.fromisoformat(request.url.params["CreatedAfter"]).timestamp()
        return httpx.Response(
            200,
            json={
                "payload": {
                    "Orders": [
                        {
                            "AmazonOrderId": order_id,
                            "OrderStatus": "Unshipped",
                            "LastUpdateDate": _iso(at),
                            "PurchaseDate": _iso(at),
                        }
                        for order_id, at in self.orders
                        if at >= after
                    ]
                }
            },
        )


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_moment_not_yet_settled_is_not_yet_known_and_says_when_it_will_be() -> None:
    now = [1_800_000_000.0]
    amazon = FakeAmazon()
    async with httpx.AsyncClient(transport=httpx.MockTransport(amazon), base_url="http://amazon") as client:
        shop = AmazonShop(
            Credentials("id", "secret", "Atzr|r"),
            client,
            api="http://amazon",
            auth="http://amazon",
            clock=lambda: now[0],
            settle_s=120.0,
        )
        sold_at = now[0] - 10
        amazon.orders.append(("111-0000001-0000001", sold_at))
        with pytest.raises(NotYet) as not_yet:
            await shop.sales_since(LISTING, int(sold_at), known_at=now[0])
        assert not_yet.value.retry_after_s == pytest.approx(120.0)
        assert amazon.calls["orders"] == 1  # the first listing covers from `since`, not yet that far
        now[0] += 60.0
        with pytest.raises(NotYet):  # still unsettled: no call spent on it
            await shop.sales_since(LISTING, int(sold_at), known_at=now[0] - 60.0)
        assert amazon.calls["orders"] == 1
        now[0] += 60.0
        units = await shop.sales_since(LISTING, int(sold_at), known_at=now[0] - 120.0)
        assert units == {"111-0000001-0000001/111-0000001-0000001-1#0", "111-0000001-0000001/111-0000001-0000001-1#1"}
        assert (amazon.calls["orders"], amazon.calls["items"], amazon.calls["token"]) == (2, 1, 1)
