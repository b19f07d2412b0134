"""An independent check of Rebound's guarantees, from the outside, as a storefront connector sees it.

It reads the outbound topics with `isolation_level=read_committed` and holds them to the guarantees of docs/design.md:
1 (nothing sellable before it is graded), 2 (every adjustment once, per-key sequence 1..n without
gap or repeat, `available` the running sum of `delta` and never negative), 6 (tenant isolation),
and, given the simulator's expectation, the final stock per key. It imports nothing from the
services on purpose: a checker that shares the code under test shares its bugs.
"""

from __future__ import annotations

import orjson
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel, ValidationError
from rich.table import Table

from rebound_contracts import DispositionDecided, StockAdjusted, UnitGraded
from rebound_contracts.topics import DISPOSITIONS, STOCK_ADJUSTMENTS, UNIT_GRADED, Topic

EXAMPLES_PER_CHECK = 5


# --- Reading ---------------------------------------------------------------------------------


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Record(Generic[M]):
    """A parsed message with where it was read and its Kafka key."""

    partition: int
    offset: int
    key: str | None
    model: M


@dataclass
class TopicRead(Generic[M]):
    records: list[Record[M]] = field(default_factory=list)
    unreadable: list[tuple[int, int, str]] = field(default_factory=list)
    """(partition, offset, error) of messages that do not parse against the topic's model."""


async def read_records(
    bootstrap: str,
    topic: Topic[M],
    *,
    sellers: set[str] | None,
    also: Callable[[Mapping[str, Any]], bool] | None = None,
    idle_timeout_s: float = 60.0,
    kafka_options: Mapping[str, Any] | None = None,
) -> TopicRead[M]:
    """Every committed message of a topic, from the beginning up to its last stable offset.

    No consumer group: the checker must not move any service's offsets, and reads all partitions
    itself. `sellers` keeps only those sellers' messages (None: all); `also(document)` keeps some
    more, e.g. another seller's grades of the LPNs an adjustment refers to. `kafka_options`: the
    client's security arguments (TLS, SASL), as aiokafka takes them."""
    topic_name = topic.name
    read: TopicRead[M] = TopicRead()
    options = dict(kafka_options or {})
    numbers = await _partitions_of(bootstrap, topic_name, options)
    if not numbers:
        return read
    partitions = [TopicPartition(topic_name, p) for p in numbers]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **options,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # With read_committed this is the last stable offset: nothing of an open transaction.
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        last_progress = time.monotonic()
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    _parse_into(read, topic.model, message, sellers, also)
            moved = False
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    moved = True
            if batches or moved:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"{topic_name}: no progress for {idle_timeout_s}s on {sorted(map(str, pending))}")
    finally:
        await consumer.stop()
    read.records.sort(key=lambda r: (r.partition, r.offset))
    return read


