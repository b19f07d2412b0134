"""A seller's TikTok shop on the stand-in, connected as `rebound connect tiktok` connects it."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg

from rebound.connectors.adapters import connect_shop
from rebound.connectors.app import tiktok_settings, tokens_document
from rebound.standins.tiktok import Shop, TikTokStandIn


async def connect_tiktok(pool: asyncpg.Pool, market: TikTokStandIn, url: str, seller: str, secrets: Path) -> str:
    """Open the seller's shop on the stand-in and connect it; returns the shop id."""
    cipher, secret = f"cipher-{seller}", f"secret-of-{seller}"
    expires = int(time.time()) + 3600
    market.state.shops[cipher] = Shop(f"key-{seller}", secret, cipher, "at-1", "rt-1", expires)
    secret_file = secrets / f"{seller}.app-secret"
    secret_file.write_text(secret + "\n")
    async with pool.acquire() as conn:
        await connect_shop(
            conn,
            seller,
            "tiktok",
            f"shop-{seller}",
            tiktok_settings(f"key-{seller}", cipher, secret_file, api=url, auth=url),
            tokens_document("at-1", "rt-1", expires),
        )
    return f"shop-{seller}"
