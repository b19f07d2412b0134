"""Intake's PostgreSQL repository. Every query names the seller it reads for, except the one
lookup that must see all sellers to detect a cross-tenant reference (and returns only ids)."""

from __future__ import annotations

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


class IntakeRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_rma(self, rma: RmaIssued, reason_category: str, lane: str) -> bool:
        """Register the return order and its lines; False if this seller already has that return id."""
        added = await self.conn.fetchval(
            "INSERT INTO intake.rmas (seller_id, return_id, shop_id, channel, order_id,"
            " tracking_number, reason_code, reason_category, lane, issued_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING true",
            rma.seller_id, rma.return_id, rma.shop_id, rma.channel, rma.order_id,
            rma.tracking_number, rma.reason_code, reason_category, lane, rma.occurred_at,
        )
        if not added:
            return False
        await self.conn.executemany(
            "INSERT INTO intake.rma_lines (seller_id, return_id, line_id, position, sku, quantity,"
            " unit_price, currency, size, colour) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [
                (rma.seller_id, rma.return_id, line.line_id, position, line.sku, line.quantity,
                 line.unit_price.amount, line.unit_price.currency, line.size, line.colour)
                for position, line in enumerate(rma.lines)
            ],
        )
        return True

    async def sellers_with_tracking(self, tracking_number: str) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT DISTINCT seller_id FROM intake.rmas WHERE tracking_number = $1", tracking_number
        )
        return {row["seller_id"] for row in rows}

    async def rma_for_tracking(self, seller_id: str, tracking_number: str) -> ReturnOrder | None:
        row = await self.conn.fetchrow(
            "SELECT seller_id, return_id, shop_id, channel, order_id, tracking_number, reason_code,"
            " reason_category, lane FROM intake.rmas WHERE seller_id = $1 AND tracking_number = $2"
            " ORDER BY issued_at, return_id LIMIT 1",
            seller_id, tracking_number,
        )
        return ReturnOrder(**dict(row)) if row else None

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

    async def owners_of(self, lpns: list[str]) -> dict[str, str]:
        """Which seller each already registered LPN belongs to."""
        rows = await self.conn.fetch(
            "SELECT lpn, seller_id FROM intake.units WHERE lpn = ANY($1::text[])", lpns
        )
        return {row["lpn"]: row["seller_id"] for row in rows}

    async def add_units(
        self, scan: ParcelScanned, rows: list[tuple[str, str, str | None, str | None, str | None]]
    ) -> None:
        """Register (lpn, sku, return_id, line_id, lane) rows and count them on their lines."""
        await self.conn.executemany(
            "INSERT INTO intake.units (lpn, seller_id, return_id, line_id, sku, warehouse_id,"
            " tracking_number, lane, scanned_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            [
                (lpn, scan.seller_id, return_id, line_id, sku, scan.warehouse_id,
                 scan.tracking_number, lane, scan.occurred_at)
                for lpn, sku, return_id, line_id, lane in rows
            ],
        )
        await self.conn.executemany(
            "UPDATE intake.rma_lines SET received = received + 1"
            " WHERE seller_id = $1 AND return_id = $2 AND line_id = $3",
            [(scan.seller_id, return_id, line_id) for _, _, return_id, line_id, _ in rows if line_id],
        )

    async def park_scan(self, scan: ParcelScanned, source: MessageSource) -> None:
        await self.conn.execute(
            "INSERT INTO intake.parked_scans (event_id, seller_id, tracking_number, payload, source)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            scan.event_id, scan.seller_id, scan.tracking_number,
            scan.model_dump_json(), orjson.dumps(source.model_dump()).decode(),
        )

    async def take_parked_scans(self, tracking_number: str) -> list[tuple[ParcelScanned, MessageSource]]:
        """Un-park every scan of this tracking number, whichever seller sent it, oldest first."""
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
