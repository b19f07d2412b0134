"""An independent check of Rebound's guarantees, from the outside, as a storefront connector sees it.

It reads the topics with `isolation_level=read_committed`, parses their raw JSON itself, and holds
Rebound's output to the guarantees of docs/guarantees.md: nothing sellable unless its latest grade
allows it, every adjustment once with a gapless sequence per key and `available` the running sum,
listings, allocations and exchange answers each once and none missing, one unit in one place, a
pick only where the warehouse picked, tenant isolation, and, given the simulator's expectation, the
final stock per key. It imports nothing from the services nor from the contracts package: a checker
that shares the code under test shares its bugs, and one that parsed through the contracts would
accept whatever they wrongly accept.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.table import Table

EXAMPLES_PER_CHECK = 5

STOCK_ADJUSTMENTS = "storefront.stock-adjustments.v1"
UNIT_GRADED = "returns.unit-graded.v1"
DISPOSITIONS = "returns.disposition-decided.v1"
ALLOCATIONS = "returns.unit-allocated.v1"
LISTINGS = "storefront.listings.v1"
EXCHANGE_ALLOCATED = "returns.exchange-allocated.v1"
EXCHANGE_REQUESTED = "returns.exchange-requested.v1"
UNIT_PICKED = "wms.unit-picked.v1"
EXCEPTIONS = "returns.exceptions.v1"
DLQ = "returns.dlq.v1"
SELLER_KEYED = frozenset({STOCK_ADJUSTMENTS, LISTINGS, EXCHANGE_ALLOCATED})
"""Topics whose Kafka key starts with the seller id: a record's key and body must name one seller."""
SELLABLE = frozenset({"A", "B"})


# --- Reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A record as read: where it was, its Kafka key, and its JSON object."""

    partition: int
    offset: int
    key: str | None
    document: dict[str, Any]


@dataclass
class RawRead:
    records: list[Raw] = field(default_factory=list)
    unreadable: list[tuple[int, int, str]] = field(default_factory=list)
    """(partition, offset, error) of records that are not a JSON object."""


Keep = Callable[[str | None, Mapping[str, Any]], bool]


async def read_raw(
    bootstrap: str,
    topic: str,
    *,
    keep: Keep | None = None,
    idle_timeout_s: float = 60.0,
    kafka_options: Mapping[str, Any] | None = None,
) -> RawRead:
    """Every committed record of a topic, from the beginning up to its last stable offset, in
    partition and offset order. No consumer group: the checker must not move any service's offsets,
    and reads all partitions itself. `keep(key, document)` chooses the objects to keep (None: all);
    records that are not a JSON object are always reported. `kafka_options`: the client's security
    arguments (TLS, SASL), as aiokafka takes them."""
    read = RawRead()
    options = dict(kafka_options or {})
    numbers = await _partitions_of(bootstrap, topic, options)
    if not numbers:
        return read
    partitions = [TopicPartition(topic, p) for p in numbers]
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
                    if message.offset < ends[tp]:
                        _decode_into(read, message, keep)
            moved = False
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    moved = True
            if batches or moved:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"{topic}: no progress for {idle_timeout_s}s on {sorted(map(str, pending))}")
    finally:
        await consumer.stop()
    read.records.sort(key=lambda r: (r.partition, r.offset))
    return read


