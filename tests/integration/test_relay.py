"""The outbox relay against the real Kafka and PostgreSQL: each row reaches the topic once,
whenever a crash hits between the Kafka commit and forgetting the rows."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.partitioner import DefaultPartitioner

from rebound.messaging.outbox import OutboxBuffer, notify_channel
from rebound.connections import database_connect_kwargs
from rebound.messaging import relay as relay_module
from rebound.messaging.processor import BatchProcessor, Context, Route, StoredRecord
from rebound.messaging.relay import FORGET, NEXT_BATCH, OutboxRelay, Probe, connect_leader, settle
from rebound.settings import Settings
from rebound_contracts import Topic, UnitInspected
from tests import factories

pytestmark = pytest.mark.integration


class Crash(Exception):
    """Stands for the process dying at one precise point."""


async def _write_rows(pool: asyncpg.Pool, producer: str, topic: str | Sequence[str], count: int) -> list[bytes]:
    """`count` rows on five keys, in one transaction; given several topics, row i goes to the
    (i mod n)-th."""
    topics = [topic] if isinstance(topic, str) else list(topic)
    buffer = OutboxBuffer(producer)
    payloads = [f'{{"n": {i}}}'.encode() for i in range(count)]
    for i, payload in enumerate(payloads):
        buffer.add_raw(topics[i % len(topics)], f"key-{i % 5}", payload)
    async with pool.acquire() as conn, conn.transaction():
        await buffer.flush(conn)
    return payloads


async def _read_committed(bootstrap: str, topic: str) -> list[tuple[bytes, bytes, int]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        out = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out += [(r.key, r.value, tp.partition) for r in records]
        return out
    finally:
        await consumer.stop()


async def _offsets_taken(bootstrap: str, topic: str) -> int:
    """The offsets the topic's partitions have given out: its records, and its transactions' markers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets([TopicPartition(topic, p) for p in range(3)])).values())
    finally:
        await consumer.stop()


def _assert_once_in_order_per_key(published: list[tuple[bytes, bytes, int]], payloads: list[bytes]) -> None:
    assert sorted(v for _, v, _ in published) == sorted(payloads)
    for key in {k for k, _, _ in published}:
        expected = [p for p in payloads if f"key-{orjson.loads(p)['n'] % 5}".encode() == key]
        assert [v for k, v, _ in published if k == key] == expected


async def _relay_until_empty(relay: OutboxRelay, pool: asyncpg.Pool) -> None:
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(300):
            if not await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", relay.producer_name):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the relay did not drain the outbox in 30 s")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _relay(pool: asyncpg.Pool, settings: Settings, producer: str, **kwargs) -> OutboxRelay:
    return OutboxRelay(settings.database_url, settings.kafka_bootstrap_servers, producer, **kwargs)


class DiesBeforeForgetting(OutboxRelay):
    """Dies once its first batch is out (the Kafka transaction committed, at-least-once rows
    acknowledged) and before forgetting it: the rows are still in the outbox."""

    async def _next_batch(self) -> list:
        if self._sent:
            raise Crash
        return await super()._next_batch()


async def _crash_after_the_first_batch(pool: asyncpg.Pool, settings: Settings, producer: str, **kwargs) -> None:
    doomed = _relay(pool, settings, producer, **kwargs)
    doomed.__class__ = DiesBeforeForgetting
    with pytest.raises(Crash):
        await doomed._run_as_leader()


async def test_rows_are_published_once_in_order_per_key(pool, settings, scratch_topic) -> None:
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, scratch_topic, 250)
    await _relay_until_empty(_relay(pool, settings, producer, batch_size=60), pool)
    published = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    _assert_once_in_order_per_key(published, payloads)

    # Where Kafka's default partitioner (any other client) would put each key.
    assert all(p == DefaultPartitioner()(k, [0, 1, 2], [0, 1, 2]) for k, _, p in published)


