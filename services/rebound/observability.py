"""/health, /ready and /metrics of one service process, served by Starlette on uvicorn.

Health is only "the event loop answers". Ready is "this process can do its work": its PostgreSQL
pool answers, its consumer is in its group, and the group's lag is under a bound. Metrics come
from a Prometheus registry of the process's own; the processor never sees it, the service
records each batch's `BatchStats` into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson
import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from rebound_contracts import Topic
from rebound_contracts.topics import STOCK_ADJUSTMENTS

from .connections import kafka_options, stop_consumer
from .messaging.processor import BatchStats
from .messaging.progress import Stall
from .settings import Settings

log = structlog.get_logger(__name__)

READY_LAG_MAX_AGE_S = 2.0  # a lag reading this fresh answers /ready, so probes do not hammer the broker
SAMPLE_EVERY_S = 5.0  # how often the lag and outbox gauges are refreshed
CHECK_TIMEOUT_S = 2.0  # a readiness check slower than this counts as failed
ACTIVE_GROUP_STATES = ("Stable", "PreparingRebalance", "CompletingRebalance")


class ServiceMetrics:
    """The Prometheus metrics of one service process, in a registry of their own."""

    def __init__(self, consumed_topics: Iterable[str] = ()) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        self.processed = Counter(
            "rebound_messages_processed",
            "Consumed records applied by their handler, per consumed topic.",
            ["topic"],
            registry=r,
        )
        self.duplicates = Counter(
            "rebound_messages_duplicate",
            "Consumed records skipped because their event_id was already applied.",
            ["topic"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "rebound_messages_dead_lettered",
            "Consumed records sent to returns.dlq.v1 (unreadable, conflicting, or failing their handler).",
            ["topic"],
            registry=r,
        )
        self.parked = Counter(
            "rebound_messages_parked",
            "Valid consumed records set aside after failing alone for want of resources (statement or lock"
            " timeouts, out of shared memory); `rebound parked list` shows them, `rebound parked retry` applies them.",
            ["topic"],
            registry=r,
        )
        self.exceptions = Counter(
            "rebound_exceptions_raised",
            "Operator exceptions (returns.exceptions.v1) raised while applying records, per consumed topic.",
            ["topic"],
            registry=r,
        )
        self.batches_failed = Counter(
            "rebound_batches_failed", "Batches not applied: rolled back, and the same records come again.", registry=r
        )
        self.poll_failures = Counter(
            "rebound_kafka_poll_failures",
            "Polls of the consumer that raised (logged as kafka_poll_failed); each is tried again a second later.",
            registry=r,
        )
        self.rejoins = Counter(
            "rebound_consumer_rejoins",
            "Times the consumer rejoined its group after two failed polls in a row.",
            registry=r,
        )
        self.batch_duration = Histogram(
            "rebound_batch_duration_seconds",
            "Time to apply one batch of records, its transaction included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "rebound_consumer_lag",
            "Records beyond the consumer group's committed offset, per partition (to the read_committed end; "
            "a transaction marker can keep it at 1).",
            ["topic", "partition"],
            registry=r,
        )
        self.outbox_rows = Gauge(
            "rebound_outbox_rows", "Outbox rows of this service not yet published to Kafka.", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "rebound_outbox_oldest_age_seconds",
            "Age of this service's oldest outbox row not yet published (0 when there is none).",
            registry=r,
        )
        self.relay_published = Counter(
            "rebound_relay_published",
            "Outbox rows this process's relay published to Kafka, per topic.",
            ["topic"],
            registry=r,
        )
        self.relay_blocked = Gauge(
            "rebound_relay_blocked",
            "1 while this process's relay publishes nothing, waiting for an operator to settle its in-doubt "
            "batch (`rebound relay settle`); else 0.",
            registry=r,
        )
        self.stalled_partitions = Gauge(
            "rebound_consumer_stalled_partitions",
            "Partitions of this replica whose position has stood still for REBOUND_STALL_AFTER_S although "
            "records wait there (or it has no position, or no fetch answers for it).",
            registry=r,
        )
        self.adjustment_latency = Histogram(
            "rebound_stock_adjustment_latency_seconds",
            "Seconds from the occurred_at of the event that caused a stock adjustment to the commit that wrote "
            "the adjustment to the outbox. Observed at outbox write, not at Kafka publish: the relay does not "
            "know the cause's time.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=r,
        )
        for topic in consumed_topics:  # present at 0 from the start, so a rate() has a baseline
            for counter in (self.processed, self.duplicates, self.dead_lettered, self.parked, self.exceptions):
                counter.labels(topic)

    def record_poll_failure(self, rejoined: bool) -> None:
        self.poll_failures.inc()
        if rejoined:
            self.rejoins.inc()

    def record_batch(self, stats: BatchStats, seconds: float, now: datetime) -> None:
        """A batch was applied and committed: `now` is just after its commit."""
        for topic, counts in stats.by_topic.items():
            self.processed.labels(topic).inc(counts.applied)
            self.duplicates.labels(topic).inc(counts.duplicates)
            self.dead_lettered.labels(topic).inc(counts.dead_lettered)
            self.parked.labels(topic).inc(counts.parked)
            self.exceptions.labels(topic).inc(counts.exceptions)
        self.batch_duration.observe(seconds)
        for topic, caused_at in stats.emitted:
            if topic == STOCK_ADJUSTMENTS.name:
                self.adjustment_latency.observe(max(0.0, (now - caused_at).total_seconds()))

    def record_published(self, topics: Sequence[str]) -> None:
        for topic, rows in Tally(topics).items():
            self.relay_published.labels(topic).inc(rows)

    def set_lag(self, lag: Mapping[TopicPartition, int]) -> None:
        for tp, records in lag.items():
            self.consumer_lag.labels(tp.topic, str(tp.partition)).set(records)

    def set_relay_blocked(self, blocked: bool) -> None:
        self.relay_blocked.set(1 if blocked else 0)

    def set_outbox(self, rows: int, oldest_age_s: float) -> None:
        self.outbox_rows.set(rows)
        self.outbox_oldest_age.set(oldest_age_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Group(Protocol):
    async def lag(self) -> dict[TopicPartition, int]: ...

    async def known(self) -> bool: ...


class KafkaGroup:
    """The consumer group as the broker sees it, read over long-lived clients (rebuilt after an error)."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        partitions: Sequence[TopicPartition],
        *,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.options = dict(options or {})  # connections.kafka_options
        self.group_id = group_id
        self.partitions = list(partitions)
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        async with self._connecting:
            return self._clients or await self._new_clients()

    async def _new_clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=10000, **self.options)
        # read_committed: the end offsets are where a consumer of the group can get to
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            request_timeout_ms=10000,
            **self.options,
        )
        try:
            await admin.start()
            await consumer.start()
        except BaseException:
            await _close_quietly(admin, consumer)
            raise
        self._clients = (admin, consumer)
        return self._clients

    async def lag(self) -> dict[TopicPartition, int]:
        """Per partition: end offset minus the group's committed offset (or the log start, when
        the group never committed one)."""
        try:
            admin, consumer = await self._connect()
            committed = await admin.list_consumer_group_offsets(self.group_id)
            ends = await consumer.end_offsets(self.partitions)
            fresh = [tp for tp in self.partitions if tp not in committed or committed[tp].offset < 0]
            starts = await consumer.beginning_offsets(fresh) if fresh else {}
        except BaseException:
            await self.close()
            raise
        return {tp: max(0, end - (starts[tp] if tp in starts else committed[tp].offset)) for tp, end in ends.items()}

    async def known(self) -> bool:
        """Does the broker know the group as one with members (it may have given us no partition)?"""
        try:
            admin, _ = await self._connect()
            responses = await admin.describe_consumer_groups([self.group_id])
        except BaseException:
            await self.close()
            raise
        # DescribeGroups: (error_code, group_id, state, protocol_type, protocol, members, ...)
        return any(
            group[0] == 0 and group[1] == self.group_id and group[2] in ACTIVE_GROUP_STATES
            for response in responses
            for group in response.groups
        )

    async def close(self) -> None:
        clients, self._clients = self._clients, None
        if clients is not None:
            await _close_quietly(*clients)


