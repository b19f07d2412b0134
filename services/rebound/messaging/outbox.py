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


INSERT = (
    "INSERT INTO rebound.outbox (producer, topic, key, payload, traceparent)"
    " SELECT $1, t, k, p, tp FROM unnest($2::text[], $3::text[], $4::bytea[], $5::text[])"
    " WITH ORDINALITY AS u(t, k, p, tp, n) ORDER BY n"
)
"""Inserts a transaction's rows (their topics, keys, payloads and trace contexts, $2 to $5) for
producer $1; their ids follow the arrays' order."""

INSERT_AND_NOTIFY = f"WITH added AS ({INSERT}) SELECT pg_notify($6, $1)"
"""Inserts the rows and notifies the producer's relay on channel $6 when the transaction commits.
PostgreSQL signals every backend that listens in the database at each such commit (the relays
of every service, the connectors'), whatever channel they listen on, and serialises the commits
that notify: a processor whose own relay leads wakes it in the process instead."""


@dataclass
class OutboxBuffer:
    """Collects one transaction's events, then writes them in one round trip."""

    producer: str
    rows: list[tuple[str, str, str, bytes, str | None]] = field(default_factory=list)

    def add(self, topic: Topic, message: BaseModel, traceparent: str | None = None) -> None:
        self.add_raw(topic.name, topic.key_of(message), message.model_dump_json().encode(), traceparent)

    def add_raw(self, topic: str, key: str, payload: bytes, traceparent: str | None = None) -> None:
        self.rows.append((self.producer, topic, key, payload, traceparent))

    async def flush(self, conn: Connection, *, notify: bool = True) -> int:
        """Insert the buffered rows (in order: ids follow insertion) and, unless told not to (the
        caller wakes the relay itself once the transaction commits), notify the relay."""
        if not self.rows:
            return 0
        # One round trip: the rows (ids in the order they were added) and the relay's wake-up.
        rows = (
            self.producer,
            [r[1] for r in self.rows],
            [r[2] for r in self.rows],
            [r[3] for r in self.rows],
            [r[4] for r in self.rows],
        )
        if notify:
            await conn.execute(INSERT_AND_NOTIFY, *rows, notify_channel(self.producer))
        else:
            await conn.execute(INSERT, *rows)
        written = len(self.rows)
        self.rows = []
        return written
