"""The inbox: which events a consumer has applied, written in the same transaction as the effect."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from enum import Enum

import orjson
import structlog
from ..db import Connection, advisory_xact_locks

log = structlog.get_logger(__name__)

_POSITION_NAMESPACE = uuid.UUID("6f1c1d0e-7a51-4b8e-9d7e-2f0c8a3b5e11")


class Claim(Enum):
    NEW = "new"  # first time: apply it
    DUPLICATE = "duplicate"  # same id, same content: already applied
    CONFLICT = "conflict"  # same id, other content: dead-letter


def fingerprint(document: dict) -> bytes:
    """Content hash independent of key order and whitespace, for a document of any depth."""
    try:
        canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
        canonical = canonical_json(document)
    return hashlib.sha256(canonical).digest()


def canonical_json(document: object) -> bytes:
    """What `orjson.dumps(document, option=OPT_SORT_KEYS)` writes, byte for byte, at any depth
    (an explicit stack instead of recursion). `document` is what `orjson.loads` returns."""
    out: list[bytes] = []
    pending: list[object] = [document]  # bytes: written as they are; anything else: encoded
    while pending:
        item = pending.pop()
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, dict):
            parts: list[object] = [b"{"]
            for n, (key, value) in enumerate(sorted(item.items())):
                parts += [b"," if n else b"", orjson.dumps(key) + b":", value]
            pending += reversed([*parts, b"}"])
        elif isinstance(item, list):
            parts = [b"["]
            for n, value in enumerate(item):
                parts += [b"," if n else b"", value]
            pending += reversed([*parts, b"]"])
        else:
            out.append(orjson.dumps(item))
    return b"".join(out)


def position_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    """A stable id for a message that has no readable `event_id` (it is dead-lettered once)."""
    return uuid.uuid5(_POSITION_NAMESPACE, f"{topic}:{partition}:{offset}")


POSITION = ":position"
"""The seller of a claim by position (a dead letter): no seller id can contain ':'. Rows written
before claims named their seller have '' (migration 0016)."""

_ENTRIES = (
    "unnest($2::text[], $3::uuid[], $4::bytea[], $5::text[], $6::int[], $7::bigint[])"
    " WITH ORDINALITY AS u(s, e, f, t, p, o, n)"
)
_UNCLAIMED = (
    # a row of before seller-scoped claims stands for the event of whichever seller sends it again
    " NOT EXISTS (SELECT 1 FROM rebound.inbox i WHERE i.consumer = $1 AND i.seller_id = ''"
    " AND i.event_id = u.e)"
    " ORDER BY n ON CONFLICT DO NOTHING RETURNING seller_id, event_id"
)
_INSERT = (
    'INSERT INTO rebound.inbox (consumer, seller_id, event_id, fingerprint, topic, partition, "offset")'
    " SELECT $1, s, e, f, t, p, o"
)
CLAIM = f"{_INSERT} FROM {_ENTRIES} WHERE{_UNCLAIMED}"
"""Claims entries ($2 to $7) for consumer $1; returns those it inserted."""

_LOCKS = (
    "WITH locked AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(h)) AS held FROM"
    " (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($8::text[]) AS k ORDER BY h) AS ordered)"
)
LOCK_AND_CLAIM = f"{_LOCKS} {_INSERT} FROM locked, {_ENTRIES} WHERE held >= 0 AND{_UNCLAIMED}"
"""Takes the advisory locks of keys $8 as `db.advisory_xact_locks` does (in one order), then
claims as `CLAIM` does: one round trip instead of two. Every entry is joined to the one row of the
locks, computed once (MATERIALIZED), so they are all held before the first entry is inserted,
whatever order the planner gives the join."""
STORED = (
    "SELECT i.seller_id, i.event_id, i.fingerprint FROM rebound.inbox i"
    " JOIN unnest($2::text[], $3::uuid[]) AS u(s, e) ON i.event_id = u.e AND i.seller_id IN (u.s, '')"
    " WHERE i.consumer = $1"
)


async def claim_all(
    conn: Connection,
    consumer: str,
    entries: list[tuple[str, uuid.UUID, bytes, str, int, int]],
    locks: Iterable[str] = (),
) -> list[Claim]:
    """Take the advisory locks of `locks` (see `db.advisory_xact_locks`), then claim (seller_id, event_id,
    fingerprint, topic, partition, offset) entries: two round trips at most. An event is one
    seller's: another seller's event with the same id is another event. A (seller, id) repeated
    within `entries` is NEW once, then DUPLICATE or CONFLICT like any other. Rows without a seller
    (written before claims had one) match that id for every seller."""
    keys = sorted(set(locks))
    if not entries:
        await advisory_xact_locks(conn, keys)
        return []
    sellers, ids, digests, topics, partitions, offsets = (list(column) for column in zip(*entries, strict=True))
    columns = (consumer, sellers, ids, digests, topics, partitions, offsets)
    new = await (conn.fetch(LOCK_AND_CLAIM, *columns, keys) if keys else conn.fetch(CLAIM, *columns))
    inserted = {(row["seller_id"], row["event_id"]) for row in new}
    stored: dict[tuple[str, uuid.UUID], bytes] = {}
    missing = list({(s, i) for s, i in zip(sellers, ids, strict=True) if (s, i) not in inserted})
    if missing:
        rows = await conn.fetch(STORED, consumer, [s for s, _ in missing], [i for _, i in missing])
        for row in rows:
            seller = row["seller_id"]
            claimed = [(s, row["event_id"]) for s, i in missing if i == row["event_id"]] if seller == "" else []
            for key in claimed or [(seller, row["event_id"])]:
                stored.setdefault(key, bytes(row["fingerprint"]))
    claims = []
    for seller, event_id, digest, *_ in entries:
        key = (seller, event_id)
        if key in inserted and key not in stored:
            stored[key] = digest  # first occurrence in this batch: the one that was inserted
            claims.append(Claim.NEW)
        else:
            claims.append(Claim.DUPLICATE if stored[key] == digest else Claim.CONFLICT)
    return claims


async def prune(
    conn: Connection,
    consumer: str,
    below: dict[tuple[str, int], int],
    older_than_s: float,
    batch: int = 5000,
) -> int:
    """Delete inbox rows that can no longer be needed: older than `older_than_s` (an upstream
    retry of the same event after that is applied again) AND below `below`'s offset of their
    partition, under which Kafka delivers nothing any more (the log start offset, and the group's
    committed offset). Returns the rows deleted."""
    deleted = 0
    for (topic, partition), offset in below.items():
        while True:
            status = await conn.execute(
                "DELETE FROM rebound.inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM rebound.inbox"
                ' WHERE consumer = $1 AND topic = $2 AND partition = $3 AND "offset" < $4'
                " AND processed_at < now() - make_interval(secs => $5) LIMIT $6))",
                consumer,
                topic,
                partition,
                offset,
                older_than_s,
                batch,
            )
            count = int(status.split()[-1])
            deleted += count
            if count:  # each chunk is committed on its own: say so, a prune may be cut short
                log.info("inbox_pruned", rows=count, consumer=consumer, topic=topic, partition=partition)
            if count < batch:
                break
    return deleted
