"""Relisting as a FastStream app: consumes grades, emits dispositions via the outbox."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from faststream import FastStream

from rebound_contracts.topics import UNIT_GRADED

from ..messaging.processor import Route
from ..service import Periodic, ServiceSpec, build_app
from ..settings import Settings
from .adapters import PostgresRelistingRepository
from .handlers import decide_disposition, redecide_after_policy_change

POLICY_SWEEP_EVERY_S = 10.0


async def _sweep(pool: asyncpg.Pool, _settings: Settings, producer: str) -> int:
    return await redecide_after_policy_change(pool, producer, datetime.now(UTC))


def spec() -> ServiceSpec:
    # No advisory locks: a decision reads only the seller's policy, grades of one LPN share a
    # partition, and the policy sweep takes the decision rows it re-decides FOR UPDATE.
    return ServiceSpec(
        name="relisting",
        routes=(Route(UNIT_GRADED, decide_disposition, PostgresRelistingRepository),),
        periodic=(Periodic("policy-sweep", POLICY_SWEEP_EVERY_S, _sweep),),
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
