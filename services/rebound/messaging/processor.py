"""The batch consumer shared by every service.

A batch of Kafka records is decoded, and then applied in ONE PostgreSQL transaction: for each
record its inbox row, the handler's state changes and the events they cause (outbox rows).
Kafka offsets are committed only after that transaction, so a crash anywhere re-delivers the
batch and the inbox turns the replay into a no-op. Records that cannot be read are dead-lettered
through the same outbox; valid records that cannot be applied become operator exceptions. Either
way the partition moves on.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from uuid import UUID

import asyncpg
import orjson
import structlog
from pydantic import BaseModel, ValidationError

from rebound_contracts import ExceptionRaised, MessageDeadLettered, MessageSource, TenantEvent, Topic
from rebound_contracts.outbound import DeadLetterKind, ExceptionKind
from rebound_contracts.topics import DLQ, EXCEPTIONS

from .. import tracing
from ..db import RESOURCE_ERRORS, Connection, TRANSIENT_ERRORS
from ..tracing import Tracing
from . import inbox
from .outbox import OutboxBuffer

log = structlog.get_logger(__name__)

DLQ_RAW_LIMIT = 64 * 1024  # bytes of an oversized message kept in its dead letter
SELLER_ID_LIMIT = 128  # the contract's longest identifier: a longer one names no seller
_TICK = timedelta(microseconds=1)


class Record(Protocol):
    """What the processor needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Context:
    """What a handler gets besides its event: the open transaction and where to put events."""

    conn: Connection
    outbox: OutboxBuffer
    source: MessageSource
    now: datetime
    event: TenantEvent
    exceptions_raised: int = 0
    traceparent: str | None = None
    """The trace context the events this handler emits carry (see `rebound.tracing`)."""

    def emit(self, topic: Topic, message: BaseModel) -> None:
        self.outbox.add(topic, message, self.traceparent)

    def raise_exception(self, kind: ExceptionKind, detail: str, *, lpn: str | None = None) -> None:
        """Report valid-but-wrong input to operators, with the original event (and the unit of it
        the exception is about, if one)."""
        event = self.event
        exception = ExceptionRaised(
            event_id=exception_event_id(self.source, f"{kind}#{self.exceptions_raised}"),
            occurred_at=self.now,
            seller_id=event.seller_id,
            kind=kind,
            detail=detail,
            source=self.source,
            source_event_id=event.event_id,
            original=event.model_dump(mode="json"),
            lpn=lpn,
        )
        structlog.get_logger("rebound.exceptions").warning(
            "exception_raised",
            kind=kind,
            detail=detail,
            event_id=str(exception.source_event_id),
            seller_id=exception.seller_id,
            topic=self.source.topic,
            partition=self.source.partition,
            offset=self.source.offset,
        )
        self.emit(EXCEPTIONS, exception)
        self.exceptions_raised += 1


E = TypeVar("E", bound=TenantEvent)
R = TypeVar("R")

LockKeys = Callable[[Any], Iterable[str]]
"""`lock_keys(event)`: the advisory locks one of the service's own routes' events needs (typed as
its handlers take it); a batch takes its events' locks first, in one order."""

MAX_LOCKS_PER_TRANSACTION = 512
"""Advisory locks one transaction takes at most, whatever its batch: a batch that needs more is
applied in consecutive transactions (an event needing more than this alone gets one of its own).
PostgreSQL's lock table holds `max_locks_per_transaction` (64) × `max_connections` locks for the
whole server; past it every transaction fails with "out of shared memory"."""

ANSWER_TIMEOUT_S = 5.0
"""How long a database that let a statement time out has to answer `SELECT true` for the timeout
to count against the batch (otherwise the database is taken for unreachable, and waited for)."""

ATTEMPTS_BEFORE_SETTING_ASIDE = 3
"""Tries of a batch that fails for want of resources (statement or lock timeout, out of shared
memory) before it is split in halves, and of one record before it is parked."""


class LocalRelay(Protocol):
    """The relay of this process's producer (`OutboxRelay`)."""

    @property
    def leading(self) -> bool: ...

    def wake(self) -> None: ...


@runtime_checkable
class Prefetching(Protocol):
    """A repository that reads what a batch's events need in a few statements, before they are
    applied one by one, instead of row by row as each is applied."""

    async def prefetch(self, events: Sequence[Any]) -> None: ...


