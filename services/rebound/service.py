"""What every Rebound service shares at run time: one FastStream app over a batch processor.

A service is its routes (topic -> handler) and, optionally, the advisory-lock keys its batches
need. `build_app` wires them to Kafka and PostgreSQL; nothing is connected until the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from itertools import chain

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import KafkaError
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from rebound_contracts import Topic

from .connections import (
    database_connect_kwargs,
    kafka_away,
    kafka_error_text,
    kafka_options,
    kafka_security,
    being_cancelled,
    stop_consumer,
)
from .db import TRANSIENT_ERRORS, create_pool, migrate
from .dump import install_state_dump
from .messaging import inbox
from .messaging.commits import OffsetCommitter
from .messaging.processor import BatchProcessor, BatchStats, LockKeys, Record, Route
from .messaging.relay import OutboxRelay
from .messaging.topic_admin import ensure_topics
from .messaging.progress import ProgressWatch, assignment_of, partition_views
from .observability import Observability, Probes, ServiceMetrics
from .settings import Settings
from .tracing import Tracing

log = structlog.get_logger(__name__)

SERVICES = ("intake", "grading", "relisting", "ledger")
"""The pipeline's services, in the order a unit meets them (the connectors follow)."""

CONSUMERS = (*SERVICES, "connectors", "console")
"""Every Rebound service that consumes topics, each as its own consumer group: the pipeline's,
the storefront connectors, and the console's read models."""

PROCESSOR = "rebound_processor"
"""Where a running service keeps its batch processor: in the broker's context (set at start)."""


@dataclass(frozen=True)
class Periodic:
    """Work a service does on a timer rather than on a message, e.g. a sweep. With `wake`, it runs
    as soon as the event is set (by whatever made work for it), at most once every
    `at_most_every_s`, and every `every_s` when nothing sets it."""

    name: str
    every_s: float
    run: Callable[[asyncpg.Pool, Settings, str], Awaitable[object]]  # (pool, settings, producer)
    wake: asyncio.Event | None = None
    at_most_every_s: float = 0.0


class Processor(Protocol):
    """What consumes a service's batches: `BatchProcessor` for the pipeline's services."""

    async def process(self, records: Sequence[Record]) -> BatchStats: ...


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    routes: Sequence[Route]
    lock_keys: LockKeys | None = None
    periodic: Sequence[Periodic] = ()
    after_batch: Callable[[BatchStats], None] | None = None
    """Called once a batch is applied and committed in PostgreSQL: e.g. to wake a periodic job
    for the work the batch made."""
    reads: Sequence[Topic] = ()
    """Topics consumed by `projector` instead of by routes (a read model's)."""
    projector: Callable[[str, Sequence[Topic], asyncpg.Pool, Settings], Processor] | None = None
    """Builds the batch processor of a service that keeps read models (consumer, topics, pool,
    settings); None: a `BatchProcessor` over the routes."""

    @property
    def group_id(self) -> str:
        return f"rebound-{self.name}"

    @property
    def topics(self) -> list[Topic]:
        return [route.topic for route in self.routes] + list(self.reads)


POLL_RETRY_S = 1.0
"""The pause after a poll that raised, before the next one."""

FETCHER_IDLE_WAKE_MS = 2000
"""How long aiokafka's fetcher task sleeps when nothing it waits on happens (`consumer_timeout_ms`,
200 ms by default). A fetch's answer, records taken, a seek, a pause or resume, a rebalance and a
metadata update each wake it at once; the timeout only bounds a sleep with none of them, and at
200 ms it woke an idle consumer five times a second to find nothing to do."""

PROGRESS_CHECK_S = 5.0
"""How often a service compares its consumer's positions with what its fetches say waits."""


async def watch_progress(
    watch: ProgressWatch, consumer: Callable[[], Any], probes: Probes, metrics: ServiceMetrics
) -> None:
    """Every PROGRESS_CHECK_S, which partitions stand still while records wait (`messaging.progress`):
    while any does, /ready fails and `rebound_consumer_stalled_partitions` counts them;
    `consumer_stalled` is logged when a partition stalls, `consumer_moving` when none is left."""
    stalled: set[TopicPartition] = set()
    failing: str | None = None
    while True:
        await asyncio.sleep(PROGRESS_CHECK_S)
        try:
            current = consumer()
            stalls = [] if current is None else watch.check(partition_views(current), assignment_of(current))
        except Exception as error:  # a library that changed its internals: said once, never a crash
            if (why := f"{type(error).__name__}: {error}") != failing:
                log.exception("progress_watch_failed")
            failing = why
            probes.stalls, stalled = [], set()  # nothing known, nothing reported: /ready is not held
            metrics.stalled_partitions.set(0)
            continue
        failing = None
        probes.stalls = stalls
        metrics.stalled_partitions.set(len(stalls))
        now = {stall.tp for stall in stalls}
        if now - stalled:
            log.error("consumer_stalled", partitions=[stall.describe() for stall in stalls])
        elif stalled and not now:
            log.info("consumer_moving")
        stalled = now


