"""A burst of the largest bad messages on every topic upstream systems write, against the
services as processes on the real Kafka and PostgreSQL: each one is dead-lettered, and no service
goes above the memory limit its Kubernetes manifest gives it. A dead letter keeps up to 64 KiB of
its record, so a backlog of them is large in the outbox: the relay reads it in batches of
`REBOUND_RELAY_BATCH_BYTES`, not of 2,000 rows."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from rebound.simulation import reading
from rebound.simulation.fleet import SERVICES, Fleet, wait_until_caught_up
from rebound_contracts import ALL_TOPICS
from rebound_contracts.topics import DLQ

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SERVICES_AND_CONNECTORS = (*SERVICES, "connectors")
INBOUND = [topic.name for topic in ALL_TOPICS if topic.direction == "inbound"]
PER_TOPIC = 400  # records of the largest readable size, per inbound topic
OVERSIZED_PER_TOPIC = 4  # and records above it, near the topic's own limit (2 MiB)
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def memory_limit_mb(service: str) -> float:
    """`resources.limits.memory` of the service's container in deploy/k8s, in MiB."""
    documents = yaml.safe_load_all((REPO / "deploy" / "k8s" / f"{service}.yaml").read_text())
    (deployment,) = [d for d in documents if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    limit = container["resources"]["limits"]["memory"]
    number, unit = limit[:-2], limit[-2:]
    return int(number) * UNITS[unit] / 1024**2


async def test_a_burst_of_the_largest_bad_messages_keeps_every_service_under_its_memory_limit(
    settings, pool, tmp_path: Path
) -> None:
    largest = settings.max_message_bytes  # not oversized: read, found not to be JSON, dead-lettered
    readable = b"{" + b"x" * (largest - 1)
    oversized = b"{" + b"x" * (2 * 1024 * 1024 - 4096)
    sent: set[tuple[str, int, int]] = set()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        max_request_size=4 * 1024 * 1024,
        linger_ms=20,
    )
    await producer.start()
    try:
        for topic in INBOUND:
            values = [readable] * PER_TOPIC + [oversized] * OVERSIZED_PER_TOPIC
            futures = [await producer.send(topic, value=v, key=uuid.uuid4().bytes) for v in values]
            sent |= {(topic, m.partition, m.offset) for m in await asyncio.gather(*futures)}
    finally:
        await producer.stop()

    env = {**os.environ, "REBOUND_LOG_LEVEL": "warning"}
    with Fleet(log_dir=tmp_path / "logs", replicas=1, services=SERVICES_AND_CONNECTORS, env=env) as fleet:
        await wait_until_caught_up(
            settings.kafka_bootstrap_servers, pool, timeout=600, fleet=fleet, services=SERVICES_AND_CONNECTORS
        )
        assert fleet.dead() == [], "a service died"
        peaks = fleet.peak_rss_mb()
    print("\n  peak RSS:", ", ".join(f"{name} {mb:.0f} MiB" for name, mb in sorted(peaks.items())))

    letters = (await reading.read_records(settings.kafka_bootstrap_servers, DLQ, sellers=None)).records
    lettered = {(d.model.source.topic, d.model.source.partition, d.model.source.offset) for d in letters}
    # Read and applied: the burst's records and their dead letters go, so the scenarios that follow
    # on this Kafka (broker kills among them) do not carry a gigabyte of them.
    ends: dict[TopicPartition, int] = {}
    for topic, partition, offset in sent:
        tp = TopicPartition(topic, partition)
        ends[tp] = max(ends.get(tp, 0), offset + 1)
    for letter in letters:
        tp = TopicPartition(DLQ.name, letter.partition)
        ends[tp] = max(ends.get(tp, 0), letter.offset + 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(before_offset=end) for tp, end in ends.items()})
    finally:
        await admin.close()
    assert sent <= lettered, f"{len(sent - lettered)} of the {len(sent)} records were not dead-lettered"
    over = {
        name: (mb, memory_limit_mb(name.rsplit("-", 1)[0]))
        for name, mb in peaks.items()
        if mb >= memory_limit_mb(name.rsplit("-", 1)[0])
    }
    assert not over, f"above their memory limit (MiB, limit): {over}"
    assert set(peaks) == {f"{service}-0" for service in SERVICES_AND_CONNECTORS}
