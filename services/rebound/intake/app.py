"""Intake as a FastStream app: consumes return orders, dock scans and operators' decisions on
parcels and units that came without their return order."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import asyncpg
from faststream import FastStream
from pydantic import BaseModel

from rebound_contracts import ParcelMatched, ParcelReceivedUnexpected, ParcelScanned, RmaIssued
from rebound_contracts import UnitAddedToReturn, UnitQuarantined
from rebound_contracts.topics import PARCEL_MATCHED, PARCEL_RECEIVED_UNEXPECTED, PARCEL_SCANNED, RMA
from rebound_contracts.topics import UNIT_ADDED_TO_RETURN, UNIT_QUARANTINED

from ..messaging.processor import Route
from ..messaging.outbox import OutboxBuffer
from ..service import Periodic, ServiceSpec, build_app
from ..settings import Settings
from .adapters import PostgresIntakeRepository
from .handlers import (
    add_unit_to_return,
    match_parcel,
    quarantine_unit,
    raise_insights,
    receive_parcel,
    receive_unexpected,
    register_return,
    report_unmatched_parcels,
)

INSIGHTS_EVERY_S = 300.0  # a month's returns change slowly; insights are raised once each


def lock_keys(event: BaseModel) -> Iterable[str]:
    # A scan and its RMA travel on different topics: serialise them on the tracking number,
    # so a scan never parks while its RMA is being registered by another transaction; an
    # operator's match or receipt takes the parked scans of its tracking number likewise; an
    # operator's decision on an unexpected unit is serialised on the unit.
    keys = []
    if isinstance(event, (RmaIssued, ParcelScanned, ParcelMatched, ParcelReceivedUnexpected)):
        keys.append(f"intake:tracking:{event.tracking_number}")
    if isinstance(event, ParcelScanned):
        keys.extend(f"lpn:{unit.lpn}" for unit in event.units)
    if isinstance(event, (UnitAddedToReturn, UnitQuarantined)):
        keys.append(f"lpn:{event.lpn}")
    return keys


async def sweep_unmatched_parcels(pool: asyncpg.Pool, settings: Settings, producer: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        outbox = OutboxBuffer(producer)
        reported = await report_unmatched_parcels(
            conn,
            PostgresIntakeRepository(conn),
            outbox,
            datetime.now(UTC),
            timedelta(seconds=settings.unmatched_parcel_after_s),
        )
        await outbox.flush(conn)
        return reported


async def sweep_insights(pool: asyncpg.Pool, _settings: Settings, producer: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        outbox = OutboxBuffer(producer)
        raised = await raise_insights(conn, outbox, datetime.now(UTC))
        await outbox.flush(conn)
        return raised


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="intake",
        routes=(
            Route(RMA, register_return, PostgresIntakeRepository),
            Route(PARCEL_SCANNED, receive_parcel, PostgresIntakeRepository),
            Route(PARCEL_MATCHED, match_parcel, PostgresIntakeRepository),
            Route(PARCEL_RECEIVED_UNEXPECTED, receive_unexpected, PostgresIntakeRepository),
            Route(UNIT_ADDED_TO_RETURN, add_unit_to_return, PostgresIntakeRepository),
            Route(UNIT_QUARANTINED, quarantine_unit, PostgresIntakeRepository),
        ),
        lock_keys=lock_keys,
        periodic=(
            Periodic("unmatched-parcels", 30.0, sweep_unmatched_parcels),
            Periodic("returns-insights", INSIGHTS_EVERY_S, sweep_insights),
        ),
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
