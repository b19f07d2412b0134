"""The idempotent topic step against the real Kafka: missing topics are created, an existing
topic with fewer partitions than the registry says is grown, and none is ever shrunk."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from rebound.connections import kafka_options
from rebound.messaging.topic_admin import ensure_topics
from rebound.settings import Settings
from rebound_contracts.topics import DLQ

pytestmark = pytest.mark.integration


async def _partitions(admin: AIOKafkaAdminClient, name: str, expected: int) -> int:
    """The topic's partition count once metadata shows `expected` (or what it shows after 10 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        [described] = await admin.describe_topics([name])
        count = len(described["partitions"]) if described["error_code"] == 0 else 0
        if count == expected or loop.time() > deadline:
            return count
        await asyncio.sleep(0.05)


async def _ensure(settings: Settings, name: str, partitions: int) -> list[str]:
    # A throw-away topic shaped like the dead-letter topic, so no registry topic is touched.
    topic = dataclasses.replace(DLQ, name=name, partitions=partitions)
    return await ensure_topics(
        settings.kafka_bootstrap_servers, wait_seconds=10, kafka_options=kafka_options(settings), topics=[topic]
    )


async def test_an_existing_topic_with_fewer_partitions_is_grown_once(
    settings: Settings,
    kafka_admin: AIOKafkaAdminClient,
    scratch_topic: str,
) -> None:
    assert await _partitions(kafka_admin, scratch_topic, 3) == 3  # as an older installation has it
    assert await _ensure(settings, scratch_topic, 6) == []  # not created: it exists
    assert await _partitions(kafka_admin, scratch_topic, 6) == 6
    assert await _ensure(settings, scratch_topic, 6) == []  # a second run changes nothing
    assert await _partitions(kafka_admin, scratch_topic, 6) == 6


async def test_a_topic_with_more_partitions_than_the_registry_says_is_left_as_it_is(
    settings: Settings,
    kafka_admin: AIOKafkaAdminClient,
    scratch_topic: str,
) -> None:
    assert await _ensure(settings, scratch_topic, 2) == []
    assert await _partitions(kafka_admin, scratch_topic, 3) == 3


async def test_a_missing_topic_is_created_with_the_registry_partitions(
    settings: Settings,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    name = f"it.scratch.{uuid.uuid4().hex[:12]}"
    try:
        assert await _ensure(settings, name, 6) == [name]
        assert await _partitions(kafka_admin, name, 6) == 6
    finally:
        await kafka_admin.delete_topics([name])
