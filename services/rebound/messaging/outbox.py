"""The transactional outbox: events are rows written in the transaction of the change they report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pydantic import BaseModel

from rebound_contracts import Topic
from ..db import Connection

NOTIFY_CHANNEL = "rebound_outbox"


def notify_channel(producer: str) -> str:
    """The channel a producer's relay listens on. One per producer: on a shared channel every
    commit woke every service's relay, to find the rows were not its own. A name longer than
    PostgreSQL's identifiers (63 bytes) is replaced by a digest of it."""
    channel = f"{NOTIFY_CHANNEL}:{producer}"
    if len(channel.encode()) > 63:
        channel = f"{NOTIFY_CHANNEL}:{hashlib.blake2s(producer.encode(), digest_size=16).hexdigest()}"
    return channel


@dataclass
class OutboxBuffer:
    """Collects one transaction's events, then writes them in one round trip."""

    producer: str
    rows: list[tuple[str, str, str, bytes, str | None]] = field(default_factory=list)

    def add(self, topic: Topic, message: BaseModel, traceparent: str | None = None) -> None:
        self.add_raw(topic.name, topic.key_of(message), message.model_dump_json().encode(), traceparent)

    def add_raw(self, topic: str, key: str, payload: bytes, traceparent: str | None = None) -> None:
        self.rows.append((self.producer, topic, key, payload, traceparent))

    async def flush(self, conn: Connection) -> int:
        """Insert the buffered rows (in order: ids follow insertion) and wake the relay."""
        if not self.rows:
            return 0
        # One round trip: the rows (ids in the order they were added) and the relay's wake-up.
        await conn.execute(
            "WITH added AS (INSERT INTO rebound.outbox (producer, topic, key, payload, traceparent)"
            " SELECT $2, t, k, p, tp FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[])"
            " WITH ORDINALITY AS u(t, k, p, tp, n) ORDER BY n)"
            " SELECT pg_notify($1, $2)",
            notify_channel(self.producer),
            self.producer,
            [r[1] for r in self.rows],
            [r[2] for r in self.rows],
            [r[3] for r in self.rows],
            [r[4] for r in self.rows],
        )
        written = len(self.rows)
        self.rows = []
        return written
