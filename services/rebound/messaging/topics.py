"""Create the registry's topics with their partition counts; safe to run any number of times."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from rebound_contracts import ALL_TOPICS

log = structlog.get_logger(__name__)

TOPIC_CONFIG = {"max.message.bytes": "2097152", "min.insync.replicas": "1"}


async def ensure_topics(bootstrap_servers: str, *, replication: int = 1, wait_seconds: float = 120.0) -> list[str]:
    """Create missing topics; return the names created. Waits for the broker with back-off."""
    delay, waited = 0.2, 0.0
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
        try:
            await admin.start()
            break
        except KafkaConnectionError as error:
            await admin.close()
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
