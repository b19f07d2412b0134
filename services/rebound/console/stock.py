"""Each listing key's stock as the console read it (the latest adjustment, the shop's answer, the
units on offer), and the units that sit elsewhere."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from ..db import Connection


LPNS_SHOWN = 20


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
    on_offer: int = 0
    """Units the console last saw allocated to this listing key and not picked since."""
    lpns: tuple[str, ...] = ()
    """The latest of them placed, at most `LPNS_SHOWN`."""

    @property
    def blocked(self) -> bool:
        """Whether the key's latest adjustment is held: the shop refused it, or its connector paused."""
        return self.ack_status in ("rejected", "paused")


async def levels(
    conn: Connection, sellers: Collection[str] | None = None, *, seller_id: str | None = None, limit: int = 500
) -> list[Level]:
    """Listing keys of `sellers` (None: every seller's), or of `seller_id` alone, blocked ones first."""
    rows = await conn.fetch(
        "SELECT s.seller_id, s.channel, s.warehouse_id, s.sku, s.condition, s.available, s.picked, s.sequence,"
        " s.updated_at, s.ack_status, s.ack_reason, s.ack_at, coalesce(u.on_offer, 0) AS on_offer, u.lpns"
        " FROM console.stock s LEFT JOIN LATERAL ("
        "  SELECT count(*) AS on_offer, (array_agg(lpn ORDER BY placed_at DESC))[1:$4] AS lpns FROM console.units u"
        "  WHERE u.seller_id = s.seller_id AND u.place = 'listing' AND u.channel = s.channel"
        "  AND u.warehouse_id = s.warehouse_id AND u.sku = s.sku AND u.condition = s.condition"
        "  AND (u.picked_at IS NULL OR u.picked_at < u.placed_at)) u ON true"
        " WHERE ($1::text[] IS NULL OR s.seller_id = ANY($1::text[])) AND ($2::text IS NULL OR s.seller_id = $2)"
        " ORDER BY s.ack_status IN ('rejected', 'paused') IS NOT TRUE, s.seller_id, s.warehouse_id, s.sku,"
        " s.condition, s.channel LIMIT $3",
        None if sellers is None else list(sellers),
        seller_id,
        limit,
        LPNS_SHOWN,
    )
    return [Level(**{**dict(r), "lpns": tuple(r["lpns"] or ())}) for r in rows]


@dataclass(frozen=True)
class Elsewhere:
    """Units of a seller in a warehouse that sit somewhere other than a listing, by place."""

    seller_id: str
    warehouse_id: str
    place: str  # exchange_pool, lucky_bag, repair, ... or "held" (nowhere could take it)
    units: int
    lpns: tuple[str, ...]


async def elsewhere(conn: Connection, sellers: Collection[str] | None = None, *, limit: int = 500) -> list[Elsewhere]:
    """Units not on a listing and not picked since their allocation, by seller, warehouse and place."""
    rows = await conn.fetch(
        "SELECT seller_id, warehouse_id, coalesce(place, 'held') AS place, count(*) AS units,"
        " (array_agg(lpn ORDER BY placed_at DESC))[1:$2] AS lpns FROM console.units"
        " WHERE placed_at IS NOT NULL AND place IS DISTINCT FROM 'listing'"
        " AND (picked_at IS NULL OR picked_at < placed_at)"
        " AND ($1::text[] IS NULL OR seller_id = ANY($1::text[]))"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT $3",
        None if sellers is None else list(sellers),
        LPNS_SHOWN,
        limit,
    )
    return [Elsewhere(**{**dict(r), "lpns": tuple(r["lpns"] or ())}) for r in rows]
