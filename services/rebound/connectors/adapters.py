"""The connectors' PostgreSQL repository: shops, listing keys with their marketplace ids and
progress, and the adjustments waiting to be applied."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
import orjson
from rebound_contracts import ListingRequested, MessageSource, StockAdjusted

from ..db import Connection
from .domain import Adjustment, Intent, Listing, Pending, Requested

IN_DOUBT = "in doubt"
"""Why a key whose write in doubt no write explains waits for an operator."""


def _intent(document: dict[str, Any]) -> Intent:
    return Intent(**{**document, "sales_before": tuple(document.get("sales_before", ()))})


def _pending(event: str | bytes, source: str | bytes, delta: int | None = None) -> Pending:
    adjustment = StockAdjusted.model_validate_json(event)
    return Pending(
        Adjustment(adjustment.sequence, adjustment.delta if delta is None else delta, adjustment.adjustment_id),
        adjustment,
        MessageSource.model_validate_json(source),
    )


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def stock_key(event: Any) -> str:
    return f"{event.seller_id}:{event.channel}:{event.warehouse_id}:{event.sku}:{event.condition}"


DUE = (
    "SELECT key FROM (SELECT l.key, l.updated_at, row_number() OVER"
    " (PARTITION BY l.seller_id, l.channel, l.shop_id ORDER BY l.updated_at) AS turn"
    " FROM connectors.shops s JOIN connectors.listings l"
    " ON (s.seller_id, s.channel, s.shop_id) = (l.seller_id, l.channel, l.shop_id)"
    " WHERE l.blocked IS NULL AND (l.intent IS NOT NULL OR l.received_through > l.applied_through"
    " OR (l.ids IS NOT NULL AND l.priced IS DISTINCT FROM ((l.requested -> 'event' ->> 'event_id')::uuid)))"
    " AND (l.not_before IS NULL OR l.not_before <= now()) AND NOT l.key = ANY($3::text[])"
    " AND (l.intent IS NOT NULL OR (SELECT 1 FROM connectors.adjustments a"
    " WHERE a.key = l.key AND a.sequence = l.applied_through + 1) IS NOT NULL"
    " OR (l.ids IS NOT NULL AND l.priced IS DISTINCT FROM (l.requested->'event'->>'event_id')::uuid))) due"
    " WHERE turn <= $2 ORDER BY updated_at LIMIT $1"
)
"""The listing keys due ($1 at most, $2 of each shop, none of $3, oldest first): those of a
connected shop, not blocked, their wait over, with a write in flight, their next adjustment
received, or a price to push. The first condition is the predicate of the index
`listings_maybe_due`, word for word, so PostgreSQL reads the candidates of each connected shop
through it; a key whose adjustments wait is due once the next one in sequence is there. That
one is looked up by the key's index, candidate by candidate (a scalar subquery: an EXISTS under
an OR may be planned as a hash of every adjustment waiting, shops not connected included)."""


class PostgresConnectorRepository:
    """`domain.ConnectorRepository` on PostgreSQL (its methods are documented there)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def record(self, adjustment: StockAdjusted, source: MessageSource) -> bool:
        key = stock_key(adjustment)
        await self.conn.execute(
            "INSERT INTO connectors.listings (key, seller_id, channel, shop_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (key) DO NOTHING",
            key,
            adjustment.seller_id,
            adjustment.channel,
            adjustment.shop_id,
        )
        # The listing's received_through follows in the same statement: `due` finds the keys
        # whose adjustments wait by it.
        status = await self.conn.execute(
            "WITH added AS (INSERT INTO connectors.adjustments (key, sequence, delta, event, source)"
            " SELECT $1, $2, $3, $4, $5 FROM connectors.listings"
            " WHERE key = $1 AND applied_through < $2 ON CONFLICT DO NOTHING RETURNING sequence)"
            " UPDATE connectors.listings SET received_through = greatest(received_through, added.sequence)"
            " FROM added WHERE key = $1",
            key,
            adjustment.sequence,
            adjustment.delta,
            adjustment.model_dump_json(),
            source.model_dump_json(),
        )
        return status.endswith(" 1")

    async def request(self, request: ListingRequested, source: MessageSource) -> None:
        kept = {"event": request.model_dump(mode="json"), "source": source.model_dump(mode="json")}
        await self.conn.execute(
            "INSERT INTO connectors.listings (key, seller_id, channel, shop_id, requested) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (key) DO UPDATE SET requested = EXCLUDED.requested, updated_at = now()"
            " WHERE connectors.listings.requested IS NULL"
            " OR (connectors.listings.requested->'event'->>'occurred_at')::timestamptz <= $6",
            stock_key(request),
            request.seller_id,
            request.channel,
            request.shop_id,
            _json(kept),
            request.occurred_at,
        )

    async def priced(self, key: str, request: uuid.UUID) -> None:
        await self.conn.execute("UPDATE connectors.listings SET priced = $2 WHERE key = $1", key, request)

    async def unmapped(self, seller_id: str | None = None) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT l.key, l.shop_id, l.requested, l.blocked,"
            " (SELECT count(*) FROM connectors.adjustments a WHERE a.key = l.key) AS waiting"
            " FROM connectors.listings l WHERE l.ids IS NULL AND ($1::text IS NULL OR l.seller_id = $1)"
            " ORDER BY l.key",
            seller_id,
        )

    async def due(self, limit: int, per_shop: int, busy: list[str] | None = None) -> list[str]:
        rows = await self.conn.fetch(DUE, limit, per_shop, busy or [])
        return [r["key"] for r in rows]

    async def listing(self, key: str) -> Listing | None:
        row = await self.conn.fetchrow("SELECT * FROM connectors.listings WHERE key = $1", key)
        if row is None:
            return None
        intent, baseline, last = (
            orjson.loads(row[c]) if row[c] else None for c in ("intent", "baseline", "last_applied")
        )
        requested = row["requested"]
        return Listing(
            key=row["key"],
            seller_id=row["seller_id"],
            channel=row["channel"],
            shop_id=row["shop_id"],
            ids=orjson.loads(row["ids"]) if row["ids"] else None,
            applied_through=row["applied_through"],
            intent=_intent(intent) if intent else None,
            blocked=row["blocked"],
            owed=row["owed"],
            baseline=_intent(baseline) if baseline else None,
            last=_pending(orjson.dumps(last["event"]), orjson.dumps(last["source"])) if last else None,
            requested=Requested.parse(requested) if requested else None,
            priced=row["priced"],
        )

    async def pending(self, key: str, after: int, limit: int) -> list[Pending]:
        rows = await self.conn.fetch(
            "SELECT sequence, delta, event, source FROM connectors.adjustments WHERE key = $1 AND sequence > $2"
            " ORDER BY sequence LIMIT $3",
            key,
            after,
            limit,
        )
        return [_pending(row["event"], row["source"], row["delta"]) for row in rows]

    async def idle(self, limit: int, older_than_s: float) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT l.key FROM connectors.listings l JOIN connectors.shops s"
            " ON (s.seller_id, s.channel, s.shop_id) = (l.seller_id, l.channel, l.shop_id)"
            " WHERE l.blocked IS NULL AND l.ids IS NOT NULL AND l.intent IS NULL AND l.last_applied IS NOT NULL"
            " AND l.reconciled_at <= now() - make_interval(secs => $2)"
            " AND NOT EXISTS (SELECT 1 FROM connectors.adjustments a WHERE a.key = l.key"
            " AND a.sequence = l.applied_through + 1)"
            " ORDER BY l.reconciled_at LIMIT $1",
            limit,
            older_than_s,
        )
        return [r["key"] for r in rows]

    async def reconciled(self, key: str, baseline: Intent | None = None) -> None:
        await self.conn.execute(
            "UPDATE connectors.listings SET reconciled_at = now(), baseline = COALESCE($2, baseline) WHERE key = $1",
            key,
            _json(baseline.__dict__ if baseline is not None else None),
        )

    async def plan(self, key: str, intent: Intent) -> None:
        await self.conn.execute(
            "UPDATE connectors.listings SET intent = $2, updated_at = now() WHERE key = $1",
            key,
            orjson.dumps(intent.__dict__).decode(),
        )

    async def forget_intent(self, key: str) -> None:
        await self.conn.execute("UPDATE connectors.listings SET intent = NULL, updated_at = now() WHERE key = $1", key)

    async def settled(self, key: str) -> None:
        await self.conn.execute(
            "UPDATE connectors.listings SET baseline = intent, intent = NULL, reconciled_at = now(), updated_at = now()"
            " WHERE key = $1",
            key,
        )

    async def owe(self, key: str, owed: int) -> None:
        await self.conn.execute("UPDATE connectors.listings SET owed = $2 WHERE key = $1", key, owed)

    async def applied(
        self, key: str, through: int, check: Intent | None = None, owed: int | None = None, last: Pending | None = None
    ) -> None:
        last_applied = (
            None
            if last is None
            else {"event": last.event.model_dump(mode="json"), "source": last.source.model_dump(mode="json")}
        )
        await self.conn.execute(
            "UPDATE connectors.listings SET applied_through = $2, owed = COALESCE($4, owed),"
            " baseline = CASE WHEN $3::jsonb IS NULL THEN COALESCE(intent, baseline) ELSE baseline END,"
            " reconciled_at = CASE WHEN $3::jsonb IS NULL THEN now() ELSE reconciled_at END,"
            " intent = $3, last_applied = COALESCE($5, last_applied), updated_at = now() WHERE key = $1",
            key,
            through,
            _json(check.__dict__ if check is not None else None),
            owed,
            _json(last_applied),
        )
        await self.conn.execute("DELETE FROM connectors.adjustments WHERE key = $1 AND sequence <= $2", key, through)

    async def block(self, key: str, reason: str) -> None:
        await self.conn.execute(
            "UPDATE connectors.listings SET blocked = $2, updated_at = now() WHERE key = $1", key, reason
        )

    async def unblock(self, key: str) -> bool:
        async with self.conn.transaction():
            row = await self.conn.fetchrow(
                "SELECT blocked, intent FROM connectors.listings WHERE key = $1 FOR UPDATE", key
            )
            if row is None:
                return False
            if row["blocked"] == IN_DOUBT and row["intent"]:
                await self.applied(key, orjson.loads(row["intent"])["last"])
                # set by hand: the next reconciliation takes the number as it finds it
                await self.conn.execute("UPDATE connectors.listings SET baseline = NULL WHERE key = $1", key)
            await self.conn.execute(
                "UPDATE connectors.listings SET blocked = NULL, not_before = NULL, updated_at = now() WHERE key = $1",
                key,
            )
        return True

    async def touch(self, key: str) -> None:
        await self.conn.execute("UPDATE connectors.listings SET updated_at = now() WHERE key = $1", key)

    async def wait(self, key: str, seconds: float) -> None:
        await self.conn.execute(
            "UPDATE connectors.listings SET not_before = now() + make_interval(secs => $2), updated_at = now()"
            " WHERE key = $1",
            key,
            seconds,
        )

    async def shop(self, seller_id: str, channel: str, shop_id: str) -> tuple[dict, dict | None] | None:
        row = await self.conn.fetchrow(
            "SELECT settings, tokens FROM connectors.shops WHERE seller_id = $1 AND channel = $2 AND shop_id = $3",
            seller_id,
            channel,
            shop_id,
        )
        if row is None:
            return None
        return orjson.loads(row["settings"]), orjson.loads(row["tokens"]) if row["tokens"] else None

    async def store_tokens(self, seller_id: str, channel: str, shop_id: str, tokens: Mapping[str, Any]) -> None:
        await self.conn.execute(
            "UPDATE connectors.shops SET tokens = $4, updated_at = now()"
            " WHERE seller_id = $1 AND channel = $2 AND shop_id = $3",
            seller_id,
            channel,
            shop_id,
            orjson.dumps(dict(tokens)).decode(),
        )