async def test_rows_beyond_one_record_batch_are_all_published_in_order(pool, settings, scratch_topic) -> None:
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    filler = "x" * 4000
    buffer = OutboxBuffer(producer)
    payloads = [f'{{"n": {i}, "filler": "{filler}"}}'.encode() for i in range(200)]
    for payload in payloads:  # one key: ~800 KB for one partition, more than one 256 KB record batch
        buffer.add_raw(scratch_topic, "one-key", payload)
    async with pool.acquire() as conn, conn.transaction():
        await buffer.flush(conn)
    await _relay_until_empty(_relay(pool, settings, producer, batch_size=200), pool)
    published = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert [v for _, v, _ in published] == payloads


async def test_at_least_once_topics_are_sent_without_a_transaction(
    pool,
    settings,
    scratch_topic,
    another_scratch_topic,
) -> None:
    """In the same batches, the rows of an at-least-once topic go out without a Kafka transaction
    (no commit markers take offsets on their topic) and the others in one; each row once, in
    order per key."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, [scratch_topic, another_scratch_topic], 120)
    await _relay_until_empty(_relay(pool, settings, producer, batch_size=50, at_least_once={scratch_topic}), pool)
    bootstrap = settings.kafka_bootstrap_servers
    _assert_once_in_order_per_key(await _read_committed(bootstrap, scratch_topic), payloads[0::2])
    _assert_once_in_order_per_key(await _read_committed(bootstrap, another_scratch_topic), payloads[1::2])
    assert await _offsets_taken(bootstrap, scratch_topic) == 60  # the records alone
    assert await _offsets_taken(bootstrap, another_scratch_topic) > 60  # and the commit markers


def _node(plan: dict, node_type: str, relation: str) -> dict:
    if plan.get("Node Type") == node_type and plan.get("Relation Name") == relation:
        return plan
    for child in plan.get("Plans", []):
        with contextlib.suppress(LookupError):
            return _node(child, node_type, relation)
    raise LookupError(f"no {node_type} on {relation}")


@contextlib.asynccontextmanager
async def _prepared_over_a_backlog(settings: Settings, producer: str, types: str, statement: str):
    """The relay's own connection, in a transaction rolled back afterwards: the outbox with the
    statistics autovacuum leaves on a table the relays keep drained (nearly empty), then a
    backlog of 50,000 rows of another producer and 20,000 of `producer`, and `statement` prepared
    as `relay_statement` with a generic plan, which knows no ids, as the relay runs it."""
    conn = await connect_leader(settings.database_url, **database_connect_kwargs(settings))
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("ANALYZE rebound.outbox")
            for name, rows in ((f"{producer}-other", 50_000), (producer, 20_000)):
                await conn.execute(
                    "INSERT INTO rebound.outbox (producer, topic, key, payload)"
                    " SELECT $1, 't', 'k', '\\x00'::bytea FROM generate_series(1, $2)",
                    name,
                    rows,
                )
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE relay_statement({types}) AS {statement}")
            yield conn
        finally:
            await transaction.rollback()
    finally:
        await conn.close()  # the prepared statement goes with the session


@pytest.mark.parametrize(
    ("statement", "types", "extra"),
    [
        (FORGET, "bigint[], text, bigint, bigint", ""),
        (NEXT_BATCH, "bigint[], text, bigint, bigint, int, bigint", ", 2000, 4194304"),
    ],
    ids=["forget", "next-batch"],
)
async def test_forgetting_a_sent_batch_reads_the_batch_not_the_backlog(settings, statement, types, extra) -> None:
    """After a wave the outbox holds the producer's backlog and other producers' rows (and, until
    vacuum, their deleted versions): forgetting 100 sent rows must not read through them, alone
    (after a crash) or with the read of the next batch. On the relay's own connection, where it
    runs them: elsewhere, once a vacuum has left the outbox thousands of empty pages and
    statistics of ten rows, PostgreSQL plans a sequential scan of the whole table."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    async with _prepared_over_a_backlog(settings, producer, types, statement) as conn:
        ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM rebound.outbox WHERE producer = $1 ORDER BY id LIMIT 100", producer
            )
        ]
        explained = await conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE"
            f" relay_statement('{{{','.join(map(str, ids))}}}', '{producer}', {min(ids)}, {max(ids)}{extra})"
        )
        delete = _node(orjson.loads(explained)[0]["Plan"], "ModifyTable", "outbox")
        left = await conn.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer)
    assert left == 20_000 - 100
    # About 100; 4,538 by a sequential scan, 332,204 by the ids alone.
    assert delete["Shared Hit Blocks"] + delete["Shared Read Blocks"] < 1_000


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def test_the_leader_reads_the_next_batch_not_the_backlog(settings) -> None:
    """Under a backlog, the read of the next batch on the relay's own connection takes the first
    rows in id order and stops at its LIMIT, whatever the outbox's statistics say: with the
    statistics of a nearly empty table, PostgreSQL's own choice read the producer's whole backlog
    and sorted it for every batch."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    types = "bigint[], text, bigint, bigint, int, bigint"
    async with _prepared_over_a_backlog(settings, producer, types, NEXT_BATCH) as conn:
        first = await conn.fetch("SELECT id FROM rebound.outbox WHERE producer = $1 ORDER BY id LIMIT 2000", producer)
        arguments = f"'{{}}', '{producer}', NULL, NULL, 2000, 4194304"
        explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE relay_statement({arguments})")
        read = await conn.fetch(f"EXECUTE relay_statement({arguments})")
    assert [r["id"] for r in read] == [r["id"] for r in first]
    plan = orjson.loads(explained)[0]["Plan"]
    (limit,) = [node for node in _nodes(plan) if node["Node Type"] == "Limit"]
    scans = [node for node in _nodes(limit) if node.get("Relation Name") == "outbox"]
    # 20,000 when the backlog is read whole; the running sum of bytes reads one row past the last it passes on
    assert [node["Actual Rows"] for node in scans] in ([2000], [2001])
    assert not [node for node in _nodes(plan) if node["Node Type"] == "Sort"]


async def test_the_leaders_statements_are_planned_once(settings) -> None:
    """The leader's statements are few and fixed, and the planner settings above fix their plans:
    planned again for each execution (PostgreSQL's choice for these), each cost the database as
    much planning as running."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    conn = await connect_leader(settings.database_url)
    try:
        for _ in range(8):
            await conn.fetch(NEXT_BATCH, [], producer, None, None, 2000, 4194304)
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", NEXT_BATCH
        )
    finally:
        await conn.close()
    assert plans is not None and dict(plans) == {"generic_plans": 8, "custom_plans": 0}


