"""Observability against the real Kafka and PostgreSQL: one intake process with its HTTP port
(/health, /ready, /metrics after it processed records, exit 0 on SIGTERM), the processor's
per-topic counts, and the relay's report of what it published."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families
from rebound.intake.app import spec as intake_spec
from rebound.messaging.outbox import OutboxBuffer
from rebound.messaging.processor import BatchProcessor, TopicStats
from rebound.messaging.relay import OutboxRelay
from rebound.observability import KafkaGroup, Probes, ServiceMetrics
from rebound.simulation.fleet import ServiceProcess
from rebound.settings import Settings
from rebound_contracts.topics import PARCEL_SCANNED, RMA, UNIT_RECEIVED

from tests import factories as f
from tests.local import free_port

pytestmark = pytest.mark.integration


async def _get(port: int, path: str) -> tuple[int, bytes]:
    """(status, body); (0, b"") while nothing listens yet."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0, b""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def _poll(
    service: ServiceProcess, port: int, path: str, done: Callable[[int, bytes], bool], timeout: float
) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await _get(port, path)
        if done(status, body):
            return status, body
        assert service.alive(), f"the service exited with {service.exit_code}; see {service.log_path}"
        if time.monotonic() > deadline:
            ours = b"\n".join(line for line in body.splitlines() if line.startswith(b"rebound_"))
            raise AssertionError(f"{path} not as expected after {timeout:.0f} s: {status} {(ours or body)[:2000]!r}")
        await asyncio.sleep(0.2)


