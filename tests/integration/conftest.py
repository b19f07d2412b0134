from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from rebound.settings import Settings


@pytest.fixture(scope="session")
async def kafka_admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10000)
    try:
        await admin.start()
    except Exception as error:  # noqa: BLE001 - any failure to reach Kafka fails the run with one line
        await admin.close()
        pytest.fail(
            f"Kafka at {settings.kafka_bootstrap_servers} is not reachable ({error}); run `make up`", pytrace=False
        )
    yield admin
    await admin.close()


@contextlib.asynccontextmanager
async def _fresh_topic(admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    name = f"it.scratch.{uuid.uuid4().hex[:12]}"
    await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    try:
        yield name
    finally:
        await admin.delete_topics([name])


@pytest.fixture
async def scratch_topic(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    """A fresh 3-partition topic for one test, deleted afterwards."""
    async with _fresh_topic(kafka_admin) as name:
        yield name


@pytest.fixture
async def another_scratch_topic(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[str]:
    """A second one, for a test that needs two."""
    async with _fresh_topic(kafka_admin) as name:
        yield name