async def test_the_next_read_forgets_the_batch_sent_and_leaves_it_out(pool) -> None:
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    await _write_rows(pool, producer, "t", 10)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM rebound.outbox WHERE producer = $1 ORDER BY id", producer)]
    await pool.execute(
        "INSERT INTO rebound.relay_in_doubt (producer, outbox_ids, probe_topic, probe_partition,"
        " probe_offset, probe_outbox_id) VALUES ($1, $2, 't', 0, 0, $3)",
        producer,
        ids[:4],
        ids[0],
    )

    async def next_batch(sent: list[int], limit: int) -> list[int]:
        rows = await pool.fetch(
            NEXT_BATCH, sent, producer, min(sent, default=None), max(sent, default=None), limit, 4 * 1024 * 1024
        )
        return [r["id"] for r in rows]

    async def doubts() -> int:
        return await pool.fetchval("SELECT count(*) FROM rebound.relay_in_doubt WHERE producer = $1", producer)

    # Nothing sent yet: a read forgets nothing, and an in-doubt record stays for recovery to settle.
    assert await next_batch([], 3) == ids[:3]
    assert await doubts() == 1
    # The first four sent: the read that forgets them already leaves them out.
    assert await next_batch(ids[:4], 100) == ids[4:]
    assert await doubts() == 0
    assert await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer) == 6


