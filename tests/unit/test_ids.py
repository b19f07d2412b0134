"""Derived event ids: the same source, time and name give the same id, and ids sort by the time
they carry, so a consumer's inbox index grows at its end."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from rebound.messaging.ids import derived_id

AT = datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)


def test_an_event_derived_again_has_the_same_id() -> None:
    source = uuid.uuid4()
    assert derived_id(source, AT, "graded:LPN-1:1") == derived_id(source, AT, "graded:LPN-1:1")


def test_another_source_or_name_gives_another_id() -> None:
    source = uuid.uuid4()
    ids = {
        derived_id(source, AT, "graded:LPN-1:1"),
        derived_id(source, AT, "graded:LPN-1:2"),
        derived_id(uuid.uuid4(), AT, "graded:LPN-1:1"),
    }
    assert len(ids) == 3


def test_it_is_a_version_8_uuid_carrying_the_milliseconds() -> None:
    derived = derived_id(uuid.uuid4(), AT, "disposition")
    assert derived.version == 8 and derived.variant == uuid.RFC_4122
    assert derived.int >> 80 == int(AT.timestamp() * 1000)


def test_ids_sort_by_time_whatever_their_sources() -> None:
    rng = random.Random(7)
    times = [AT + timedelta(milliseconds=rng.randrange(10_000_000)) for _ in range(500)]
    ids = [(derived_id(uuid.UUID(int=rng.getrandbits(128)), at, "disposition"), at) for at in times]
    # PostgreSQL orders uuid values by their bytes, as Python orders them by their integer.
    by_bytes = sorted(ids, key=lambda pair: pair[0].bytes)
    assert [at for _, at in by_bytes] == sorted(times)