@dataclass
class PollErrors:
    """What a consumer's polls raised in a row. aiokafka raises from every poll an error that one
    of its background tasks met and did not retry: e.g. a committed-offset fetch answered
    COORDINATOR_NOT_AVAILABLE by a broker that is stopping ends the task that serves those
    fetches, and the fetcher then waits on it for good; every poll raises the same error and no
    record is read again until the group rebalances. The second error in a row makes the
    consumer rejoin its group, which starts those tasks afresh."""

    in_a_row: int = 0
    on_failed: Callable[[bool], None] | None = None
    """Told of each failed poll, and whether it made the consumer rejoin (the service's metrics)."""

    def failed(self, consumer: Any, error: KafkaError) -> None:
        self.in_a_row += 1
        rejoin = self.in_a_row >= 2
        log.warning(
            "kafka_poll_failed", error=f"{type(error).__name__}: {error}", in_a_row=self.in_a_row, rejoin=rejoin
        )
        if rejoin:
            # aiokafka has no public call for it (docs/decisions/0002-patched-library-internals.md)
            consumer._coordinator.request_rejoin()
            self.in_a_row = 0
        if self.on_failed is not None:
            self.on_failed(rejoin)


@dataclass
class FetchHold:
    """How long the broker may hold a consumer's next fetch: `idle_ms` after a fetch that brought
    nothing while no fetched record waits to be taken, `busy_ms` otherwise. A held fetch ends as
    soon as a record (or a commit) arrives on any partition it asks for, so a long hold costs an
    idle consumer's records nothing; but aiokafka keeps one fetch in flight per broker, and a
    partition whose records wait to be taken is left out of it: held long, that partition would
    not be fetched again until another one's records, or the hold's end. Hence long holds only
    after an empty fetch with nothing waiting, when every partition is in the next one.

    aiokafka holds every fetch the same time; its fetcher is patched for this
    (docs/decisions/0002-patched-library-internals.md)."""

    busy_ms: int
    idle_ms: int
    _fetcher: Any = None

    @staticmethod
    def check() -> None:
        """Raise if aiokafka's fetcher no longer has what `apply` patches."""
        source = inspect.getsource(Fetcher._get_actions_per_node)
        if not hasattr(Fetcher, "_proc_fetch_request") or "self._fetch_max_wait_ms" not in source:
            raise RuntimeError("aiokafka's Fetcher changed: see FetchHold in services/rebound/service.py")

    def apply(self, consumer: Any) -> None:
        """Patch `consumer`'s fetcher, once per fetcher (a consumer started again has a new one)."""
        if self.idle_ms <= self.busy_ms or consumer._fetcher is self._fetcher:
            return
        fetcher = consumer._fetcher
        fetch = fetcher._proc_fetch_request

        async def held(assignment: Any, node_id: int, request: Any) -> bool:
            brought = await fetch(assignment, node_id, request)
            fetcher._fetch_max_wait_ms = self.busy_ms if brought or fetcher._records else self.idle_ms
            return bool(brought)

        fetcher._proc_fetch_request = held
        fetcher._fetch_max_wait_ms = self.busy_ms
        self._fetcher = fetcher


async def _poll(subscriber: Any, errors: PollErrors, hold: FetchHold, consumer: Any) -> tuple[Any, ...]:
    """One poll of aiokafka's `consumer` for FastStream's batch `subscriber`: returns as soon as
    records arrive, or empty after `batch_timeout_ms`. FastStream's own poll also sleeps
    `batch_timeout_ms` after an empty one, and a record that arrives during that sleep waits it
    out: on a quiet topic, up to that long added to every hop. A poll that raises is logged
    here (FastStream's own log of it is off with its logger) and answered by `errors`. The
    consumer's fetches are held as `hold` says."""
    hold.apply(consumer)
    try:
        batches = await consumer.getmany(timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records)
    except KafkaError as error:
        errors.failed(consumer, error)
        await asyncio.sleep(POLL_RETRY_S)
        return ()
    errors.in_a_row = 0
    return tuple(chain.from_iterable(batches.values()))


