"""The progress watch against the real broker: a read_committed consumer that has taken every
record is caught up, transaction markers and aborted records included, however long it idles;
one that leaves fetched records untaken stalls, and moves again once it takes them."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from rebound.messaging.progress import ProgressWatch, assignment_of, partition_views

pytestmark = pytest.mark.integration

STALL_AFTER_S = 1.0


async def _clients(bootstrap: str) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,  # idle fetches answer often: the views stay fresh
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"it-progress-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
        linger_ms=0,
    )
    await consumer.start()
    await producer.start()
    return consumer, producer


async def _watched(watch: ProgressWatch, consumer: AIOKafkaConsumer, seconds: float) -> list[list[str]]:
    """The stalls each check found, a check every 0.25 s for `seconds`."""
    found = []
    for _ in range(int(seconds / 0.25)):
        found.append([stall.describe() for stall in watch.check(partition_views(consumer), assignment_of(consumer))])
        await asyncio.sleep(0.25)
    return found


async def test_a_consumer_that_took_every_record_is_caught_up_markers_and_aborts_included(
    settings, scratch_topic
) -> None:
    consumer, producer = await _clients(settings.kafka_bootstrap_servers)
    tp = TopicPartition(scratch_topic, 0)
    try:
        async with producer.transaction():
            await producer.send_and_wait(scratch_topic, b"committed", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(scratch_topic, b"aborted", partition=0)
        await producer.abort_transaction()
        consumer.assign([tp])
        taken = []
        for _ in range(20):
            for records in (await consumer.getmany(timeout_ms=250)).values():
                taken += [r.value for r in records]
        assert taken == [b"committed"]
        view = partition_views(consumer)[tp]
        # the committed record, its marker, the aborted record, its marker: the end is offset 4
        assert (view.position, view.last_stable) == (4, 4), view
        watch = ProgressWatch(STALL_AFTER_S)
        idle = await _watched(watch, consumer, 4 * STALL_AFTER_S)
        assert not any(idle), f"an idle consumer that took everything was found stalled: {idle}"
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_consumer_that_leaves_fetched_records_untaken_stalls_and_moves_again(settings, scratch_topic) -> None:
    consumer, producer = await _clients(settings.kafka_bootstrap_servers)
    tp = TopicPartition(scratch_topic, 0)
    try:
        async with producer.transaction():
            for n in range(5):
                await producer.send_and_wait(scratch_topic, f"r{n}".encode(), partition=0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        watch = ProgressWatch(STALL_AFTER_S)
        # The fetcher fetches on its own; nothing takes the records (a handler that hangs).
        untaken = await _watched(watch, consumer, 3 * STALL_AFTER_S)
        [stall] = untaken[-1]
        assert stall.startswith(f"{scratch_topic}-0 at 0, records to 6, still for "), untaken
        assert not any(untaken[:3]), "stalled before its limit"
        taken = await consumer.getmany(tp, timeout_ms=1000)
        assert len(taken[tp]) == 5
        assert watch.check(partition_views(consumer), assignment_of(consumer)) == [], "taken, they no longer wait"
    finally:
        await producer.stop()
        await consumer.stop()
