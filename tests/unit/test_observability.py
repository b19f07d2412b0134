"""The HTTP endpoints, the readiness checks and the metric updates, on fakes (no Kafka, no PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg
import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rebound import observability
from rebound.messaging.processor import BatchStats
from rebound.messaging.progress import PartitionView, Stall
from rebound.observability import HttpServer, Probes, ServiceMetrics
from rebound.settings import Settings
from rebound_contracts.topics import (
    DLQ,
    EXCEPTIONS,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
)

P0, P1 = TopicPartition(RMA.name, 0), TopicPartition(RMA.name, 1)
NOW = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)


class FakeGroup:
    def __init__(self, lag: dict[TopicPartition, int] | None = None, known: bool = False) -> None:
        self.lag_now = lag if lag is not None else {P0: 0, P1: 0}
        self.is_known = known
        self.lag_reads = 0

    async def lag(self) -> dict[TopicPartition, int]:
        self.lag_reads += 1
        return dict(self.lag_now)

    async def known(self) -> bool:
        return self.is_known


class FakePool:
    def __init__(self, answer: object = 1, hang: bool = False, outbox: tuple[int, float | None] = (0, None)) -> None:
        self.answer = answer
        self.hang = hang
        self.outbox = outbox

    async def fetchval(self, query: str) -> object:
        assert query == "SELECT 1"
        if self.hang:
            await asyncio.Event().wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def fetchrow(self, _query: str, producer: str) -> dict[str, object]:
        assert producer == "rebound-test"
        return {"rows": self.outbox[0], "age": self.outbox[1]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_ANSWERING = object()


def probes(
    group: FakeGroup | None = None,
    *,
    pool: FakePool | None | object = _ANSWERING,
    assigned: AbstractSet[TopicPartition] | None = frozenset({P0}),
    max_lag: int = 100,
    clock: Clock | None = None,
    stalls: list[Stall] | None = None,
) -> Probes:
    p = Probes(
        "rebound-test", group or FakeGroup(), ServiceMetrics([RMA.name]), max_lag=max_lag, clock=clock or Clock()
    )
    # a FakePool stands in for asyncpg's pool: the probes only call fetchval and fetchrow on it
    p.pool = cast("asyncpg.Pool | None", FakePool() if pool is _ANSWERING else pool)
    p.assignment = lambda: None if assigned is None else set(assigned)
    p.stalls = stalls or []
    return p


async def http(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split(" ")[1]), headers, body


@pytest.fixture
async def serve():
    servers = []

    async def start(p: Probes) -> int:
        server = HttpServer(p, p.metrics, "127.0.0.1", 0)
        servers.append(server)
        return await server.start()

    yield start
    for server in servers:
        await server.close()


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# --- HTTP ---------------------------------------------------------------------------------------


async def test_health_is_200_ok(serve) -> None:
    port = await serve(probes(pool=None, assigned=None))  # nothing else needs to be up
    status, headers, body = await http(port, "/health")
    assert (status, headers["content-type"], orjson.loads(body)) == (200, "application/json", {"status": "ok"})
    assert int(headers["content-length"]) == len(body)


async def test_unknown_paths_are_404_and_other_methods_405(serve) -> None:
    port = await serve(probes())
    assert (await http(port, "/"))[0] == 404
    assert (await http(port, "/healthz"))[0] == 404
    assert (await http(port, "/health", "POST"))[0] == 405
    assert (await http(port, "/health?verbose=1"))[0] == 200  # a query string does not change the path


async def test_a_request_that_is_not_http_gets_400_and_the_server_goes_on(serve) -> None:
    port = await serve(probes())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\r\n\r\n")
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
    writer.close()
    assert (await http(port, "/health"))[0] == 200


async def test_metrics_are_prometheus_text_with_the_recorded_values(serve) -> None:
    p = probes()
    stats = BatchStats()
    stats.of(RMA.name).applied = 3
    p.metrics.record_batch(stats, 0.2, NOW)
    port = await serve(p)
    status, headers, body = await http(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    processed = {
        s.labels["topic"]: s.value for s in families["rebound_messages_processed"].samples if s.name.endswith("_total")
    }
    assert processed == {RMA.name: 3.0}
    assert {
        "rebound_batch_duration_seconds",
        "rebound_consumer_lag",
        "rebound_outbox_rows",
        "rebound_outbox_oldest_age_seconds",
        "rebound_relay_published",
        "rebound_relay_blocked",
        "rebound_batches_failed",
        "rebound_kafka_poll_failures",
        "rebound_consumer_rejoins",
        "rebound_stock_adjustment_latency_seconds",
        "rebound_messages_dead_lettered",
        "rebound_messages_duplicate",
        "rebound_exceptions_raised",
        "rebound_consumer_stalled_partitions",
    } <= set(families)


async def test_head_gets_the_headers_without_the_body(serve) -> None:
    port = await serve(probes())
    status, headers, body = await http(port, "/health", "HEAD")
    assert (status, body) == (200, b"") and int(headers["content-length"]) > 0


# --- readiness ----------------------------------------------------------------------------------


async def test_ready_is_200_when_every_check_passes(serve) -> None:
    port = await serve(probes(FakeGroup({P0: 40, P1: 59}), max_lag=100, assigned={P1, P0}))
    status, _, body = await http(port, "/ready")
    assert (status, orjson.loads(body)) == (
        200,
        {
            "status": "ready",
            "failed": [],
            "checks": {"database": "ok", "kafka": "ok", "lag": "ok", "progress": "ok"},
            "partitions": [f"{RMA.name}:0", f"{RMA.name}:1"],
        },
    )


@pytest.mark.parametrize(
    ("setup", "failed", "says"),
    [
        ({"pool": None}, "database", "no database pool yet"),
        ({"pool": FakePool(answer=ConnectionResetError("gone"))}, "database", "ConnectionResetError: gone"),
        ({"assigned": None}, "kafka", "the consumer has not started"),
        ({"assigned": set()}, "kafka", "no partitions assigned and the group is not active on the broker"),
        ({"group": FakeGroup({P0: 60, P1: 40})}, "lag", "lag 100 is not under 100"),
        (
            {"stalls": [Stall(P0, PartitionView(40, 52, 0.0), 130.0)]},
            "progress",
            f"stalled: {RMA.name}-0 at 40, records to 52, still for 130 s",
        ),
    ],
)
async def test_ready_is_503_naming_the_failed_check(serve, setup, failed, says) -> None:
    port = await serve(probes(**setup))
    status, _, body = await http(port, "/ready")
    answer = orjson.loads(body)
    assert (status, answer["status"], answer["failed"], answer["checks"][failed]) == (503, "not ready", [failed], says)


async def test_a_replica_without_partitions_is_ready_when_its_group_is_active() -> None:
    assert (await probes(FakeGroup(known=True), assigned=set()).ready())["kafka"] == "ok"


async def test_a_check_that_hangs_fails_within_the_timeout(monkeypatch) -> None:
    monkeypatch.setattr(observability, "CHECK_TIMEOUT_S", 0.05)
    checks = await asyncio.wait_for(probes(pool=FakePool(hang=True)).ready(), 5)
    assert checks == {"database": "no answer within 0.05 s", "kafka": "ok", "lag": "ok", "progress": "ok"}


async def test_lag_is_read_from_kafka_at_most_once_per_max_age() -> None:
    group, clock = FakeGroup(), Clock()
    p = probes(group, clock=clock)
    await asyncio.gather(p.ready(), p.ready(), p.ready())
    clock.now += observability.READY_LAG_MAX_AGE_S - 0.1
    await p.ready()
    assert group.lag_reads == 1
    clock.now += 0.1
    group.lag_now = {P0: 500, P1: 0}
    assert (await p.ready())["lag"] == "lag 500 is not under 100"
    assert group.lag_reads == 2


# --- metric updates -----------------------------------------------------------------------------


def test_a_batch_is_counted_per_consumed_topic() -> None:
    metrics = ServiceMetrics([RMA.name, PARCEL_SCANNED.name])
    stats = BatchStats()
    stats.of(RMA.name).applied, stats.of(RMA.name).duplicates = 2, 1
    stats.of(PARCEL_SCANNED.name).dead_lettered, stats.of(PARCEL_SCANNED.name).exceptions = 1, 2
    metrics.record_batch(stats, 0.3, NOW)
    metrics.record_batch(stats, 0.1, NOW)
    counted = {
        (name, topic): sample(metrics, f"rebound_{name}_total", topic=topic)
        for name in ("messages_processed", "messages_duplicate", "messages_dead_lettered", "exceptions_raised")
        for topic in (RMA.name, PARCEL_SCANNED.name)
    }
    assert counted == {
        ("messages_processed", RMA.name): 4.0,
        ("messages_processed", PARCEL_SCANNED.name): 0.0,
        ("messages_duplicate", RMA.name): 2.0,
        ("messages_duplicate", PARCEL_SCANNED.name): 0.0,
        ("messages_dead_lettered", RMA.name): 0.0,
        ("messages_dead_lettered", PARCEL_SCANNED.name): 2.0,
        ("exceptions_raised", RMA.name): 0.0,
        ("exceptions_raised", PARCEL_SCANNED.name): 4.0,
    }
    assert sample(metrics, "rebound_batch_duration_seconds_count") == 2.0
    assert sample(metrics, "rebound_batch_duration_seconds_sum") == pytest.approx(0.4)


def test_batch_totals_are_the_sums_over_topics() -> None:
    stats = BatchStats()
    stats.of(RMA.name).applied, stats.of(PARCEL_SCANNED.name).applied = 2, 3
    stats.of(RMA.name).dead_lettered = 1
    assert (stats.applied, stats.dead_lettered, stats.duplicates, stats.exceptions) == (5, 1, 0, 0)


def test_adjustment_latency_is_observed_for_stock_adjustments_only() -> None:
    metrics = ServiceMetrics()
    stats = BatchStats(
        emitted=[
            (STOCK_ADJUSTMENTS.name, NOW - timedelta(seconds=3)),
            (STOCK_ADJUSTMENTS.name, NOW - timedelta(seconds=1)),
            (EXCEPTIONS.name, NOW - timedelta(seconds=100)),
        ]
    )
    metrics.record_batch(stats, 0.1, NOW)
    assert sample(metrics, "rebound_stock_adjustment_latency_seconds_count") == 2.0
    assert sample(metrics, "rebound_stock_adjustment_latency_seconds_sum") == pytest.approx(4.0)
    assert sample(metrics, "rebound_stock_adjustment_latency_seconds_bucket", le="2.5") == 1.0


def test_failed_polls_and_the_rejoins_they_caused_are_counted() -> None:
    metrics = ServiceMetrics()
    for rejoined in (False, True, False):
        metrics.record_poll_failure(rejoined)
    assert sample(metrics, "rebound_kafka_poll_failures_total") == 3.0
    assert sample(metrics, "rebound_consumer_rejoins_total") == 1.0


def test_relayed_rows_are_counted_per_topic() -> None:
    metrics = ServiceMetrics()
    metrics.record_published([DLQ.name, EXCEPTIONS.name, DLQ.name])
    metrics.record_published([DLQ.name])
    assert sample(metrics, "rebound_relay_published_total", topic=DLQ.name) == 3.0
    assert sample(metrics, "rebound_relay_published_total", topic=EXCEPTIONS.name) == 1.0


async def test_a_sample_sets_the_lag_and_outbox_gauges() -> None:
    p = probes(FakeGroup({P0: 7, P1: 0}), pool=FakePool(outbox=(12, 3.5)))
    await p.sample()
    assert sample(p.metrics, "rebound_consumer_lag", topic=RMA.name, partition="0") == 7.0
    assert sample(p.metrics, "rebound_consumer_lag", topic=RMA.name, partition="1") == 0.0
    assert sample(p.metrics, "rebound_outbox_rows") == 12
    assert sample(p.metrics, "rebound_outbox_oldest_age_seconds") == 3.5
    p.pool = cast(asyncpg.Pool, FakePool(outbox=(0, None)))  # an empty outbox has no oldest row
    await p.sample()
    assert sample(p.metrics, "rebound_outbox_oldest_age_seconds") == 0.0


async def test_a_failed_sample_keeps_the_last_gauges_and_the_next_one_refreshes_them() -> None:
    class Flaky(FakeGroup):
        async def lag(self) -> dict[TopicPartition, int]:
            if self.lag_reads == 1:
                self.lag_reads += 1
                raise ConnectionError("broker away")
            return await super().lag()

    group = Flaky({P0: 5})
    p = probes(group)
    await p.sample()
    group.lag_now = {P0: 9}
    await p.sample()
    assert sample(p.metrics, "rebound_consumer_lag", topic=RMA.name, partition="0") == 5.0
    await p.sample()
    assert sample(p.metrics, "rebound_consumer_lag", topic=RMA.name, partition="0") == 9.0


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "port"),
    [
        ({}, None),
        ({"REBOUND_HTTP_PORT": ""}, None),
        ({"REBOUND_HTTP_PORT": " "}, None),
        ({"REBOUND_HTTP_PORT": "8080"}, 8080),
    ],
)
def test_the_http_port_is_optional(env, port) -> None:
    assert Settings.from_env(env).http_port == port


def test_http_host_and_ready_lag_bound_from_the_environment() -> None:
    assert (Settings.from_env({}).http_host, Settings.from_env({}).ready_max_lag) == ("0.0.0.0", 10000)
    custom = Settings.from_env({"REBOUND_HTTP_HOST": "127.0.0.1", "REBOUND_READY_MAX_LAG": "50"})
    assert (custom.http_host, custom.ready_max_lag) == ("127.0.0.1", 50)