@pytest.mark.parametrize("statement", ["forget", "next-batch"])
async def test_forgetting_commits_without_waiting_for_the_disk_and_nothing_else_does(pool, statement) -> None:
    """A forget's transaction commits with synchronous_commit off (a lost forget is recovered
    like a crash), and the setting ends with it: the session's next transaction, such as the next
    in-doubt record, waits for the disk again."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    await _write_rows(pool, producer, "t", 4)
    async with pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM rebound.outbox WHERE producer = $1", producer)]
        arguments = (ids[:2], producer, min(ids[:2]), max(ids[:2]))
        async with conn.transaction():
            if statement == "forget":
                await conn.execute(FORGET, *arguments)
            else:
                assert [r["id"] for r in await conn.fetch(NEXT_BATCH, *arguments, 10, 1 << 20)] == ids[2:]
            in_its_transaction = await conn.fetchval("SHOW synchronous_commit")
        after = await conn.fetchval("SHOW synchronous_commit")
        left = await conn.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer)
    assert (in_its_transaction, after, left) == ("off", "on", 2)


async def test_a_crash_after_the_kafka_commit_does_not_publish_twice(pool, settings, scratch_topic) -> None:
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, scratch_topic, 40)

    await _crash_after_the_first_batch(pool, settings, producer, batch_size=15)
    assert await pool.fetchval("SELECT count(*) FROM rebound.relay_in_doubt WHERE producer = $1", producer) == 1

    await _relay_until_empty(_relay(pool, settings, producer, batch_size=15), pool)
    published = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert sorted(v for _, v, _ in published) == sorted(payloads)  # the first 15 once, not twice


@pytest.mark.parametrize("mixed", [False, True], ids=["at-least-once-only", "with-a-transaction"])
async def test_a_crash_after_at_least_once_rows_are_out_repeats_them_at_worst(
    pool,
    settings,
    scratch_topic,
    another_scratch_topic,
    mixed,
) -> None:
    """Killed after sending a batch and before forgetting it: alone, the at-least-once rows are
    sent again (a repeat, none lost); in a batch with a transaction, the in-doubt record covers
    them as well, and when it is found committed nothing is sent twice."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    topics = [scratch_topic, another_scratch_topic] if mixed else [scratch_topic]
    payloads = await _write_rows(pool, producer, topics, 40)

    await _crash_after_the_first_batch(pool, settings, producer, batch_size=15, at_least_once={scratch_topic})
    in_doubt = await pool.fetchval("SELECT count(*) FROM rebound.relay_in_doubt WHERE producer = $1", producer)
    assert in_doubt == (1 if mixed else 0)

    await _relay_until_empty(_relay(pool, settings, producer, batch_size=15, at_least_once={scratch_topic}), pool)
    repeated = [] if mixed else payloads[:15]
    published = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert sorted(v for _, v, _ in published) == sorted(payloads[:: len(topics)] + repeated)
    if mixed:
        published = await _read_committed(settings.kafka_bootstrap_servers, another_scratch_topic)
        assert sorted(v for _, v, _ in published) == sorted(payloads[1::2])


async def test_a_crash_before_the_kafka_commit_publishes_the_rows_later(pool, settings, scratch_topic) -> None:
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, scratch_topic, 30)
    real_execute = asyncpg.connection.Connection.execute

    async def dies_after_recording_doubt(self, query, *args, **kwargs):
        result = await real_execute(self, query, *args, **kwargs)
        if "relay_in_doubt" in query and "INSERT" in query:
            raise Crash  # recorded as in doubt; the Kafka transaction never commits
        return result

    with pytest.MonkeyPatch.context() as patch:  # put back when the block ends, however it ends
        patch.setattr(asyncpg.connection.Connection, "execute", dies_after_recording_doubt)
        with pytest.raises(Crash):
            await _relay(pool, settings, producer, batch_size=10)._run_as_leader()

    await _relay_until_empty(_relay(pool, settings, producer, batch_size=10), pool)
    published = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert sorted(v for _, v, _ in published) == sorted(payloads)


