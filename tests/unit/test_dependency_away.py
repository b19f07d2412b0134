"""A service waits for Kafka and PostgreSQL at every step of its start, and a batch is retried
whole, whatever the error a broker or database that goes away produces; a service's own bug still
ends the step it broke."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, PolicyViolationError, UnknownTopicOrPartitionError
from faststream.kafka import KafkaBroker
from structlog.testing import capture_logs

from rebound import db
from rebound.messaging import topic_admin as topics
from rebound.messaging.processor import BatchProcessor, BatchStats
from rebound.service import PatientKafkaBroker
from rebound_contracts.topics import DLQ

# What asyncpg raises when a pooled connection is used after PostgreSQL ended its session while
# it sat idle (`pg_ctl stop -m fast`: "terminating connection due to administrator command").
SESSION_ENDED = asyncpg.exceptions.InternalClientError(
    "cannot switch to state 12; another operation (2) is in progress"
)


class Admin:
    """An admin client of a broker that answers only after `broken` attempts broke off."""

    broken = 0
    brokers = 1  # up
    configured = 1  # the brokers' default.replication.factor
    instances: list[Admin] = []
    created: list = []  # every NewTopic asked for

    def __init__(self, **_options: object) -> None:
        self.closed = False
        Admin.instances.append(self)

    async def describe_cluster(self) -> dict:
        return {"brokers": [{"node_id": n} for n in range(1, Admin.brokers + 1)]}

    async def describe_configs(self, resources: list) -> list[SimpleNamespace]:
        entries = [("default.replication.factor", str(Admin.configured), False, False, False)]
        return [SimpleNamespace(resources=[(0, None, r.resource_type, r.name, entries) for r in resources])]

    async def start(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        if len(Admin.instances) <= Admin.broken:
            raise KafkaConnectionError("Connection at 127.0.0.1:19092 closed")
        return []

    async def create_topics(self, new_topics: list) -> SimpleNamespace:
        Admin.created += new_topics
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in new_topics])

    async def describe_topics(self, names: list[str]) -> list[dict]:
        return [{"topic": name, "error_code": 0, "partitions": [0] * DLQ.partitions} for name in names]

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[Admin]:
    Admin.broken, Admin.brokers, Admin.configured, Admin.instances, Admin.created = 0, 1, 1, [], []
    monkeypatch.setattr(topics, "AIOKafkaAdminClient", Admin)
    return Admin


async def test_topics_are_ensured_when_the_broker_went_away_after_the_admin_client_started(admin: type[Admin]) -> None:
    admin.broken = 2
    with capture_logs() as logs:
        created = await topics.ensure_topics("127.0.0.1:19092", wait_seconds=float("inf"), topics=[DLQ])
    assert created == [DLQ.name]
    assert [entry["error"] for entry in logs if entry["event"] == "kafka_unavailable"] == [
        "KafkaConnectionError: Connection at 127.0.0.1:19092 closed"
    ] * 2
    assert len(admin.instances) == 3 and all(a.closed for a in admin.instances)


@pytest.mark.parametrize(("brokers", "replicas", "min_insync"), [(1, 1, "1"), (2, 1, "1"), (3, 3, "2"), (5, 3, "2")])
async def test_topics_are_replicated_as_the_cluster_allows(
    admin: type[Admin], brokers: int, replicas: int, min_insync: str
) -> None:
    admin.brokers = brokers
    await topics.ensure_topics("127.0.0.1:19092", wait_seconds=0, topics=[DLQ])
    [created] = admin.created
    assert (created.replication_factor, created.topic_configs["min.insync.replicas"]) == (replicas, min_insync)
    assert created.topic_configs["unclean.leader.election.enable"] == "false"


async def test_a_topic_waits_for_the_brokers_its_replicas_need(admin: type[Admin]) -> None:
    """A cluster of three (its default.replication.factor) with one broker down: the topic is not
    made on fewer replicas; the attempt is repeated like a broker away, then given up."""
    admin.brokers, admin.configured = 2, 3
    with pytest.raises(topics.BrokersMissing, match="2 of the cluster's 3 brokers are up"):
        await topics.ensure_topics("127.0.0.1:19092", wait_seconds=0.5, topics=[DLQ])
    assert admin.created == [] and len(admin.instances) > 1


async def test_a_broker_refusing_a_topic_is_not_waited_for(admin: type[Admin], monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(_self: Admin, new_topics: list) -> SimpleNamespace:
        return SimpleNamespace(topic_errors=[(t.name, PolicyViolationError.errno, "policy") for t in new_topics])

    monkeypatch.setattr(Admin, "create_topics", refused)
    with pytest.raises(PolicyViolationError):
        await topics.ensure_topics("127.0.0.1:19092", wait_seconds=float("inf"), topics=[DLQ])
    assert len(admin.instances) == 1 and admin.instances[0].closed


async def test_the_broker_start_waits_when_the_consumer_cannot_read_its_topics_yet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broker restarting while the consumer starts: its metadata wait gives up with a retriable error.
    attempts = []

    async def start(_self: KafkaBroker) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise UnknownTopicOrPartitionError()

    async def stop(_self: KafkaBroker, *_args: object) -> None:
        return None

    monkeypatch.setattr(KafkaBroker, "start", start)
    monkeypatch.setattr(KafkaBroker, "stop", stop)
    with capture_logs() as logs:
        await PatientKafkaBroker("127.0.0.1:19092", logger=None).start()
    assert len(attempts) == 2
    assert [entry["event"] for entry in logs] == ["kafka_unavailable"]


async def test_the_broker_start_does_not_retry_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    async def start(_self: KafkaBroker) -> None:
        raise TypeError("not a broker's answer")

    monkeypatch.setattr(KafkaBroker, "start", start)
    with pytest.raises(TypeError):
        await PatientKafkaBroker("127.0.0.1:19092", logger=None).start()


class Connection:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def _use(self) -> None:
        if self.pool.ended:
            self.pool.ended -= 1
            raise SESSION_ENDED

    async def execute(self, _sql: str, *_args: object) -> str:
        self._use()
        return "SELECT 1"

    async def fetch(self, _sql: str, *_args: object) -> list[dict]:
        self._use()
        return [{"version": version} for version, _name, _sql in db._migrations()]  # all applied

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self._use()  # BEGIN
        yield


class Pool:
    """A pool whose first `ended` statements meet a session the server has ended."""

    def __init__(self, ended: int) -> None:
        self.ended = ended

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        yield Connection(self)


async def test_migrations_wait_for_a_database_that_ended_the_pooled_session() -> None:
    pool = Pool(ended=1)
    with capture_logs() as logs:
        assert await db.migrate(cast(asyncpg.Pool, pool)) == []  # the fake stands in for asyncpg's pool
    assert [(entry["event"], entry["during"]) for entry in logs] == [("database_unavailable", "migrate")]
    assert "cannot switch to state 12" in logs[0]["error"]


async def test_a_batch_that_meets_an_ended_session_is_retried_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # Broken up instead, each record goes alone, and one whose own connection meets an ended
    # session too is dead-lettered: a good record lost to a database restart.
    processor = BatchProcessor("rebound-unit", [], cast(asyncpg.Pool, Pool(ended=1)))  # a fake for asyncpg's pool
    applied: list[int] = []

    async def apply(_conn: Connection, items: list) -> BatchStats:
        applied.append(len(items))
        return BatchStats()

    monkeypatch.setattr(processor, "_apply", apply)
    records = [
        SimpleNamespace(topic="t", partition=0, offset=offset, key=b"k", value=b"{}", headers=()) for offset in range(3)
    ]
    with capture_logs() as logs:
        await processor.process(records)
    assert applied == [3]
    assert [entry["event"] for entry in logs] == ["batch_retry"]


async def test_a_statement_timeout_while_the_database_is_silent_is_waited_out_not_held_against_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A network partition makes the pool's command_timeout fire inside a batch's transaction: the
    # batch must not be split and parked for it, but wait until the database answers again.
    processor = BatchProcessor("rebound-unit", [], cast(asyncpg.Pool, Pool(ended=0)), attempts=1)
    silent = [True, True]
    tries: list[int] = []

    async def apply(_conn: Connection, items: list) -> BatchStats:
        tries.append(len(items))
        if silent:
            raise asyncio.TimeoutError

        return BatchStats()

    async def answers() -> bool:
        return not silent.pop()

    monkeypatch.setattr(processor, "_apply", apply)
    monkeypatch.setattr(processor, "_database_answers", answers)
    monkeypatch.setattr(asyncio, "sleep", _no_wait)
    records = [
        SimpleNamespace(topic="t", partition=0, offset=offset, key=b"k", value=b"{}", headers=()) for offset in range(3)
    ]
    with capture_logs() as logs:
        stats = await processor.process(records)
    assert tries == [3, 3, 3] and stats.parked == 0  # the whole batch, once the database answered
    assert [entry["event"] for entry in logs] == ["batch_retry", "batch_retry"]


async def test_a_statement_timeout_with_the_database_answering_counts_against_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processor = BatchProcessor("rebound-unit", [], cast(asyncpg.Pool, Pool(ended=0)), attempts=1)
    tries: list[int] = []

    async def apply(_conn: Connection, items: list) -> BatchStats:
        tries.append(len(items))
        raise asyncio.TimeoutError

    async def answers() -> bool:
        return True

    monkeypatch.setattr(processor, "_apply", apply)
    monkeypatch.setattr(processor, "_database_answers", answers)
    with pytest.raises(asyncio.TimeoutError):
        await processor._with_retry([SimpleNamespace()], attempts=1)  # type: ignore[list-item]  # items are opaque here
    assert tries == [1]


async def _no_wait(_seconds: float) -> None:
    return None
