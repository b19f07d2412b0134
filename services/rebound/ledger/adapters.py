"""Ledger's PostgreSQL repository: where each unit is, per-key stock counters, lots, exchanges.

Every event the ledger applies holds the advisory lock of its seller and warehouse (see
`app.lock_keys`), so the counts read here (pool sizes, units on a key) cannot change under it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg
from pydantic import BaseModel
from rebound_contracts import DispositionDecided, Money, UnitPicked

from ..db import Connection
from .domain import Counter, StockKey, Unit, listing_key


@dataclass
class _Stock:
    """A key's counter as this batch left it; written back by `flush`."""

    key: StockKey
    shop_id: str
    available: int
    sequence: int
    picked: int
    dirty: bool = False


_UNIT_COLUMNS = (
    "lpn, seller_id, sku, warehouse_id, shop_id, revision, decision, place, stock_key, pool, lot_id,"
    " candidate, placed_at"
)


def _unit_row(unit: Unit, now: datetime) -> tuple:
    return (
        unit.lpn,
        unit.seller_id,
        unit.sku,
        unit.warehouse_id,
        unit.shop_id,
        unit.revision,
        unit.decision.model_dump_json() if unit.decision else None,
        unit.place,
        str(unit.stock_key) if unit.stock_key else None,
        unit.pool,
        unit.lot_id,
        unit.candidate,
        unit.placed_at or now,
        now,
    )


def _unit(row: asyncpg.Record) -> Unit:
    return Unit(
        lpn=row["lpn"],
        seller_id=row["seller_id"],
        sku=row["sku"] or "",
        warehouse_id=row["warehouse_id"] or "",
        shop_id=row["shop_id"] or "",
        revision=row["revision"],
        decision=DispositionDecided.model_validate_json(row["decision"]) if row["decision"] else None,
        place=row["place"],
        stock_key=StockKey.parse(row["stock_key"]) if row["stock_key"] else None,
        pool=row["pool"],
        lot_id=row["lot_id"],
        candidate=row["candidate"],
        placed_at=row["placed_at"],
    )


_STOCK = (
    "WITH stock AS (SELECT key, shop_id, available, sequence, picked FROM ledger.stock"
    " WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE)"
)
"""The counters of keys $1, locked in key order (two batches on shared keys never wait on each
other in a cycle)."""

_STOCK_AND_BLOCKED = (
    _STOCK + " SELECT key, shop_id, available, sequence, picked, NULL AS status, NULL AS reason FROM stock"
    " UNION ALL SELECT key, NULL, NULL, NULL, NULL, status, reason FROM ledger.blocked_listings"
    " WHERE key = ANY($1::text[])"
)
"""The counters of keys $1, locked as `_STOCK` does, and which of the keys are blocked (the rows
with a status): one round trip for what a batch's prefetch needs after its units."""


def _blocked_reason(row: asyncpg.Record) -> str:
    return f"{row['status']}: {row['reason'] or 'no reason given'}"


