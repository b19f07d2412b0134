"""Create the registry's topics with their partition counts; safe to run any number of times."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from rebound_contracts import ALL_TOPICS

from ..connections import KafkaRefused, kafka_refusal

log = structlog.get_logger(__name__)

TOPIC_CONFIG = {"max.message.bytes": "2097152", "min.insync.replicas": "1"}


async def ensure_topics(
    bootstrap_servers: str, *, replication: int = 1, wait_seconds: float = 120.0,
    kafka_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create missing topics; return the names created. Waits for the broker with back-off, but
    not for one that refuses the credentials (KafkaRefused). `kafka_options`: see
    `connections.kafka_options`."""
    options = dict(kafka_options or {})
    delay, waited = 0.2, 0.0
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000, **options)
        try:
            await admin.start()
            break
        except KafkaConnectionError as error:
            await admin.close()
            if refusal := await kafka_refusal(bootstrap_servers, options):
                raise KafkaRefused(refusal) from None
            if waited >= wait_seconds:
                raise
            log.warning("kafka_unavailable", error=str(error), retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication,
                     topic_configs=TOPIC_CONFIG)
            for t in ALL_TOPICS if t.name not in existing
        ]
        created = []
        for topic in missing:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another replica won the race
        if created:
            log.info("topics_created", topics=created)
        return created
    finally:
        await admin.close()
