"""Intake's PostgreSQL repository. Every query names the seller it reads for, except the lookups
that must see all sellers to detect a cross-tenant reference: return orders by tracking number
and LPN owners. What they find of another seller is used for its seller id only (see
`sellers_with_tracking`, `owners_of`); it never reaches an event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg
import orjson
from rebound_contracts import MessageSource, ParcelMatched, ParcelReceivedUnexpected, ParcelScanned, RmaIssued
from rebound_contracts.common import TenantEvent

from ..db import Connection
from .domain import LineDetail, OpenLine, RegisteredUnit, ReturnOrder

_RMA_COLUMNS = "seller_id, return_id, shop_id, channel, order_id, tracking_number, reason_code, reason_category, lane"


def _order(row: asyncpg.Record) -> ReturnOrder:
    return ReturnOrder(**{name: row[name] for name in ReturnOrder.__dataclass_fields__})


@dataclass
class _Line:
    """An RMA line as the batch has it."""

    line_id: str
    position: int
    sku: str
    quantity: int
    received: int
    unit_price: Decimal
    currency: str
    size: str | None
    colour: str | None
    changed: bool = False  # an existing line whose count moved


ReturnKey = tuple[str, str]  # (seller_id, return_id)


class PostgresIntakeRepository:
    """`domain.IntakeRepository` on PostgreSQL (its methods are documented there). Built per batch,
    under the batch's locks on tracking numbers and LPNs (`app.lock_keys`), so what `prefetch` reads
    for them stays true for the batch's length. Return orders, lines and units the batch adds are
    kept in memory and written by `flush`, one statement per table."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._rmas: dict[str, list[tuple[datetime, ReturnOrder]]] = {}  # by tracking number, every seller
        # (seller, tracking number) of the parked scans, for the tracking numbers in `_parked_read`
        self._parked: set[tuple[str, str]] = set()
        self._parked_read: set[str] = set()
        self._owners: dict[str, str | None] = {}  # LPN -> seller (None: not registered)
        self._returns: dict[ReturnKey, bool] = {}  # does this return id exist (for its seller)?
        self._lines: dict[ReturnKey, list[_Line]] = {}  # read for update, or added by the batch
        self._new_rmas: list[tuple] = []
        self._new_lines: dict[ReturnKey, list[_Line]] = {}
        self._new_units: list[tuple] = []

    async def prefetch(self, events: Sequence[TenantEvent]) -> None:
        """What the batch's events need, in at most five statements: the return orders of their
        tracking numbers (of every seller), which sellers' scans of those are parked, which return ids
        the RMAs name exist already, the lines the scans may be counted on, and who owns the
        LPNs the scans list. An operator's decision on one unit reads what it needs as it is applied."""
        tracked = (RmaIssued, ParcelScanned, ParcelMatched, ParcelReceivedUnexpected)
        await self._read_orders(sorted({e.tracking_number for e in events if isinstance(e, tracked)}))
        rmas = [e for e in events if isinstance(e, RmaIssued)]
        if rmas:
            rma_tracking = sorted({e.tracking_number for e in rmas})
            self._parked_read.update(rma_tracking)
            self._parked.update(
                (r["seller_id"], r["tracking_number"])
                for r in await self.conn.fetch(
                    "SELECT DISTINCT seller_id, tracking_number FROM intake.parked_scans"
                    " WHERE tracking_number = ANY($1::text[])",
                    rma_tracking,
                )
            )
            unknown = sorted({(e.seller_id, e.return_id) for e in rmas} - self._returns.keys())
            if unknown:
                found = await self.conn.fetch(
                    "SELECT r.seller_id, r.return_id FROM intake.rmas r JOIN unnest($1::text[], $2::text[])"
                    " AS k(s, i) ON r.seller_id = k.s AND r.return_id = k.i",
                    [k[0] for k in unknown],
                    [k[1] for k in unknown],
                )
                self._returns.update(dict.fromkeys(unknown, False))
                self._returns.update({(r["seller_id"], r["return_id"]): True for r in found})
        scans = [e for e in events if isinstance(e, ParcelScanned)]
        wanted = sorted(
            {
                (o.seller_id, o.return_id)
                for e in scans
                for _, o in self._rmas[e.tracking_number]
                if o.seller_id == e.seller_id
            }
        )
        if wanted:
            await self._read_lines(wanted)
        lpns = sorted({unit.lpn for e in scans for unit in e.units})
        if lpns:
            self._owners.update(dict.fromkeys(lpns))
            self._owners.update(await self._read_owners(lpns))

    async def _read_lines(self, keys: list[ReturnKey]) -> None:
        rows = await self.conn.fetch(
            "SELECT l.seller_id, l.return_id, line_id, position, sku, quantity, received, unit_price, currency,"
            " size, colour FROM intake.rma_lines l JOIN unnest($1::text[], $2::text[]) AS k(s, i)"
            " ON l.seller_id = k.s AND l.return_id = k.i ORDER BY l.seller_id, l.return_id, position FOR UPDATE OF l",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        for key in keys:
            self._lines[key] = []
        for r in rows:
            self._lines[(r["seller_id"], r["return_id"])].append(
                _Line(
                    r["line_id"],
                    r["position"],
                    r["sku"],
                    r["quantity"],
                    r["received"],
                    r["unit_price"],
                    r["currency"],
                    r["size"],
                    r["colour"],
                )
            )

    async def add_rma(self, rma: RmaIssued, reason_category: str, lane: str) -> bool:
        key = (rma.seller_id, rma.return_id)
        if key not in self._returns:
            self._returns[key] = bool(
                await self.conn.fetchval("SELECT true FROM intake.rmas WHERE seller_id = $1 AND return_id = $2", *key)
            )
        if self._returns[key]:
            return False
        self._returns[key] = True
        self._new_rmas.append(
            (
                rma.seller_id,
                rma.return_id,
                rma.shop_id,
                rma.channel,
                rma.order_id,
                rma.tracking_number,
                rma.reason_code,
                reason_category,
                lane,
                rma.occurred_at,
            )
        )
        lines = [
            _Line(
                line.line_id,
                position,
                line.sku,
                line.quantity,
                0,
                line.unit_price.amount,
                line.unit_price.currency,
                line.size,
                line.colour,
            )
            for position, line in enumerate(rma.lines)
        ]
        self._lines[key] = self._new_lines[key] = lines
        order = ReturnOrder.of(rma, reason_category, lane)
        (await self._orders(rma.tracking_number)).append((rma.occurred_at, order))
        return True

    async def _read_orders(self, tracking: list[str]) -> None:
        rows = await self.conn.fetch(
            "SELECT " + _RMA_COLUMNS + ", issued_at FROM intake.rmas WHERE tracking_number = ANY($1::text[])", tracking
        )
        self._rmas.update({t: [] for t in tracking})
        for row in rows:
            self._rmas[row["tracking_number"]].append((row["issued_at"], _order(row)))
            self._returns[(row["seller_id"], row["return_id"])] = True

    async def _orders(self, tracking_number: str) -> list[tuple[datetime, ReturnOrder]]:
        if tracking_number not in self._rmas:
            await self._read_orders([tracking_number])
        return self._rmas[tracking_number]

    async def sellers_with_tracking(self, tracking_number: str) -> set[str]:
        return {order.seller_id for _, order in await self._orders(tracking_number)}

    async def rma_for_tracking(self, seller_id: str, tracking_number: str) -> ReturnOrder | None:
        mine = [
            (issued_at, order.return_id, order)
            for issued_at, order in await self._orders(tracking_number)
            if order.seller_id == seller_id
        ]
        return min(mine, key=lambda m: m[:2])[2] if mine else None

    async def rma_by_id(self, seller_id: str, return_id: str) -> ReturnOrder | None:
        row = await self.conn.fetchrow(
            "SELECT " + _RMA_COLUMNS + " FROM intake.rmas WHERE seller_id = $1 AND return_id = $2", seller_id, return_id
        )
        return None if row is None else _order(row)

    async def lines_for_update(self, seller_id: str, return_id: str) -> list[LineDetail]:
        key = (seller_id, return_id)
        if key not in self._lines:
            await self._read_lines([key])
        return [
            LineDetail(
                line=OpenLine(line.line_id, line.sku, line.quantity, line.received),
                unit_price=line.unit_price,
                currency=line.currency,
                size=line.size,
                colour=line.colour,
            )
            for line in self._lines[key]
        ]

    async def _read_owners(self, lpns: list[str]) -> dict[str, str]:
        rows = await self.conn.fetch("SELECT lpn, seller_id FROM intake.units WHERE lpn = ANY($1::text[])", lpns)
        return {row["lpn"]: row["seller_id"] for row in rows}

    async def owners_of(self, lpns: list[str]) -> dict[str, str]:
        unknown = [lpn for lpn in lpns if lpn not in self._owners]
        if unknown:
            self._owners.update(dict.fromkeys(unknown))
            self._owners.update(await self._read_owners(unknown))
        return {lpn: owner for lpn in lpns if (owner := self._owners[lpn]) is not None}

    async def add_units(
        self, scan: ParcelScanned, rows: list[tuple[str, str, str | None, str | None, str | None]]
    ) -> None:
        for lpn, sku, return_id, line_id, lane in rows:
            self._new_units.append(
                (
                    lpn,
                    scan.seller_id,
                    return_id,
                    line_id,
                    sku,
                    scan.warehouse_id,
                    scan.tracking_number,
                    lane,
                    scan.occurred_at,
                )
            )
            self._owners[lpn] = scan.seller_id
            if line_id is not None and return_id is not None:
                line = next(line for line in self._lines[(scan.seller_id, return_id)] if line.line_id == line_id)
                line.received += 1
                line.changed = True

    async def flush(self) -> None:
        """Write what the batch added: return orders, their lines, units, and the lines' counts."""
        if self._new_rmas:
            await self.conn.executemany(
                "INSERT INTO intake.rmas (seller_id, return_id, shop_id, channel, order_id, tracking_number,"
                " reason_code, reason_category, lane, issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                self._new_rmas,
            )
        new_lines = [(key, line) for key, lines in self._new_lines.items() for line in lines]
        if new_lines:
            await self.conn.executemany(
                "INSERT INTO intake.rma_lines (seller_id, return_id, line_id, position, sku, quantity, received,"
                " unit_price, currency, size, colour) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                [
                    (
                        *key,
                        line.line_id,
                        line.position,
                        line.sku,
                        line.quantity,
                        line.received,
                        line.unit_price,
                        line.currency,
                        line.size,
                        line.colour,
                    )
                    for key, line in new_lines
                ],
            )
        if self._new_units:
            await self.conn.executemany(
                "INSERT INTO intake.units (lpn, seller_id, return_id, line_id, sku, warehouse_id,"
                " tracking_number, lane, scanned_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                self._new_units,
            )
        counted = [
            (*key, line.line_id, line.received)
            for key, lines in self._lines.items()
            if key not in self._new_lines
            for line in lines
            if line.changed
        ]
        if counted:
            await self.conn.executemany(
                "UPDATE intake.rma_lines SET received = $4 WHERE seller_id = $1 AND return_id = $2 AND line_id = $3",
                counted,
            )
        for lines in self._lines.values():
            for line in lines:
                line.changed = False
        self._new_rmas, self._new_lines, self._new_units = [], {}, []

    async def unit_for_update(self, lpn: str) -> RegisteredUnit | None:
        await self.flush()  # a unit registered earlier in the batch is read like any other
        row = await self.conn.fetchrow(
            "SELECT lpn, seller_id, sku, warehouse_id, tracking_number, return_id, quarantine_reason"
            " FROM intake.units WHERE lpn = $1 FOR UPDATE",
            lpn,
        )
        return None if row is None else RegisteredUnit(**dict(row))

    async def receive_unit(self, unit: RegisteredUnit, rma: ReturnOrder, line_id: str) -> None:
        await self.conn.execute(
            "UPDATE intake.units SET return_id = $2, line_id = $3, lane = $4 WHERE lpn = $1",
            unit.lpn,
            rma.return_id,
            line_id,
            rma.lane,
        )
        line = next(line for line in self._lines[(rma.seller_id, rma.return_id)] if line.line_id == line_id)
        line.received += 1
        line.changed = True

    async def quarantine_unit(self, unit: RegisteredUnit, reason: str, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE intake.units SET quarantine_reason = $2, quarantined_at = $3 WHERE lpn = $1", unit.lpn, reason, at
        )

    async def park_scan(self, scan: ParcelScanned, source: MessageSource, *, reported: bool = False) -> None:
        self._parked.add((scan.seller_id, scan.tracking_number))
        await self.conn.execute(
            "INSERT INTO intake.parked_scans (event_id, seller_id, tracking_number, payload, source, reported_at)"
            " VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END) ON CONFLICT DO NOTHING",
            scan.event_id,
            scan.seller_id,
            scan.tracking_number,
            scan.model_dump_json(),
            orjson.dumps(source.model_dump()).decode(),
            reported,
        )

    async def take_parked_scans(
        self, seller_id: str, tracking_number: str
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        if tracking_number in self._parked_read and (seller_id, tracking_number) not in self._parked:
            return []  # read for this batch: nothing parked, and nothing parked since
        self._parked.discard((seller_id, tracking_number))
        rows = await self.conn.fetch(
            "DELETE FROM intake.parked_scans WHERE seller_id = $1 AND tracking_number = $2"
            " RETURNING payload, source, parked_at",
            seller_id,
            tracking_number,
        )
        return _scans(rows)

    async def others_parked(self, seller_id: str, tracking_number: str) -> list[tuple[ParcelScanned, MessageSource]]:
        if tracking_number in self._parked_read and not any(
            t == tracking_number and s != seller_id for s, t in self._parked
        ):
            return []
        rows = await self.conn.fetch(
            "UPDATE intake.parked_scans SET reported_at = now() WHERE tracking_number = $2 AND seller_id <> $1"
            " AND reported_at IS NULL RETURNING payload, source, parked_at",
            seller_id,
            tracking_number,
        )
        return _scans(rows)

    async def unreported_parked_scans(
        self, parked_before: datetime, limit: int = 500
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        rows = await self.conn.fetch(
            "SELECT payload, source FROM intake.parked_scans WHERE reported_at IS NULL AND parked_at < $1"
            " ORDER BY parked_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            parked_before,
            limit,
        )
        return [
            (ParcelScanned.model_validate_json(r["payload"]), MessageSource.model_validate_json(r["source"]))
            for r in rows
        ]

    async def mark_reported(self, scans: list[tuple[str, UUID]], at: datetime) -> None:
        await self.conn.execute(
            "UPDATE intake.parked_scans p SET reported_at = $3 FROM unnest($1::text[], $2::uuid[]) AS u(s, e)"
            " WHERE p.seller_id = u.s AND p.event_id = u.e",
            [seller for seller, _ in scans],
            [event_id for _, event_id in scans],
            at,
        )


def _scans(rows: Sequence[asyncpg.Record]) -> list[tuple[ParcelScanned, MessageSource]]:
    """Parked scans, oldest first."""
    return [
        (ParcelScanned.model_validate_json(r["payload"]), MessageSource.model_validate_json(r["source"]))
        for r in sorted(rows, key=lambda r: r["parked_at"])
    ]
