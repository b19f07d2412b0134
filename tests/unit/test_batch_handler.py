"""A service's batch handler is called on the event loop with the batch as it was polled: no
thread-pool call between the poll and the processor (FastStream's dependency injection made one
for every batch to resolve the handler's message argument)."""

from __future__ import annotations

import anyio.to_thread
import pytest
from aiokafka.structs import ConsumerRecord

from rebound.grading.app import spec
from rebound.messaging import commits
from rebound.messaging.processor import BatchStats
from rebound.service import PROCESSOR, build_app
from rebound.settings import Settings


def _record(offset: int) -> ConsumerRecord:
    return ConsumerRecord(
        topic="wms.unit-inspected.v1",
        partition=3,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"S1:LPN",
        value=b'{"not": "read here"}',
        checksum=None,
        serialized_key_size=6,
        serialized_value_size=20,
        headers=[("traceparent", b"\xff not utf-8")],
    )


class Processor:
    def __init__(self) -> None:
        self.batches: list[tuple] = []

    async def process(self, records: tuple) -> BatchStats:
        self.batches.append(records)
        return BatchStats()


async def test_a_batch_reaches_the_processor_without_a_thread_pool_call(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_thread(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a batch went through a thread-pool call")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    noted: list[tuple] = []

    async def note(_self: object, _consumer: object, records: tuple) -> None:
        noted.append(records)

    monkeypatch.setattr(commits.OffsetCommitter, "note", note)
    broker = build_app(spec(), Settings()).broker
    assert broker is not None
    [subscriber] = broker.subscribers
    processor = Processor()
    broker.context.set_global(PROCESSOR, processor)
    # What starting the broker does before it polls (there is no Kafka here to connect to).
    broker._setup_logger()
    subscriber._build_fastdepends_model()
    batch = (_record(7), _record(8))
    await subscriber.process_message(batch)
    # The processor got the records themselves, headers included (it reads them raw), and the
    # offsets were handed on to be committed.
    assert processor.batches == [batch]
    assert noted == [batch]
