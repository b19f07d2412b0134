"""A unit's path, from the console's read models: every event that names it, and the events of
its return, its parcel and its shop's answers that name no other unit, in time order."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..db import Connection
from .domain import THROUGH_KINDS


@dataclass(frozen=True)
class Step:
    occurred_at: datetime
    topic: str
    event_id: str
    seller_id: str | None
    summary: str
    event: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "occurred_at": self.occurred_at.isoformat(),
            "topic": self.topic,
            "event_id": self.event_id,
            "seller_id": self.seller_id,
            "summary": self.summary,
            "event": self.event,
        }


SEARCHABLE = ("lpn", "return", "tracking", "order", "sku")


async def trace(conn: Connection, lpn: str, sellers: Collection[str] | None = None) -> list[Step]:
    """The path of unit `lpn`, oldest first; only the events of `sellers` (None: any seller's).
    A unit no event names, or only other sellers' events do, has no steps."""
    rows = await conn.fetch(
        """
        WITH unit AS (
            SELECT k.event_id, e.seller_id FROM console.event_keys k JOIN console.events e USING (event_id)
            WHERE k.kind = 'lpn' AND k.value = $1 AND ($3::text[] IS NULL OR e.seller_id = ANY($3::text[]))
        ),
        through AS (
            SELECT DISTINCT k.kind, k.value FROM console.event_keys k JOIN unit USING (event_id)
            WHERE k.kind = ANY($2::text[])
        ),
        related AS (
            SELECT event_id FROM unit
            UNION
            SELECT k.event_id FROM console.event_keys k JOIN through t ON k.kind = t.kind AND k.value = t.value
            WHERE NOT EXISTS (
                SELECT 1 FROM console.event_keys other
                WHERE other.event_id = k.event_id AND other.kind = 'lpn' AND other.value <> $1
            )
        )
        SELECT e.event_id, e.topic, e.seller_id, e.occurred_at, e.summary, e.body
        FROM console.events e JOIN related USING (event_id)
        WHERE e.seller_id IN (SELECT seller_id FROM unit)
        ORDER BY e.occurred_at, e.event_id
        """,
        lpn,
        list(THROUGH_KINDS),
        None if sellers is None else list(sellers),
    )
    return [
        Step(r["occurred_at"], r["topic"], str(r["event_id"]), r["seller_id"], r["summary"], orjson.loads(r["body"]))
        for r in rows
    ]


async def units_named(
    conn: Connection, query: str, sellers: Collection[str] | None = None, limit: int = 100
) -> list[tuple[str, str]]:
    """The units (seller, LPN) an LPN, return id, tracking number, order id, SKU or buyer names (a
    buyer's: the units of that seller's returns of the buyer), at most `limit`, only `sellers'`
    (None: any seller's)."""
    rows = await conn.fetch(
        """
        WITH wanted AS (
            SELECT k.kind, k.value, NULL::text AS seller_id FROM console.event_keys k
            WHERE k.value = $1 AND k.kind = ANY($2::text[])
            UNION
            SELECT r.kind, r.value, e.seller_id FROM console.event_keys b
            JOIN console.event_keys r ON r.event_id = b.event_id AND r.kind = 'return'
            JOIN console.events e ON e.event_id = b.event_id
            WHERE b.kind = 'buyer' AND b.value = $1
        )
        SELECT DISTINCT e.seller_id, unit.value AS lpn
        FROM wanted w
        JOIN console.event_keys k ON k.kind = w.kind AND k.value = w.value
        JOIN console.event_keys unit ON unit.event_id = k.event_id AND unit.kind = 'lpn'
        JOIN console.events e ON e.event_id = k.event_id
        WHERE (k.kind <> 'lpn' OR unit.value = k.value) AND (w.seller_id IS NULL OR e.seller_id = w.seller_id)
          AND ($3::text[] IS NULL OR e.seller_id = ANY($3::text[]))
        ORDER BY e.seller_id, unit.value
        LIMIT $4
        """,
        query,
        list(SEARCHABLE),
        None if sellers is None else list(sellers),
        limit,
    )
    return [(r["seller_id"], r["lpn"]) for r in rows]


@dataclass(frozen=True)
class TracedUnit:
    seller_id: str | None
    lpn: str
    steps: list[Step]

    def as_json(self) -> dict[str, Any]:
        return {"seller_id": self.seller_id, "lpn": self.lpn, "steps": [step.as_json() for step in self.steps]}


async def trace_units(
    conn: Connection, query: str, sellers: Collection[str] | None = None, limit: int = 20
) -> list[TracedUnit]:
    """Each unit `query` names (see `units_named`), at most `limit`, with its path."""
    units = await units_named(conn, query, sellers, limit=limit)
    return [TracedUnit(seller, lpn, await trace(conn, lpn, [seller] if seller else sellers)) for seller, lpn in units]
