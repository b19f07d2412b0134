"""The stock ledger as a FastStream app: consumes grades, emits stock adjustments via the outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
from faststream import FastStream
from pydantic import BaseModel

from rebound_contracts import UnitGraded
from rebound_contracts.topics import UNIT_GRADED

from ..messaging.processor import Route
from ..service import ServiceSpec, build_app
from ..settings import Settings
from .adapters import LedgerRepository
from .domain import placement
from .handlers import adjust_stock


async def lock_keys(conn: asyncpg.Connection, events: Sequence[BaseModel]) -> Iterable[str]:
    # Stock keys are shared by many LPNs (and so by partitions and replicas): lock every key a
    # batch may move, up front and in one order, so concurrent batches cannot deadlock.
    graded = [e for e in events if isinstance(e, UnitGraded)]
    keys = [f"stock:{key}" for key in await LedgerRepository(conn).current_keys([e.lpn for e in graded])]
    for e in graded:
        target = placement(e.seller_id, e.channel, e.warehouse_id, e.sku, e.grade)
        if target is not None:
            keys.append(f"stock:{target}")
        keys.append(f"lpn:{e.lpn}")
    return keys


def spec() -> ServiceSpec:
    return ServiceSpec(name="ledger", routes=(Route(UNIT_GRADED, adjust_stock, LedgerRepository),), lock_keys=lock_keys)


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