async def _partitions_of(bootstrap: str, topic_name: str, options: Mapping[str, Any]) -> list[int]:
    """The topic's partition numbers, [] when it does not exist (and without creating it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic_name])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        return []
    return sorted(p["partition"] for p in described["partitions"])


def _parse_into(
    read: TopicRead[M],
    model: type[M],
    message: Any,
    sellers: set[str] | None,
    also: Callable[[Mapping[str, Any]], bool] | None,
) -> None:
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    if message.value is None:
        return
    try:
        document = orjson.loads(message.value)  # as the services read: any depth up to 1,024
    except ValueError as error:
        read.unreadable.append((message.partition, message.offset, f"invalid JSON: {error}"))
        return
    if not isinstance(document, dict):
        read.unreadable.append((message.partition, message.offset, "not a JSON object"))
        return
    if sellers is not None and document.get("seller_id") not in sellers and not (also and also(document)):
        return
    try:
        parsed = model.model_validate(document)
    except ValidationError as error:
        read.unreadable.append((message.partition, message.offset, str(error).splitlines()[0]))
        return
    read.records.append(Record(message.partition, message.offset, key, parsed))


async def read_topic(
    bootstrap: str, topic: Topic[M], *, sellers: set[str] | None, kafka_options: Mapping[str, Any] | None = None
) -> list[tuple[int, int, M]]:
    """(partition, offset, model) of every committed message of `topic` of these sellers,
    in partition and offset order. Messages that do not parse are left out (see `read_records`)."""
    read = await read_records(bootstrap, topic, sellers=sellers, kafka_options=kafka_options)
    return [(r.partition, r.offset, r.model) for r in read.records]


# --- Checking --------------------------------------------------------------------------------


@dataclass
class Report:
    """What the check found. Every count but `adjustments` and `keys` is a fault; `ok` means none."""

    adjustments: int = 0
    keys: int = 0
    duplicates: int = 0
    gaps: int = 0
    repeats: int = 0
    running_sum_errors: int = 0
    ungraded: int = 0
    misplaced: int = 0
    offered_twice: int = 0
    lost_or_extra: int = 0
    keys_off: int = 0
    unreadable: int = 0
    stock_checked: bool = False
    examples: dict[str, list[str]] = field(default_factory=dict)

    FAULTS = (
        "duplicates",
        "gaps",
        "repeats",
        "running_sum_errors",
        "ungraded",
        "misplaced",
        "offered_twice",
        "lost_or_extra",
        "unreadable",
    )

    @property
    def ok(self) -> bool:
        return all(getattr(self, name) == 0 for name in self.FAULTS)

    def note(self, check: str, example: str) -> None:
        """Count nothing; keep the first few examples of a fault so a failure can be chased."""
        found = self.examples.setdefault(check, [])
        if len(found) < EXAMPLES_PER_CHECK:
            found.append(example)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def table(self) -> Table:
        table = Table(title="Rebound guarantees", caption=f"{self.adjustments} stock adjustments on {self.keys} keys")
        table.add_column("Guarantee")
        table.add_column("Check")
        table.add_column("Found", justify="right")
        table.add_column("", justify="center")
        rows: list[tuple[str, str, int | None]] = [
            ("1 graded first", "+1 without an earlier A/B grade of its LPN", self.ungraded),
            ("2 exactly once", "adjustment_id seen more than once", self.duplicates),
            ("2 exactly once", "sequence numbers missing (per key)", self.gaps),
            ("2 exactly once", "sequence numbers repeated (per key)", self.repeats),
            ("2 exactly once", "available ≠ running sum of delta, or < 0", self.running_sum_errors),
            ("6 tenant isolation", "adjustment of another seller's unit or key", self.misplaced),
            ("one place", "unit offered on two keys at once", self.offered_twice),
            (
                "final stock",
                f"units lost or extra ({self.keys_off} keys off)",
                self.lost_or_extra if self.stock_checked else None,
            ),
            ("contract", "messages that do not parse", self.unreadable),
        ]
        for guarantee, check, found in rows:
            if found is None:
                table.add_row(guarantee, check, "—", "[dim]skipped[/]")
            else:
                table.add_row(guarantee, check, str(found), "[green]✓[/]" if found == 0 else "[red]✗[/]")
        return table


@dataclass
class _KeyState:
    last: int = 0  # highest sequence seen
    seen: set[int] = field(default_factory=set)
    running: int = 0
    available: int = 0
    picked: int = 0


def _unwrap(item: BaseModel | Record | tuple[int, int, BaseModel]) -> tuple[Any, str | None]:
    """(model, Kafka key or None) of a plain model, a Record, or a read_topic triple."""
    if isinstance(item, Record):
        return item.model, item.key
    if isinstance(item, tuple):
        return item[2], None
    return item, None


def check(
    adjustments: Sequence[StockAdjusted | Record | tuple[int, int, BaseModel]],
    graded: Iterable[UnitGraded | Record | tuple[int, int, BaseModel]],
    expected_stock: Mapping[str, int] | None,
    *,
    dispositions: Iterable[DispositionDecided | Record | tuple[int, int, BaseModel]] = (),
    unreadable: int = 0,
) -> Report:
    """Hold `adjustments` (in partition order; one key lives in one partition) to the guarantees.

    Pure. Each fault is counted once: a re-delivered adjustment_id is a duplicate and is then left
    out of the sequence and running-sum checks; after a running-sum error the sum restarts from
    the `available` seen, so one bad step is one error, not one per later adjustment."""
    report = Report(unreadable=unreadable)
    grades = [_unwrap(g)[0] for g in graded]
    grade_by_id: dict[UUID, UnitGraded] = {g.event_id: g for g in grades}
    owners_of: dict[str, set[str]] = {}
    grades_of: dict[str, list[UnitGraded]] = {}
    for g in grades:
        owners_of.setdefault(g.lpn, set()).add(g.seller_id)
        grades_of.setdefault(g.lpn, []).append(g)
    # A +1 placed by a disposition traces back to the grade the disposition was decided on.
    grade_of_disposition = {d.event_id: d.source_event_id for d in (_unwrap(x)[0] for x in dispositions)}

    seen_ids: set[UUID] = set()
    states: dict[str, _KeyState] = {}
    moves_of: dict[str, list[tuple[Any, int, str]]] = {}
    for item in adjustments:
        adj, record_key = _unwrap(item)
        report.adjustments += 1
        if adj.adjustment_id in seen_ids:
            report.duplicates += 1
            report.note("duplicates", f"{adj.adjustment_id}")
            continue
        seen_ids.add(adj.adjustment_id)
        key = STOCK_ADJUSTMENTS.key_of(adj)
        moves_of.setdefault(adj.cause.lpn, []).append((adj.occurred_at, adj.delta, key))
        state = states.setdefault(key, _KeyState())

        if adj.sequence in state.seen:
            report.repeats += 1
            report.note("repeats", f"{key} sequence {adj.sequence} again")
        else:
            if adj.sequence > state.last + 1:
                report.gaps += adj.sequence - state.last - 1
                report.note("gaps", f"{key}: {state.last} then {adj.sequence}")
            state.seen.add(adj.sequence)
            state.last = max(state.last, adj.sequence)

        state.running += adj.delta
        # Units picked for orders leave the key without a -1 (the storefront counted the sale).
        if adj.available != state.running - adj.picked or adj.available < 0 or adj.picked < state.picked:
            report.running_sum_errors += 1
            report.note(
                "running_sum_errors",
                f"{key} sequence {adj.sequence}: available {adj.available}, "
                f"running sum {state.running}, picked {adj.picked}",
            )
            state.running = adj.available + adj.picked
        state.available, state.picked = adj.available, adj.picked

        if adj.delta > 0:
            source = adj.cause.source_event_id
            decided_on = grade_of_disposition.get(source)
            cause = grade_by_id.get(source) or (grade_by_id.get(decided_on) if decided_on is not None else None)
            if cause is None:
                # Moved on by a connector's answer, or bagged into a lot: the unit's grade then.
                earlier = [g for g in grades_of.get(adj.cause.lpn, []) if g.occurred_at <= adj.occurred_at]
                cause = max(earlier, key=lambda g: g.revision) if earlier else None
            if (
                cause is None
                or cause.lpn != adj.cause.lpn
                or cause.grade not in ("A", "B")
                or cause.occurred_at > adj.occurred_at
            ):
                report.ungraded += 1
                report.note(
                    "ungraded",
                    f"{key} +{adj.delta} for {adj.cause.lpn} "
                    f"(cause {adj.cause.source_event_id}: {cause.grade if cause else 'no grade'})",
                )

        owners = owners_of.get(adj.cause.lpn, set())
        key_seller = record_key.split(":", 1)[0] if record_key is not None else adj.seller_id
        if owners - {adj.seller_id} or key_seller != adj.seller_id:
            report.misplaced += 1
            report.note(
                "misplaced",
                f"{adj.adjustment_id} of {adj.seller_id} on key {record_key or key}, "
                f"unit {adj.cause.lpn} graded for {sorted(owners)}",
            )

    _check_one_place(report, moves_of)
    report.keys = len(states)
    if expected_stock is not None:
        report.stock_checked = True
        for key in sorted(set(expected_stock) | set(states)):
            final = states[key].available if key in states else 0
            diff = final - expected_stock.get(key, 0)
            if diff:
                report.lost_or_extra += abs(diff)
                report.keys_off += 1
                report.note("lost_or_extra", f"{key}: {final}, expected {expected_stock.get(key, 0)}")
    return report


def _check_one_place(report: Report, moves_of: Mapping[str, list[tuple[Any, int, str]]]) -> None:
    """Replay each unit's moves: a +1 while it is still on another key offers it twice. A move's
    -1 and +1 share one timestamp (one applied record), and records of one seller and warehouse
    are stamped in the order they were applied (strictly increasing, on one clock), so sorting by
    (time, delta) replays them in order."""
    for lpn, moves in moves_of.items():
        on: str | None = None
        for at, delta, key in sorted(moves, key=lambda m: (m[0], m[1])):
            if delta > 0:
                if on is not None and on != key:
                    report.offered_twice += 1
                    report.note("offered_twice", f"{lpn} put on {key} at {at} while still on {on}")
                on = key
            elif on == key:
                on = None


async def check_topics(
    bootstrap: str,
    sellers: Iterable[str],
    expected_stock: Mapping[str, int] | None,
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> Report:
    """Read the adjustments and grades of these sellers and check them. Grades of other sellers
    are read too when an adjustment names their LPN, so a cross-tenant move is seen."""
    wanted = set(sellers)
    adjustments = await read_records(bootstrap, STOCK_ADJUSTMENTS, sellers=wanted, kafka_options=kafka_options)
    lpns = {r.model.cause.lpn for r in adjustments.records}
    graded = await read_records(
        bootstrap,
        UNIT_GRADED,
        sellers=wanted,
        also=lambda document: document.get("lpn") in lpns,
        kafka_options=kafka_options,
    )
    decided = await read_records(bootstrap, DISPOSITIONS, sellers=wanted, kafka_options=kafka_options)
    report = check(
        adjustments.records,
        graded.records,
        expected_stock,
        dispositions=decided.records,
        unreadable=len(adjustments.unreadable) + len(graded.unreadable) + len(decided.unreadable),
    )
    for partition, offset, error in (adjustments.unreadable + graded.unreadable + decided.unreadable)[
        :EXAMPLES_PER_CHECK
    ]:
        report.note("unreadable", f"partition {partition} offset {offset}: {error}")
    return report