async def _partitions_of(bootstrap: str, topic: str, options: Mapping[str, Any]) -> list[int]:
    """The topic's partition numbers, [] when it does not exist (and without creating it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        return []
    return sorted(p["partition"] for p in described["partitions"])


def _decode_into(read: RawRead, message: Any, keep: Keep | None) -> None:
    if message.value is None:
        return
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    try:
        document = orjson.loads(message.value)  # as the services read: any depth up to 1,024
    except ValueError as error:
        read.unreadable.append((message.partition, message.offset, f"invalid JSON: {error}"))
        return
    if not isinstance(document, dict):
        read.unreadable.append((message.partition, message.offset, "not a JSON object"))
        return
    if keep is None or keep(key, document):
        read.records.append(Raw(message.partition, message.offset, key, document))


@dataclass
class History:
    """What the checker reads, topic by topic, as raw records. `unreadable` lists (topic,
    partition, offset, error) of outbound records that are not a JSON object."""

    adjustments: list[Raw] = field(default_factory=list)
    grades: list[Raw] = field(default_factory=list)
    dispositions: list[Raw] = field(default_factory=list)
    allocations: list[Raw] = field(default_factory=list)
    listings: list[Raw] = field(default_factory=list)
    exchange_answers: list[Raw] = field(default_factory=list)
    exchange_requests: list[Raw] = field(default_factory=list)
    picks: list[Raw] = field(default_factory=list)
    refusals: list[Raw] = field(default_factory=list)
    """Dead letters and exceptions: their `source` says which input was refused."""
    unreadable: list[tuple[str, int, int, str]] = field(default_factory=list)


async def read_history(
    bootstrap: str, sellers: Iterable[str], *, kafka_options: Mapping[str, Any] | None = None
) -> History:
    """The records of these sellers on every topic the checker holds to the guarantees, plus those
    naming no seller (counted, never skipped), and the grades of other sellers for the LPNs an
    adjustment names (so a cross-tenant move is seen)."""
    wanted = set(sellers)

    def ours(key: str | None, document: Mapping[str, Any]) -> bool:
        seller = document.get("seller_id")
        return not isinstance(seller, str) or not seller or seller in wanted or _key_seller(key) in wanted

    async def read(topic: str, keep: Keep) -> list[Raw]:
        raw = await read_raw(bootstrap, topic, keep=keep, kafka_options=kafka_options)
        history.unreadable += [(topic, p, o, error) for p, o, error in raw.unreadable]
        return raw.records

    history = History()
    history.adjustments = await read(STOCK_ADJUSTMENTS, ours)
    named = {_cause_lpn(r.document) for r in history.adjustments}
    history.grades = await read(UNIT_GRADED, lambda key, document: ours(key, document) or document.get("lpn") in named)
    history.dispositions = await read(DISPOSITIONS, ours)
    history.allocations = await read(ALLOCATIONS, ours)
    history.listings = await read(LISTINGS, ours)
    history.exchange_answers = await read(EXCHANGE_ALLOCATED, ours)
    # Inputs: what the warehouse and the shops asked for. Their bad records are not Rebound's output.
    for topic, into in ((EXCHANGE_REQUESTED, history.exchange_requests), (UNIT_PICKED, history.picks)):
        into += (await read_raw(bootstrap, topic, keep=ours, kafka_options=kafka_options)).records
    refused = {EXCHANGE_REQUESTED, DISPOSITIONS}
    for topic in (DLQ, EXCEPTIONS):
        history.refusals += await read(
            topic,
            lambda _key, document: (
                isinstance(document.get("source"), dict) and document["source"].get("topic") in refused
            ),
        )
    return history


def _key_seller(key: str | None) -> str | None:
    return key.split(":", 1)[0] if key is not None else None


def _cause_lpn(document: Mapping[str, Any]) -> Any:
    cause = document.get("cause")
    return cause.get("lpn") if isinstance(cause, dict) else None


# --- Parsing, by the checker's own reading of the contract ------------------------------------------


class Malformed(ValueError):
    """A record lacks a field the checker needs, or has it of the wrong type."""


def _text(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise Malformed(f"{name} is {value!r}, not a non-empty string")
    return value


def _optional_text(document: Mapping[str, Any], name: str) -> str | None:
    return None if document.get(name) is None else _text(document, name)


def _int(document: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = document.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed(f"{name} is {value!r}, not an integer")
    return value


def _time(document: Mapping[str, Any], name: str) -> datetime:
    value = _text(document, name)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(f"{name} is {value!r}, not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise Malformed(f"{name} is {value!r}, without a UTC offset")
    return at


def _object(document: Mapping[str, Any], name: str, *, optional: bool = False) -> dict[str, Any] | None:
    value = document.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise Malformed(f"{name} is {value!r}, not an object")
    return value


def stock_key(seller_id: str, channel: str, warehouse_id: str, sku: str, condition: str) -> str:
    """A listing key as the topics key it: `seller_id:channel:warehouse_id:sku:condition`."""
    return f"{seller_id}:{channel}:{warehouse_id}:{sku}:{condition}"


@dataclass(frozen=True)
class Adjustment:
    adjustment_id: str
    occurred_at: datetime
    seller_id: str
    key: str
    delta: int
    available: int
    sequence: int
    picked: int
    kind: str
    lpn: str
    source: str

    @classmethod
    def parse(cls, raw: Raw) -> Adjustment:
        d = raw.document
        cause = _object(d, "cause")
        assert cause is not None
        seller = _text(d, "seller_id")
        key = stock_key(seller, _text(d, "channel"), _text(d, "warehouse_id"), _text(d, "sku"), _text(d, "condition"))
        return cls(
            _text(d, "adjustment_id"),
            _time(d, "occurred_at"),
            seller,
            key,
            _int(d, "delta"),
            _int(d, "available"),
            _int(d, "sequence"),
            _int(d, "picked", 0),
            _text(cause, "kind"),
            _text(cause, "lpn"),
            _text(cause, "source_event_id"),
        )

    @property
    def channel(self) -> str:
        return self.key.split(":")[1]


@dataclass(frozen=True)
class Grade:
    event_id: str
    occurred_at: datetime
    seller_id: str
    lpn: str
    grade: str
    revision: int

    @classmethod
    def parse(cls, raw: Raw) -> Grade:
        d = raw.document
        return cls(
            _text(d, "event_id"),
            _time(d, "occurred_at"),
            _text(d, "seller_id"),
            _text(d, "lpn"),
            _text(d, "grade"),
            _int(d, "revision"),
        )


@dataclass(frozen=True)
class Disposition:
    event_id: str
    seller_id: str
    lpn: str
    revision: int
    policy_version: int
    grade_event_id: str
    position: tuple[int, int]

    @classmethod
    def parse(cls, raw: Raw) -> Disposition:
        d = raw.document
        return cls(
            _text(d, "event_id"),
            _text(d, "seller_id"),
            _text(d, "lpn"),
            _int(d, "grade_revision"),
            _int(d, "policy_version"),
            _text(d, "source_event_id"),
            (raw.partition, raw.offset),
        )


@dataclass(frozen=True)
class Allocation:
    event_id: str
    occurred_at: datetime
    seller_id: str
    lpn: str
    revision: int
    source: str
    priced: bool
    """The unit went to a destination with a price of its own: a listing is requested for it."""

    @classmethod
    def parse(cls, raw: Raw) -> Allocation:
        d = raw.document
        destination = _object(d, "destination", optional=True)
        return cls(
            _text(d, "event_id"),
            _time(d, "occurred_at"),
            _text(d, "seller_id"),
            _text(d, "lpn"),
            _int(d, "grade_revision"),
            _text(d, "source_event_id"),
            destination is not None and destination.get("price") is not None,
        )


@dataclass(frozen=True)
class ListingRequest:
    event_id: str
    occurred_at: datetime
    seller_id: str
    key: str
    lot: tuple[str, tuple[str, ...]] | None

    @classmethod
    def parse(cls, raw: Raw) -> ListingRequest:
        d = raw.document
        seller = _text(d, "seller_id")
        key = stock_key(seller, _text(d, "channel"), _text(d, "warehouse_id"), _text(d, "sku"), _text(d, "condition"))
        lot = _object(d, "lot", optional=True)
        contents = None
        if lot is not None:
            lpns = lot.get("lpns")
            if not isinstance(lpns, list) or not all(isinstance(lpn, str) for lpn in lpns):
                raise Malformed(f"lot.lpns is {lpns!r}, not a list of LPNs")
            contents = (_text(lot, "lot_id"), tuple(lpns))
        return cls(_text(d, "event_id"), _time(d, "occurred_at"), seller, key, contents)


@dataclass(frozen=True)
class ExchangeAnswer:
    event_id: str
    seller_id: str
    exchange_id: str
    lpn: str | None

    @classmethod
    def parse(cls, raw: Raw) -> ExchangeAnswer:
        d = raw.document
        return cls(_text(d, "event_id"), _text(d, "seller_id"), _text(d, "exchange_id"), _optional_text(d, "lpn"))


@dataclass(frozen=True)
class ExchangeRequest:
    seller_id: str
    exchange_id: str
    position: tuple[int, int]

    @classmethod
    def parse(cls, raw: Raw) -> ExchangeRequest:
        d = raw.document
        return cls(_text(d, "seller_id"), _text(d, "exchange_id"), (raw.partition, raw.offset))


@dataclass(frozen=True)
class Pick:
    seller_id: str
    warehouse_id: str
    lpn: str
    channel: str

    @classmethod
    def parse(cls, raw: Raw) -> Pick:
        d = raw.document
        return cls(_text(d, "seller_id"), _text(d, "warehouse_id"), _text(d, "lpn"), _text(d, "channel"))


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
    after_downgrade: int = 0
    misplaced: int = 0
    unattributed: int = 0
    offered_twice: int = 0
    added_twice: int = 0
    unbacked_picks: int = 0
    allocations_missing: int = 0
    allocations_repeated: int = 0
    listings_missing: int = 0
    listings_repeated: int = 0
    answers_missing: int = 0
    answers_repeated: int = 0
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
        "after_downgrade",
        "misplaced",
        "unattributed",
        "offered_twice",
        "added_twice",
        "unbacked_picks",
        "allocations_missing",
        "allocations_repeated",
        "listings_missing",
        "listings_repeated",
        "answers_missing",
        "answers_repeated",
        "lost_or_extra",
        "unreadable",
    )

    @property
    def ok(self) -> bool:
        return all(getattr(self, name) == 0 for name in self.FAULTS)

    def count(self, check: str, example: str, n: int = 1) -> None:
        """Count `n` faults of `check` and keep the first few examples, so a failure can be chased."""
        setattr(self, check, getattr(self, check) + n)
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
            ("1 graded first", "+1 or still offered after a C/SCRAP grade", self.after_downgrade),
            ("2 exactly once", "adjustment_id seen more than once", self.duplicates),
            ("2 exactly once", "sequence numbers missing (per key)", self.gaps),
            ("2 exactly once", "sequence numbers repeated (per key)", self.repeats),
            ("2 exactly once", "available ≠ running sum of delta, or < 0", self.running_sum_errors),
            ("2 exactly once", "picked without a pick of a unit on the key", self.unbacked_picks),
            ("2 exactly once", "allocation missing (per unit and cause)", self.allocations_missing),
            ("2 exactly once", "allocation seen more than once", self.allocations_repeated),
            ("2 exactly once", "listing request missing for a new key", self.listings_missing),
            ("2 exactly once", "listing request seen more than once", self.listings_repeated),
            ("2 exactly once", "exchange request without an answer", self.answers_missing),
            ("2 exactly once", "exchange answered more than once", self.answers_repeated),
            ("6 tenant isolation", "record of another seller's unit or key", self.misplaced),
            ("6 tenant isolation", "record without a seller", self.unattributed),
            ("one place", "unit offered on two keys at once", self.offered_twice),
            ("one place", "unit added twice to the key it is on", self.added_twice),
            (
                "final stock",
                f"units lost or extra ({self.keys_off} keys off)",
                self.lost_or_extra if self.stock_checked else None,
            ),
            ("contract", "records that do not parse", self.unreadable),
        ]
        for guarantee, check, found in rows:
            if found is None:
                table.add_row(guarantee, check, "—", "[dim]skipped[/]")
            else:
                table.add_row(guarantee, check, str(found), "[green]✓[/]" if found == 0 else "[red]✗[/]")
        return table


T = TypeVar("T")


@dataclass
class _Parsed:
    """The history's records of the sellers checked, parsed by the checker's own reading."""

    adjustments: list[Adjustment]
    grades: list[Grade]
    dispositions: list[Disposition]
    allocations: list[Allocation]
    listings: list[ListingRequest]
    answers: list[ExchangeAnswer]
    requests: list[ExchangeRequest]
    picks: list[Pick]
    refused: set[tuple[str, Any, Any]]


def _parse_all(
    report: Report,
    topic: str,
    records: Iterable[Raw],
    parse: Callable[[Raw], T],
    sellers: set[str] | None,
    *,
    output: bool = True,
    also: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[T]:
    """Parse the records of `sellers` (None: all). A record of Rebound's output (`output`) without
    a seller is counted `unattributed`, one that lacks what the checker reads `unreadable`, one whose
    key names another seller than its body `misplaced`; an input's bad records are left out (the
    services dead-letter them)."""
    parsed: list[T] = []
    for raw in records:
        seller = raw.document.get("seller_id")
        where = f"{topic} partition {raw.partition} offset {raw.offset}"
        if not isinstance(seller, str) or not seller:
            if output:
                report.count("unattributed", f"{where}: seller_id {seller!r}")
            continue
        key_seller = _key_seller(raw.key) if topic in SELLER_KEYED else None
        wanted = (
            sellers is None or seller in sellers or key_seller in sellers or (also is not None and also(raw.document))
        )
        if not wanted:
            continue
        try:
            parsed.append(parse(raw))
        except Malformed as error:
            if output:
                report.count("unreadable", f"{where}: {error}")
            continue
        if output and key_seller is not None and key_seller != seller:
            report.count("misplaced", f"{where}: seller {seller} on key {raw.key}")
    return parsed


def check(
    history: History, expected_stock: Mapping[str, int] | None, *, sellers: Iterable[str] | None = None
) -> Report:
    """Hold `history` (each topic in partition order; one key lives in one partition) to the
    guarantees, for `sellers` (None: every seller in it).

    Pure. Each fault is counted once: a re-delivered adjustment_id is a duplicate and is then left
    out of the other checks; after a running-sum error the sum restarts from the `available` seen,
    so one bad step is one error, not one per later adjustment."""
    report = Report()
    for topic, partition, offset, error in history.unreadable:
        report.count("unreadable", f"{topic} partition {partition} offset {offset}: {error}")
    wanted = set(sellers) if sellers is not None else None
    adjustments = _parse_all(report, STOCK_ADJUSTMENTS, history.adjustments, Adjustment.parse, wanted)
    named = {a.lpn for a in adjustments}
    refused: set[tuple[str, Any, Any]] = set()
    for raw in history.refusals:
        source = raw.document.get("source")
        if isinstance(source, dict):
            refused.add((str(source.get("topic")), source.get("partition", -1), source.get("offset", -1)))
    seen = _Parsed(
        adjustments=_unique_adjustments(report, adjustments),
        grades=_parse_all(
            report, UNIT_GRADED, history.grades, Grade.parse, wanted, also=lambda document: document.get("lpn") in named
        ),
        dispositions=_parse_all(report, DISPOSITIONS, history.dispositions, Disposition.parse, wanted),
        allocations=_parse_all(report, ALLOCATIONS, history.allocations, Allocation.parse, wanted),
        listings=_parse_all(report, LISTINGS, history.listings, ListingRequest.parse, wanted),
        answers=_parse_all(report, EXCHANGE_ALLOCATED, history.exchange_answers, ExchangeAnswer.parse, wanted),
        requests=_parse_all(
            report, EXCHANGE_REQUESTED, history.exchange_requests, ExchangeRequest.parse, wanted, output=False
        ),
        picks=_parse_all(report, UNIT_PICKED, history.picks, Pick.parse, wanted, output=False),
        refused=refused,
    )
    report.adjustments = len(adjustments)
    states = _check_sequences(report, seen.adjustments)
    report.keys = len(states)
    places = _check_places(report, seen, _check_grades(report, seen))
    _check_picks(report, seen, places, states)
    _check_allocations(report, seen, places)
    _check_listings(report, seen)
    _check_exchanges(report, seen)
    if expected_stock is not None:
        report.stock_checked = True
        for key in sorted(set(expected_stock) | set(states)):
            final = states[key].available if key in states else 0
            diff = final - expected_stock.get(key, 0)
            if diff:
                report.keys_off += 1
                report.count("lost_or_extra", f"{key}: {final}, expected {expected_stock.get(key, 0)}", abs(diff))
    return report


def _unique_adjustments(report: Report, adjustments: Sequence[Adjustment]) -> list[Adjustment]:
    seen: set[str] = set()
    unique = []
    for adj in adjustments:
        if adj.adjustment_id in seen:
            report.count("duplicates", adj.adjustment_id)
            continue
        seen.add(adj.adjustment_id)
        unique.append(adj)
    return unique


@dataclass
class _KeyState:
    last: int = 0  # highest sequence seen
    seen: set[int] = field(default_factory=set)
    running: int = 0
    available: int = 0
    picked: int = 0


def _check_sequences(report: Report, adjustments: Sequence[Adjustment]) -> dict[str, _KeyState]:
    """Per key: sequence 1..n without gap or repeat, `available` the running sum of `delta` minus
    `picked`, never below zero, and `picked` never going down."""
    states: dict[str, _KeyState] = {}
    for adj in adjustments:
        state = states.setdefault(adj.key, _KeyState())
        if adj.sequence in state.seen:
            report.count("repeats", f"{adj.key} sequence {adj.sequence} again")
        else:
            if adj.sequence > state.last + 1:
                report.count("gaps", f"{adj.key}: {state.last} then {adj.sequence}", adj.sequence - state.last - 1)
            state.seen.add(adj.sequence)
            state.last = max(state.last, adj.sequence)
        state.running += adj.delta
        # Units picked for orders leave the key without a -1 (the storefront counted the sale).
        if adj.available != state.running - adj.picked or adj.available < 0 or adj.picked < state.picked:
            report.count(
                "running_sum_errors",
                f"{adj.key} sequence {adj.sequence}: available {adj.available}, "
                f"running sum {state.running}, picked {adj.picked}",
            )
            state.running = adj.available + adj.picked
        state.available, state.picked = adj.available, max(state.picked, adj.picked)
    return states


def _check_grades(report: Report, seen: _Parsed) -> set[str]:
    """Every +1 traces to an A/B grade of its own LPN from before it, and no adjustment moves a
    unit graded for another seller. Returns the LPNs of the +1s found ungraded."""
    ungraded: set[str] = set()
    grade_by_id = {g.event_id: g for g in seen.grades}
    grade_of_disposition = {d.event_id: d.grade_event_id for d in seen.dispositions}
    owners_of: dict[str, set[str]] = defaultdict(set)
    grades_of: dict[str, list[Grade]] = defaultdict(list)
    for g in seen.grades:
        owners_of[g.lpn].add(g.seller_id)
        grades_of[g.lpn].append(g)
    for adj in seen.adjustments:
        if adj.delta > 0:
            decided_on = grade_of_disposition.get(adj.source)
            cause = grade_by_id.get(adj.source) or (grade_by_id.get(decided_on) if decided_on is not None else None)
            if cause is None:
                # Moved on by a connector's answer, or bagged into a lot: the unit's grade then.
                earlier = [g for g in grades_of.get(adj.lpn, []) if g.occurred_at <= adj.occurred_at]
                cause = max(earlier, key=lambda g: g.revision) if earlier else None
            if (
                cause is None
                or cause.lpn != adj.lpn
                or cause.grade not in SELLABLE
                or cause.occurred_at > adj.occurred_at
            ):
                ungraded.add(adj.lpn)
                grade = cause.grade if cause else "no grade"
                report.count("ungraded", f"{adj.key} +{adj.delta} for {adj.lpn} (cause {adj.source}: {grade})")
        others = owners_of.get(adj.lpn, set()) - {adj.seller_id}
        if others:
            report.count(
                "misplaced", f"{adj.adjustment_id} of {adj.seller_id}: unit {adj.lpn} graded for {sorted(others)}"
            )
    return ungraded


@dataclass
class _Places:
    """Where each unit ended, by a replay of its moves."""

    on: dict[str, str] = field(default_factory=dict)
    """LPN → the key it is on at the end (lots: the unit whose grading formed the lot)."""
    lots: dict[str, tuple[str, str]] = field(default_factory=dict)
    """LPN → (lot id, lot key) of the lot it was bagged into."""
    picked: set[str] = field(default_factory=set)


def _check_places(report: Report, seen: _Parsed, ungraded: set[str]) -> _Places:
    """Replay each unit's moves and the grades the ledger acted on, in the order it applied them.

    Records of one seller and warehouse are stamped in the order they were applied (strictly
    increasing, on one clock), and a move's -1 and +1 and its allocation share one timestamp, so
    sorting by (time, allocation first, delta) replays them in order. A +1 while the unit is on
    another key offers it twice; on the same key, adds it twice. A +1 caused by a grade older than
    one the ledger already acted on is stale; at the end, a unit whose latest grade is C or SCRAP
    must not be on offer. Each unit is counted once, and not when its +1 is `ungraded` already."""
    revision_of: dict[str, int] = {g.event_id: g.revision for g in seen.grades}
    revision_of.update({d.event_id: d.revision for d in seen.dispositions})
    grade_at: dict[tuple[str, int], str] = {(g.lpn, g.revision): g.grade for g in seen.grades}
    latest: dict[str, Grade] = {}
    for g in seen.grades:
        if g.lpn not in latest or g.revision > latest[g.lpn].revision:
            latest[g.lpn] = g
    steps: dict[str, list[tuple[datetime, int, int, str, int | None, str]]] = defaultdict(list)
    for a in seen.allocations:
        steps[a.lpn].append((a.occurred_at, 0, 0, "", a.revision, a.event_id))
    for adj in seen.adjustments:
        steps[adj.lpn].append((adj.occurred_at, 1, adj.delta, adj.key, revision_of.get(adj.source), adj.kind))

    places = _Places()
    for listing in seen.listings:
        if listing.lot is not None:
            lot_id, lpns = listing.lot
            for lpn in lpns:
                places.lots[lpn] = (lot_id, listing.key)
    places.picked = {p.lpn for p in seen.picks}
    for lpn, moves in steps.items():
        on: str | None = None
        acted = 0
        flagged = lpn in ungraded
        for at, is_move, delta, key, revision, _ in sorted(moves, key=lambda m: (m[0], m[1], m[2])):
            if not is_move:
                acted = max(acted, revision or 0)
                continue
            if delta > 0:
                if on == key:
                    report.count("added_twice", f"{lpn} put on {key} at {at} while already on it")
                elif on is not None:
                    report.count("offered_twice", f"{lpn} put on {key} at {at} while still on {on}")
                on = key
                if revision is not None and revision < acted:
                    stale = grade_at.get((lpn, acted), "?")
                    report.count(
                        "after_downgrade", f"{lpn} +1 on {key} at {at}: grade {revision} after {acted} ({stale})"
                    )
                    flagged = True
            elif on == key:
                on = None
            if revision is not None:
                acted = max(acted, revision)
        if on is not None:
            places.on[lpn] = on
            final = latest.get(lpn)
            if (
                final is not None
                and final.grade not in SELLABLE
                and lpn not in places.picked
                and lpn not in places.lots
                and not flagged
            ):
                report.count(
                    "after_downgrade", f"{lpn} still on {on}, its latest grade {final.revision} is {final.grade}"
                )
    return places


def _check_picks(report: Report, seen: _Parsed, places: _Places, states: Mapping[str, _KeyState]) -> None:
    """`picked` is the services' own count: it must not exceed the picks the warehouse made of units
    that were on the key, on the key's channel (a lot counts once)."""
    backed: dict[str, set[str]] = defaultdict(set)
    for pick in seen.picks:
        if pick.lpn in places.lots:
            lot_id, key = places.lots[pick.lpn]
            unit = f"lot {lot_id}"
        elif pick.lpn in places.on:
            key, unit = places.on[pick.lpn], pick.lpn
        else:
            continue
        if key.split(":")[1] == pick.channel and key.startswith(f"{pick.seller_id}:"):
            backed[key].add(unit)
    for key, state in states.items():
        if state.picked > len(backed[key]):
            report.count(
                "unbacked_picks",
                f"{key}: picked {state.picked}, {len(backed[key])} picks of its units",
                state.picked - len(backed[key]),
            )


