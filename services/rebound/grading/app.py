"""Grading as a FastStream app: consumes receipts, inspections and refurbishments."""

from __future__ import annotations

from collections.abc import Iterable

from faststream import FastStream

from rebound_contracts import UnitInspected, UnitReceived, UnitRefurbished
from rebound_contracts.topics import UNIT_INSPECTED, UNIT_RECEIVED, UNIT_REFURBISHED

from ..messaging.processor import Route
from ..service import ServiceSpec, build_app
from ..settings import Settings
from .adapters import PostgresGradingRepository
from .handlers import apply_refurbishment, grade_unit, record_receipt


def lock_keys(event: UnitReceived | UnitInspected | UnitRefurbished) -> Iterable[str]:
    # Receipts and inspections of one LPN come on different topics: serialise them per LPN.
    return (f"lpn:{event.lpn}",)


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="grading",
        routes=(
            Route(UNIT_RECEIVED, record_receipt, PostgresGradingRepository),
            Route(UNIT_INSPECTED, grade_unit, PostgresGradingRepository),
            Route(UNIT_REFURBISHED, apply_refurbishment, PostgresGradingRepository),
        ),
        lock_keys=lock_keys,
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
