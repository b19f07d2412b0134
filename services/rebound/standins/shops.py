"""The demo's shops on the stand-ins: every listing key a wave can produce on a marketplace exists
as a listing there, each key is mapped to it, and each seller's shop is connected as `rebound
connect` connects it. Then the buyers buy, and each shop says what it sold on which key."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from ..connectors.adapters import connect_shop, map_listings
from ..connectors.app import amazon_settings, ebay_settings, shopify_settings, tiktok_settings, tokens_document
from .amazon import AmazonStandIn
from .ebay import EbayStandIn
from .ebay import Listing as EbayListing
from .ebay import Seller as EbaySeller
from .shopify import ShopifyStandIn, Store
from .tiktok import Shop, Stock, TikTokStandIn

CONDITIONS = ("new", "open_box")
AMAZON_US = "ATVPDKIKX0DER"


@dataclass
class DemoShops:
    """One marketplace's stand-in with the wave's sellers' shops on it."""

    name: str
    channel: str
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    """The stand-in's listing (two ids) -> the Rebound key it is mapped to."""

    def stocks(self) -> list[tuple[str, int, int]]:
        """(key, quantity on the listing, units its buyers bought there) of every listing."""
        raise NotImplementedError

    def buy(self, units: int) -> Counter[str]:
        """The buyers buy `units` (fewer if the listings run out); the units bought per key."""
        raise NotImplementedError

    @property
    def on_listings(self) -> int:
        return sum(quantity for _, quantity, _ in self.stocks())


@dataclass
class TikTokShops(DemoShops):
    market: TikTokStandIn = field(default_factory=TikTokStandIn)

    def stocks(self) -> list[tuple[str, int, int]]:
        return [(key, s.quantity, s.sold) for ids, key in self.keys.items() for s in [self.market.state.stock[ids]]]

    def buy(self, units: int) -> Counter[str]:
        before = len(self.market.state.orders)
        for _ in range(units):
            self.market.sell_one()
        return Counter(
            self.keys[(item["sku_id"], order["warehouse_id"])]
            for order in self.market.state.orders[before:]
            for item in order["line_items"]
        )


@dataclass
class ShopifyShops(DemoShops):
    market: ShopifyStandIn = field(default_factory=ShopifyStandIn)
    store_of: dict[str, str] = field(default_factory=dict)  # Rebound key -> store

    def stocks(self) -> list[tuple[str, int, int]]:
        return [
            (key, level.quantity, level.sold)
            for ids, key in self.keys.items()
            for level in [self.market.stores[self.store_of[key]].levels[ids]]
        ]

    def buy(self, units: int) -> Counter[str]:
        before = {name: len(store.orders) for name, store in self.market.stores.items()}
        for _ in range(units):
            self.market.sell_one()
        return Counter(
            self.keys[(line["variant"]["inventoryItem"]["id"], order["location"])]
            for name, store in self.market.stores.items()
            for order in store.orders[before[name] :]
            for line in order["lineItems"]
        )


@dataclass
class AmazonShops(DemoShops):
    market: AmazonStandIn = field(default_factory=AmazonStandIn)

    def stocks(self) -> list[tuple[str, int, int]]:
        self.market.apply_due()
        return [(key, x.quantity, x.sold) for ids, key in self.keys.items() for x in [self.market.state.listings[ids]]]

    def buy(self, units: int) -> Counter[str]:
        before = len(self.market.state.orders)
        for _ in range(units):
            self.market.sell_one()
        return Counter(
            self.keys[(order["seller_id"], item["SellerSKU"])]
            for order in self.market.state.orders[before:]
            for item in order["items"]
        )


@dataclass
class EbayShops(DemoShops):
    market: EbayStandIn = field(default_factory=EbayStandIn)

    def stocks(self) -> list[tuple[str, int, int]]:
        return [(key, x.buyable, x.sold) for ids, key in self.keys.items() for x in [self.market.state.listings[ids]]]

    def buy(self, units: int) -> Counter[str]:
        sold: Counter[str] = Counter()
        for _ in range(units):
            listing = self.market.sell_one()
            if listing is not None:
                sold[self.keys[(listing.seller, listing.sku)]] += 1
        return sold


