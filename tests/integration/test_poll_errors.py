"""A consumer whose committed-offset fetch fails once with an error aiokafka does not retry reads
again. A broker that is stopping answers that fetch COORDINATOR_NOT_AVAILABLE; aiokafka raises it
as a plain KafkaError, the task that serves those fetches ends, and the fetcher waits on it for
good: every poll raises the same error and no record is read. A service's poll (`_poll`) makes the
consumer rejoin its group on the second error in a row, which starts that task afresh.

The broker's answer is the one thing put in by hand: the committed-offset fetch raises as aiokafka
raises for that answer, once; the consumer, its group and its records are Kafka's."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.consumer.group_coordinator import GroupCoordinator

from rebound import service
from rebound.dump import consumer_state
from rebound.service import FetchHold, PollErrors, _poll

pytestmark = pytest.mark.integration

RECORDS = 5
POLLS = 10


@pytest.fixture
def committed_fetch_fails_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The group's first committed-offset fetch raises as aiokafka does for COORDINATOR_NOT_AVAILABLE."""
    calls: list[int] = []
    fetch = GroupCoordinator._do_fetch_commit_offsets

    async def once_unavailable(self: GroupCoordinator, partitions: Any) -> Any:
        calls.append(len(partitions))
        if len(calls) == 1:
            raise kafka_errors.KafkaError(repr(kafka_errors.GroupCoordinatorNotAvailableError()))
        return await fetch(self, partitions)

    monkeypatch.setattr(GroupCoordinator, "_do_fetch_commit_offsets", once_unavailable)
    monkeypatch.setattr(service, "POLL_RETRY_S", 0.1)
    return calls


async def _consumer_of(settings: Any, topic: str) -> AIOKafkaConsumer:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=i % 3)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"it-poll-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    return consumer


async def test_without_a_rejoin_the_consumer_never_reads_again(settings, scratch_topic, committed_fetch_fails_once):
    consumer = await _consumer_of(settings, scratch_topic)
    try:
        raised = 0
        for _ in range(POLLS):
            try:
                assert await consumer.getmany(timeout_ms=200) == {}
            except kafka_errors.KafkaError:
                raised += 1
                await asyncio.sleep(0.1)
        assert raised == POLLS
        # What a service's state dump shows of it: partitions held, none with a position to fetch
        # from (the pending error, or no answer in time), none ever fetched.
        held = (await consumer_state(consumer))["partitions"].values()
        assert held and all(p["position"] in ("KafkaError", "TimeoutError") and p["highwater"] is None for p in held)
    finally:
        await consumer.stop()


async def test_the_services_poll_rejoins_and_reads_every_record(settings, scratch_topic, committed_fetch_fails_once):
    consumer = await _consumer_of(settings, scratch_topic)
    subscriber = SimpleNamespace(batch_timeout_ms=200, max_records=100)
    told: list[bool] = []  # each failed poll, and whether it made the consumer rejoin
    errors = PollErrors(on_failed=told.append)
    hold = FetchHold(busy_ms=settings.fetch_max_wait_ms, idle_ms=settings.idle_fetch_wait_ms)  # as a service holds
    try:
        read = []
        for _ in range(POLLS):
            read += [r.value for r in await _poll(subscriber, errors, hold, consumer)]
            if len(read) == RECORDS:
                break
        assert sorted(read) == [f"r{i}".encode() for i in range(RECORDS)]
        assert told.count(True) == 1 and len(committed_fetch_fails_once) > 1  # fetched again after the rejoin
    finally:
        await consumer.stop()
