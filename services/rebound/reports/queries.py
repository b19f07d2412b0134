"""What the reports read from PostgreSQL. Every query is scoped by one seller and a period of
dock scans, and joins each service's rows on that seller too: a report holds nothing of another."""

from __future__ import annotations

import uuid
from datetime import datetime


from .domain import UnitFacts
from .insights import FitCount
from ..db import Connection

_RETURNED_UNITS = (
    " FROM intake.units u"
    " JOIN intake.rmas r ON r.seller_id = u.seller_id AND r.return_id = u.return_id"
    " JOIN intake.rma_lines l ON l.seller_id = u.seller_id AND l.return_id = u.return_id AND l.line_id = u.line_id"
)
_IN_PERIOD = " WHERE u.seller_id = $1 AND u.scanned_at >= $2 AND u.scanned_at < $3"


async def seller_exists(conn: Connection, seller_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM rebound.sellers WHERE seller_id = $1", seller_id))


async def sellers(conn: Connection) -> list[str]:
    return [r["seller_id"] for r in await conn.fetch("SELECT seller_id FROM rebound.sellers ORDER BY seller_id")]


async def unit_facts(conn: Connection, seller_id: str, start: datetime, end: datetime) -> list[UnitFacts]:
    """Every unit of `seller_id` matched to a return line and scanned in [start, end)."""
    rows = await conn.fetch(
        "SELECT u.lpn, u.return_id, l.sku, l.size, l.colour, r.reason_code, r.reason_category,"
        " l.unit_price, l.currency, u.scanned_at, g.grade, lu.place, lu.first_offered_at, lu.sold_at,"
        " lu.sold_price" + _RETURNED_UNITS + " LEFT JOIN grading.units g ON g.lpn = u.lpn AND g.seller_id = u.seller_id"
        " LEFT JOIN ledger.units lu ON lu.lpn = u.lpn AND lu.seller_id = u.seller_id"
        + _IN_PERIOD
        + " ORDER BY u.scanned_at, u.lpn",
        seller_id,
        start,
        end,
    )
    return [
        UnitFacts(
            lpn=r["lpn"],
            return_id=r["return_id"],
            sku=r["sku"],
            size=r["size"],
            colour=r["colour"],
            reason_code=r["reason_code"],
            reason_category=r["reason_category"],
            price=r["unit_price"],
            currency=r["currency"],
            scanned_at=r["scanned_at"],
            grade=r["grade"],
            place=r["place"],
            first_offered_at=r["first_offered_at"],
            sold_at=r["sold_at"],
            sold_price=r["sold_price"],
        )
        for r in rows
    ]


async def fit_counts(conn: Connection, seller_id: str, start: datetime, end: datetime) -> list[FitCount]:
    """Returned units of `seller_id` scanned in [start, end), per SKU, size and raw reason."""
    rows = await conn.fetch(
        "SELECT l.sku, l.size, r.reason_category, r.reason_code, count(*) AS units"
        + _RETURNED_UNITS
        + _IN_PERIOD
        + " AND l.size IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        seller_id,
        start,
        end,
    )
    return [FitCount(r["sku"], r["size"], r["reason_category"], r["reason_code"], r["units"]) for r in rows]


async def record_insight(
    conn: Connection, seller_id: str, sku: str, size: str, kind: str, period: str, event_id: uuid.UUID
) -> bool:
    """Note that this insight was raised; False when it had been already."""
    return bool(
        await conn.fetchval(
            "INSERT INTO intake.insights_raised (seller_id, sku, size, kind, period, event_id)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
            seller_id,
            sku,
            size,
            kind,
            period,
            event_id,
        )
    )