async def _logged(service: ServiceProcess, marker: bytes, timeout: float) -> dict:
    """The first line of the service's log that holds `marker`, parsed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in service.log_path.read_bytes().splitlines():
            if marker in line:
                return orjson.loads(line)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{marker!r} not logged in {timeout:.0f} s; see {service.log_path}")


def _values(body: bytes) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _value(body: bytes, name: str, **labels: str) -> float | None:
    return _values(body).get((name, frozenset(labels.items())))


def _rma_partitions(ready_body: bytes) -> list[int]:
    held = orjson.loads(ready_body).get("partitions") or []
    return [int(p.rsplit(":", 1)[1]) for p in held if p.rsplit(":", 1)[0] == RMA.name]


async def _add_seller(pool: asyncpg.Pool) -> str:
    seller = f"obs-{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    return seller


async def test_a_service_process_serves_health_ready_and_metrics_and_exits_0_on_sigterm(
    pool: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
) -> None:
    seller = await _add_seller(pool)
    port = free_port()
    service = ServiceProcess("intake", 0, tmp_path / "intake.log")
    service.start(
        {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "REBOUND_LOG_FORMAT": "json",
            "REBOUND_HTTP_PORT": str(port),
            "REBOUND_HTTP_HOST": "127.0.0.1",
        }
    )
    try:
        status, body = await _poll(service, port, "/health", lambda s, _: s != 0, 60)
        assert (status, orjson.loads(body)) == (200, {"status": "ok"})
        # Other members of the group may be running: wait until this one holds a partition to send to.
        _, body = await _poll(service, port, "/ready", lambda s, b: s == 200 and bool(_rma_partitions(b)), 120)
        assert orjson.loads(body)["checks"] == {"database": "ok", "kafka": "ok", "lag": "ok", "progress": "ok"}
        sent_to = _rma_partitions(body)
        assert (await _get(port, "/metrics/x"))[0] == 404

        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            for partition in sent_to:
                order = f.rma(seller)
                await producer.send_and_wait(
                    RMA.name, order.model_dump_json().encode(), key=RMA.key_of(order).encode(), partition=partition
                )
                await producer.send_and_wait(RMA.name, b"{not json", key=b"obs-bad", partition=partition)
        finally:
            await producer.stop()

        def processed_both(status: int, body: bytes) -> bool:
            return (
                status == 200
                and (_value(body, "rebound_messages_processed_total", topic=RMA.name) or 0) >= 1
                and (_value(body, "rebound_messages_dead_lettered_total", topic=RMA.name) or 0) >= 1
            )

        _, body = await _poll(service, port, "/metrics", processed_both, 60)
        values = _values(body)
        assert (_value(body, "rebound_batch_duration_seconds_count") or 0) >= 1
        assert _value(body, "rebound_batches_failed_total") == 0
        assert _value(body, "rebound_kafka_poll_failures_total") == 0
        assert _value(body, "rebound_consumer_rejoins_total") == 0
        lag_partitions = {
            dict(labels)["partition"]
            for name, labels in values
            if name == "rebound_consumer_lag" and dict(labels)["topic"] == RMA.name
        }
        assert lag_partitions == {str(p) for p in range(RMA.partitions)}
        outbox_rows, oldest_age = _value(body, "rebound_outbox_rows"), _value(body, "rebound_outbox_oldest_age_seconds")
        assert outbox_rows is not None and outbox_rows >= 0
        assert oldest_age is not None and oldest_age >= 0
        families = {family.name for family in text_string_to_metric_families(body.decode())}
        assert {"rebound_relay_published", "rebound_stock_adjustment_latency_seconds"} <= families

        partitions = [TopicPartition(RMA.name, p) for p in range(RMA.partitions)]
        for group_id, known in (("rebound-intake", True), (f"it-obs-nobody-{uuid.uuid4().hex[:8]}", False)):
            group = KafkaGroup(settings.kafka_bootstrap_servers, group_id, partitions)
            try:
                assert await group.known() is known, group_id
            finally:
                await group.close()

        # kill -USR1 / -USR2: the process logs its tasks and its consumer, and its threads' stacks
        assert service.dump_state()
        dump = await _logged(service, b'"state_dumped"', 10)
        assert {"offset-committer", "intake-relay"} <= set(dump["tasks"]), dump["tasks"]
        read = dump["consumer"]["partitions"]
        assert all(read[f"{RMA.name}-{p}"]["position"] >= 2 for p in sent_to), read
        assert dump["consumer"]["member_id"] and dump["consumer"]["generation"] >= 1
        assert b"most recent call first" in service.log_path.read_bytes()
    finally:
        code = service.stop(30)
    assert code == 0, f"exit code {code}; see {service.log_path}"
    started = [orjson.loads(line) for line in service.log_path.read_bytes().splitlines() if b'"http_listening"' in line]
    assert [(e["port"], e["service"]) for e in started] == [(port, "intake")]


async def test_batch_stats_count_each_consumed_topic_and_say_what_each_event_caused(pool: asyncpg.Pool) -> None:
    seller = await _add_seller(pool)
    spec = intake_spec()
    processor = BatchProcessor(f"it-obs-{uuid.uuid4().hex[:8]}", spec.routes, pool, lock_keys=spec.lock_keys)
    order = f.rma(seller)
    parcel = f.scan(seller, order.tracking_number, [(f.uid("LPN"), "TEE-BLK-M")])
    offsets = iter(range(100))

    def record(topic: str, value: bytes) -> f.Record:
        return f.Record(topic, value, 0, next(offsets), b"k")

    try:
        stats = await processor.process(
            [
                record(RMA.name, order.model_dump_json().encode()),
                record(RMA.name, order.model_dump_json().encode()),  # the same event again
                record(PARCEL_SCANNED.name, parcel.model_dump_json().encode()),
                record(PARCEL_SCANNED.name, b"{oops"),
            ]
        )
    finally:
        await pool.execute("DELETE FROM rebound.outbox WHERE producer = $1", processor.consumer)
    assert stats.by_topic == {
        RMA.name: TopicStats(applied=1, duplicates=1),
        PARCEL_SCANNED.name: TopicStats(applied=1, dead_lettered=1),
    }
    assert (stats.applied, stats.duplicates, stats.dead_lettered) == (2, 1, 1)
    assert stats.emitted == [(UNIT_RECEIVED.name, parcel.occurred_at)]  # dead letters have no cause event


async def test_the_relay_reports_the_topics_of_each_batch_it_published(
    pool: asyncpg.Pool,
    settings: Settings,
    scratch_topic: str,
) -> None:
    producer = f"it-obs-relay-{uuid.uuid4().hex[:8]}"
    buffer = OutboxBuffer(producer)
    for i in range(5):
        buffer.add_raw(scratch_topic, f"k{i}", b"{}")
    async with pool.acquire() as conn, conn.transaction():
        await buffer.flush(conn)
    reported: list[str] = []
    relay = OutboxRelay(
        settings.database_url, settings.kafka_bootstrap_servers, producer, batch_size=2, on_published=reported.extend
    )
    task = asyncio.create_task(relay.run())
    try:
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer):
            assert time.monotonic() < deadline, "the relay did not drain the outbox in 30 s"
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (reported, relay.published) == ([scratch_topic] * 5, 5)


async def test_the_group_lag_counts_from_the_committed_offset_or_the_log_start(
    settings: Settings,
    scratch_topic: str,
) -> None:
    p0, p1, p2 = (TopicPartition(scratch_topic, p) for p in range(3))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 2)):
            for _ in range(count):
                await producer.send_and_wait(scratch_topic, b"{}", partition=partition)
    finally:
        await producer.stop()
    group_id = f"it-obs-lag-{uuid.uuid4().hex[:8]}"
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([p0])
        await committer.commit({p0: OffsetAndMetadata(3, "")})
    finally:
        await committer.stop()
    group = KafkaGroup(settings.kafka_bootstrap_servers, group_id, [p0, p1, p2])
    try:
        assert await group.lag() == {p0: 2, p1: 2, p2: 0}
    finally:
        await group.close()


async def test_a_sample_reads_the_outbox_backlog_of_its_producer_only(pool: asyncpg.Pool) -> None:
    class NoLag:
        async def lag(self) -> dict[TopicPartition, int]:
            return {}

        async def known(self) -> bool:
            return True

    producer = f"it-obs-outbox-{uuid.uuid4().hex[:8]}"
    probes = Probes(producer, NoLag(), ServiceMetrics(), max_lag=1)
    probes.pool = pool
    rows = [(producer, 30), (producer, 5), (producer, 0), (f"{producer}-other", 600)]
    await pool.executemany(
        "INSERT INTO rebound.outbox (producer, topic, key, payload, created_at)"
        " VALUES ($1, 'it.obs.none', 'k', '\\x7b7d', clock_timestamp() - make_interval(secs => $2))",
        rows,
    )
    try:
        await probes.sample()
    finally:
        await pool.execute(
            "DELETE FROM rebound.outbox WHERE producer = ANY($1::text[])", [producer, f"{producer}-other"]
        )
    registry = probes.metrics.registry
    assert registry.get_sample_value("rebound_outbox_rows") == 3
    oldest_age = registry.get_sample_value("rebound_outbox_oldest_age_seconds")
    assert oldest_age is not None and 30 <= oldest_age < 60