async def connect_shop(
    conn: Connection,
    seller_id: str,
    channel: str,
    shop_id: str,
    settings: Mapping[str, Any],
    tokens: Mapping[str, Any] | None,
) -> None:
    """Register (or replace) a shop's settings and tokens."""
    await conn.execute(
        "INSERT INTO connectors.shops (seller_id, channel, shop_id, settings, tokens) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (seller_id, channel, shop_id) DO UPDATE SET settings = EXCLUDED.settings,"
        " tokens = COALESCE(EXCLUDED.tokens, connectors.shops.tokens), updated_at = now()",
        seller_id,
        channel,
        shop_id,
        orjson.dumps(dict(settings)).decode(),
        orjson.dumps(dict(tokens)).decode() if tokens is not None else None,
    )


async def map_listing(conn: Connection, key: str, shop_id: str, ids: Mapping[str, str]) -> None:
    """Say which marketplace listing a key is; a key blocked for being unmapped moves again."""
    await map_listings(conn, [(key, shop_id, ids)])


async def map_listings(conn: Connection, listings: Iterable[tuple[str, str, Mapping[str, str]]]) -> None:
    """`map_listing` for many (key, shop_id, ids) at once."""
    await conn.executemany(
        "INSERT INTO connectors.listings (key, seller_id, channel, shop_id, ids) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (key) DO UPDATE SET ids = EXCLUDED.ids, shop_id = EXCLUDED.shop_id, updated_at = now(),"
        " blocked = CASE WHEN connectors.listings.blocked = 'unmapped' THEN NULL ELSE connectors.listings.blocked END",
        [(key, *key.split(":")[:2], shop_id, orjson.dumps(dict(ids)).decode()) for key, shop_id, ids in listings],
    )


def ack_id(key: str, sequence: int, status: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"rebound:ack:{key}:{sequence}:{status}")
