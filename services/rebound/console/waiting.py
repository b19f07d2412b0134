"""Parked and waiting: scans whose parcel has no return order yet and inspections whose unit has
no receipt yet, the oldest first, as the console read them. An inspection that waits longer than
`Settings.waiting_case_after_s` becomes a case in the work queue (a scan's is intake's
`unmatched_parcel` exception); its unit's receipt resolves that case."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson

from ..db import Connection
from ..settings import Settings

WAITS_FOR = {"scan": "its return order", "inspection": "its unit's receipt"}
CASE_KIND = "inspection_without_receipt"
_CASES = uuid.UUID("0b6c1f0e-5d0a-4c55-9a77-3f1f4f0a9e21")

_SELECT = (
    "SELECT w.event_id, w.kind, w.seller_id, w.key, w.warehouse_id, w.since, w.seen_at, w.escalated_at"
    " FROM console.waiting w"
)
_UNRECEIVED = (
    " NOT EXISTS (SELECT 1 FROM console.event_keys k JOIN console.events r USING (event_id)"
    " WHERE k.kind = CASE w.kind WHEN 'scan' THEN 'tracking' ELSE 'lpn' END AND k.value = w.key"
    " AND r.topic IN ('returns.unit-received.v1', 'returns.parcel-received-unexpected.v1',"
    " 'returns.unit-quarantined.v1') AND r.seller_id = w.seller_id)"
)
"""What ends a wait: a unit's receipt, or an operator's decision (a parcel received as unexpected
stock, a unit quarantined); read before the waiting event, it is filtered out here."""


def case_id_of(event_id: uuid.UUID | str) -> str:
    """The case an inspection that waited too long became."""
    return str(uuid.uuid5(_CASES, f"waiting:{event_id}"))


@dataclass(frozen=True)
class Waited:
    event_id: str
    kind: str
    seller_id: str
    key: str
    warehouse_id: str
    since: datetime
    seen_at: datetime
    escalated_at: datetime | None

    @property
    def case_id(self) -> str | None:
        return case_id_of(self.event_id) if self.escalated_at is not None else None

    def as_json(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "waits_for": WAITS_FOR[self.kind],
            "seller_id": self.seller_id,
            "key": self.key,
            "warehouse_id": self.warehouse_id,
            "since": self.since.isoformat(),
            "seen_at": self.seen_at.isoformat(),
            "case_id": self.case_id,
        }


async def waiting(conn: Connection, sellers: Collection[str] | None = None, limit: int = 500) -> list[Waited]:
    """What waits, the oldest first; only `sellers`' (None: every seller's)."""
    rows = await conn.fetch(
        _SELECT
        + " WHERE ($1::text[] IS NULL OR w.seller_id = ANY($1::text[])) AND"
        + _UNRECEIVED
        + " ORDER BY w.since, w.event_id LIMIT $2",
        None if sellers is None else list(sellers),
        limit,
    )
    return [Waited(**{**dict(r), "event_id": str(r["event_id"])}) for r in rows]


async def escalate(conn: Connection, seen_before: datetime, limit: int = 500) -> int:
    """Make a case of each inspection the console read before `seen_before` whose unit still has
    no receipt; how many. Idempotent: a case's id is derived from its inspection's."""
    rows = await conn.fetch(
        'SELECT w.event_id, w.seller_id, w.key, w.warehouse_id, w.since, w.topic, w.partition, w."offset", e.body'
        " FROM console.waiting w JOIN console.events e USING (event_id)"
        " WHERE w.kind = 'inspection' AND w.escalated_at IS NULL AND w.seen_at < $1 AND"
        + _UNRECEIVED
        + " ORDER BY w.seen_at LIMIT $2 FOR UPDATE OF w SKIP LOCKED",
        seen_before,
        limit,
    )
    if not rows:
        return 0
    await conn.executemany(
        "INSERT INTO console.cases (case_id, source, kind, seller_id, opened_at, updated_at, detail, topic,"
        " partition, \"offset\", key, event) VALUES ($1, 'waiting', $2, $3, now(), now(), $4, $5, $6, $7, $8,"
        " $9::jsonb) ON CONFLICT DO NOTHING",
        [
            (
                case_id_of(r["event_id"]),
                CASE_KIND,
                r["seller_id"],
                f"the inspection of {r['key']} at {r['warehouse_id']} ({r['since'].isoformat(timespec='seconds')})"
                " waits for the unit's receipt: is its parcel scanned and matched to its return?",
                r["topic"],
                r["partition"],
                r["offset"],
                r["key"],
                orjson.dumps({"original": orjson.loads(r["body"]), "waits_for": "receipt"}).decode(),
            )
            for r in rows
        ],
    )
    await conn.execute(
        "UPDATE console.waiting SET escalated_at = now() WHERE event_id = ANY($1::uuid[])",
        [r["event_id"] for r in rows],
    )
    return len(rows)


async def escalate_waiting(pool: asyncpg.Pool, settings: Settings, _producer: str) -> int:
    """The console's periodic job: inspections that waited `waiting_case_after_s` become cases."""
    async with pool.acquire() as conn, conn.transaction():
        now = await conn.fetchval("SELECT now()")
        return await escalate(conn, now - timedelta(seconds=settings.waiting_case_after_s))
