"""The console's consumer as a FastStream app: every topic a unit's path or an operator's work
shows up on, into the console's read models (`console` schema)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from faststream import FastStream

from rebound_contracts import Topic
from rebound_contracts.topics import (
    ACKS,
    ALLOCATIONS,
    DISPOSITIONS,
    DLQ,
    EXCEPTIONS,
    EXCHANGE_ALLOCATED,
    EXCHANGE_REQUESTED,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
    UNIT_ADDED_TO_RETURN,
    UNIT_GRADED,
    UNIT_INSPECTED,
    UNIT_PICKED,
    UNIT_QUARANTINED,
    UNIT_RECEIVED,
    UNIT_REFURBISHED,
)

from ..service import Periodic, ServiceSpec, build_app
from ..settings import Settings
from .projector import Projector
from .waiting import escalate_waiting

READS: tuple[Topic, ...] = (
    RMA,
    PARCEL_SCANNED,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    UNIT_ADDED_TO_RETURN,
    UNIT_QUARANTINED,
    UNIT_RECEIVED,
    UNIT_INSPECTED,
    UNIT_REFURBISHED,
    UNIT_GRADED,
    DISPOSITIONS,
    ALLOCATIONS,
    STOCK_ADJUSTMENTS,
    ACKS,
    UNIT_PICKED,
    EXCHANGE_REQUESTED,
    EXCHANGE_ALLOCATED,
    EXCEPTIONS,
    DLQ,
)


def _projector(consumer: str, topics: Sequence[Topic], pool: asyncpg.Pool, settings: Settings) -> Projector:
    return Projector(consumer, topics, pool, max_message_bytes=settings.max_message_bytes)


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="console",
        routes=(),
        reads=READS,
        projector=_projector,
        periodic=(Periodic("waiting-cases", 30.0, escalate_waiting),),
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
