"""The demo's shops on the TikTok Shop stand-in: every listing key a wave can produce exists as a
listing there (an open-box unit has a listing of its own, as on TikTok Shop), each key is mapped
to it, and each seller's shop is connected as `rebound connect tiktok` connects it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from ..connectors.adapters import connect_shop, map_listings
from ..connectors.app import tiktok_settings, tokens_document
from .tiktok import Shop, Stock, TikTokStandIn

CONDITIONS = ("new", "open_box")


@dataclass(frozen=True)
class Opened:
    keys: dict[tuple[str, str], str]
    """(sku_id, warehouse_id) on the stand-in -> the Rebound key it is mapped to."""


async def open_tiktok_shops(pool: asyncpg.Pool, market: TikTokStandIn, url: str, shops: Mapping[str, str],
                            warehouses: Iterable[str], skus: Iterable[str], secrets: Path) -> Opened:
    """`shops`: seller_id -> shop_id. Every (seller, warehouse, sku, condition) becomes a listing."""
    secrets.mkdir(parents=True, exist_ok=True)
    keys: dict[tuple[str, str], str] = {}
    mappings = []
    warehouses, skus = list(warehouses), list(skus)
    async with pool.acquire() as conn:
        for seller, shop_id in shops.items():
            cipher, secret, expires = f"cipher-{seller}", f"secret-of-{seller}", int(time.time()) + 7 * 86_400
            market.state.shops[cipher] = Shop(f"key-{seller}", secret, cipher, f"at-{seller}", f"rt-{seller}", expires)
            secret_file = secrets / f"{seller}.app-secret"
            secret_file.write_text(secret + "\n", encoding="utf-8")
            secret_file.chmod(0o600)
            await connect_shop(conn, seller, "tiktok", shop_id,
                               tiktok_settings(f"key-{seller}", cipher, secret_file, api=url, auth=url),
                               tokens_document(f"at-{seller}", f"rt-{seller}", expires))
            for warehouse in warehouses:
                for sku in skus:
                    for condition in CONDITIONS:
                        listing_sku = sku if condition == "new" else f"{sku}-OB"
                        ids = {"product_id": f"{seller}.{listing_sku}", "sku_id": f"{seller}.{listing_sku}",
                               "warehouse_id": f"tt-{warehouse}"}
                        market.state.stock[(ids["sku_id"], ids["warehouse_id"])] = Stock(**ids)
                        key = f"{seller}:tiktok:{warehouse}:{sku}:{condition}"
                        keys[(ids["sku_id"], ids["warehouse_id"])] = key
                        mappings.append((key, shop_id, ids))
        await map_listings(conn, mappings)
    return Opened(keys)


async def unsynced(pool: asyncpg.Pool, sellers: Iterable[str]) -> int:
    """Listing keys of connected shops whose adjustments are not all applied yet."""
    return await pool.fetchval(
        "SELECT count(*) FROM connectors.listings l JOIN connectors.shops s"
        " ON (s.seller_id, s.channel, s.shop_id) = (l.seller_id, l.channel, l.shop_id)"
        " WHERE l.seller_id = ANY($1::text[]) AND l.blocked IS NULL AND (l.intent IS NOT NULL OR EXISTS"
        " (SELECT 1 FROM connectors.adjustments a WHERE a.key = l.key AND a.sequence > l.applied_through))",
        list(sellers))