async def _close_quietly(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> None:
    with contextlib.suppress(Exception):
        await stop_consumer(consumer)
    with contextlib.suppress(Exception):
        await admin.close()


class Probes:
    """Answers /ready and refreshes the sampled gauges. `pool` and `assignment` are set by the
    service once it has them; `assignment()` returns None while the consumer is not started."""

    def __init__(
        self,
        producer: str,
        group: Group,
        metrics: ServiceMetrics,
        *,
        max_lag: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.producer = producer
        self.group = group
        self.metrics = metrics
        self.max_lag = max_lag
        self.clock = clock
        self.pool: asyncpg.Pool | None = None
        self.assignment: Callable[[], set[TopicPartition] | None] = lambda: None
        self.stalls: list[Stall] = []  # set by the service's progress watch
        self._lag: dict[TopicPartition, int] | None = None
        self._lag_read_at = float("-inf")
        self._lag_lock = asyncio.Lock()
        self._last_sample_error: str | None = None

    async def lag(self, max_age_s: float) -> dict[TopicPartition, int]:
        """The group's lag, read from Kafka unless a reading younger than `max_age_s` is at hand."""
        async with self._lag_lock:
            if self._lag is None or self.clock() - self._lag_read_at >= max_age_s:
                self._lag = await self.group.lag()
                self._lag_read_at = self.clock()
                self.metrics.set_lag(self._lag)
            return self._lag

    async def ready(self) -> dict[str, str]:
        """Each check's outcome: "ok", or why it failed."""
        names = ("database", "kafka", "lag", "progress")
        checks = (self._database, self._consumer, self._lag_under_bound, self._progress)
        outcomes = await asyncio.gather(*(_bounded(check()) for check in checks))
        return dict(zip(names, outcomes, strict=True))

    async def _database(self) -> str:
        if self.pool is None:
            return "no database pool yet"
        answer = await self.pool.fetchval("SELECT 1")
        return "ok" if answer == 1 else f"SELECT 1 answered {answer!r}"

    async def _consumer(self) -> str:
        assigned = self.assignment()
        if assigned is None:
            return "the consumer has not started"
        if assigned or await self.group.known():
            return "ok"
        return "no partitions assigned and the group is not active on the broker"

    async def _progress(self) -> str:
        if not self.stalls:
            return "ok"
        return "stalled: " + "; ".join(stall.describe() for stall in self.stalls)

    async def _lag_under_bound(self) -> str:
        total = sum((await self.lag(READY_LAG_MAX_AGE_S)).values())
        return "ok" if total < self.max_lag else f"lag {total} is not under {self.max_lag}"

    async def sample(self) -> None:
        """Refresh the gauges that are read rather than counted: consumer lag and outbox backlog."""
        errors = []
        try:
            await asyncio.wait_for(self.lag(0.0), 30.0)
        except Exception as error:  # noqa: BLE001 - a gauge left stale must not stop the next refresh
            errors.append(f"consumer lag: {type(error).__name__}: {error}")
        if self.pool is not None:
            try:
                row = await asyncio.wait_for(
                    self.pool.fetchrow(
                        "SELECT count(*) AS rows, extract(epoch FROM clock_timestamp() - min(created_at)) AS age"
                        " FROM rebound.outbox WHERE producer = $1",
                        self.producer,
                    ),
                    30.0,
                )
                assert row is not None  # an aggregate without GROUP BY returns one row
                self.metrics.set_outbox(row["rows"], float(row["age"] or 0.0))
            except Exception as error:  # noqa: BLE001 - a gauge left stale, reported, never a crash
                errors.append(f"outbox: {type(error).__name__}: {error}")
        failed = "; ".join(errors) or None
        if failed is not None and failed != self._last_sample_error:  # once per new error, not every refresh
            log.warning("metrics_sample_failed", error=failed)
        self._last_sample_error = failed

    async def sample_every(self, every_s: float) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(every_s)


async def _bounded(check: Any) -> str:
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as error:  # noqa: BLE001 - a failed check is an answer, not a crash
        return f"{type(error).__name__}: {error}"


JSON = "application/json"
ONE_REQUEST = {"connection": "close"}
"""Probes and scrapes open a connection each: none is left for the server to time out."""


class HttpServer:
    """GET (or HEAD) /health, /ready and /metrics: a Starlette app served by uvicorn."""

    def __init__(self, probes: Probes, metrics: ServiceMetrics, host: str, port: int) -> None:
        self.probes = probes
        self.metrics = metrics
        self.host = host
        self.port = port
        self.app = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/ready", self.ready, methods=["GET"]),
                Route("/metrics", self.render_metrics, methods=["GET"]),
            ],
            exception_handlers={404: _not_found, 405: _not_allowed, 500: _failed},
        )
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    async def health(self, _request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def render_metrics(self, _request: Request) -> Response:
        # generate_latest writes the 0.0.4 text format, which every Prometheus version reads
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_PLAIN_0_0_4, headers=ONE_REQUEST)

    async def ready(self, _request: Request) -> Response:
        checks = await self.probes.ready()
        failed = [name for name, outcome in checks.items() if outcome != "ok"]
        assigned = self.probes.assignment()
        body = {
            "status": "not ready" if failed else "ready",
            "failed": failed,
            "checks": checks,
            # which partitions this replica holds: none is fine when other replicas hold them all
            "partitions": None if assigned is None else sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        }
        return _json(503 if failed else 200, body)

    async def start(self) -> int:
        """Listen; returns the port (the one the OS chose when `port` is 0)."""
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        self.port = listener.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False, log_config=None)
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        log.info("http_listening", host=self.host, port=self.port, paths=["/health", "/ready", "/metrics"])
        return self.port

    async def close(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=ONE_REQUEST)


