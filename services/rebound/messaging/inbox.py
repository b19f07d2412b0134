"""The inbox: which events a consumer has applied, written in the same transaction as the effect."""

from __future__ import annotations

import hashlib
import uuid
from enum import Enum

import asyncpg
import orjson

_POSITION_NAMESPACE = uuid.UUID("6f1c1d0e-7a51-4b8e-9d7e-2f0c8a3b5e11")


class Claim(Enum):
    NEW = "new"                # first time: apply it
    DUPLICATE = "duplicate"    # same id, same content: already applied
    CONFLICT = "conflict"      # same id, other content: dead-letter


def fingerprint(document: dict) -> bytes:
    """Content hash independent of key order and whitespace."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).digest()


def position_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    """A stable id for a message that has no readable `event_id` (it is dead-lettered once)."""
    return uuid.uuid5(_POSITION_NAMESPACE, f"{topic}:{partition}:{offset}")


async def claim(
    conn: asyncpg.Connection,
    consumer: str,
    event_id: uuid.UUID,
    digest: bytes,
    topic: str,
    partition: int,
    offset: int,
) -> Claim:
    inserted = await conn.fetchval(
        "INSERT INTO rebound.inbox (consumer, event_id, fingerprint, topic, partition, \"offset\")"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
        consumer, event_id, digest, topic, partition, offset,
    )
    if inserted:
        return Claim.NEW
    stored = await conn.fetchval(
        "SELECT fingerprint FROM rebound.inbox WHERE consumer = $1 AND event_id = $2",
        consumer, event_id,
    )
    return Claim.DUPLICATE if bytes(stored) == digest else Claim.CONFLICT
