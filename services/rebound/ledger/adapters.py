"""Ledger's PostgreSQL repository: unit placements and per-key stock counters."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .domain import StockKey


@dataclass(frozen=True)
class Placement:
    seller_id: str
    stock_key: StockKey | None
    revision: int


@dataclass(frozen=True)
class Counter:
    available: int
    sequence: int


class LedgerRepository:
    """Built per batch: placements are written in one statement by `flush`; the batch's later
    reads see them already. Stock counters are written at once (their row lock orders the
    outbox rows of a key)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._placed: dict[str, Placement] = {}

    async def placement_for_update(self, lpn: str) -> Placement | None:
        if lpn in self._placed:
            return self._placed[lpn]
        row = await self.conn.fetchrow(
            "SELECT seller_id, stock_key, revision FROM ledger.units WHERE lpn = $1 FOR UPDATE", lpn
        )
        if row is None:
            return None
        key = StockKey.parse(row["stock_key"]) if row["stock_key"] else None
        return Placement(row["seller_id"], key, row["revision"])

    async def current_keys(self, lpns: list[str]) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT stock_key FROM ledger.units WHERE lpn = ANY($1::text[]) AND stock_key IS NOT NULL", lpns
        )
        return [row["stock_key"] for row in rows]

    async def place(self, lpn: str, seller_id: str, key: StockKey | None, revision: int) -> None:
        self._placed[lpn] = Placement(seller_id, key, revision)

    async def flush(self) -> None:
        if self._placed:
            await self.conn.executemany(
                "INSERT INTO ledger.units (lpn, seller_id, stock_key, revision) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (lpn) DO UPDATE SET stock_key = EXCLUDED.stock_key,"
                " revision = EXCLUDED.revision, updated_at = now()",
                [(lpn, p.seller_id, str(p.stock_key) if p.stock_key else None, p.revision)
                 for lpn, p in self._placed.items()],
            )
            self._placed.clear()

    async def adjust(self, key: StockKey, shop_id: str, delta: int) -> Counter:
        """Move the counter of `key` by `delta` and take the key's next sequence number."""
        if delta < 0:
            # An UPDATE, not an upsert: PostgreSQL checks CHECK constraints on the row an upsert
            # would insert before it sees the conflict, and a unit can only leave a key it is on.
            row = await self.conn.fetchrow(
                "UPDATE ledger.stock SET available = available + $2, sequence = sequence + 1"
                " WHERE key = $1 RETURNING available, sequence",
                str(key), delta,
            )
            if row is None:
                raise LookupError(f"stock key {key} has no row to take {delta} from")
        else:
            row = await self.conn.fetchrow(
                "INSERT INTO ledger.stock AS s (key, seller_id, shop_id, channel, warehouse_id, sku,"
                " condition, available, sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)"
                " ON CONFLICT (key) DO UPDATE SET available = s.available + EXCLUDED.available,"
                " sequence = s.sequence + 1 RETURNING available, sequence",
                str(key), key.seller_id, shop_id, key.channel, key.warehouse_id, key.sku, key.condition, delta,
            )
        return Counter(row["available"], row["sequence"])