def _listings(
    seller: str, channel: str, warehouses: Iterable[str], skus: Iterable[str]
) -> Iterable[tuple[str, str, str]]:
    """(key, warehouse, listing sku) of every listing a seller's wave can produce on `channel`
    (an open-box unit has a listing of its own)."""
    for warehouse in warehouses:
        for sku in skus:
            for condition in CONDITIONS:
                yield (
                    f"{seller}:{channel}:{warehouse}:{sku}:{condition}",
                    warehouse,
                    sku if condition == "new" else f"{sku}-OB",
                )


def _secret_file(secrets: Path, name: str, secret: str) -> Path:
    secrets.mkdir(parents=True, exist_ok=True)
    path = secrets / name
    path.write_text(secret + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


async def open_tiktok_shops(
    pool: asyncpg.Pool,
    market: TikTokStandIn,
    url: str,
    shops: Mapping[str, str],
    warehouses: Iterable[str],
    skus: Iterable[str],
    secrets: Path,
) -> TikTokShops:
    """`shops`: seller_id -> shop_id. Every (seller, warehouse, sku, condition) becomes a listing."""
    opened = TikTokShops("TikTok Shop", "tiktok", market=market)
    warehouses, skus = list(warehouses), list(skus)
    mappings = []
    async with pool.acquire() as conn:
        for seller, shop_id in shops.items():
            cipher, secret, expires = f"cipher-{seller}", f"secret-of-{seller}", int(time.time()) + 7 * 86_400
            market.state.shops[cipher] = Shop(f"key-{seller}", secret, cipher, f"at-{seller}", f"rt-{seller}", expires)
            await connect_shop(
                conn,
                seller,
                "tiktok",
                shop_id,
                tiktok_settings(
                    f"key-{seller}", cipher, _secret_file(secrets, f"{seller}.tiktok", secret), api=url, auth=url
                ),
                tokens_document(f"at-{seller}", f"rt-{seller}", expires),
            )
            for key, warehouse, listing_sku in _listings(seller, "tiktok", warehouses, skus):
                ids = {
                    "product_id": f"{seller}.{listing_sku}",
                    "sku_id": f"{seller}.{listing_sku}",
                    "warehouse_id": f"tt-{warehouse}",
                }
                market.state.stock[(ids["sku_id"], ids["warehouse_id"])] = Stock(
                    ids["product_id"], ids["sku_id"], ids["warehouse_id"]
                )
                opened.keys[(ids["sku_id"], ids["warehouse_id"])] = key
                mappings.append((key, shop_id, ids))
        await map_listings(conn, mappings)
    return opened


async def open_shopify_shops(
    pool: asyncpg.Pool,
    market: ShopifyStandIn,
    url: str,
    shops: Mapping[str, str],
    warehouses: Iterable[str],
    skus: Iterable[str],
    secrets: Path,
) -> ShopifyShops:
    """A store per seller; a location per warehouse and an inventory item per listing sku."""
    opened = ShopifyShops("Shopify", "shopify", market=market)
    warehouses, skus = list(warehouses), list(skus)
    mappings = []
    async with pool.acquire() as conn:
        for seller, shop_id in shops.items():
            token = f"shpat_{seller}"
            market.stores[seller] = Store(token=token)
            await connect_shop(
                conn,
                seller,
                "shopify",
                shop_id,
                shopify_settings(f"{url}/{seller}", _secret_file(secrets, f"{seller}.shopify", token)),
                None,
            )
            for key, warehouse, listing_sku in _listings(seller, "shopify", warehouses, skus):
                ids = {
                    "inventory_item_id": f"gid://shopify/InventoryItem/{seller}.{listing_sku}",
                    "location_id": f"gid://shopify/Location/{warehouse}",
                }
                market.add_level(seller, ids["inventory_item_id"], ids["location_id"])
                opened.keys[(ids["inventory_item_id"], ids["location_id"])] = key
                opened.store_of[key] = seller
                mappings.append((key, shop_id, ids))
        await map_listings(conn, mappings)
    return opened


async def open_amazon_shops(
    pool: asyncpg.Pool,
    market: AmazonStandIn,
    url: str,
    shops: Mapping[str, str],
    warehouses: Iterable[str],
    skus: Iterable[str],
    secrets: Path,
) -> AmazonShops:
    """A seller account per seller (one marketplace, US); a listing per warehouse and listing sku
    (merchant-fulfilled: one quantity per SKU, so each warehouse lists its own SKUs)."""
    opened = AmazonShops("Amazon", "amazon", market=market)
    mappings = []
    async with pool.acquire() as conn:
        for seller, shop_id in shops.items():
            amazon_seller, client, secret, refresh = (
                f"A{seller.upper()}",
                f"amzn1.application-oa2-client.{seller}",
                f"amzn-secret-{seller}",
                f"Atzr|{seller}",
            )
            market.add_seller(amazon_seller, client, secret, refresh)
            await connect_shop(
                conn,
                seller,
                "amazon",
                shop_id,
                amazon_settings(
                    client,
                    _secret_file(secrets, f"{seller}.amazon-secret", secret),
                    _secret_file(secrets, f"{seller}.amazon-refresh", refresh),
                    api=url,
                    auth=url,
                    settle_s=0.0,
                ),
                None,
            )
            for key, warehouse, listing_sku in _listings(seller, "amazon", warehouses, skus):
                ids = {
                    "seller_id": amazon_seller,
                    "sku": f"{warehouse}-{listing_sku}",
                    "marketplace_id": AMAZON_US,
                    "product_type": "PRODUCT",
                }
                market.add_listing(amazon_seller, ids["sku"], AMAZON_US)
                opened.keys[(amazon_seller, ids["sku"])] = key
                mappings.append((key, shop_id, ids))
        await map_listings(conn, mappings)
    return opened


async def open_ebay_shops(
    pool: asyncpg.Pool,
    market: EbayStandIn,
    url: str,
    shops: Mapping[str, str],
    warehouses: Iterable[str],
    skus: Iterable[str],
    secrets: Path,
) -> EbayShops:
    """An eBay seller per seller; an inventory item and its offer per warehouse and listing sku.
    The shop is connected with its refresh token alone: the first call gets an access token."""
    opened = EbayShops("eBay", "ebay", market=market)
    mappings = []
    async with pool.acquire() as conn:
        for seller, shop_id in shops.items():
            client, secret, refresh = f"Rebound-{seller}-PRD", f"PRD-secret-{seller}", f"v^1.1#i^1#{seller}"
            market.add_seller(EbaySeller(seller, client, secret, refresh))
            await connect_shop(
                conn,
                seller,
                "ebay",
                shop_id,
                ebay_settings(client, _secret_file(secrets, f"{seller}.ebay-secret", secret), api=url),
                tokens_document("", refresh, 0),
            )
            for number, (key, warehouse, listing_sku) in enumerate(_listings(seller, "ebay", warehouses, skus)):
                ids = {"sku": f"{warehouse}-{listing_sku}", "offer_id": f"{seller}-{number}"}
                market.add_listing(EbayListing(seller, ids["sku"], ids["offer_id"]))
                opened.keys[(seller, ids["sku"])] = key
                mappings.append((key, shop_id, ids))
        await map_listings(conn, mappings)
    return opened


async def unsynced(pool: asyncpg.Pool, sellers: Iterable[str]) -> int:
    """Listing keys of connected shops whose adjustments are not all applied yet."""
    return await pool.fetchval(
        "SELECT count(*) FROM connectors.listings l JOIN connectors.shops s"
        " ON (s.seller_id, s.channel, s.shop_id) = (l.seller_id, l.channel, l.shop_id)"
        " WHERE l.seller_id = ANY($1::text[]) AND l.blocked IS NULL AND (l.intent IS NOT NULL OR EXISTS"
        " (SELECT 1 FROM connectors.adjustments a WHERE a.key = l.key AND a.sequence > l.applied_through))",
        list(sellers),
    )


async def close_shops(pool: asyncpg.Pool, sellers: Iterable[str]) -> None:
    """The stand-ins end with the demo: its sellers' shops are disconnected, so that no connector
    keeps trying marketplaces that are gone (their keys and progress stay for a look)."""
    await pool.execute("DELETE FROM connectors.shops WHERE seller_id = ANY($1::text[])", list(sellers))
