"""Create the registry's topics with their partition counts, and grow an existing topic that has
fewer partitions than the registry says; safe to run any number of times."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError, KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from rebound_contracts import ALL_TOPICS, Topic

from ..connections import KafkaRefused, kafka_away, kafka_error_text, kafka_refusal

log = structlog.get_logger(__name__)

TOPIC_CONFIG = {"max.message.bytes": "2097152", "unclean.leader.election.enable": "false"}
"""Every topic's own settings. A replica that fell out of sync never becomes leader (it would
drop acknowledged records, a committed stock adjustment among them)."""

REPLICAS = 3
"""Replicas of each topic on a cluster of three brokers or more; fewer brokers get one each."""


def replication_for(brokers: int) -> tuple[int, int]:
    """Replicas per topic and `min.insync.replicas` for a cluster of `brokers`: three and two
    where there are three brokers, so a write acknowledged by `acks=all` is on two of them and
    one broker may be lost; one and one on a smaller (development) cluster."""
    return (REPLICAS, 2) if brokers >= REPLICAS else (1, 1)


class BrokersMissing(KafkaError):
    """Fewer brokers are up than a new topic's replicas: it is not created on fewer (it would stay
    under-replicated for good), and the attempt is repeated like any broker that is away."""

    retriable = True


async def ensure_topics(
    bootstrap_servers: str,
    *,
    wait_seconds: float = 120.0,
    kafka_options: Mapping[str, Any] | None = None,
    topics: Iterable[Topic] = ALL_TOPICS,
) -> list[str]:
    """Create missing topics (replicated as `replication_for` the cluster says) and add partitions
    to those that have fewer than `topics` say; return the names created. Waits for the broker
    with back-off, but not for one that refuses the credentials (KafkaRefused). `kafka_options`:
    see `connections.kafka_options`."""
    topics = list(topics)
    options = dict(kafka_options or {})
    delay, waited = 0.2, 0.0
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000, **options)
        try:
            await admin.start()
            return await _create_and_grow(admin, topics)
        except Exception as error:
            # The broker can go away at any step, not only before the first: each attempt
            # starts over, and what an earlier one created is found existing.
            if not kafka_away(error):
                raise
            if isinstance(error, KafkaConnectionError) and (refusal := await kafka_refusal(bootstrap_servers, options)):
                raise KafkaRefused(refusal) from None
            if waited >= wait_seconds:
                raise
            log.warning("kafka_unavailable", error=kafka_error_text(error), retry_in_s=round(delay, 2))
        finally:
            await admin.close()
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)


async def _create_and_grow(admin: AIOKafkaAdminClient, topics: list[Topic]) -> list[str]:
    existing = set(await admin.list_topics())
    absent = [t for t in topics if t.name not in existing]
    replication, min_insync = (1, 1) if not absent else await _replication(admin, [t.name for t in absent])
    config = {**TOPIC_CONFIG, "min.insync.replicas": str(min_insync)}
    missing = [
        NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication, topic_configs=config)
        for t in absent
    ]
    created = []
    for topic in missing:
        # aiokafka returns the broker's per-topic errors rather than raising them.
        response = await admin.create_topics([topic])
        for name, code, message in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code == TopicAlreadyExistsError.errno:
                existing.add(name)  # another replica won the race (or metadata lagged)
            else:
                raise for_code(code)(f"could not create topic {name}: {message}")
    if created:
        log.info("topics_created", topics=created)
    await _grow(admin, [t for t in topics if t.name in existing])
    return created


async def _replication(admin: AIOKafkaAdminClient, names: list[str]) -> tuple[int, int]:
    """`replication_for` the cluster's size: the brokers up, or the cluster's own
    `default.replication.factor` when it is larger, so that a cluster of three with one broker
    down still gets three replicas. Raises BrokersMissing while fewer brokers than that are up."""
    brokers = (await admin.describe_cluster())["brokers"]
    wanted = {"default.replication.factor": None}
    resource = ConfigResource(ConfigResourceType.BROKER, str(brokers[0]["node_id"]), wanted)
    configured = 1
    for response in await admin.describe_configs([resource]):
        for _code, _message, _type, _name, entries in response.resources:
            configured = max([configured, *(int(e[1]) for e in entries if e[0] == "default.replication.factor")])
    replication, min_insync = replication_for(max(len(brokers), configured))
    if len(brokers) < replication:
        raise BrokersMissing(
            f"{len(brokers)} of the cluster's {configured} brokers are up, topics {', '.join(names)} "
            f"need {replication} replicas: they are created once the brokers are back"
        )
    return replication, min_insync


async def _grow(admin: AIOKafkaAdminClient, topics: list[Topic]) -> None:
    """Add partitions to the topics that have fewer than the registry says (never fewer: Kafka
    cannot take partitions away). Keys then map to other partitions for new records."""
    if not topics:
        return
    wanted = {t.name: t.partitions for t in topics}
    have = {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(list(wanted)) if d["error_code"] == 0}
    for name, partitions in wanted.items():
        if have.get(name, partitions) >= partitions:
            continue
        try:
            await admin.create_partitions({name: NewPartitions(total_count=partitions)})
        except InvalidPartitionsError:
            continue  # another replica grew it first
        log.info("topic_partitions_added", topic=name, partitions_before=have[name], partitions=partitions)