def _check_allocations(report: Report, seen: _Parsed, places: _Places) -> None:
    """Every allocation once. One for each move the ledger made, and one for each unit's latest
    disposition unless the unit had left (sold, exchanged, bagged) or the disposition was refused."""
    ids: set[str] = set()
    made: set[tuple[str, str]] = set()
    for a in seen.allocations:
        if a.event_id in ids:
            report.count("allocations_repeated", f"{a.event_id} ({a.lpn})")
        ids.add(a.event_id)
        made.add((a.lpn, a.source))
    disposition_ids = {d.event_id for d in seen.dispositions}
    moved = {
        (adj.lpn, adj.source)
        for adj in seen.adjustments
        if adj.kind == "unit_reallocated" or (adj.kind in _ALLOCATING and adj.source in disposition_ids)
    }
    missing = sorted(moved - made)
    for lpn, source in missing:
        report.count("allocations_missing", f"{lpn}: moved by {source}, no allocation")
    exchanged = {a.lpn for a in seen.answers if a.lpn is not None}
    newest: dict[str, list[Disposition]] = {}
    for d in seen.dispositions:
        if (DISPOSITIONS, *d.position) in seen.refused:
            continue
        current = newest.get(d.lpn)
        rank = (d.revision, d.policy_version)
        if current is None or rank > (current[0].revision, current[0].policy_version):
            newest[d.lpn] = [d]
        elif rank == (current[0].revision, current[0].policy_version):
            current.append(d)
    for lpn, decided in newest.items():
        if lpn in places.picked or lpn in exchanged or lpn in places.lots or any(m[0] == lpn for m in missing):
            continue  # it left, or it is counted already
        if not any((lpn, d.event_id) in made for d in decided):
            report.count("allocations_missing", f"{lpn}: disposition {decided[0].event_id} not allocated")


