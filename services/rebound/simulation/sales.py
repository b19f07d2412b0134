"""The second phase of a wave: units on offer sell, and the warehouse picks them for their orders."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from rebound_contracts import UnitPicked
from rebound_contracts.topics import UNIT_PICKED

from .wave import Outgoing, encode


class Offered(NamedTuple):
    """A unit on a storefront listing, as the ledger has it."""

    lpn: str
    seller_id: str
    warehouse_id: str
    channel: str


def sales(offered: Iterable[Offered], share: float, seed: int, at: datetime) -> list[Outgoing]:
    """The warehouse picks `share` of the offered units for orders on the channel each is listed
    on. Pure: the same units, share, seed and time give the same picks."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be between 0 and 1")
    rng = random.Random(f"sales:{seed}")
    units = sorted(offered)
    sold = sorted(rng.sample(units, round(share * len(units))))
    return [
        encode(
            UNIT_PICKED,
            UnitPicked(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                occurred_at=at,
                seller_id=unit.seller_id,
                warehouse_id=unit.warehouse_id,
                lpn=unit.lpn,
                channel=unit.channel,
                order_id=f"S{seed}-{n:07d}",
            ),
        )
        for n, unit in enumerate(sold, start=1)
    ]


async def units_on_keys(
    database_url: str, keys: Iterable[str], *, connect_kwargs: Mapping[str, Any] | None = None
) -> dict[str, list[Offered]]:
    """The units offered on each of these listing keys now, by LPN."""
    found: dict[str, list[Offered]] = {}
    for key, unit in await _listed(database_url, "stock_key", keys, connect_kwargs):
        found.setdefault(key, []).append(unit)
    return found


async def offered_units(
    database_url: str, sellers: Iterable[str], *, connect_kwargs: Mapping[str, Any] | None = None
) -> list[Offered]:
    """The sellers' units on a storefront listing now (lots and pools are not sold unit by unit)."""
    return [unit for _, unit in await _listed(database_url, "seller_id", sellers, connect_kwargs)]


_LISTED = {
    "stock_key": "SELECT stock_key, lpn, seller_id, warehouse_id, split_part(stock_key, ':', 2) AS channel"
    " FROM ledger.units WHERE stock_key = ANY($1::text[]) AND place = 'listing' ORDER BY lpn",
    "seller_id": "SELECT stock_key, lpn, seller_id, warehouse_id, split_part(stock_key, ':', 2) AS channel"
    " FROM ledger.units WHERE seller_id = ANY($1::text[]) AND place = 'listing' ORDER BY lpn",
}
"""The units on a storefront listing, by the column they are chosen by."""


async def _listed(
    database_url: str, column: str, values: Iterable[str], connect_kwargs: Mapping[str, Any] | None
) -> list[tuple[str, Offered]]:
    """(listing key, unit) of the units on a storefront listing whose `column` is one of `values`,
    by LPN."""
    conn = await asyncpg.connect(database_url, **(connect_kwargs or {}))
    try:
        rows = await conn.fetch(_LISTED[column], list(values))
    finally:
        await conn.close()
    return [(r["stock_key"], Offered(r["lpn"], r["seller_id"], r["warehouse_id"], r["channel"])) for r in rows]


def picks_for_orders(
    on_keys: Mapping[str, Sequence[Offered]], ordered: Mapping[str, int], seed: int, at: datetime, shop: str
) -> tuple[list[Outgoing], int]:
    """The warehouse picks a unit of each order's listing key (`ordered`: key -> units ordered),
    first LPNs first; `shop` names the orders' source (its picks' ids and order ids are its own).
    Returns the picks and the units ordered that no unit on the key was left for (sold on the
    shop, never offered there by Rebound: oversold)."""
    rng = random.Random(f"orders:{seed}:{shop}")
    picks, unfilled, n = [], 0, 0
    for key, count in sorted(ordered.items()):
        units = list(on_keys.get(key, ()))[:count]
        unfilled += count - len(units)
        for unit in units:
            n += 1
            picks.append(
                encode(
                    UNIT_PICKED,
                    UnitPicked(
                        event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                        occurred_at=at,
                        seller_id=unit.seller_id,
                        warehouse_id=unit.warehouse_id,
                        lpn=unit.lpn,
                        channel=unit.channel,
                        order_id=f"{shop}-{seed}-{n:07d}",
                    ),
                )
            )
    return picks, unfilled
