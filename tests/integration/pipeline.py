"""Drive the three services' batch processors against the real PostgreSQL, record by record,
handing each one's outbox to the next as Kafka would."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel

from rebound import grading, intake, ledger, relisting  # noqa: F401 - packages of the apps below
from rebound.grading.app import spec as grading_spec
from rebound.intake.app import spec as intake_spec
from rebound.ledger.app import spec as ledger_spec
from rebound.relisting.app import spec as relisting_spec
from rebound.messaging.processor import BatchProcessor, BatchStats
from rebound.service import ServiceSpec
from rebound_contracts import TOPICS_BY_NAME
from rebound_contracts.topics import DISPOSITIONS, UNIT_GRADED
from tests.factories import Record


@dataclass
class Emitted:
    topic: str
    key: str
    payload: bytes

    @property
    def event(self) -> Any:
        return TOPICS_BY_NAME[self.topic].model.model_validate_json(self.payload)


class Pipeline:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.tag = uuid.uuid4().hex[:8]
        self._offsets = itertools.count()
        self.intake = self._processor(intake_spec())
        self.grading = self._processor(grading_spec())
        self.relisting = self._processor(relisting_spec())
        self.ledger = self._processor(ledger_spec())

    def _processor(self, spec: ServiceSpec) -> BatchProcessor:
        # A consumer name of its own: this test's inbox and outbox rows are its alone.
        return BatchProcessor(f"it-{spec.name}-{self.tag}", spec.routes, self.pool, lock_keys=spec.lock_keys)

    def id(self, name: str) -> str:
        """An id of this test alone (LPNs are global: a fixed one would collide across runs)."""
        return f"{name}-{self.tag}"

    async def add_sellers(self, *names: str) -> list[str]:
        ids = [f"{name}-{self.tag}" for name in names]
        await self.pool.executemany(
            "INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            [(i,) for i in ids],
        )
        return ids

    def record(self, message: BaseModel | bytes, topic: str, partition: int = 0) -> Record:
        if isinstance(message, BaseModel):
            key = TOPICS_BY_NAME[topic].key_of(message).encode()
            value = message.model_dump_json().encode()
        else:
            key, value = b"raw", message
        return Record(topic, value, partition, next(self._offsets), key)

    async def feed(self, processor: BatchProcessor, records: list[Record]) -> BatchStats:
        return await processor.process(records)

    async def take_outbox(self, processor: BatchProcessor) -> list[Emitted]:
        """What the processor wrote to the outbox (in id order), removed as the relay would."""
        rows = await self.pool.fetch(
            "DELETE FROM rebound.outbox WHERE producer = $1 RETURNING id, topic, key, payload",
            processor.consumer,
        )
        return [Emitted(r["topic"], r["key"], bytes(r["payload"])) for r in sorted(rows, key=lambda r: r["id"])]

    def forward(self, emitted: list[Emitted], topic: str) -> list[Record]:
        return [Record(e.topic, e.payload, 0, next(self._offsets), e.key.encode()) for e in emitted if e.topic == topic]

    async def decide(self, grades: Sequence[BaseModel]) -> list[Record]:
        """Relisting's dispositions of these grades, as records for the ledger."""
        await self.feed(self.relisting, [self.record(g, UNIT_GRADED.name) for g in grades])
        return self.forward(await self.take_outbox(self.relisting), DISPOSITIONS.name)