async def _records_only(
    message: Any, original_parser: Callable[[Any], Awaitable[Any]]
) -> Any:  # FastStream's parser hook
    """Parse without touching headers or bodies: the processor reads the raw records itself,
    so a header that is not UTF-8 can never stop the partition."""
    records = message if isinstance(message, tuple) else (message,)
    bare = tuple(dataclasses.replace(r, headers=()) for r in records)
    parsed = await original_parser(bare if isinstance(message, tuple) else bare[0])
    parsed.raw_message = records
    return parsed


async def _the_message(message: KafkaMessage) -> KafkaMessage:
    """The decoder: the handler is given the message itself (its raw records, its consumer),
    without FastStream resolving arguments for it. Resolving the handler's `KafkaMessage`
    argument through its dependency injection ran a thread-pool call for every batch."""
    return message


async def _every(job: Periodic, pool: asyncpg.Pool, settings: Settings, producer: str) -> None:
    last = -float("inf")
    while True:
        if job.wake is None:
            await asyncio.sleep(job.every_s)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(job.wake.wait(), job.every_s)
            if (gap := last + job.at_most_every_s - time.monotonic()) > 0:
                await asyncio.sleep(gap)
            job.wake.clear()  # what woke it meanwhile is in this run
            last = time.monotonic()
        try:
            await job.run(pool, settings, producer)
        except (KafkaError, *TRANSIENT_ERRORS) as error:
            log.warning("periodic_job_retry", job=job.name, error=f"{type(error).__name__}: {error}")
        except asyncio.CancelledError:
            if being_cancelled():  # the service stops
                raise
            log.exception("periodic_job_failed", job=job.name)
        except Exception:  # a failing sweep must not take the consumer down
            log.exception("periodic_job_failed", job=job.name)


async def prune_inbox(pool: asyncpg.Pool, settings: Settings, consumer: str) -> int:
    """Keep the inbox bounded: see `inbox.prune` for which rows may go. Below what Kafka can still
    deliver means below the partition's log start offset (retention deleted the rest) and below the
    group's committed offset: a group whose offsets expired re-reads from the earliest offset, and
    every record it can read still has its row."""
    options = kafka_options(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **options)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(consumer)
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    if not committed:
        return 0
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, **options)
    await reader.start()
    try:
        starts = await reader.beginning_offsets(list(committed))
    finally:
        await stop_consumer(reader)
    below = {(tp.topic, tp.partition): min(offset, starts[tp]) for tp, offset in committed.items()}
    async with pool.acquire() as conn:
        deleted = await inbox.prune(conn, consumer, below, settings.inbox_retention_s)
    return deleted


