"""Hostile input on every topic every service consumes, through the services as processes on the
real Kafka and PostgreSQL. On each topic, in one partition: a valid event carrying an unknown
field nested 300 levels deep, then (on the topics upstream systems write) a record nested deeper
than any JSON reader here allows, then a plain valid event. The valid ones are applied, the
unreadable one is dead-lettered, and every consumer group's committed offset moves past them all.

Rebound's own topics get no unreadable record: the checker holds every record on them to the
contract, and the fault scenarios that follow on the same Kafka would count it against them."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from rebound.simulation import reading
from rebound.simulation.fleet import SERVICES, Fleet, consumed_topics, wait_until_caught_up
from rebound_contracts import TOPICS_BY_NAME
from rebound_contracts.topics import (
    ACKS,
    DISPOSITIONS,
    DLQ,
    EXCHANGE_REQUESTED,
    PARCEL_SCANNED,
    RMA,
    LISTINGS,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    UNIT_ADDED_TO_RETURN,
    UNIT_QUARANTINED,
    STOCK_ADJUSTMENTS,
    UNIT_GRADED,
    UNIT_INSPECTED,
    UNIT_PICKED,
    UNIT_RECEIVED,
    UNIT_REFURBISHED,
)
from tests import factories as f
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.e2e

SERVICES_AND_CONNECTORS = (*SERVICES, "connectors")
APPLIED_DEPTH = 300  # deeper than orjson writes (254), within what it reads (1,024)
UNREADABLE_DEPTH = 5_000


def _nested_under(event: BaseModel | dict, depth: int) -> bytes:
    document = event if isinstance(event, dict) else orjson.loads(event.model_dump_json())
    return orjson.dumps(document)[:-1] + b',"extra":' + b"[" * depth + b"]" * depth + b"}"


async def _events(pipe: Pipeline, seller: str) -> dict[str, BaseModel | dict]:
    """A valid event for every consumed topic (a disposition as relisting decides it)."""
    [disposition] = await pipe.decide([f.graded(seller, pipe.id("L6"), "A")])
    assert disposition.value is not None
    return {
        RMA.name: f.rma(seller),
        PARCEL_SCANNED.name: f.scan(seller, f.uid("T"), [(pipe.id("L1"), "TEE-BLK-M")]),
        UNIT_RECEIVED.name: f.received(seller, pipe.id("L2")),
        UNIT_INSPECTED.name: f.inspection(seller, pipe.id("L3")),
        UNIT_REFURBISHED.name: f.refurbished(seller, pipe.id("L4")),
        UNIT_GRADED.name: f.graded(seller, pipe.id("L5"), "B"),
        DISPOSITIONS.name: orjson.loads(disposition.value),
        ACKS.name: f.ack(seller, f"{seller}:tiktok:W1:TEE-BLK-M:new", "applied"),
        UNIT_PICKED.name: f.picked(seller, pipe.id("L7")),
        EXCHANGE_REQUESTED.name: f.exchange(seller, "TEE-BLK-L"),
        STOCK_ADJUSTMENTS.name: f.adjusted(seller, "TEE-BLK-L", 1, +1),
        LISTINGS.name: f.listing(seller, "TEE-BLK-L", "19.90", "Open box: inspected, like new"),
        PARCEL_MATCHED.name: f.match(seller, f.uid("T"), f.uid("R")),
        PARCEL_RECEIVED_UNEXPECTED.name: f.received_unexpected(seller, f.uid("T")),
        UNIT_ADDED_TO_RETURN.name: f.added(seller, pipe.id("L8"), f.uid("R")),
        UNIT_QUARANTINED.name: f.quarantined(seller, pipe.id("L9")),
    }


def _renamed(event: BaseModel | dict) -> dict:
    """The same event under a new event_id: another event."""
    document = event if isinstance(event, dict) else orjson.loads(event.model_dump_json())
    return {**document, "event_id": str(uuid.uuid4())}


async def test_every_consumed_partition_moves_past_deeply_nested_records(settings, pool, tmp_path: Path) -> None:
    pipe = Pipeline(pool)
    [seller] = await pipe.add_sellers("hostile")
    events = await _events(pipe, seller)
    groups = {topic: f"rebound-{service}" for service in SERVICES_AND_CONNECTORS for topic in consumed_topics(service)}
    assert set(events) == set(groups), "a consumed topic has no case"

    sent: dict[str, dict[str, tuple[int, int]]] = {}  # topic -> what -> (partition, offset)
    applied: dict[str, list[str]] = {}  # topic -> event_ids that must be in its group's inbox
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        max_request_size=1 << 20,
    )
    await producer.start()
    try:
        for topic, event in events.items():
            document = event if isinstance(event, dict) else orjson.loads(event.model_dump_json())
            key = TOPICS_BY_NAME[topic].key_of(TOPICS_BY_NAME[topic].model.model_validate(document)).encode()
            after = _renamed(event)
            records = {
                "nested 300 deep": _nested_under(event, APPLIED_DEPTH),
                "nested 5,000 deep": _nested_under(_renamed(event), UNREADABLE_DEPTH),
                "plain, after both": orjson.dumps(after),
            }
            if TOPICS_BY_NAME[topic].direction != "inbound":
                del records["nested 5,000 deep"]
            sent[topic] = {}
            for what, value in records.items():
                meta = await producer.send_and_wait(topic, value=value, key=key)
                sent[topic][what] = (meta.partition, meta.offset)
            applied[topic] = [document["event_id"], after["event_id"]]
    finally:
        await producer.stop()

    with Fleet(log_dir=tmp_path / "logs", replicas=1, services=SERVICES_AND_CONNECTORS) as fleet:
        await wait_until_caught_up(
            settings.kafka_bootstrap_servers, pool, timeout=180, fleet=fleet, services=SERVICES_AND_CONNECTORS
        )
        assert fleet.dead() == [], "a service died"
    for log in (tmp_path / "logs").rglob("*.log"):
        assert "batch_not_applied" not in log.read_text(), f"{log.name} could not apply a batch"

    letters = (await reading.read_records(settings.kafka_bootstrap_servers, DLQ, sellers=None)).records
    lettered = {(d.model.source.topic, d.model.source.partition, d.model.source.offset): d.model for d in letters}
    for topic, positions in sent.items():
        if "nested 5,000 deep" in positions:
            deep = lettered.get((topic, *positions["nested 5,000 deep"]))
            assert deep is not None and deep.kind == "invalid_json", (topic, deep)
        for what in ("nested 300 deep", "plain, after both"):
            assert (topic, *positions[what]) not in lettered, (topic, what, lettered[(topic, *positions[what])])
        found = await pool.fetchval(
            "SELECT count(*) FROM rebound.inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            groups[topic],
            [uuid.UUID(i) for i in applied[topic]],
        )
        assert found == 2, f"{topic}: {groups[topic]} applied {found} of the two valid events"