@runtime_checkable
class Flushing(Protocol):
    """A repository that defers writes to the batch's end."""

    async def flush(self) -> None: ...


@dataclass(frozen=True)
class Route(Generic[E, R]):
    """One consumed topic: its contract, the handler that applies its events
    (`handle(ctx, event, repository)`, inside the batch's transaction), and how to build the
    repository the handler works on from the transaction's connection. mypy holds the three to
    one event type and one repository type."""

    topic: Topic[E]
    handle: Callable[[Context, E, R], Awaitable[None]]
    repository: Callable[[Connection], R]


@dataclass
class Decoded:
    record: Record
    route: Route[Any, Any] | None
    event: TenantEvent | None = None
    digest: bytes = b""
    failure: tuple[DeadLetterKind, str] | None = None
    parked: str | None = None
    """Why this valid record is set aside (`rebound.parked_records`) instead of applied."""
    seller_id: str | None = None
    event_id: str | None = None
    """The document's event_id as sent, when it is a string (for the logs of an unreadable record)."""

    @property
    def source(self) -> MessageSource:
        r = self.record
        return MessageSource(topic=r.topic, partition=r.partition, offset=r.offset)


@dataclass
class TopicStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    exceptions: int = 0
    parked: int = 0


@dataclass
class BatchStats:
    """What a batch did, per consumed topic; the totals are sums over the topics."""

    by_topic: dict[str, TopicStats] = field(default_factory=dict)
    outbox_rows: int = 0
    # One per outbox row a handler wrote: (its topic, occurred_at of the consumed event behind it).
    emitted: list[tuple[str, datetime]] = field(default_factory=list)

    def of(self, topic: str) -> TopicStats:
        return self.by_topic.setdefault(topic, TopicStats())

    def _total(self, name: str) -> int:
        return sum(getattr(stats, name) for stats in self.by_topic.values())

    @property
    def applied(self) -> int:
        return self._total("applied")

    @property
    def duplicates(self) -> int:
        return self._total("duplicates")

    @property
    def dead_lettered(self) -> int:
        return self._total("dead_lettered")

    @property
    def exceptions(self) -> int:
        return self._total("exceptions")

    @property
    def parked(self) -> int:
        return self._total("parked")


