"""Ids of the events Rebound derives from others."""

from __future__ import annotations

import uuid
from datetime import datetime

_MS = (1 << 48) - 1
_REST = (1 << 80) - 1
_VERSION = 0xF << 76
_VARIANT = 0x3 << 62


def derived_id(source: uuid.UUID, at: datetime, name: str) -> uuid.UUID:
    """The id of the event `name` derived from the event `source` that happened `at`.

    The same three give the same id, so an event derived again is the same event. The id is a
    UUIDv8 (RFC 9562): 48 bits of `at` in Unix milliseconds, then bits of uuid5(source, name).
    Ids of events derived at about the same time sort together, and a consumer's inbox, whose
    key is (consumer, seller_id, event_id), grows at the end of each seller's range of its index
    instead of in a random leaf of it: a random key costs a read of a cold page and a full-page
    image in the WAL per insert once the index outgrows memory."""
    ms = int(at.timestamp() * 1000) & _MS
    value = (ms << 80) | (uuid.uuid5(source, name).int & _REST)
    return uuid.UUID(int=(value & ~_VERSION & ~_VARIANT) | (0x8 << 76) | (0x2 << 62))