_ALLOCATING = frozenset({"unit_graded", "unit_regraded", "unit_reallocated"})
"""Causes of a move made by an allocation (which says where the unit went)."""


def _check_listings(report: Report, seen: _Parsed) -> None:
    """Every listing request once, and one wherever a unit opens a key that has a price of its own
    (an open-box or another channel's listing, a lot), in the transaction of that +1."""
    ids: set[str] = set()
    requested: set[tuple[str, datetime]] = set()
    for listing in seen.listings:
        if listing.event_id in ids:
            report.count("listings_repeated", f"{listing.event_id} ({listing.key})")
        ids.add(listing.event_id)
        requested.add((listing.key, listing.occurred_at))
    priced = {(a.lpn, a.source) for a in seen.allocations if a.priced}
    for adj in seen.adjustments:
        opens = adj.delta > 0 and adj.available == 1
        if opens and (adj.kind == "lot_formed" or (adj.lpn, adj.source) in priced):
            if (adj.key, adj.occurred_at) not in requested:
                report.count(
                    "listings_missing", f"{adj.key} opened by {adj.lpn} at {adj.occurred_at}, no listing request"
                )


def _check_exchanges(report: Report, seen: _Parsed) -> None:
    """Every exchange request the services took (neither dead-lettered nor refused) has exactly one
    answer, published once."""
    ids: set[str] = set()
    answers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for answer in seen.answers:
        if answer.event_id in ids:
            report.count("answers_repeated", f"{answer.event_id} ({answer.exchange_id})")
        ids.add(answer.event_id)
        answers[(answer.seller_id, answer.exchange_id)].add(answer.event_id)
    for pair, answered in answers.items():
        if len(answered) > 1:
            report.count(
                "answers_repeated", f"exchange {pair[1]} of {pair[0]}: {len(answered)} answers", len(answered) - 1
            )
    for request in seen.requests:
        if (EXCHANGE_REQUESTED, *request.position) in seen.refused:
            continue
        if (request.seller_id, request.exchange_id) not in answers:
            report.count("answers_missing", f"exchange {request.exchange_id} of {request.seller_id}")


async def check_topics(
    bootstrap: str,
    sellers: Iterable[str],
    expected_stock: Mapping[str, int] | None,
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> Report:
    """Read these sellers' history from the topics and check it."""
    wanted = list(sellers)
    history = await read_history(bootstrap, wanted, kafka_options=kafka_options)
    return check(history, expected_stock, sellers=wanted)