def _validation_summary(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(record: Record, route: Route[Any, Any] | None, max_bytes: int) -> Decoded:
    """Turn a record into its contract model, or say precisely why it cannot be read. Never
    raises: whatever fails on the way dead-letters the record, never its batch."""
    item = Decoded(record=record, route=route)
    try:
        return _decode(item, max_bytes)
    except Exception as error:  # an input no rule above foresaw
        log.exception("decoding_failed", topic=record.topic, partition=record.partition, offset=record.offset)
        return Decoded(
            record=record,
            route=route,
            seller_id=item.seller_id,
            event_id=item.event_id,
            failure=("processing_failed", f"while decoding: {type(error).__name__}: {error}"),
        )


def _decode(item: Decoded, max_bytes: int) -> Decoded:
    record, route = item.record, item.route
    raw = record.value or b""
    if route is None:
        item.failure = ("schema_violation", f"no route for topic {record.topic}")
        return item
    if len(raw) > max_bytes:
        item.failure = ("oversized", f"{len(raw)} bytes, the limit is {max_bytes}")
        return item
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        item.failure = ("invalid_json", f"not UTF-8 JSON: {error}")
        return item
    if not isinstance(document, dict):
        item.failure = ("schema_violation", "the message must be a JSON object")
        return item
    seller = document.get("seller_id")
    item.seller_id = seller if isinstance(seller, str) and len(seller) <= SELLER_ID_LIMIT else None
    event_id = document.get("event_id")
    item.event_id = event_id[:64] if isinstance(event_id, str) else None
    try:
        item.event = route.topic.model.model_validate(document)
    except ValidationError as error:
        item.failure = ("schema_violation", _validation_summary(error))
        return item
    item.digest = inbox.fingerprint(document)
    return item


def dead_letter(
    item: Decoded, consumer: str, now: datetime, failure: tuple[DeadLetterKind, str] | None = None
) -> MessageDeadLettered:
    kind, error = failure or item.failure or ("processing_failed", "unknown")
    raw = item.record.value or b""
    kept = raw[:DLQ_RAW_LIMIT]
    key = item.record.key.decode("utf-8", "replace") if item.record.key is not None else None
    return MessageDeadLettered(
        event_id=inbox.position_id(item.record.topic, item.record.partition, item.record.offset),
        occurred_at=now,
        seller_id=item.seller_id,
        kind=kind,
        error=error,
        source=item.source,
        key=key,
        raw_base64=base64.b64encode(kept).decode("ascii"),
        raw_size=len(raw),
        truncated=len(kept) < len(raw),
        consumer=consumer,
    )


class _Strained(Exception):
    """A resource error raised inside a batch's transaction (not while connecting)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class BatchProcessor:
    """Applies batches of records for one consumer group, exactly once per event."""

    def __init__(
        self,
        consumer: str,
        routes: Iterable[Route[Any, Any]],
        pool: asyncpg.Pool,
        *,
        max_message_bytes: int = 256 * 1024,
        lock_keys: LockKeys | None = None,
        max_locks: int = MAX_LOCKS_PER_TRANSACTION,
        attempts: int = ATTEMPTS_BEFORE_SETTING_ASIDE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tracing: Tracing | None = None,
        relay: LocalRelay | None = None,
    ) -> None:
        self.consumer = consumer
        # While it leads, the relay is woken here once a batch's rows are committed, instead of
        # by a notification through PostgreSQL (see outbox.INSERT_AND_NOTIFY).
        self.relay = relay
        self.tracing = tracing or Tracing(consumer)
        self.routes = {route.topic.name: route for route in routes}
        self.pool = pool
        self.max_message_bytes = max_message_bytes
        self.lock_keys = lock_keys
        self.max_locks = max_locks
        self.attempts = attempts
        self.clock = clock
        self._registered: set[str] = set()  # sellers known to be registered

    async def process(self, records: Sequence[Record]) -> BatchStats:
        items = [decode(r, self.routes.get(r.topic), self.max_message_bytes) for r in records]
        total = BatchStats()
        for part in self._within_lock_budget(items):
            _merge(total, await self._apply_or_split(part))
        return total

    def _within_lock_budget(self, items: list[Decoded]) -> list[list[Decoded]]:
        """Consecutive parts of the batch whose events need at most `max_locks` advisory locks."""
        if self.lock_keys is None:
            return [items]
        parts: list[list[Decoded]] = [[]]
        held: set[str] = set()
        for item in items:
            needed = set(self.lock_keys(item.event)) if item.event is not None else set()
            if parts[-1] and len(held | needed) > self.max_locks:
                parts.append([])
                held = set()
            parts[-1].append(item)
            held |= needed
        return parts

    async def _apply_or_split(self, items: list[Decoded], attempts: int | None = None) -> BatchStats:
        """Apply `items` in one transaction. When that fails (for want of resources after a few
        tries, at once for anything else that is not transient), apply each half the same way,
        down to one record, which is then parked or dead-lettered: the rest of the batch goes on,
        and finding the record at fault takes a logarithmic number of transactions."""
        tries = attempts if attempts is not None else self.attempts
        try:
            return await self._with_retry(items, attempts=tries)
        except Exception as error:  # noqa: BLE001 — not transient, whatever it is: isolate what fails
            if len(items) == 1:
                return await self._set_aside(items[0], error)
            log.warning(
                "batch_failed_splitting",
                consumer=self.consumer,
                size=len(items),
                error=f"{type(error).__name__}: {error}",
            )
        half = len(items) // 2
        total = BatchStats()
        for part in (items[:half], items[half:]):
            # A part of a failed batch is tried once; a record alone as often as a whole batch.
            _merge(total, await self._apply_or_split(part, None if len(part) == 1 else 1))
        return total

    async def _set_aside(self, item: Decoded, error: Exception) -> BatchStats:
        """A record that failed alone. Valid and short of resources: parked, kept for `rebound
        parked retry`. Anything else: dead-lettered; if even its dead letter cannot be stored, a
        dead letter of only what this consumer wrote itself (the position, the error, the raw bytes
        in base64) is."""
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, RESOURCE_ERRORS) and item.event is not None and item.failure is None:
            return await self._with_retry([replace(item, parked=reason)])  # logged as record_parked
        log.error(
            "record_failed",
            consumer=self.consumer,
            topic=item.record.topic,
            partition=item.record.partition,
            offset=item.record.offset,
            exc_info=error,
        )
        letter = replace(item, event=None, failure=("processing_failed", reason))
        try:
            return await self._with_retry([letter])
        except Exception:  # its dead letter failed too: a bare one, of this consumer's own bytes
            log.exception(
                "dead_letter_failed",
                consumer=self.consumer,
                topic=item.record.topic,
                partition=item.record.partition,
                offset=item.record.offset,
            )
        kind, why = letter.failure or ("processing_failed", "unknown")
        bare = replace(
            letter,
            seller_id=None,
            event_id=None,
            failure=(kind, why.encode("ascii", "backslashreplace").decode("ascii")),
        )
        return await self._with_retry([bare])

    async def _with_retry(self, items: list[Decoded], *, attempts: int | None = None) -> BatchStats:
        """Apply `items` in one transaction. A connection that fails is retried until the database
        answers again; a failure for want of resources `attempts` times in all (None: without
        end), then raised."""
        delay, strained = 0.1, 0
        while True:
            try:
                async with self.pool.acquire() as conn:
                    try:
                        async with conn.transaction():
                            stats = await self._apply(conn, items)
                    except RESOURCE_ERRORS as error:
                        # Raised inside the transaction: the work was too much, not the connection.
                        raise _Strained(error) from error
                if stats.outbox_rows and self.relay is not None:
                    self.relay.wake()  # committed: the rows are there to read
                return stats
            except _Strained as strain:
                if isinstance(strain.error, asyncio.TimeoutError) and not await self._database_answers():
                    # The client's own timeout, with the database silent (a network partition, a
                    # half-open connection): not the batch's fault. Wait for the database.
                    log.warning("batch_retry", consumer=self.consumer, error="database not answering")
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                strained += 1
                if attempts is not None and strained >= attempts:
                    raise strain.error from None
                log.warning(
                    "batch_strained",
                    consumer=self.consumer,
                    size=len(items),
                    attempt=strained,
                    error=f"{type(strain.error).__name__}: {strain.error}",
                    retry_in_s=round(delay, 2),
                )
            except TRANSIENT_ERRORS as error:
                log.warning(
                    "batch_retry",
                    consumer=self.consumer,
                    error=f"{type(error).__name__}: {error}",
                    retry_in_s=round(delay, 2),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _database_answers(self) -> bool:
        """Whether the database answers a trivial query within `ANSWER_TIMEOUT_S`: tells a statement
        that was too slow from a database that cannot be reached."""
        try:
            async with self.pool.acquire(timeout=ANSWER_TIMEOUT_S) as conn:
                return await conn.fetchval("SELECT true", timeout=ANSWER_TIMEOUT_S) is True
        except Exception:  # noqa: BLE001 — whatever stops the query, the database is not answering
            return False

    async def _apply(self, conn: Connection, items: list[Decoded]) -> BatchStats:
        stats = BatchStats()
        outbox = OutboxBuffer(self.consumer)
        events = [item.event for item in items if item.event is not None]
        sellers = {e.seller_id for e in events}
        unseen = sellers - self._registered
        if unseen:
            # Sellers are registered, never removed: once seen, a seller need not be looked up again.
            self._registered |= {
                r["seller_id"]
                for r in await conn.fetch(
                    "SELECT seller_id FROM rebound.sellers WHERE seller_id = ANY($1::text[])", list(unseen)
                )
            }
        known = sellers & self._registered
        # What this attempt does with each item; the items themselves stay as decoded, so a
        # retry after a rollback starts from scratch.
        failures: dict[int, tuple[DeadLetterKind, str]] = {
            i: item.failure for i, item in enumerate(items) if item.failure is not None
        }
        duplicates: set[int] = set()
        parking = {i for i, item in enumerate(items) if item.parked is not None}
        readable = [(i, item.event) for i, item in enumerate(items) if item.event is not None and i not in parking]
        claims = await inbox.claim_all(
            conn,
            self.consumer,
            [
                (
                    event.seller_id,
                    event.event_id,
                    items[i].digest,
                    items[i].record.topic,
                    items[i].record.partition,
                    items[i].record.offset,
                )
                for i, event in readable
            ],
            # Taken by the claim's own statement, before anything of the batch is read.
            locks=[key for event in events for key in self.lock_keys(event)] if self.lock_keys else (),
        )
        # Read after the locks, and once per record, strictly increasing: the events of records
        # that share a lock are stamped in the order they were applied (the -1 and +1 of one
        # move share their record's stamp).
        now = self.clock()
        for (i, claimed), claim in zip(readable, claims, strict=True):
            if claim is inbox.Claim.DUPLICATE:
                duplicates.add(i)
            elif claim is inbox.Claim.CONFLICT:
                failures[i] = (
                    "conflicting_duplicate",
                    f"event_id {claimed.event_id} was already applied with other content",
                )
        # Dead letters and parked records are claimed by position, so a re-delivered record is
        # dead-lettered or parked once (a parked record's event_id stays free for its retry).
        unreadable = sorted(set(failures) | parking)
        letters = await inbox.claim_all(
            conn,
            self.consumer,
            [
                (
                    inbox.POSITION,
                    inbox.position_id(items[i].record.topic, items[i].record.partition, items[i].record.offset),
                    b"",
                    items[i].record.topic,
                    items[i].record.partition,
                    items[i].record.offset,
                )
                for i in unreadable
            ],
        )
        new_letters = {i for i, claim in zip(unreadable, letters, strict=True) if claim is inbox.Claim.NEW}
        # One repository per kind and batch, shared by the routes that build the same kind: a
        # repository caches what the batch wrote (e.g. a unit's latest grade), and two caches of
        # one unit would each believe they hold its latest state.
        repositories: dict[Callable[[Connection], Any], Any] = {}
        # A repository that can read what the batch's events need in a few statements is given
        # them all first (`Prefetching`), instead of reading row by row as each event is applied.
        applicable: dict[Callable[[Connection], Any], list[TenantEvent]] = {}
        for i, readable_event in readable:
            readable_route = items[i].route
            if i not in duplicates and i not in failures and readable_event.seller_id in known and readable_route:
                applicable.setdefault(readable_route.repository, []).append(readable_event)
        for build, batch_events in applicable.items():
            repositories[build] = repository = build(conn)
            if isinstance(repository, Prefetching):
                await repository.prefetch(batch_events)
        for i, item in enumerate(items):
            record = item.record
            if i in duplicates:
                stats.of(record.topic).duplicates += 1
                log.debug(
                    "duplicate_skipped",
                    event_id=str(item.event.event_id) if item.event is not None else None,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                )
                continue
            if i in parking:
                if i in new_letters:
                    await self._park(conn, outbox, item, now)
                    stats.of(record.topic).parked += 1
                    stats.of(record.topic).exceptions += 1
                continue
            if i in failures:
                if i in new_letters:
                    outbox.add(DLQ, dead_letter(item, self.consumer, now, failures[i]))
                    stats.of(record.topic).dead_lettered += 1
                    log.warning(
                        "dead_lettered",
                        kind=failures[i][0],
                        error=failures[i][1],
                        event_id=str(item.event.event_id) if item.event is not None else item.event_id,
                        seller_id=item.seller_id,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                continue
            # decoded and neither a duplicate nor a failure: it has its event and route
            event: TenantEvent | None = item.event
            route: Route[Any, Any] | None = item.route
            assert event is not None and route is not None
            now = max(self.clock(), now + _TICK)
            ctx = Context(conn=conn, outbox=outbox, source=item.source, now=now, event=event)
            written_before = len(outbox.rows)
            parent = tracing.of_record(getattr(record, "headers", None))
            with self.tracing.applying(
                record.topic,
                parent,
                {"rebound.seller_id": event.seller_id, "rebound.event_id": str(event.event_id)},
            ) as trace:
                ctx.traceparent = trace
                if event.seller_id not in known:
                    ctx.raise_exception("unknown_seller", f"seller {event.seller_id!r} is not registered")
                else:
                    build = route.repository
                    if build not in repositories:
                        repositories[build] = build(conn)
                    await route.handle(ctx, event, repositories[build])
            counts = stats.of(record.topic)
            counts.exceptions += ctx.exceptions_raised
            counts.applied += 1
            stats.emitted += [(row[1], event.occurred_at) for row in outbox.rows[written_before:]]
        for repository in repositories.values():  # writes a repository deferred to the batch's end
            if isinstance(repository, Flushing):
                await repository.flush()
        stats.outbox_rows = await outbox.flush(conn, notify=self.relay is None or not self.relay.leading)
        return stats

    async def _park(self, conn: Connection, outbox: OutboxBuffer, item: Decoded, now: datetime) -> None:
        """Keep a valid record that failed alone for want of resources, and report it."""
        record, event = item.record, item.event
        assert event is not None and record.value is not None and item.parked is not None
        await conn.execute(
            'INSERT INTO rebound.parked_records (consumer, topic, partition, "offset", seller_id, event_id,'
            " key, value, error, attempts, parked_at, last_tried_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING",
            self.consumer,
            record.topic,
            record.partition,
            record.offset,
            event.seller_id,
            event.event_id,
            record.key,
            record.value,
            item.parked,
            self.attempts,
            now,
        )
        ctx = Context(conn=conn, outbox=outbox, source=item.source, now=now, event=event)
        ctx.raise_exception(
            "processing_parked",
            f"{self.consumer} set this event aside after {self.attempts} failed attempts ({item.parked}); "
            f"`rebound parked retry {self.consumer}` applies it again",
        )
        log.warning(
            "record_parked",
            consumer=self.consumer,
            error=item.parked,
            event_id=str(event.event_id),
            seller_id=event.seller_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    async def retry_parked(self, positions: Sequence[tuple[str, int, int]] | None = None) -> list[Retried]:
        """Apply this consumer's parked records again (all, or those at `positions`), each alone
        and in position order. One that applies (or was applied meanwhile: a duplicate) is
        forgotten; one that fails again stays parked with its new error."""
        rows = await self.pool.fetch(
            'SELECT topic, partition, "offset", key, value FROM rebound.parked_records WHERE consumer = $1'
            ' ORDER BY topic, partition, "offset"',
            self.consumer,
        )
        wanted = set(positions) if positions is not None else None
        outcomes = []
        for row in rows:
            position = (row["topic"], row["partition"], row["offset"])
            if wanted is not None and position not in wanted:
                continue
            stored = StoredRecord(*position, row["key"], row["value"])
            item = decode(stored, self.routes.get(stored.topic), self.max_message_bytes)
            try:
                stats = await self._with_retry([item], attempts=self.attempts)
            except Exception as error:  # noqa: BLE001 — whatever it is, the record stays parked, with its error
                reason = f"{type(error).__name__}: {error}"
                await self.pool.execute(
                    "UPDATE rebound.parked_records SET attempts = attempts + $5, error = $6, last_tried_at = now()"
                    ' WHERE consumer = $1 AND topic = $2 AND partition = $3 AND "offset" = $4',
                    self.consumer,
                    *position,
                    self.attempts,
                    reason,
                )
                outcomes.append(Retried(*position, "parked", reason))
                continue
            await self.pool.execute(
                "DELETE FROM rebound.parked_records"
                ' WHERE consumer = $1 AND topic = $2 AND partition = $3 AND "offset" = $4',
                self.consumer,
                *position,
            )
            outcome = "applied" if stats.applied else "duplicate" if stats.duplicates else "dead-lettered"
            outcomes.append(Retried(*position, outcome, ""))
        return outcomes


@dataclass
class StoredRecord:
    """A record kept by Rebound (a parked one), as the processor reads records."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Retried:
    """What became of a parked record when it was applied again."""

    topic: str
    partition: int
    offset: int
    outcome: str
    """applied, duplicate (applied meanwhile), dead-lettered, or parked (failed again)"""
    error: str


def _merge(total: BatchStats, part: BatchStats) -> None:
    for topic, counts in part.by_topic.items():
        into = total.of(topic)
        for name in (f.name for f in fields(TopicStats)):
            setattr(into, name, getattr(into, name) + getattr(counts, name))
    total.outbox_rows += part.outbox_rows
    total.emitted += part.emitted


def exception_event_id(source: MessageSource, kind: str) -> UUID:
    """Deterministic, so a re-delivered record raises the same exception id."""
    return inbox.position_id(f"{source.topic}#{kind}", source.partition, source.offset)