async def _not_found(request: Request, _error: Exception) -> Response:
    return _json(404, {"error": f"no such path: {request.url.path}"})


async def _not_allowed(request: Request, _error: Exception) -> Response:
    return _json(405, {"error": f"{request.method} is not allowed; use GET"})


async def _failed(request: Request, _error: Exception) -> Response:
    log.exception("http_request_failed", path=request.url.path)
    return _json(500, {"error": "internal error"})


class Observability:
    """What a service wires in: metrics always; the HTTP server and the gauge sampler only when
    `settings.http_port` is set, so local processes without it cost nothing extra."""

    def __init__(self, group_id: str, topics: Sequence[Topic], settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics([t.name for t in topics])
        partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        self.group = KafkaGroup(settings.kafka_bootstrap_servers, group_id, partitions, options=kafka_options(settings))
        self.probes = Probes(group_id, self.group, self.metrics, max_lag=settings.ready_max_lag)
        self._server: HttpServer | None = None
        self._sampler: asyncio.Task | None = None

    async def start(self) -> None:
        if self.settings.http_port is None:
            return
        self._server = HttpServer(self.probes, self.metrics, self.settings.http_host, self.settings.http_port)
        await self._server.start()
        self._sampler = asyncio.create_task(self.probes.sample_every(SAMPLE_EVERY_S), name="metrics-sampler")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        if self._server is not None:
            await self._server.close()
        await self.group.close()