class PatientKafkaBroker(KafkaBroker):
    """A broker whose start waits for Kafka: the start-up waits for Kafka before the broker
    connects, but the broker can still go away in between or while the consumer joins its group
    (a crash or restart); then the start is undone and tried again with back-off, instead of the
    process exiting."""

    async def start(self) -> None:
        delay = 0.2
        while True:
            try:
                await super().start()
                return
            except Exception as error:
                if not kafka_away(error):
                    raise
                log.warning("kafka_unavailable", error=kafka_error_text(error), retry_in_s=round(delay, 2))
                with contextlib.suppress(Exception):
                    await self.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def build_app(spec: ServiceSpec, settings: Settings) -> FastStream:
    # On SIGTERM the in-flight batch finishes (and is acknowledged) before the consumer leaves.
    broker = PatientKafkaBroker(
        # A list: FastStream takes a string for one server, where aiokafka splits it at commas.
        [server.strip() for server in settings.kafka_bootstrap_servers.split(",")],
        logger=None,
        graceful_timeout=30.0,
        security=kafka_security(settings),
        apply_types=False,
    )
    committer = OffsetCommitter(settings.commit_interval_ms / 1000)
    observability = Observability(spec.group_id, spec.topics, settings)
    metrics = observability.metrics

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        structlog.contextvars.bind_contextvars(service=spec.name)
        log.info(
            "service_starting",
            kafka=settings.kafka_bootstrap_servers,
            kafka_security=settings.kafka_security_protocol,
            kafka_user=settings.kafka_sasl_username,
            database=settings.redacted_database_url(),
        )
        await observability.start()  # /health answers while the service still waits for Kafka or PostgreSQL
        install_state_dump(asyncio.get_running_loop(), lambda: subscriber.consumer)
        # A service may start before Kafka or PostgreSQL: it waits for them, logging each retry.
        kafka = kafka_options(settings)
        database = database_connect_kwargs(settings)
        await ensure_topics(settings.kafka_bootstrap_servers, wait_seconds=float("inf"), kafka_options=kafka)
        pool = await create_pool(
            settings.database_url, max_size=settings.pool_size, wait_seconds=float("inf"), connect_kwargs=database
        )
        await migrate(pool)
        observability.probes.pool = pool
        tracer = Tracing(spec.name, settings.otlp_endpoint)
        relay = OutboxRelay(
            settings.database_url,
            settings.kafka_bootstrap_servers,
            spec.group_id,
            batch_size=settings.relay_batch_size,
            batch_bytes=settings.relay_batch_bytes,
            on_published=metrics.record_published,
            kafka_options=kafka,
            database_kwargs=database,
            on_blocked=metrics.set_relay_blocked,
        )
        processor: Processor
        if spec.projector is not None:
            processor = spec.projector(spec.group_id, spec.reads, pool, settings)
        else:
            processor = BatchProcessor(
                spec.group_id,
                spec.routes,
                pool,
                max_message_bytes=settings.max_message_bytes,
                lock_keys=spec.lock_keys,
                max_locks=settings.max_locks_per_transaction,
                tracing=tracer,
                relay=relay,
            )
        broker.context.set_global(PROCESSOR, processor)
        committer.start()
        tasks = [asyncio.create_task(relay.run(), name=f"{spec.name}-relay")]
        jobs = [*spec.periodic, Periodic("prune-inbox", settings.inbox_prune_every_s, prune_inbox)]
        tasks += [asyncio.create_task(_every(job, pool, settings, spec.group_id), name=job.name) for job in jobs]
        watch = ProgressWatch(settings.stall_after_s)
        tasks.append(
            asyncio.create_task(
                watch_progress(watch, lambda: subscriber.consumer, observability.probes, metrics),
                name="progress-watch",
            )
        )
        log.info("service_started", topics=[t.name for t in spec.topics], group_id=spec.group_id)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await observability.stop()
            tracer.shutdown()
            await pool.close()
            log.info("service_stopped")

    subscriber = broker.subscriber(
        *[topic.name for topic in spec.topics],
        group_id=spec.group_id,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_wait_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_max_bytes=settings.fetch_max_bytes,
        consumer_timeout_ms=FETCHER_IDLE_WAKE_MS,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        ack_policy=AckPolicy.MANUAL,  # offsets are committed only after the database transaction
        parser=_records_only,
        decoder=_the_message,
    )
    # A library internal replaced on purpose (docs/decisions/0002-patched-library-internals.md)
    errors = PollErrors(on_failed=metrics.record_poll_failure)
    FetchHold.check()
    hold = FetchHold(busy_ms=settings.fetch_max_wait_ms, idle_ms=settings.idle_fetch_wait_ms)
    subscriber.get_msg = functools.partial(_poll, subscriber, errors, hold)  # type: ignore[method-assign]
    observability.probes.assignment = lambda: None if subscriber.consumer is None else subscriber.consumer.assignment()

    @subscriber
    async def on_batch(message: KafkaMessage) -> None:
        processor: Processor = broker.context.get(PROCESSOR)
        records = message.raw_message
        started = time.perf_counter()
        try:
            stats = await processor.process(records)
        except Exception:  # never let FastStream move past a batch not applied
            metrics.batches_failed.inc()
            log.exception("batch_not_applied", records=len(records))
            with contextlib.suppress(Exception):
                await message.nack()  # seeks back: the same records come again
            await asyncio.sleep(1.0)
            return
        metrics.record_batch(stats, time.perf_counter() - started, datetime.now(UTC))
        if spec.after_batch is not None:
            spec.after_batch(stats)
        # Applied and committed in PostgreSQL; the offsets follow in the background.
        # FastStream types the consumer as its own protocol; it is aiokafka's, which commits offsets
        await committer.note(message.consumer, records)  # type: ignore[arg-type]
        log.debug(
            "batch_applied",
            records=len(records),
            applied=stats.applied,
            duplicates=stats.duplicates,
            dead_lettered=stats.dead_lettered,
            parked=stats.parked,
            exceptions=stats.exceptions,
        )

    # Before the broker stops: from then on each batch still in flight commits its offsets itself.
    return FastStream(broker, lifespan=lifespan, logger=None, on_shutdown=[committer.stop])