async def test_only_one_relay_per_producer_publishes(pool, settings, scratch_topic) -> None:
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, scratch_topic, 300)
    relays = [_relay(pool, settings, producer, batch_size=20) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        for _ in range(300):
            if not await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer):
                break
            await asyncio.sleep(0.1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(r.published for r in relays) == [0, 300]
    published = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert sorted(v for _, v, _ in published) == sorted(payloads)


async def test_a_commit_wakes_only_the_relay_of_its_producer(pool, settings) -> None:
    """Each producer's relay has a channel of its own (a name too long for PostgreSQL gets a
    digest): on a shared one, every service's commit woke every service's relay."""
    short = f"it-notify-{uuid.uuid4().hex[:8]}"
    long = f"it-notify-{uuid.uuid4().hex}-{'x' * 60}"
    heard: dict[str, list[str]] = {short: [], long: []}
    listeners = []
    try:
        for producer in heard:
            conn = await asyncpg.connect(settings.database_url)
            listeners.append(conn)
            await conn.add_listener(
                notify_channel(producer),
                lambda _c, _pid, _ch, payload, producer=producer: heard[producer].append(payload),
            )
        # Committed one after the other: a listener that heard both would hear the first first.
        for producer in heard:
            await _write_rows(pool, producer, "t", 2)
        for _ in range(100):
            if all(heard.values()):
                break
            await asyncio.sleep(0.05)
    finally:
        for conn in listeners:
            await conn.close()
    assert heard == {short: [short], long: [long]}
    assert len(notify_channel(long).encode()) <= 63


async def _delete_up_to_the_end(bootstrap: str, topic: str, partition: int) -> None:
    """What retention does to an old segment: the partition's log now starts at its end."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(before_offset=end)})
    finally:
        await admin.close()


async def _in_doubt(pool: asyncpg.Pool, producer: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM rebound.relay_in_doubt WHERE producer = $1", producer)


async def _unresolved(pool: asyncpg.Pool, producer: str) -> str:
    """Why the producer's in-doubt batch waits for an operator, once its relay has said so."""

    async def said() -> bool:
        row = await _in_doubt(pool, producer)
        return row is not None and row["unresolved"] is not None

    await _until(said, "reported unresolved")
    row = await _in_doubt(pool, producer)
    assert row is not None
    return row["unresolved"]


async def _until(check, what: str) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {what} within 30 s")


@pytest.mark.parametrize("crash", ["after the Kafka commit", "before the Kafka commit"])
async def test_a_batch_whose_probe_record_is_gone_waits_for_an_operator_and_is_settled_as_told(
    pool, settings, scratch_topic, crash
) -> None:
    """The in-doubt batch's probe record was deleted (retention) before a relay came back: nothing
    can tell whether its transaction committed. The relay publishes nothing until an operator says,
    then does as told: `committed` forgets the batch, `aborted` sends it again."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, scratch_topic, 30)
    committed = crash == "after the Kafka commit"
    if committed:
        await _crash_after_the_first_batch(pool, settings, producer, batch_size=15)
    else:
        real_execute = asyncpg.connection.Connection.execute

        async def dies_after_recording_doubt(self, query, *args, **kwargs):
            result = await real_execute(self, query, *args, **kwargs)
            if "relay_in_doubt" in query and "INSERT" in query:
                raise Crash
            return result

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(asyncpg.connection.Connection, "execute", dies_after_recording_doubt)
            with pytest.raises(Crash):
                await _relay(pool, settings, producer, batch_size=15)._run_as_leader()
    doubt = await _in_doubt(pool, producer)
    assert doubt is not None
    before = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert len(before) == (15 if committed else 0)
    await _delete_up_to_the_end(settings.kafka_bootstrap_servers, scratch_topic, doubt["probe_partition"])

    blocked: list[bool] = []
    relay = _relay(pool, settings, producer, batch_size=15, on_blocked=blocked.append)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relay_module, "UNRESOLVED_POLL_S", 0.1)
        task = asyncio.create_task(relay.run())
        try:
            assert "is gone" in await _unresolved(pool, producer)
            await asyncio.sleep(0.5)  # waiting: nothing more goes out
            assert relay.published == 0 and blocked == [True]
            assert await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer) == 30
            async with pool.acquire() as conn:
                assert await settle(conn, producer, Probe.COMMITTED if committed else Probe.ABORTED)

            async def drained() -> bool:
                return not await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer)

            await _until(drained, "drained")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert blocked == [True, False]
    after = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    kept = [v for _, v, p in before if p != doubt["probe_partition"]]  # what deleting left of the batch
    assert sorted(v for _, v, _ in after) == sorted(kept + payloads[15:] if committed else payloads)


async def test_a_record_at_the_probe_offset_that_is_not_the_batchs_is_never_taken_for_it(
    pool, settings, scratch_topic
) -> None:
    """After an unclean leader election another record can stand at the probe's offset: it says
    nothing of the batch, which waits for an operator instead of being read as committed or not."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    await _write_rows(pool, producer, scratch_topic, 20)

    await _crash_after_the_first_batch(pool, settings, producer, batch_size=10)
    # as if another record had taken the probe's place: its outbox id is not the batch's
    await pool.execute(
        "UPDATE rebound.relay_in_doubt SET probe_outbox_id = probe_outbox_id + 1000000 WHERE producer = $1", producer
    )
    relay = _relay(pool, settings, producer, batch_size=10)
    task = asyncio.create_task(relay.run())
    try:
        assert "is not the batch's" in await _unresolved(pool, producer)
        assert relay.published == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    async with pool.acquire() as conn:
        assert not await settle(conn, f"{producer}-other", Probe.COMMITTED)  # nothing waits there


async def test_a_probe_that_keeps_failing_waits_for_an_operator_and_settles_itself_once_it_reads(
    pool, settings, scratch_topic
) -> None:
    """Reading the probe record keeps failing (reads refused): after the grace the batch waits for
    an operator like one whose record is gone, instead of the relay starting over for ever; read
    again later, the record settles it without the operator."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    payloads = await _write_rows(pool, producer, scratch_topic, 20)
    await _crash_after_the_first_batch(pool, settings, producer, batch_size=10)
    relay = _relay(pool, settings, producer, batch_size=10)
    read_probe = relay._probe
    refusing = [True]
    probes: list[bool] = []

    async def probe(*args: object) -> tuple[Probe, str]:
        probes.append(refusing[0])
        if refusing[0]:
            raise TopicAuthorizationFailedError()
        return await read_probe(*args)  # type: ignore[arg-type]  # the probe's own arguments, passed on

    async def drained() -> bool:
        return not await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relay_module, "UNRESOLVED_POLL_S", 0.1)
        patch.setattr(relay_module, "REPROBE_S", 0.3)
        patch.setattr(relay_module, "PROBE_FAILING_GRACE_S", 0.5)
        patch.setattr(relay, "_probe", probe)
        task = asyncio.create_task(relay.run())
        try:
            assert "TopicAuthorizationFailedError" in await _unresolved(pool, producer)
            assert relay.published == 0 and probes.count(True) >= 2  # tried again before giving up
            refusing[0] = False
            await _until(drained, "drained")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert await _in_doubt(pool, producer) is None
    after = await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)
    assert sorted(v for _, v, _ in after) == sorted(payloads)  # the first batch committed once, then the rest


async def test_a_batch_holds_at_most_its_bytes_and_always_its_first_row(pool) -> None:
    """Rows of dead letters and exceptions can each carry a whole message: a batch stops at
    `REBOUND_RELAY_BATCH_BYTES` of payload, so a backlog of them is never read 2,000 at once, and
    a first row larger than that still goes alone."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    buffer = OutboxBuffer(producer)
    sizes = [300_000, 100_000, 100_000, 100_000, 100_000, 10]
    for n, size in enumerate(sizes):
        buffer.add_raw("t", f"key-{n}", b"x" * size)
    async with pool.acquire() as conn, conn.transaction():
        await buffer.flush(conn)

    async def batches(budget: int) -> list[list[int]]:
        out: list[list[int]] = []
        sent: list[int] = []
        while rows := await pool.fetch(
            NEXT_BATCH, sent, producer, min(sent, default=None), max(sent, default=None), 2000, budget
        ):
            out.append([len(r["payload"]) for r in rows])
            sent = [r["id"] for r in rows]
        return out

    assert await batches(250_000) == [[300_000], [100_000, 100_000], [100_000, 100_000, 10]]
    assert await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer) == 0


