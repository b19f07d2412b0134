"""The connectors' PostgreSQL repository: shops, listing keys with their marketplace ids and
progress, and the adjustments waiting to be applied."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from rebound_contracts import ListingRequested, MessageSource, StockAdjusted

from .domain import Adjustment
from ..db import Connection


IN_DOUBT = "in doubt"
"""Why a key whose write in doubt no write explains waits for an operator."""


@dataclass(frozen=True)
class Intent:
    """A write in flight: adjustments `first`..`last` of a key, the marketplace's number `seen`
    before it and the `written` one. `at` (Unix seconds) is when the number was read, and
    `sales_before` the sales since `at` known before it was read: the sales since `at` not among
    them happened after the read."""

    first: int
    last: int
    seen: int
    written: int
    at: int
    sales_before: tuple[str, ...] = ()
    owed: int = 0
    """What the key owes once this write is booked (`Listing.owed`)."""
    written_at: float | None = None
    """None while the write is in flight (in doubt if the connector dies). Once it has landed on a
    marketplace without compare-and-set: when, and the key's sales are checked against it (a sale
    made between the read and the write was overwritten) before the key moves again."""

    probe_now: int | None = None
    probe_at: float | None = None
    """While a write in doubt is settled: the number read back, and when (its sales up to then
    may not be known yet)."""

    @property
    def landed(self) -> bool:
        return self.written_at is not None


@dataclass(frozen=True)
class Requested:
    """A key's latest listing request, and where it was read."""

    event: ListingRequested
    source: MessageSource

    @classmethod
    def parse(cls, document: str | bytes) -> Requested:
        kept = orjson.loads(document)
        return cls(ListingRequested.model_validate(kept["event"]), MessageSource.model_validate(kept["source"]))


@dataclass(frozen=True)
class Listing:
    key: str
    seller_id: str
    channel: str
    shop_id: str
    ids: Mapping[str, str] | None
    applied_through: int
    intent: Intent | None
    blocked: str | None
    owed: int = 0
    """Units the marketplace sold beyond what was offered: the next deltas are written less these."""
    baseline: Intent | None = None
    """The last write settled on the marketplace (`written` at `at`, the sales before it): its
    number must be `written` less the sales since. None: nothing to compare with yet."""
    last: Pending | None = None
    """The last adjustment applied: the ledger's view of the key, and what an exception about it
    refers to when no adjustment is pending."""
    requested: Requested | None = None
    """The key's latest listing request (`storefront.listings.v1`)."""
    priced: uuid.UUID | None = None
    """The request whose price is on the marketplace."""

    @property
    def unpriced(self) -> bool:
        return self.requested is not None and self.priced != self.requested.event.event_id


@dataclass(frozen=True)
class Pending:
    adjustment: Adjustment
    event: StockAdjusted
    source: MessageSource


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


class ConnectorRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def record(self, adjustment: StockAdjusted, source: MessageSource) -> bool:
        """Keep an adjustment until it is applied; False when it was applied or kept already."""
        key = stock_key(adjustment)
        await self.conn.execute(
            "INSERT INTO connectors.listings (key, seller_id, channel, shop_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (key) DO NOTHING",
            key,
            adjustment.seller_id,
            adjustment.channel,
            adjustment.shop_id,
        )
        status = await self.conn.execute(
            "INSERT INTO connectors.adjustments (key, sequence, delta, event, source)"
            " SELECT $1, $2, $3, $4, $5 FROM connectors.listings"
            " WHERE key = $1 AND applied_through < $2 ON CONFLICT DO NOTHING",
            key,
            adjustment.sequence,
            adjustment.delta,
            adjustment.model_dump_json(),
            source.model_dump_json(),
        )
        return status.endswith(" 1")

    async def request(self, request: ListingRequested, source: MessageSource) -> None:
        """Keep a key's latest listing request (one older than the kept one is ignored)."""
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
        """The request's price is on the marketplace (or was refused there, and reported)."""
        await self.conn.execute("UPDATE connectors.listings SET priced = $2 WHERE key = $1", key, request)

    async def unmapped(self, seller_id: str | None = None) -> list[asyncpg.Record]:
        """Keys with no marketplace listing yet that were asked to be listed or received stock:
        their request, the adjustments waiting and whether they were rejected for it."""
        return await self.conn.fetch(
            "SELECT l.key, l.shop_id, l.requested, l.blocked,"
            " (SELECT count(*) FROM connectors.adjustments a WHERE a.key = l.key) AS waiting"
            " FROM connectors.listings l WHERE l.ids IS NULL AND ($1::text IS NULL OR l.seller_id = $1)"
            " ORDER BY l.key",
            seller_id,
        )

    async def due(self, limit: int, per_shop: int, busy: list[str] | None = None) -> list[str]:
        """Keys of connected shops with a write in doubt, an adjustment to apply or a price to set, the longest
        waiting first, at most `per_shop` of each shop: a shop that its rate limit holds back does
        not keep the others waiting. A shop not connected yet keeps its adjustments until it is.
        `busy`: keys being synced already, left out."""
        rows = await self.conn.fetch(
            "SELECT key FROM (SELECT l.key, l.updated_at, row_number() OVER"
            " (PARTITION BY l.seller_id, l.channel, l.shop_id ORDER BY l.updated_at) AS turn"
            " FROM connectors.listings l JOIN connectors.shops s"
            " ON (s.seller_id, s.channel, s.shop_id) = (l.seller_id, l.channel, l.shop_id)"
            " WHERE l.blocked IS NULL AND (l.not_before IS NULL OR l.not_before <= now())"
            " AND NOT l.key = ANY($3::text[])"
            " AND (l.intent IS NOT NULL OR EXISTS (SELECT 1 FROM connectors.adjustments a"
            " WHERE a.key = l.key AND a.sequence = l.applied_through + 1)"
            " OR (l.ids IS NOT NULL AND l.priced IS DISTINCT FROM (l.requested->'event'->>'event_id')::uuid))) due"
            " WHERE turn <= $2 ORDER BY updated_at LIMIT $1",
            limit,
            per_shop,
            busy or [],
        )
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
        """Keys to reconcile: mapped, of a connected shop, with an adjustment applied, nothing in
        flight or waiting, and not compared with their marketplace for `older_than_s`, the
        longest first."""
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
        """The key's number was compared with its marketplace's; `baseline`, when given, is the
        one to compare with from now on."""
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
        """The write planned was not made."""
        await self.conn.execute("UPDATE connectors.listings SET intent = NULL, updated_at = now() WHERE key = $1", key)

    async def settled(self, key: str) -> None:
        """The write in flight is on the marketplace with the right number: the baseline."""
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
        """Adjustments through `through` are on the marketplace, `last` the last of them when
        given; `check`: the write whose sales are still to be checked (None: nothing is left to
        check, and the write in flight is the baseline); `owed`, when given, what the key owes
        from now on."""
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
        """The key waits for an operator. A write in doubt or a check it had stays: they are
        settled once it is unblocked (`unblock`)."""
        await self.conn.execute(
            "UPDATE connectors.listings SET blocked = $2, updated_at = now() WHERE key = $1", key, reason
        )

    async def unblock(self, key: str) -> bool:
        """The key moves again; False when there is no such key. A key blocked `in doubt` waited
        for an operator to set the marketplace's number by hand to what it should be, its write in
        doubt included: that write's run is booked applied. Any other keeps its write in doubt or
        its check, settled as usual."""
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
        """Put the key at the back of the queue (it waits for its shop)."""
        await self.conn.execute("UPDATE connectors.listings SET updated_at = now() WHERE key = $1", key)

    async def wait(self, key: str, seconds: float) -> None:
        """The key is not due again for `seconds` (its shop's other keys are)."""
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
