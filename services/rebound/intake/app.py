"""Intake as a FastStream app: consumes return orders and dock scans."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
from faststream import FastStream
from pydantic import BaseModel

from rebound_contracts import ParcelScanned, RmaIssued
from rebound_contracts.topics import PARCEL_SCANNED, RMA

from ..messaging.processor import Route
from ..service import ServiceSpec, build_app
from ..settings import Settings
from .adapters import IntakeRepository
from .handlers import receive_parcel, register_return


async def lock_keys(_conn: asyncpg.Connection, events: Sequence[BaseModel]) -> Iterable[str]:
    # A scan and its RMA travel on different topics: serialise them on the tracking number,
    # so a scan never parks while its RMA is being registered by another transaction.
    keys = []
    for event in events:
        if isinstance(event, (RmaIssued, ParcelScanned)):
            keys.append(f"intake:tracking:{event.tracking_number}")
        if isinstance(event, ParcelScanned):
            keys.extend(f"lpn:{unit.lpn}" for unit in event.units)
    return keys


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="intake",
        routes=(
            Route(RMA, register_return, IntakeRepository),
            Route(PARCEL_SCANNED, receive_parcel, IntakeRepository),
        ),
        lock_keys=lock_keys,
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
