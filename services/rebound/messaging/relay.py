"""The outbox relay: moves outbox rows to Kafka, exactly once or at least once as their topic says.

One relay per producer is active (a PostgreSQL advisory lock elects it among replicas); its
transactional id fences any zombie, and it writes its bookkeeping through the very session that
holds the lock, so a relay that lost its leadership cannot write any more.

Rows of an exactly-once topic (`Topic.at_least_once` false: stock adjustments, listings,
exceptions...) are sent in a Kafka transaction. Before that transaction commits, the batch is
recorded as *in doubt* with the offset of one of its records; after it commits, the rows are
deleted (by the statement that reads the next batch). A relay that starts after a crash finds the
in-doubt batch and reads the probe offset back with read_committed: visible means the transaction
committed (delete the rows), invisible means it was aborted (send them again). So each row reaches
the topic once, whichever moment the crash hit. The probe is first read with read_uncommitted: it
must still be there, and be the batch's record (retention may have deleted it, an unclean leader
election truncated it). If it is not, nothing can tell which happened: the relay never guesses,
publishes nothing more for its producer, and waits for an operator's word (`rebound relay
settle`), reported by `relay_in_doubt_unresolved` and the `rebound_relay_blocked` gauge.

Rows of an at-least-once topic (grades, dispositions, receipts: records Rebound's own consumers
read, and drop when repeated, by `event_id`, through their inboxes) are sent first, by an
idempotent producer without a transaction, and the batch goes on once the broker has acknowledged
them. A crash before they are deleted sends them again: a repeat, never a loss. A one-record
transaction costs about seven times the CPU of an acknowledged send (broker and client
together), and every unit passes three relays on its way to its stock adjustment.

Fault injection (tests only, off unless set): REBOUND_FAULT_RELAY_KILL_AFTER_COMMIT=N makes the
relay SIGKILL its own process once its N-th batch (counted from the process's start) is out — its
Kafka transaction committed, its at-least-once records acknowledged — and before that batch's rows
are deleted: the in-doubt window. REBOUND_FAULT_RELAY_KILL_BEFORE_COMMIT=N kills it in its N-th
Kafka transaction once the batch is recorded in doubt, before the commit: the transaction is then
aborted (by the successor's fencing) and recovery must send the rows again. The fault scenarios use
both to prove the recovery above; a deployment never sets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
import zlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from enum import Enum
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer import sender as aiokafka_sender

from rebound_contracts import ALL_TOPICS

from .. import tracing
from ..connections import being_cancelled, stop_consumer
from ..db import Connection, TRANSIENT_ERRORS, with_dead_peer_settings
from .outbox import NOTIFY_CHANNEL, notify_channel

log = structlog.get_logger(__name__)

HEADER = "rebound-outbox-id"

CONCURRENT_TRANSACTIONS_RETRY_S = 0.002
"""How soon a transaction's first AddPartitionsToTxn is retried when the coordinator answers
CONCURRENT_TRANSACTIONS because the previous transaction's commit markers are still being written
(KAFKA-5477). aiokafka waits a fixed 20 ms (`sender.BACKOFF_OVERRIDE`), but a relay with rows
waiting begins its next transaction right after a commit: back to back on the local broker, one
transaction in four met the markers and waited those 20 ms, though they take about a millisecond."""


def shorten_concurrent_transactions_retry() -> None:
    """Set aiokafka's retry delay after CONCURRENT_TRANSACTIONS to CONCURRENT_TRANSACTIONS_RETRY_S
    for every transactional producer of this process (a module constant: there is no option)."""
    if not hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):
        raise RuntimeError("aiokafka.producer.sender.BACKOFF_OVERRIDE is gone: see CONCURRENT_TRANSACTIONS_RETRY_S")
    aiokafka_sender.BACKOFF_OVERRIDE = CONCURRENT_TRANSACTIONS_RETRY_S


AT_LEAST_ONCE_TOPICS = frozenset(topic.name for topic in ALL_TOPICS if topic.at_least_once)
"""The registry's topics a relay publishes without a transaction (see the module's docstring)."""


def _headers(row: asyncpg.Record) -> list[tuple[str, bytes]]:
    headers = [(HEADER, str(row["id"]).encode())]
    if row["traceparent"]:
        headers.append((tracing.HEADER, row["traceparent"].encode()))
    return headers


@functools.lru_cache(maxsize=65536)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's murmur2) picks for `key`, so records
    land where any other client would put them. Cached: stock keys repeat batch after batch."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def _send_in_batches(producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> list[tuple[asyncio.Future, int]]:
    """Queue the rows as one record batch per partition (a full batch is sent and a new one
    begun), in row order within each partition. Returns each batch's delivery future with the
    outbox id of its first record. A record appended to a batch costs a fraction of what
    `producer.send` costs per record: no future, no partitioner call, no accumulator lookup."""
    partitions: dict[str, int] = {}
    open_batches: dict[tuple[str, int], tuple[Any, int]] = {}
    sent: list[tuple[asyncio.Future, int]] = []
    for row in rows:
        topic = row["topic"]
        if topic not in partitions:
            partitions[topic] = len(await producer.partitions_for(topic))
        key, value, headers = row["key"].encode(), bytes(row["payload"]), _headers(row)
        target = (topic, partition_of(key, partitions[topic]))
        if target in open_batches:
            batch, first_id = open_batches[target]
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is not None:
                continue
            # Full: send it, and begin a new one with this row.
            sent.append((await producer.send_batch(batch, topic, partition=target[1]), first_id))
        batch = producer.create_batch()
        batch.append(key=key, value=value, timestamp=None, headers=headers)  # an empty batch takes any record
        open_batches[target] = (batch, row["id"])
    for (topic, partition), (batch, first_id) in open_batches.items():
        sent.append((await producer.send_batch(batch, topic, partition=partition), first_id))
    return sent


DELETE_SENT = (
    "DELETE FROM rebound.outbox WHERE producer = $2 AND id BETWEEN $3 AND $4 AND id = ANY($1::bigint[])"
    " AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'"
)
"""Deletes a sent batch's rows ($1, of producer $2, ids $3 to $4): the part of `FORGET` and
`NEXT_BATCH` that forgets the rows. Its transaction commits without waiting for the WAL to reach
the disk (`synchronous_commit` off for it alone): forgetting needs no durability of its own. If a
crash of PostgreSQL loses it, the rows and the in-doubt record come back, and the relay does what
it does after any crash: an at-least-once batch is sent again (a repeat the inboxes skip), an
in-doubt one is probed and found committed. Nothing durable can follow it without it: the next
in-doubt record is a synchronous commit, which flushes the WAL written before it."""

FORGET = f"WITH sent AS ({DELETE_SENT}) DELETE FROM rebound.relay_in_doubt WHERE producer = $2"
"""Deletes a sent batch's rows ($1) and its in-doubt record: one statement, so one round trip, and
atomic. The producer and the batch's id range bound the scan of the (producer, id) index to the
batch. With the ids alone PostgreSQL chose that index too, and read all of it for each id: with
150,000 other rows in it (a wave's backlog, or its deleted rows before vacuum), forgetting 250
rows took 0.6 s."""

IN_DOUBT = "SELECT * FROM rebound.relay_in_doubt WHERE producer = $1"

NEXT_BATCH = (
    f"WITH sent AS ({DELETE_SENT}),"
    " settled AS (DELETE FROM rebound.relay_in_doubt WHERE producer = $2 AND cardinality($1::bigint[]) > 0)"
    " SELECT id, topic, key, payload, traceparent FROM ("
    " SELECT id, topic, key, payload, traceparent,"
    " sum(octet_length(payload)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS upto"
    " FROM rebound.outbox WHERE producer = $2 AND id <> ALL($1::bigint[]) ORDER BY id LIMIT $5"
    ") AS batch WHERE upto <= $6 OR upto = octet_length(payload) ORDER BY id"
)
"""Forgets the batch sent last ($1, as FORGET does) and reads the next one, in one statement: the
rows of a committed batch are deleted by the relay's next read, not by a round trip of their own.
The read sees the table as it was before the delete, so it leaves out the forgotten ids itself.
Until that read the batch stays recorded as in doubt, which is what a crash in between needs."""

FAULT_KILL_AFTER_COMMIT = "REBOUND_FAULT_RELAY_KILL_AFTER_COMMIT"
FAULT_KILL_BEFORE_COMMIT = "REBOUND_FAULT_RELAY_KILL_BEFORE_COMMIT"


def _fault_switch(name: str) -> int:
    """A fault-injection switch: kill at the N-th batch (0: off). Not a setting."""
    nth = int(os.environ.get(name) or 0)
    if nth < 0:
        raise ValueError(f"{name}={nth}: the number of a batch, or 0 (off)")
    return nth


FORGET_WITHIN_S = 0.5
"""A batch sent is forgotten (its rows deleted, its in-doubt record too) by the read the next
notification brings, or this long after it was sent if none comes sooner."""

FORGET_ON_STOP_S = 2.0
"""How long a stopping relay waits for the database to forget its last batch."""

UNRESOLVED_POLL_S = 5.0
"""How often a relay waiting for an operator's word on its in-doubt batch looks for it."""

REPROBE_S = 30.0
"""How often a relay waiting for an operator's word reads its probe record again: one that could
not be read (Kafka refusing, a topic away) and can now settles the batch without the operator."""

PROBE_FAILING_GRACE_S = 60.0
"""How long reading a batch's probe record may keep failing (the topic deleted, reads not
authorised) before the batch waits for an operator instead of the relay starting over for ever."""


class Probe(Enum):
    """What reading an in-doubt batch's probe record back says of its Kafka transaction."""

    COMMITTED = "committed"
    ABORTED = "aborted"
    UNKNOWN = "unknown"  # the record is gone or is not the batch's: nothing can tell


LEADER_PLANNER = {
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
    "enable_sort": "off",
    "plan_cache_mode": "force_generic_plan",
}
"""How the leader connection plans: its outbox statements walk the (producer, id) index in id
order and stop at their bound or LIMIT (the in-doubt record is read by its key), and each is
planned once, not at every execution (PostgreSQL kept planning the read of the next batch for its
arguments, which cost as much as running it, to find the same plan). Left to the
statistics autovacuum takes of a table the relays keep nearly empty, PostgreSQL planned the read
of the next batch as a bitmap scan of all the producer's rows and a sort: each batch then read
the whole backlog (and, until vacuum, its deleted rows), so the longer the backlog, the slower it
drained. After a vacuum that left thousands of empty pages, it planned the delete of a sent batch
as a sequential scan of the whole table."""


LEADER_STATEMENT_TIMEOUT_S = 15.0
"""How long a statement of the leader's may go unanswered (each reads or writes one bounded batch
by its index) before the leader gives up its connection and starts over: a leader whose database
went silent stops there, while the server, noticing the silent client (DEAD_PEER_SETTINGS), ends
its session and hands the leadership lock to a replica."""


async def connect_leader(database_url: str, **kwargs: Any) -> Connection:
    """The relay's own connection (the leadership lock, the notifications, every relay statement)."""
    kwargs = with_dead_peer_settings(kwargs)
    kwargs["server_settings"] = {**LEADER_PLANNER, **kwargs["server_settings"]}
    kwargs.setdefault("command_timeout", LEADER_STATEMENT_TIMEOUT_S)
    return await asyncpg.connect(database_url, **kwargs)


def leader_lock_id(producer: str) -> int:
    return 0x5EB0_0000_0000 + zlib.crc32(producer.encode())


class OutboxRelay:
    def __init__(
        self,
        database_url: str,
        bootstrap_servers: str,
        producer: str,
        *,
        batch_size: int = 2000,
        batch_bytes: int = 4 * 1024 * 1024,
        idle_wait_s: float = 5.0,
        on_published: Callable[[list[str]], None] | None = None,
        at_least_once: Collection[str] = AT_LEAST_ONCE_TOPICS,
        kafka_options: Mapping[str, Any] | None = None,
        database_kwargs: Mapping[str, Any] | None = None,
        on_blocked: Callable[[bool], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.bootstrap_servers = bootstrap_servers
        # connections.kafka_options / database_connect_kwargs: how to authenticate, for every client
        self.kafka_options = dict(kafka_options or {})
        self.database_kwargs = dict(database_kwargs or {})
        self.producer_name = producer
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        # How long an idle relay waits for a notification before reading anyway: a safety net,
        # every outbox write notifies (OutboxBuffer.flush).
        self.idle_wait_s = idle_wait_s
        self.published = 0
        self.on_published = on_published  # gets the topics of the rows of each batch sent
        self.at_least_once = frozenset(at_least_once)  # topics sent without a transaction
        self._wake = asyncio.Event()
        self._leader: Connection | None = None
        self._fault_kill_after_commit = _fault_switch(FAULT_KILL_AFTER_COMMIT)
        self._fault_kill_before_commit = _fault_switch(FAULT_KILL_BEFORE_COMMIT)
        self._committed_batches = 0
        self._transactions = 0
        self.on_blocked = on_blocked  # told True while the relay waits for an operator, then False
        self._sent: list[int] = []  # the last batch committed to Kafka, forgotten by the next read
        self._probe_failing_since: float | None = None  # monotonic time of the first failed probe in a row

    @property
    def transactional_id(self) -> str:
        return f"rebound-{self.producer_name}-relay"

    async def run(self) -> None:
        """Relay forever; on any failure start over (re-elect, re-fence, recover)."""
        delay = 0.2
        while True:
            try:
                await self._run_as_leader()
                delay = 0.2
            except asyncio.CancelledError:
                if being_cancelled():  # the service stops
                    raise
                log.exception("relay_failed", producer=self.producer_name, retry_in_s=delay)
            except (KafkaError, *TRANSIENT_ERRORS) as error:
                log.warning(
                    "relay_restarting",
                    producer=self.producer_name,
                    error=f"{type(error).__name__}: {error}",
                    retry_in_s=delay,
                )
            except Exception:  # the relay must outlive any single failure
                log.exception("relay_failed", producer=self.producer_name, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _run_as_leader(self) -> None:
        plain = self._producer()  # idempotent: a retried request is not written twice
        try:  # stopped however far it got: a start that fails leaves a client to close
            # Kafka answers before the leadership is taken: a replica cut off from Kafka leaves
            # it to one that is not, instead of taking it back at each of its restarts.
            await plain.start()
            await self._lead(plain)
        finally:
            await plain.stop()

    async def _lead(self, plain: AIOKafkaProducer) -> None:
        # A dedicated connection: it holds the leadership lock and listens for new rows.
        conn = await connect_leader(self.database_url, **self.database_kwargs)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", leader_lock_id(self.producer_name)):
                await asyncio.sleep(1.0)
            log.info("relay_elected", producer=self.producer_name)
            self._leader = conn
            self._sent = []  # what a previous leadership sent is settled by `_recover`
            await conn.add_listener(notify_channel(self.producer_name), self._on_notify)
            # Replicas of earlier versions notify on the channel all producers shared: heard
            # there too, their rows wait for no poll during a rolling upgrade (silent after it).
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            shorten_concurrent_transactions_retry()
            producer = self._producer(transactional_id=self.transactional_id)
            try:
                await producer.start()  # InitProducerId: fences a zombie and aborts its open transaction
                await self._recover(producer)
                while True:
                    # Cleared before the query, so a notification that arrives while it runs is
                    # not lost: the wait below then returns at once.
                    self._wake.clear()
                    sent = await self._relay_batch(producer, plain)
                    # No notification since the read: nothing was added meanwhile, and the batch
                    # just sent is forgotten by the read the next notification (or the idle
                    # wait) brings, rather than by a read of its own that would find nothing. A
                    # unit that travels alone costs one statement here, not two.
                    if sent == 0 or not self._wake.is_set():
                        wait_s = FORGET_WITHIN_S if self._sent else self.idle_wait_s
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), wait_s)
                        if conn.is_closed():
                            raise asyncpg.exceptions.ConnectionDoesNotExistError("leader connection lost")
            except asyncio.CancelledError:
                await self._forget_on_stop()
                raise
            finally:
                await producer.stop()
        finally:
            self._leader = None
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)  # a server that does not answer: the socket is dropped

    def _producer(self, **kwargs: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,  # a batch is sent as a whole already; waiting adds to every hop
            max_batch_size=256 * 1024,
            request_timeout_ms=30000,
            **kwargs,
            **self.kafka_options,
        )

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        if payload == self.producer_name:
            self._wake.set()

    @property
    def leading(self) -> bool:
        """Whether this replica's relay holds the leadership: rows committed now are read by it."""
        return self._leader is not None

    def wake(self) -> None:
        """Read the outbox now: rows were committed in this process (without a notification)."""
        self._wake.set()

    @property
    def _leader_connection(self) -> Connection:
        """The leader's connection, while this replica leads."""
        if self._leader is None:
            raise RuntimeError(f"relay {self.producer_name}: not the leader")
        return self._leader

    async def _next_batch(self) -> list[asyncpg.Record]:
        """Forget the batch sent last and read the next one."""
        sent, self._sent = self._sent, []
        return await self._leader_connection.fetch(
            NEXT_BATCH,
            sent,
            self.producer_name,
            min(sent, default=None),
            max(sent, default=None),
            self.batch_size,
            self.batch_bytes,
        )

    async def _relay_batch(self, producer: AIOKafkaProducer, plain: AIOKafkaProducer) -> int:
        rows = await self._next_batch()
        if not rows:
            return 0
        ids = [row["id"] for row in rows]
        repeatable = [row for row in rows if row["topic"] in self.at_least_once]
        exact = [row for row in rows if row["topic"] not in self.at_least_once]
        if repeatable:
            # Acknowledged before anything else of the batch is sent, so whatever a crash cuts
            # short from here on, these rows are sent again (the in-doubt record lists them too).
            await asyncio.gather(*(future for future, _ in await _send_in_batches(plain, repeatable)))
        if exact:
            await self._send_exactly_once(producer, exact, ids)
        # Out: the Kafka transaction committed, the other records acknowledged. The next read
        # forgets them.
        self._committed_batches += 1
        if self._committed_batches == self._fault_kill_after_commit:
            log.warning("fault_injected_relay_kill_after_commit", producer=self.producer_name, rows=len(ids))
            os.kill(os.getpid(), signal.SIGKILL)
        self._sent = ids
        self.published += len(ids)
        if self.on_published is not None:
            self.on_published([row["topic"] for row in rows])
        return len(ids)

    async def _send_exactly_once(self, producer: AIOKafkaProducer, rows: list[asyncpg.Record], ids: list[int]) -> None:
        """Send `rows` in one Kafka transaction, recorded as in doubt (with all the batch's `ids`)
        before it commits."""
        async with producer.transaction():
            sent = await _send_in_batches(producer, rows)
            delivered = await asyncio.gather(*(future for future, _ in sent))
            probe, probe_id = delivered[-1], sent[-1][1]  # the first record of the last batch sent
            await self._leader_connection.execute(
                "INSERT INTO rebound.relay_in_doubt (producer, outbox_ids, probe_topic,"
                " probe_partition, probe_offset, probe_outbox_id) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (producer) DO UPDATE SET outbox_ids = EXCLUDED.outbox_ids,"
                " probe_topic = EXCLUDED.probe_topic, probe_partition = EXCLUDED.probe_partition,"
                " probe_offset = EXCLUDED.probe_offset, probe_outbox_id = EXCLUDED.probe_outbox_id,"
                " created_at = now(), unresolved = NULL, unresolved_at = NULL, decision = NULL",
                self.producer_name,
                ids,
                probe.topic,
                probe.partition,
                probe.offset,
                probe_id,
            )
            self._transactions += 1
            if self._transactions == self._fault_kill_before_commit:
                log.warning("fault_injected_relay_kill_before_commit", producer=self.producer_name, rows=len(ids))
                os.kill(os.getpid(), signal.SIGKILL)

    async def _forget_on_stop(self) -> None:
        """On a graceful stop, forget the batch sent last, so the next leader does not send its
        at-least-once rows again. Best effort: left for whatever reason, it is recovered as after
        a crash."""
        sent, self._sent = self._sent, []
        if sent:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._forget(sent), FORGET_ON_STOP_S)

    async def _forget(self, ids: list[int]) -> None:
        await self._leader_connection.execute(FORGET, ids, self.producer_name, min(ids), max(ids))

    async def _recover(self, producer: AIOKafkaProducer) -> None:
        doubt = await self._leader_connection.fetchrow(IN_DOUBT, self.producer_name)
        if doubt is None:
            return
        if doubt["decision"] is not None:
            outcome, why = Probe(doubt["decision"]), "an operator's decision"
        else:
            outcome, why = await self._probe_doubt(doubt, grace_s=PROBE_FAILING_GRACE_S)
        if outcome is Probe.UNKNOWN:
            outcome, why = await self._wait_for_decision(doubt, why)
        self._probe_failing_since = None  # settled: the next batch's probe starts its own grace
        log.warning(
            "relay_recovered_in_doubt_batch",
            producer=self.producer_name,
            rows=len(doubt["outbox_ids"]),
            committed=outcome is Probe.COMMITTED,
            settled_by=why,
        )
        if outcome is Probe.COMMITTED:
            await self._forget(list(doubt["outbox_ids"]))
        else:
            await self._leader_connection.execute(
                "DELETE FROM rebound.relay_in_doubt WHERE producer = $1", self.producer_name
            )

    async def _probe_doubt(self, doubt: asyncpg.Record, *, grace_s: float) -> tuple[Probe, str]:
        """`_probe` of the batch's record. Reading it may fail for a while (a broker just back):
        the error is raised and the relay starts over; once it has failed for `grace_s` in a row,
        it is UNKNOWN, with the error as the reason."""
        try:
            verdict = await self._probe(
                doubt["probe_topic"], doubt["probe_partition"], doubt["probe_offset"], doubt["probe_outbox_id"]
            )
        except (KafkaError, TimeoutError) as error:
            now = time.monotonic()
            if self._probe_failing_since is None:
                self._probe_failing_since = now
            if now - self._probe_failing_since < grace_s:
                raise
            return Probe.UNKNOWN, f"its probe record cannot be read: {type(error).__name__}: {error}"
        self._probe_failing_since = None
        return verdict

    async def _wait_for_decision(self, doubt: asyncpg.Record, why: str) -> tuple[Probe, str]:
        """Publish nothing until an operator says whether the in-doubt batch reached Kafka, or its
        probe record, read again every `REPROBE_S`, says it after all."""
        await self._leader_connection.execute(
            "UPDATE rebound.relay_in_doubt SET unresolved = $2, unresolved_at = now() WHERE producer = $1",
            self.producer_name,
            why,
        )
        log.error(
            "relay_in_doubt_unresolved",
            producer=self.producer_name,
            rows=len(doubt["outbox_ids"]),
            probe=f"{doubt['probe_topic']}[{doubt['probe_partition']}]@{doubt['probe_offset']}",
            reason=why,
            action=f"find out whether its rows reached Kafka, then `rebound relay settle {self.producer_name}"
            " committed|aborted`",
        )
        if self.on_blocked is not None:
            self.on_blocked(True)
        next_probe = time.monotonic() + REPROBE_S
        try:
            while True:
                await asyncio.sleep(UNRESOLVED_POLL_S)
                latest = await self._leader_connection.fetchrow(IN_DOUBT, self.producer_name)
                if latest is None or latest["outbox_ids"] != doubt["outbox_ids"]:
                    raise RuntimeError(f"relay {self.producer_name}: its in-doubt batch changed while it waited")
                if latest["decision"] is not None:
                    return Probe(latest["decision"]), "an operator's decision"
                if time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + REPROBE_S
                    outcome, found = await self._probe_doubt(doubt, grace_s=0.0)
                    if outcome is not Probe.UNKNOWN:
                        await self._leader_connection.execute(
                            "UPDATE rebound.relay_in_doubt SET unresolved = NULL, unresolved_at = NULL"
                            " WHERE producer = $1",
                            self.producer_name,
                        )
                        return outcome, f"{found}, once it could be read again"
        finally:
            if self.on_blocked is not None:
                self.on_blocked(False)

    async def _probe(self, topic: str, partition: int, offset: int, outbox_id: int) -> tuple[Probe, str]:
        """What became of the transaction that wrote the batch's record at `offset`, and why that
        is known. The record must be there and be the batch's (read_uncommitted sees it whether its
        transaction committed or not); then a read_committed reader sees it (committed) or moves
        past it (aborted)."""
        tp = TopicPartition(topic, partition)
        where = f"{topic}[{partition}]@{offset}"
        async with self._reader("read_uncommitted", tp) as consumer:
            first = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if offset < first:
                return Probe.UNKNOWN, f"the probe record {where} is gone: the log starts at {first} (retention?)"
            if offset >= end:
                return Probe.UNKNOWN, f"no probe record {where}: the log ends at {end} (truncated?)"
            consumer.seek(tp, offset)
            record = await self._first_record(consumer, tp, end, where)
            if record is None or record.offset != offset:
                return Probe.UNKNOWN, f"no data record at {where}"
            if dict(record.headers or ()).get(HEADER) != str(outbox_id).encode():
                return Probe.UNKNOWN, f"the record at {where} is not the batch's (outbox id {outbox_id})"
        async with self._reader("read_committed", tp) as consumer:
            consumer.seek(tp, offset)
            for _ in range(600):
                batch = await consumer.getmany(tp, timeout_ms=100, max_records=1)
                for record in batch.get(tp, []):
                    committed = record.offset == offset
                    return (Probe.COMMITTED if committed else Probe.ABORTED), "its probe record, read back"
                if await consumer.position(tp) > offset:
                    return Probe.ABORTED, "its probe record, read back"  # the reader moved past it
            raise TimeoutError(f"could not read {where} to settle the in-doubt batch")

    @contextlib.asynccontextmanager
    async def _reader(self, isolation: str, tp: TopicPartition) -> AsyncIterator[AIOKafkaConsumer]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            isolation_level=isolation,
            enable_auto_commit=False,
            auto_offset_reset="none",  # an offset out of range is an error, never a jump elsewhere
            group_id=None,
            **self.kafka_options,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            yield consumer
        finally:
            await stop_consumer(consumer)

    @staticmethod
    async def _first_record(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int, where: str) -> Any:
        """The first data record from the consumer's position, None if only transaction markers
        lie between it and `end`."""
        for _ in range(600):
            batch = await consumer.getmany(tp, timeout_ms=100, max_records=1)
            if batch.get(tp):
                return batch[tp][0]
            if await consumer.position(tp) >= end:
                return None
        raise TimeoutError(f"could not read {where} to settle the in-doubt batch")


async def batches_in_doubt(conn: Connection) -> list[asyncpg.Record]:
    """Every relay's batch in doubt now: most are settled within a second of a restart; one with
    `unresolved` set waits for an operator (`settle`)."""
    return await conn.fetch(
        "SELECT producer, cardinality(outbox_ids) AS rows, probe_topic, probe_partition, probe_offset,"
        " created_at, unresolved, unresolved_at, decision FROM rebound.relay_in_doubt ORDER BY producer"
    )


async def settle(conn: Connection, producer: str, outcome: Probe) -> bool:
    """An operator's word on the unresolved in-doubt batch of `producer`: its Kafka transaction
    `committed` (its rows are forgotten) or `aborted` (they are sent again). False if that producer
    has no batch waiting for one."""
    if outcome is Probe.UNKNOWN:
        raise ValueError("a batch is settled as committed or aborted")
    status = await conn.execute(
        "UPDATE rebound.relay_in_doubt SET decision = $2 WHERE producer = $1 AND unresolved IS NOT NULL",
        producer,
        outcome.value,
    )
    return status == "UPDATE 1"
