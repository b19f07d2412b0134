"""Pruning the inbox against the real Kafka and PostgreSQL: a row goes only once Kafka can no
longer deliver its record, whatever becomes of the group's committed offsets."""

from __future__ import annotations

import dataclasses
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

from rebound.messaging import inbox
from rebound.service import prune_inbox
from rebound.settings import Settings


async def test_a_row_stays_while_kafka_still_holds_its_record(
    settings: Settings, pool, kafka_admin: AIOKafkaAdminClient, scratch_topic: str
) -> None:
    consumer = f"it-prune-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(scratch_topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(scratch_topic, b"{}", partition=0)
    finally:
        await producer.stop()
    # The three records applied an hour ago, and the group's offset committed past them.
    async with pool.acquire() as conn:
        await inbox.claim_all(
            conn, consumer, [("s", uuid.uuid4(), b"d", scratch_topic, 0, offset) for offset in range(3)]
        )
        await conn.execute(
            "UPDATE rebound.inbox SET processed_at = now() - interval '1 hour' WHERE consumer = $1", consumer
        )
    group = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=consumer, enable_auto_commit=False
    )
    await group.start()
    try:
        group.assign([tp])
        await group.commit({tp: OffsetAndMetadata(3, "")})
    finally:
        await group.stop()
    retention = dataclasses.replace(settings, inbox_retention_s=60.0)

    # Committed past, and old enough: still kept, as the records are still in the topic (a group
    # whose offsets expired would read them again from the earliest offset).
    assert await prune_inbox(pool, retention, consumer) == 0
    # Retention deletes the first two records: their rows may go, the third's stays.
    await kafka_admin.delete_records({tp: RecordsToDelete(before_offset=2)})
    assert await prune_inbox(pool, retention, consumer) == 2
    left = await pool.fetch('SELECT "offset" FROM rebound.inbox WHERE consumer = $1', consumer)
    assert [row["offset"] for row in left] == [2]
