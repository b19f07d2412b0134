"""The transactional outbox: events are rows written in the transaction of the change they report."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from pydantic import BaseModel

from rebound_contracts import Topic

NOTIFY_CHANNEL = "rebound_outbox"


@dataclass
class OutboxBuffer:
    """Collects one transaction's events, then writes them in one round trip."""

    producer: str
    rows: list[tuple[str, str, str, bytes, str | None]] = field(default_factory=list)

    def add(self, topic: Topic, message: BaseModel, traceparent: str | None = None) -> None:
        self.add_raw(topic.name, topic.key_of(message), message.model_dump_json().encode(), traceparent)

    def add_raw(self, topic: str, key: str, payload: bytes, traceparent: str | None = None) -> None:
        self.rows.append((self.producer, topic, key, payload, traceparent))

    async def flush(self, conn: asyncpg.Connection) -> int:
        """Insert the buffered rows (in order: ids follow insertion) and wake the relay."""
        if not self.rows:
            return 0
        await conn.executemany(
            "INSERT INTO rebound.outbox (producer, topic, key, payload, traceparent) VALUES ($1, $2, $3, $4, $5)",
            self.rows,
        )
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, self.producer)
        written = len(self.rows)
        self.rows = []
        return written
