"""A consumer's fetch may be held by the broker (`REBOUND_FETCH_MAX_WAIT_MS`) without delaying a
record: a read_committed fetch held on partitions with nothing to read ends when a transaction
commits records on one of them, not when the hold runs out. The services' default hold relies on
this: were it not so, every hop would wait out the hold."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from rebound.service import FetchHold, PollErrors, _poll

pytestmark = pytest.mark.integration

HOLD_MS = 20_000  # far longer than any poll below


async def test_a_commit_ends_a_held_read_committed_fetch(settings, scratch_topic) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=HOLD_MS,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"it-hold-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        linger_ms=0,
    )
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(scratch_topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        # The fetcher now has a fetch held at the broker: the topic is empty.
        assert await consumer.getmany(timeout_ms=300) == {}
        await asyncio.sleep(0.5)  # the held fetch is well under way
        for round_ in range(3):
            async with producer.transaction():
                await producer.send_and_wait(scratch_topic, f"r{round_}".encode(), partition=round_ % 3)
            # Polls of a tenth of the hold: only a fetch ended by the commit can answer them.
            got = [r.value for records in (await consumer.getmany(timeout_ms=HOLD_MS // 10)).values() for r in records]
            assert got == [f"r{round_}".encode()]
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_service_s_idle_consumer_holds_its_fetches_long_and_still_reads_at_once(
    settings, scratch_topic
) -> None:
    """After a fetch that brought nothing, a service's consumer asks the broker to hold the next
    one `idle_ms` (service.FetchHold); a record on any partition ends that fetch. aiokafka's
    fetcher task sleeps as long between events (service.FETCHER_IDLE_WAKE_MS), and the answer,
    the records taken, wake it."""
    bootstrap = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(
        scratch_topic,
        bootstrap_servers=bootstrap,
        group_id=f"it-hold-{uuid.uuid4().hex[:8]}",
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=100,
        consumer_timeout_ms=HOLD_MS,  # the fetcher task's own sleep, as long: nothing here waits it out
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    poll = functools.partial(
        _poll, SimpleNamespace(batch_timeout_ms=300, max_records=10), PollErrors(), FetchHold(100, HOLD_MS)
    )
    try:
        fetcher = None
        for round_ in range(3):
            for _ in range(50):  # until a fetch has come back empty with every partition positioned
                assert await poll(consumer) == ()
                fetcher = consumer._fetcher
                if consumer.assignment() and fetcher._fetch_max_wait_ms == HOLD_MS:
                    break
            assert fetcher is not None and fetcher._fetch_max_wait_ms == HOLD_MS
            await asyncio.sleep(0.5)  # the long-held fetch is well under way
            await producer.send_and_wait(scratch_topic, f"r{round_}".encode(), partition=round_ % 3)
            # Polls for a tenth of the hold: only a fetch ended by the record can answer them.
            got = [r.value for r in await poll_until_some(poll, consumer, HOLD_MS // 10)]
            assert got == [f"r{round_}".encode()]
            assert fetcher._fetch_max_wait_ms == 100  # records came: the next fetch is held briefly
    finally:
        await producer.stop()
        await consumer.stop()


async def poll_until_some(poll: Callable[[AIOKafkaConsumer], Awaitable[tuple]], consumer, within_ms: int) -> tuple:
    """Poll in rounds of the batch wait until records come or `within_ms` has passed."""
    deadline = asyncio.get_running_loop().time() + within_ms / 1000
    while asyncio.get_running_loop().time() < deadline:
        if records := await poll(consumer):
            return records
    return ()
