"""Each listing key's stock as the console read it: the latest adjustment and the shop's answer."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from ..db import Connection


@dataclass(frozen=True)
class Level:
    seller_id: str
    channel: str
    warehouse_id: str
    sku: str
    condition: str
    available: int
    picked: int
    sequence: int
    updated_at: datetime
    ack_status: str | None
    ack_reason: str | None
    ack_at: datetime | None

    @property
    def blocked(self) -> bool:
        """Whether the key's latest adjustment is held: the shop refused it, or its connector paused."""
        return self.ack_status in ("rejected", "paused")


async def levels(
    conn: Connection, sellers: Collection[str] | None = None, *, seller_id: str | None = None, limit: int = 500
) -> list[Level]:
    """Listing keys of `sellers` (None: every seller's), or of `seller_id` alone, blocked ones first."""
    rows = await conn.fetch(
        "SELECT seller_id, channel, warehouse_id, sku, condition, available, picked, sequence, updated_at,"
        " ack_status, ack_reason, ack_at FROM console.stock"
        " WHERE ($1::text[] IS NULL OR seller_id = ANY($1::text[])) AND ($2::text IS NULL OR seller_id = $2)"
        " ORDER BY ack_status IN ('rejected', 'paused') IS NOT TRUE, seller_id, warehouse_id, sku, condition, channel"
        " LIMIT $3",
        None if sellers is None else list(sellers),
        seller_id,
        limit,
    )
    return [Level(**dict(r)) for r in rows]