class PostgresLedgerRepository:
    """`domain.LedgerRepository` on PostgreSQL (its methods are documented there). Built per batch.
    It reads the batch's units, stock counters and blocked keys up front (`prefetch`) and keeps the
    counters in memory for the batch's length. Units saved and counters moved are written in one
    statement each when the batch ends (`flush`), or before any query that reads units by something
    else than their LPN, so every read sees every save."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._blocked: dict[str, str | None] = {}
        self._saved: dict[str, tuple[Unit, datetime]] = {}
        self._units: dict[str, Unit | None] = {}  # as stored (None: no such unit), locked
        self._stock: dict[str, _Stock | None] = {}  # None: no such key

    async def prefetch(self, events: Sequence[BaseModel]) -> None:
        """Lock and read, in two statements, the units the batch's events name, then the stock
        keys they are on or may go to with which of those keys are blocked."""
        lpns = sorted({e.lpn for e in events if isinstance(e, (DispositionDecided, UnitPicked))})
        if lpns:
            rows = await self.conn.fetch(
                "SELECT " + _UNIT_COLUMNS + " FROM ledger.units WHERE lpn = ANY($1::text[]) ORDER BY lpn FOR UPDATE",
                lpns,
            )
            self._units.update(dict.fromkeys(lpns))
            self._units.update({r["lpn"]: _unit(r) for r in rows})
        keys = {str(u.stock_key) for u in self._units.values() if u is not None and u.stock_key is not None}
        for event in events:
            if isinstance(event, DispositionDecided):
                keys.update(
                    str(listing_key(event.seller_id, event.warehouse_id, event.sku, candidate))
                    for candidate in event.candidates
                    if candidate.kind == "listing"
                )
        keys -= self._stock.keys()
        if keys:
            rows = await self.conn.fetch(_STOCK_AND_BLOCKED, sorted(keys))
            self._keep_stock(keys, [r for r in rows if r["status"] is None])
            self._blocked.update(dict.fromkeys(keys))
            self._blocked.update({r["key"]: _blocked_reason(r) for r in rows if r["status"] is not None})

    # --- units ------------------------------------------------------------------------------

    async def unit_for_update(self, lpn: str) -> Unit | None:
        if lpn in self._saved:
            return replace(self._saved[lpn][0])
        if lpn not in self._units:
            row = await self.conn.fetchrow(
                "SELECT " + _UNIT_COLUMNS + " FROM ledger.units WHERE lpn = $1 FOR UPDATE", lpn
            )
            self._units[lpn] = _unit(row) if row else None
        unit = self._units[lpn]
        return replace(unit) if unit is not None else None

    async def save(self, unit: Unit, now: datetime) -> None:
        self._saved[unit.lpn] = (replace(unit), now)

    async def flush(self) -> None:
        await self._flush_stock()
        if not self._saved:
            return
        rows = [_unit_row(unit, now) for unit, now in self._saved.values()]
        self._units.update({lpn: unit for lpn, (unit, _) in self._saved.items()})
        self._saved.clear()
        await self.conn.executemany(
            "INSERT INTO ledger.units (lpn, seller_id, sku, warehouse_id, shop_id, revision, decision, place,"
            " stock_key, pool, lot_id, candidate, placed_at, first_offered_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
            " CASE WHEN $9::text IS NOT NULL OR $8 = 'lot' THEN $14::timestamptz END)"
            " ON CONFLICT (lpn) DO UPDATE SET sku = EXCLUDED.sku, warehouse_id = EXCLUDED.warehouse_id,"
            " shop_id = EXCLUDED.shop_id, revision = EXCLUDED.revision, decision = EXCLUDED.decision,"
            " place = EXCLUDED.place, stock_key = EXCLUDED.stock_key, pool = EXCLUDED.pool,"
            " lot_id = EXCLUDED.lot_id, candidate = EXCLUDED.candidate, placed_at = EXCLUDED.placed_at,"
            " first_offered_at = coalesce(ledger.units.first_offered_at, EXCLUDED.first_offered_at),"
            " updated_at = $14",
            rows,
        )

    async def units_on_key_for_update(self, key: StockKey) -> list[Unit]:
        await self.flush()
        rows = await self.conn.fetch(
            "SELECT " + _UNIT_COLUMNS + " FROM ledger.units WHERE stock_key = $1 AND place = 'listing'"
            " ORDER BY placed_at, lpn FOR UPDATE",
            str(key),
        )
        return [_unit(r) for r in rows]

    async def count_in_exchange_pool(self, seller_id: str, warehouse_id: str, sku: str) -> int:
        await self.flush()
        return await self.conn.fetchval(
            "SELECT count(*) FROM ledger.units WHERE seller_id = $1 AND warehouse_id = $2"
            " AND place = 'exchange_pool' AND sku = $3",
            seller_id,
            warehouse_id,
            sku,
        )

    async def pooled_for_update(self, seller_id: str, warehouse_id: str, pool: str, limit: int) -> list[Unit]:
        await self.flush()
        rows = await self.conn.fetch(
            "SELECT " + _UNIT_COLUMNS + " FROM ledger.units WHERE seller_id = $1 AND warehouse_id = $2"
            " AND place = 'lucky_bag' AND pool = $3 ORDER BY placed_at, lpn LIMIT $4 FOR UPDATE",
            seller_id,
            warehouse_id,
            pool,
            limit,
        )
        return [_unit(r) for r in rows]

    async def exchange_candidate_for_update(self, seller_id: str, warehouse_id: str, sku: str) -> Unit | None:
        await self.flush()
        row = await self.conn.fetchrow(
            "SELECT " + _UNIT_COLUMNS + " FROM ledger.units WHERE seller_id = $1 AND warehouse_id = $2 AND sku = $3"
            " AND place IN ('exchange_pool', 'listing')"
            " ORDER BY place = 'exchange_pool' DESC, stock_key LIKE '%:new' DESC, placed_at, lpn"
            " LIMIT 1 FOR UPDATE",
            seller_id,
            warehouse_id,
            sku,
        )
        return _unit(row) if row else None

    async def stale_listings(self, now: datetime, limit: int) -> list[tuple[str, str, str]]:
        await self.flush()
        rows = await self.conn.fetch(
            "SELECT lpn, seller_id, warehouse_id FROM ledger.units WHERE place = 'listing'"
            " AND (decision->'candidates'->candidate->>'unsold_after_days') IS NOT NULL"
            " AND placed_at < $1::timestamptz - make_interval(days =>"
            " (decision->'candidates'->candidate->>'unsold_after_days')::int)"
            " ORDER BY placed_at LIMIT $2",
            now,
            limit,
        )
        return [(r["lpn"], r["seller_id"], r["warehouse_id"]) for r in rows]

    # --- stock counters ---------------------------------------------------------------------

    async def _read_stock(self, keys: list[str]) -> None:
        self._keep_stock(keys, await self.conn.fetch(_STOCK + " SELECT * FROM stock", keys))

    def _keep_stock(self, keys: Iterable[str], rows: Iterable[asyncpg.Record]) -> None:
        self._stock.update(dict.fromkeys(keys))
        self._stock.update(
            {
                r["key"]: _Stock(StockKey.parse(r["key"]), r["shop_id"], r["available"], r["sequence"], r["picked"])
                for r in rows
            }
        )

    async def _counter(self, key: StockKey) -> _Stock | None:
        text = str(key)
        if text not in self._stock:
            await self._read_stock([text])
        return self._stock[text]

    async def adjust(self, key: StockKey, shop_id: str, delta: int) -> Counter:
        stock = await self._counter(key)
        if stock is None:
            if delta < 0:  # a unit can only leave a key it is on
                raise LookupError(f"stock key {key} has no row to take {delta} from")
            stock = self._stock[str(key)] = _Stock(key, shop_id, 0, 0, 0)
        if stock.available + delta < 0:
            raise ValueError(f"stock key {key} has {stock.available} available, cannot take {-delta}")
        stock.available += delta
        stock.sequence += 1
        stock.dirty = True
        return Counter(stock.available, stock.sequence, stock.picked)

    async def picked(self, key: StockKey) -> Counter:
        stock = await self._counter(key)
        if stock is None:
            raise LookupError(f"stock key {key} has no row to pick from")
        if stock.available < 1:
            raise ValueError(f"stock key {key} has nothing available to pick")
        stock.available -= 1
        stock.picked += 1
        stock.dirty = True
        return Counter(stock.available, stock.sequence, stock.picked)

    async def key_exists(self, key: StockKey) -> bool:
        return await self._counter(key) is not None

    async def _flush_stock(self) -> None:
        moved = [stock for stock in self._stock.values() if stock is not None and stock.dirty]
        if not moved:
            return
        await self.conn.execute(
            "INSERT INTO ledger.stock AS s (key, seller_id, shop_id, channel, warehouse_id, sku, condition,"
            " available, sequence, picked)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
            " $7::text[], $8::int[], $9::bigint[], $10::int[])"
            " ON CONFLICT (key) DO UPDATE SET available = EXCLUDED.available, sequence = EXCLUDED.sequence,"
            " picked = EXCLUDED.picked",
            [str(m.key) for m in moved],
            [m.key.seller_id for m in moved],
            [m.shop_id for m in moved],
            [m.key.channel for m in moved],
            [m.key.warehouse_id for m in moved],
            [m.key.sku for m in moved],
            [m.key.condition for m in moved],
            [m.available for m in moved],
            [m.sequence for m in moved],
            [m.picked for m in moved],
        )
        for stock in moved:
            stock.dirty = False

    # --- listings a connector refused -------------------------------------------------------

    async def blocked(self, key: StockKey) -> str | None:
        text = str(key)
        if text not in self._blocked:
            row = await self.conn.fetchrow("SELECT status, reason FROM ledger.blocked_listings WHERE key = $1", text)
            self._blocked[text] = _blocked_reason(row) if row else None
        return self._blocked[text]

    async def block(self, key: StockKey, status: str, reason: str, ref_event_id: object) -> bool:
        done = await self.conn.fetchval(
            "INSERT INTO ledger.blocked_listings (key, seller_id, status, reason, ref_event_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING RETURNING true",
            str(key),
            key.seller_id,
            status,
            reason,
            ref_event_id,
        )
        self._blocked[str(key)] = f"{status}: {reason or 'no reason given'}"
        return bool(done)

    # --- lots and exchanges -----------------------------------------------------------------

    async def add_lot(
        self, lot_id: str, seller_id: str, warehouse_id: str, pool: str, key: StockKey, lpns: list[str]
    ) -> None:
        await self.conn.execute(
            "INSERT INTO ledger.lots (lot_id, seller_id, warehouse_id, pool, stock_key, lpns)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            lot_id,
            seller_id,
            warehouse_id,
            pool,
            str(key),
            lpns,
        )

    async def sell_lot(self, lot_id: str) -> tuple[StockKey, list[str]] | None:
        row = await self.conn.fetchrow(
            "UPDATE ledger.lots SET status = 'sold' WHERE lot_id = $1 AND status = 'listed' RETURNING stock_key, lpns",
            lot_id,
        )
        return (StockKey.parse(row["stock_key"]), list(row["lpns"])) if row else None

    async def mark_sold(self, lpns: list[str], at: datetime, channel: str, price: Money) -> None:
        await self.flush()
        for lpn in lpns:
            self._units.pop(lpn, None)  # read again if asked for
        await self.conn.execute(
            "UPDATE ledger.units SET place = 'sold', stock_key = NULL, sold_at = $2, sold_channel = $3,"
            " sold_price = $4, sold_currency = $5, updated_at = now() WHERE lpn = ANY($1::text[])",
            lpns,
            at,
            channel,
            price.amount,
            price.currency,
        )

    async def record_exchange(
        self, seller_id: str, exchange_id: str, status: str, lpn: str | None, source: str | None
    ) -> bool:
        return bool(
            await self.conn.fetchval(
                "INSERT INTO ledger.exchanges (seller_id, exchange_id, status, lpn, source) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT DO NOTHING RETURNING true",
                seller_id,
                exchange_id,
                status,
                lpn,
                source,
            )
        )
