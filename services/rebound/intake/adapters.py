"""Intake's PostgreSQL repository. Every query names the seller it reads for, except the one
lookup that must see all sellers to detect a cross-tenant reference (and returns only ids)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg
import orjson

from rebound_contracts import MessageSource, ParcelScanned, RmaIssued

from .domain import OpenLine


@dataclass(frozen=True)
class ReturnOrder:
    seller_id: str
    return_id: str
    shop_id: str
    channel: str
    order_id: str
    tracking_number: str
    reason_code: str
    reason_category: str
    lane: str


@dataclass(frozen=True)
class LineDetail:
    line: OpenLine
    unit_price: Decimal
    currency: str
    size: str | None
    colour: str | None


_RMA_COLUMNS = ("seller_id, return_id, shop_id, channel, order_id, tracking_number, reason_code, reason_category,"
                " lane")


def _order(row: asyncpg.Record) -> ReturnOrder:
    return ReturnOrder(**{name: row[name] for name in ReturnOrder.__dataclass_fields__})


class IntakeRepository:
    """Built per batch, under the batch's locks on tracking numbers and LPNs (`app.lock_keys`),
    so what `prefetch` reads for them stays true for the batch's length; what the batch adds
    is kept in step."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._rmas: dict[str, list[tuple[datetime, ReturnOrder]]] = {}  # by tracking number, every seller
        self._parked: set[str] = set()  # tracking numbers (of those in `_parked_read`) with parked scans
        self._parked_read: set[str] = set()
        self._owners: dict[str, str | None] = {}  # LPN -> seller (None: not registered)

    async def prefetch(self, events: Sequence[RmaIssued | ParcelScanned]) -> None:
        """The return orders of the batch's tracking numbers (of every seller), which of them
        have parked scans, and who owns the LPNs the scans list: three statements."""
        tracking = sorted({e.tracking_number for e in events})
        rows = await self.conn.fetch(
            "SELECT " + _RMA_COLUMNS + ", issued_at FROM intake.rmas WHERE tracking_number = ANY($1::text[])",
            tracking)
        self._rmas.update({t: [] for t in tracking})
        for row in rows:
            self._rmas[row["tracking_number"]].append((row["issued_at"], _order(row)))
        rma_tracking = sorted({e.tracking_number for e in events if isinstance(e, RmaIssued)})
        if rma_tracking:
            self._parked_read.update(rma_tracking)
            self._parked.update(r["tracking_number"] for r in await self.conn.fetch(
                "SELECT DISTINCT tracking_number FROM intake.parked_scans WHERE tracking_number = ANY($1::text[])",
                rma_tracking))
        lpns = sorted({unit.lpn for e in events if isinstance(e, ParcelScanned) for unit in e.units})
        if lpns:
            self._owners.update(dict.fromkeys(lpns))
            self._owners.update(await self._read_owners(lpns))

    async def add_rma(self, rma: RmaIssued, reason_category: str, lane: str) -> bool:
        """Register the return order and its lines; False if this seller already has that return id."""
        lines = list(enumerate(rma.lines))
        added = await self.conn.fetchval(
            "WITH r AS (INSERT INTO intake.rmas (seller_id, return_id, shop_id, channel, order_id,"
            " tracking_number, reason_code, reason_category, lane, issued_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING seller_id, return_id),"
            " l AS (INSERT INTO intake.rma_lines (seller_id, return_id, line_id, position, sku, quantity,"
            " unit_price, currency, size, colour) SELECT r.seller_id, r.return_id, l.* FROM r CROSS JOIN"
            " unnest($11::text[], $12::int[], $13::text[], $14::int[], $15::numeric[], $16::text[], $17::text[],"
            " $18::text[]) AS l)"
            " SELECT count(*) > 0 FROM r",
            rma.seller_id, rma.return_id, rma.shop_id, rma.channel, rma.order_id,
            rma.tracking_number, rma.reason_code, reason_category, lane, rma.occurred_at,
            [line.line_id for _, line in lines], [position for position, _ in lines], [line.sku for _, line in lines],
            [line.quantity for _, line in lines], [line.unit_price.amount for _, line in lines],
            [line.unit_price.currency for _, line in lines], [line.size for _, line in lines],
            [line.colour for _, line in lines],
        )
        if added and rma.tracking_number in self._rmas:
            self._rmas[rma.tracking_number].append((rma.occurred_at, ReturnOrder(
                seller_id=rma.seller_id, return_id=rma.return_id, shop_id=rma.shop_id, channel=rma.channel,
                order_id=rma.order_id, tracking_number=rma.tracking_number, reason_code=rma.reason_code,
                reason_category=reason_category, lane=lane)))
        return bool(added)

    async def _orders(self, tracking_number: str) -> list[tuple[datetime, ReturnOrder]]:
        if tracking_number not in self._rmas:
            rows = await self.conn.fetch(
                "SELECT " + _RMA_COLUMNS + ", issued_at FROM intake.rmas WHERE tracking_number = $1", tracking_number)
            self._rmas[tracking_number] = [(r["issued_at"], _order(r)) for r in rows]
        return self._rmas[tracking_number]

    async def sellers_with_tracking(self, tracking_number: str) -> set[str]:
        return {order.seller_id for _, order in await self._orders(tracking_number)}

    async def rma_for_tracking(self, seller_id: str, tracking_number: str) -> ReturnOrder | None:
        """The seller's first return order (by issue time) with this tracking number."""
        mine = [(issued_at, order.return_id, order) for issued_at, order in await self._orders(tracking_number)
                if order.seller_id == seller_id]
        return min(mine, key=lambda m: m[:2])[2] if mine else None

    async def lines_for_update(self, seller_id: str, return_id: str) -> list[LineDetail]:
        rows = await self.conn.fetch(
            "SELECT line_id, sku, quantity, received, unit_price, currency, size, colour"
            " FROM intake.rma_lines WHERE seller_id = $1 AND return_id = $2 ORDER BY position FOR UPDATE",
            seller_id, return_id,
        )
        return [
            LineDetail(
                line=OpenLine(r["line_id"], r["sku"], r["quantity"], r["received"]),
                unit_price=r["unit_price"], currency=r["currency"], size=r["size"], colour=r["colour"],
            )
            for r in rows
        ]

    async def _read_owners(self, lpns: list[str]) -> dict[str, str]:
        rows = await self.conn.fetch("SELECT lpn, seller_id FROM intake.units WHERE lpn = ANY($1::text[])", lpns)
        return {row["lpn"]: row["seller_id"] for row in rows}

    async def owners_of(self, lpns: list[str]) -> dict[str, str]:
        """Which seller each already registered LPN belongs to."""
        unknown = [lpn for lpn in lpns if lpn not in self._owners]
        if unknown:
            self._owners.update(dict.fromkeys(unknown))
            self._owners.update(await self._read_owners(unknown))
        return {lpn: owner for lpn in lpns if (owner := self._owners[lpn]) is not None}

    async def add_units(
        self, scan: ParcelScanned, rows: list[tuple[str, str, str | None, str | None, str | None]]
    ) -> None:
        """Register (lpn, sku, return_id, line_id, lane) rows and count them on their lines, in one statement."""
        if not rows:
            return
        await self.conn.execute(
            "WITH u AS (INSERT INTO intake.units (lpn, seller_id, return_id, line_id, sku, warehouse_id,"
            " tracking_number, lane, scanned_at) SELECT t.lpn, $1, t.return_id, t.line_id, t.sku, $2, $3, t.lane, $4"
            " FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
            " AS t(lpn, sku, return_id, line_id, lane) RETURNING return_id, line_id)"
            " UPDATE intake.rma_lines AS x SET received = x.received + c.n"
            " FROM (SELECT return_id, line_id, count(*) AS n FROM u WHERE line_id IS NOT NULL GROUP BY 1, 2) AS c"
            " WHERE x.seller_id = $1 AND x.return_id = c.return_id AND x.line_id = c.line_id",
            scan.seller_id, scan.warehouse_id, scan.tracking_number, scan.occurred_at,
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
            [r[4] for r in rows],
        )
        self._owners.update({lpn: scan.seller_id for lpn, *_ in rows})

    async def park_scan(self, scan: ParcelScanned, source: MessageSource) -> None:
        self._parked.add(scan.tracking_number)
        await self.conn.execute(
            "INSERT INTO intake.parked_scans (event_id, seller_id, tracking_number, payload, source)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            scan.event_id, scan.seller_id, scan.tracking_number,
            scan.model_dump_json(), orjson.dumps(source.model_dump()).decode(),
        )

    async def take_parked_scans(self, tracking_number: str) -> list[tuple[ParcelScanned, MessageSource]]:
        """Un-park every scan of this tracking number, whichever seller sent it, oldest first."""
        if tracking_number in self._parked_read and tracking_number not in self._parked:
            return []  # read for this batch: nothing parked, and nothing parked since
        self._parked.discard(tracking_number)
        rows = await self.conn.fetch(
            "DELETE FROM intake.parked_scans WHERE tracking_number = $1 RETURNING payload, source, parked_at",
            tracking_number,
        )
        rows = sorted(rows, key=lambda r: r["parked_at"])
        return [
            (ParcelScanned.model_validate_json(r["payload"]), MessageSource.model_validate_json(r["source"]))
            for r in rows
        ]

    async def unreported_parked_scans(
        self, parked_before: datetime, limit: int = 500
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        """Parcels parked before `parked_before` and not reported yet, locked for this transaction."""
        rows = await self.conn.fetch(
            "SELECT payload, source FROM intake.parked_scans WHERE reported_at IS NULL AND parked_at < $1"
            " ORDER BY parked_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            parked_before, limit,
        )
        return [
            (ParcelScanned.model_validate_json(r["payload"]), MessageSource.model_validate_json(r["source"]))
            for r in rows
        ]

    async def mark_reported(self, event_ids: list, at: datetime) -> None:
        await self.conn.execute(
            "UPDATE intake.parked_scans SET reported_at = $2 WHERE event_id = ANY($1::uuid[])", event_ids, at
        )