async def test_a_lone_batch_is_forgotten_by_the_next_read_or_by_a_graceful_stop(pool, settings, scratch_topic) -> None:
    """A batch sent with nothing behind it is forgotten by the read the next notification brings,
    not by a read of its own that would find nothing: a unit that travels alone costs the relay
    one statement. A relay stopped before that read forgets the batch on its way out, so its
    successor sends nothing again and no in-doubt record is left."""
    producer = f"it-relay-{uuid.uuid4().hex[:8]}"
    relay = _relay(pool, settings, producer)
    reads: list[int] = []
    read = relay._next_batch

    async def counted() -> list:
        rows = await read()
        reads.append(len(rows))
        return rows

    async def left() -> int:
        return await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relay_module, "FORGET_WITHIN_S", 30.0)  # only a notification or the stop forgets
        patch.setattr(relay, "_next_batch", counted)
        task = asyncio.create_task(relay.run())
        try:
            await _until(lambda: asyncio.sleep(0, bool(reads)), "elected and idle")
            for n in (1, 2):
                await _write_rows(pool, producer, scratch_topic, 1)
                await _until(lambda n=n: asyncio.sleep(0, relay.published == n), f"{n} sent")
            assert reads == [0, 1, 1]  # the second read forgot the first row: no read found nothing
            assert await left() == 1 and await _in_doubt(pool, producer) is not None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert await left() == 0 and await _in_doubt(pool, producer) is None
    assert len(await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)) == 2


