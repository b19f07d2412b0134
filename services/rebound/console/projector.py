"""The console's consumer: each batch of records becomes rows of its read models in one
transaction, before the offsets are committed.

A read model is not a pipeline service: it applies no rule, raises no exception and dead-letters
nothing (a record the console cannot read is dead-lettered by the service that consumes it, and
is shown as that service's case). Every row is keyed by the event it came from and written with
`ON CONFLICT`, so a batch read again after a crash changes nothing: exactly once into its tables
without an inbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg
import orjson
import structlog
from pydantic import BaseModel, ValidationError

from rebound_contracts import Topic

from ..db import TRANSIENT_ERRORS, Connection
from ..messaging.processor import BatchStats, Record
from .cases import PRODUCER
from .domain import Arrived, Placed, Projection, ShopAnswer, StockLevel, project

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Projected:
    record: Record
    event: BaseModel
    projection: Projection


class Projector:
    """Writes what the console keeps of each record (see `domain.project`)."""

    def __init__(
        self, consumer: str, topics: Sequence[Topic], pool: asyncpg.Pool, *, max_message_bytes: int = 256 * 1024
    ) -> None:
        self.consumer = consumer
        self.models: Mapping[str, type[BaseModel]] = {topic.name: topic.model for topic in topics}
        self.pool = pool
        self.max_message_bytes = max_message_bytes

    def read(self, record: Record) -> Projected | None:
        """The record's projection, or None for a record its own consumer dead-letters."""
        model = self.models.get(record.topic)
        raw = record.value or b""
        if model is None or len(raw) > self.max_message_bytes:
            return None
        try:
            event = model.model_validate_json(raw)
        except ValidationError:
            log.debug("console_unreadable", topic=record.topic, partition=record.partition, offset=record.offset)
            return None
        return Projected(record, event, project(event))

    async def process(self, records: Sequence[Record]) -> BatchStats:
        projected = [p for p in (self.read(r) for r in records) if p is not None]
        return await self._store_or_split(projected)

    async def _store_or_split(self, items: list[Projected]) -> BatchStats:
        """Store `items` in one transaction; when that fails for a reason other than the database
        being away, store each half the same way, down to one record, which is then logged and
        left out: the rest of the batch, and the partition, go on."""
        try:
            return await self._store_with_retry(items)
        except Exception as error:  # noqa: BLE001 — not transient: isolate the record at fault
            if len(items) == 1:
                item = items[0].record
                log.error(
                    "console_record_skipped",
                    topic=item.topic,
                    partition=item.partition,
                    offset=item.offset,
                    error=f"{type(error).__name__}: {error}",
                )
                return BatchStats()
            half = len(items) // 2
            first, second = await self._store_or_split(items[:half]), await self._store_or_split(items[half:])
            for topic, counts in second.by_topic.items():
                first.of(topic).applied += counts.applied
            return first

    async def _store_with_retry(self, items: list[Projected]) -> BatchStats:
        delay = 0.1
        while True:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await store(conn, items)
                break
            except TRANSIENT_ERRORS as error:
                log.warning("batch_retry", consumer=self.consumer, error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        stats = BatchStats()
        for item in items:
            stats.of(item.record.topic).applied += 1
        return stats


async def store(conn: Connection, items: Sequence[Projected]) -> None:
    """Write the projections of records, each kind of row in one statement."""
    rows = [(item.record.topic, item.event, item.projection) for item in items]
    projections = [p for _, _, p in rows]
    timeline = [(t, e, p) for t, e, p in rows if p.summary is not None]
    if timeline:
        await conn.execute(
            "INSERT INTO console.events (event_id, topic, seller_id, occurred_at, summary, body)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[])"
            " ON CONFLICT DO NOTHING",
            [getattr(e, "event_id") for _, e, _ in timeline],
            [t for t, _, _ in timeline],
            [getattr(e, "seller_id", None) for _, e, _ in timeline],
            [getattr(e, "occurred_at") for _, e, _ in timeline],
            [p.summary for _, _, p in timeline],
            [e.model_dump_json() for _, e, _ in timeline],
        )
        keys = [(kind, value, getattr(e, "event_id")) for _, e, p in timeline for kind, value in p.keys]
        if keys:
            await conn.execute(
                "INSERT INTO console.event_keys (kind, value, event_id)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[]) ON CONFLICT DO NOTHING",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
            )
    cases = [p.case for p in projections if p.case is not None]
    if cases:
        await conn.executemany(
            "INSERT INTO console.cases (case_id, source, kind, seller_id, opened_at, updated_at, detail, topic,"
            ' partition, "offset", consumer, key, event)'
            " VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12::jsonb) ON CONFLICT DO NOTHING",
            [
                (
                    c.case_id,
                    c.source,
                    c.kind,
                    c.seller_id,
                    c.opened_at,
                    c.detail,
                    c.topic,
                    c.partition,
                    c.offset,
                    c.consumer,
                    c.key,
                    orjson.dumps(c.event).decode(),
                )
                for c in cases
            ],
        )
    await _store_waiting(conn, [item for item in items if item.projection.waiting is not None])
    await _clear_arrived(conn, [p.arrived for p in projections if p.arrived is not None])
    await _store_placed(conn, [p.placed for p in projections if p.placed is not None])
    await _store_stock(conn, [p.stock for p in projections if p.stock is not None])
    await _store_answers(conn, [p.answer for p in projections if p.answer is not None])


def _listing_key(level: StockLevel | ShopAnswer) -> tuple[str, str, str, str, str]:
    return (level.seller_id, level.channel, level.warehouse_id, level.sku, level.condition)


async def _store_stock(conn: Connection, levels: list[StockLevel]) -> None:
    """Each key's latest level: the highest sequence wins, whatever order the rows come in."""
    latest: dict[tuple[str, str, str, str, str], StockLevel] = {}
    for level in levels:
        key = _listing_key(level)
        if key not in latest or latest[key].sequence < level.sequence:
            latest[key] = level
    if not latest:
        return
    await conn.executemany(
        "INSERT INTO console.stock (seller_id, channel, warehouse_id, sku, condition, available, picked, sequence,"
        " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (seller_id, channel, warehouse_id, sku, condition) DO UPDATE SET"
        " available = excluded.available, picked = excluded.picked, sequence = excluded.sequence,"
        " updated_at = excluded.updated_at WHERE console.stock.sequence < excluded.sequence",
        [(*_listing_key(s), s.available, s.picked, s.sequence, s.at) for s in latest.values()],
    )


async def _store_answers(conn: Connection, answers: list[ShopAnswer]) -> None:
    """Each key's latest answer from its shop: the latest by `occurred_at` wins."""
    latest: dict[tuple[str, str, str, str, str], ShopAnswer] = {}
    for answer in answers:
        key = _listing_key(answer)
        if key not in latest or latest[key].at < answer.at:
            latest[key] = answer
    if not latest:
        return
    await conn.executemany(
        "INSERT INTO console.stock (seller_id, channel, warehouse_id, sku, condition, available, picked, sequence,"
        " updated_at, ack_status, ack_reason, ack_at) VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $8, $6, $7, $8)"
        " ON CONFLICT (seller_id, channel, warehouse_id, sku, condition) DO UPDATE SET"
        " ack_status = excluded.ack_status, ack_reason = excluded.ack_reason, ack_at = excluded.ack_at"
        " WHERE console.stock.ack_at IS NULL OR console.stock.ack_at < excluded.ack_at",
        [(*_listing_key(a), a.status, a.reason, a.at) for a in latest.values()],
    )


async def _store_waiting(conn: Connection, items: list[Projected]) -> None:
    if not items:
        return
    await conn.executemany(
        "INSERT INTO console.waiting (event_id, kind, seller_id, key, warehouse_id, since, topic, partition,"
        ' "offset") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING',
        [
            (
                getattr(item.event, "event_id"),
                w.kind,
                w.seller_id,
                w.key,
                w.warehouse_id,
                w.since,
                item.record.topic,
                item.record.partition,
                item.record.offset,
            )
            for item in items
            if (w := item.projection.waiting) is not None
        ],
    )


async def _clear_arrived(conn: Connection, arrived: list[Arrived]) -> None:
    """Receipts (and operators' decisions that end a wait): their scans and inspections wait no
    more, and a case an inspection that waited too long became is resolved, in its audit trail."""
    if not arrived:
        return
    await conn.execute(
        "DELETE FROM console.waiting w USING unnest($1::text[], $2::text[], $3::text[]) AS a(s, t, l)"
        " WHERE w.seller_id = a.s AND ((w.kind = 'scan' AND w.key = a.t) OR (w.kind = 'inspection' AND w.key = a.l))",
        [a.seller_id for a in arrived],
        [a.tracking_number for a in arrived],
        [a.lpn for a in arrived],
    )
    for why in sorted({a.why for a in arrived if a.lpn is not None}):
        units = [a for a in arrived if a.lpn is not None and a.why == why]
        await conn.execute(
            "WITH resolved AS ("
            " UPDATE console.cases c SET status = 'resolved', updated_at = now()"
            " FROM unnest($1::text[], $2::text[]) AS a(s, l)"
            " WHERE c.source = 'waiting' AND c.status = 'open' AND c.seller_id = a.s AND c.key = a.l"
            " RETURNING c.case_id)"
            " INSERT INTO console.audit (case_id, actor, action, detail)"
            " SELECT case_id, $3, 'resolve', $4::jsonb FROM resolved",
            [a.seller_id for a in units],
            [a.lpn for a in units],
            PRODUCER,
            orjson.dumps({"reason": why}).decode(),
        )


async def _store_placed(conn: Connection, placed: list[Placed]) -> None:
    """Each unit's latest allocation and latest pick, whatever order they are read in."""
    allocations = [p for p in placed if not p.picked]
    if allocations:
        await conn.executemany(
            "INSERT INTO console.units (seller_id, lpn, warehouse_id, sku, place, channel, condition, placed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (seller_id, lpn) DO UPDATE SET"
            " warehouse_id = excluded.warehouse_id, sku = excluded.sku, place = excluded.place,"
            " channel = excluded.channel, condition = excluded.condition, placed_at = excluded.placed_at"
            " WHERE console.units.placed_at IS NULL OR console.units.placed_at < excluded.placed_at",
            [(p.seller_id, p.lpn, p.warehouse_id, p.sku, p.place, p.channel, p.condition, p.at) for p in allocations],
        )
    picks = [p for p in placed if p.picked]
    if picks:
        await conn.executemany(
            "INSERT INTO console.units (seller_id, lpn, picked_at, picked_channel) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (seller_id, lpn) DO UPDATE SET picked_at = excluded.picked_at,"
            " picked_channel = excluded.picked_channel"
            " WHERE console.units.picked_at IS NULL OR console.units.picked_at < excluded.picked_at",
            [(p.seller_id, p.lpn, p.at, p.channel) for p in picks],
        )
