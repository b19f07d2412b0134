"""The ledger (channel publishing) as a FastStream app: places units by their dispositions, keeps
per-key stock, answers connectors' acknowledgements, picks and exchange requests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from faststream import FastStream

from rebound_contracts import DispositionDecided, ExchangeRequested, StorefrontAck, UnitPicked
from rebound_contracts.topics import ACKS, DISPOSITIONS, EXCHANGE_REQUESTED, UNIT_PICKED

from ..messaging.processor import Route
from ..service import Periodic, ServiceSpec, build_app
from ..settings import Settings
from .adapters import PostgresLedgerRepository
from .handlers import allocation_lock, apply_ack, apply_pick, move_unsold, place_unit, serve_exchange

UNSOLD_SWEEP_EVERY_S = 600.0


def lock_keys(event: DispositionDecided | StorefrontAck | UnitPicked | ExchangeRequested) -> Iterable[str]:
    # All an event can touch (its unit, listing keys, pools, lots) lies within one seller and
    # warehouse: one lock each, taken up front in one order, so replicas never deadlock.
    return (allocation_lock(event.seller_id, event.warehouse_id),)


async def _sweep_unsold(pool: asyncpg.Pool, _settings: Settings, producer: str) -> int:
    return await move_unsold(pool, producer, datetime.now(UTC))


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="ledger",
        routes=(
            Route(DISPOSITIONS, place_unit, PostgresLedgerRepository),
            Route(ACKS, apply_ack, PostgresLedgerRepository),
            Route(UNIT_PICKED, apply_pick, PostgresLedgerRepository),
            Route(EXCHANGE_REQUESTED, serve_exchange, PostgresLedgerRepository),
        ),
        lock_keys=lock_keys,
        periodic=(Periodic("unsold-sweep", UNSOLD_SWEEP_EVERY_S, _sweep_unsold),),
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