async def _apply_one_through(
    pool: asyncpg.Pool, settings: Settings, producer: str, topic: str, relay: OutboxRelay
) -> list[str]:
    """One record applied by a processor whose process runs `relay`, its handler emitting one row
    to `topic`; returns the notifications a listener on the producer's channel heard meanwhile."""
    seller = f"it-wake-{uuid.uuid4().hex[:8]}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    inspected = factories.inspection(seller, f"LPN-{uuid.uuid4().hex[:8]}")
    source = Topic(topic, UnitInspected, ("seller_id", "lpn"), "inbound", (), ())

    async def emit(ctx: Context, event: UnitInspected, _repository: None) -> None:
        ctx.outbox.add_raw(topic, event.lpn, event.model_dump_json().encode())

    processor = BatchProcessor(producer, [Route(source, emit, lambda _conn: None)], pool, relay=relay)
    heard: list[str] = []
    listener = await asyncpg.connect(settings.database_url)
    try:
        await listener.add_listener(notify_channel(producer), lambda _c, _pid, _ch, payload: heard.append(payload))
        record = StoredRecord(topic, 0, 0, inspected.lpn.encode(), inspected.model_dump_json().encode())
        assert (await processor.process([record])).outbox_rows == 1
        await listener.fetchval("SELECT 1")  # a notification sent before this answer is heard by now
    finally:
        await listener.close()
    return heard


async def test_a_batch_wakes_its_own_leading_relay_in_the_process_not_through_postgresql(
    pool, settings, scratch_topic
) -> None:
    """While the relay of the processor's own process leads, the processor wakes it once the batch
    commits, and PostgreSQL notifies nobody (a notification signals every listening backend of the
    database). While another process's relay leads, the batch notifies it."""
    producer = f"it-wake-{uuid.uuid4().hex[:8]}"
    leader = _relay(pool, settings, producer, idle_wait_s=3600.0)  # only a wake-up sends the row in time
    task = asyncio.create_task(leader.run())
    try:
        await _until(lambda: asyncio.sleep(0, leader.leading), "elected")
        assert await _apply_one_through(pool, settings, producer, scratch_topic, leader) == []
        await _until(lambda: asyncio.sleep(0, leader.published == 1), "sent after the in-process wake-up")

        elsewhere = _relay(pool, settings, producer)  # this process's relay, not the leader
        assert not elsewhere.leading
        assert await _apply_one_through(pool, settings, producer, scratch_topic, elsewhere) == [producer]
        await _until(lambda: asyncio.sleep(0, leader.published == 2), "sent after the notification")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(await _read_committed(settings.kafka_bootstrap_servers, scratch_topic)) == 2
