"""Clients stopped while the broker is away: a stop that raises what nobody asked for would end the
task that called it (a relay probing an in-doubt batch, a fault scenario measuring the backlog)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from rebound.connections import stop_consumer
from rebound.settings import Settings
from rebound_contracts.topics import UNIT_INSPECTED

from .harness import Infra

pytestmark = pytest.mark.faults


def aiokafka_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and not task.done() and "aiokafka" in repr(task.get_coro())
    ]


async def test_a_consumer_stopped_after_a_fetch_failed_on_a_broker_away(settings: Settings) -> None:
    infra = Infra(settings)
    # A long back-off: a fetch that fails then sleeps, which is when aiokafka's stop raises.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, retry_backoff_ms=10_000
    )
    await consumer.start()
    tp = TopicPartition(UNIT_INSPECTED.name, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.getmany(tp, timeout_ms=200)
    try:
        await infra.kafka("kill")
        await consumer.getmany(tp, timeout_ms=1000)  # the fetch fails and its task sleeps
        assert consumer._fetcher._pending_tasks, "no fetch was under way: nothing for the stop to cancel"
        await stop_consumer(consumer)  # returns, instead of raising CancelledError
        assert not aiokafka_tasks(), f"the consumer left tasks running: {aiokafka_tasks()}"
    finally:
        await infra.kafka("up")
