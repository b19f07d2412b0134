"""Bad input on every inbound topic, through the real batch processor of the service that
consumes it, against the real PostgreSQL: an unknown seller, the same event twice, the same
event_id with other content, and an oversized record in front of a valid one.

Each case prepares what its event needs (an RMA for a scan, a receipt for an inspection, a unit
on offer for a pick...), and reads back what the event changes, so every test checks the effect
in the service's tables as well as what the service emitted."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from rebound_contracts import InspectionChecks, RmaIssued, ScannedUnit, TenantEvent
from rebound_contracts.topics import (
    ACKS,
    ALL,
    ALLOCATIONS,
    DLQ,
    EXCEPTIONS,
    EXCHANGE_ALLOCATED,
    EXCHANGE_REQUESTED,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    UNIT_ADDED_TO_RETURN,
    UNIT_QUARANTINED,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
    UNIT_GRADED,
    UNIT_INSPECTED,
    UNIT_PICKED,
    UNIT_RECEIVED,
    UNIT_REFURBISHED,
    Topic,
)
from tests import factories as f

from .pipeline import Emitted, Pipeline

pytestmark = pytest.mark.integration


async def _rows(pipe: Pipeline, sql: str, *args: Any) -> list[tuple]:
    return sorted(tuple(r.values()) for r in await pipe.pool.fetch(sql, *args))


async def _place(pipe: Pipeline, seller: str, lpn: str, sku: str) -> str:
    """An A unit offered as new on the RMA's channel (the default policy); its stock key."""
    await pipe.feed(pipe.ledger, await pipe.decide([f.graded(seller, lpn, "A", sku=sku)]))
    return f"{seller}:tiktok:W1:{sku}:new"


# --- one case per inbound topic: prepare(pipe, seller) -> (event, its state once applied) ---------


async def _rma(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    order = f.rma(seller)  # its parcel was scanned first and waits for it
    await pipe.feed(
        pipe.intake,
        [pipe.record(f.scan(seller, order.tracking_number, [(pipe.id("L1"), "TEE-BLK-M")]), PARCEL_SCANNED.name)],
    )
    return order, ([(seller, order.order_id)], [(seller, order.return_id)], 0)


async def _rma_state(pipe: Pipeline, order: Any) -> Any:
    return (
        await _rows(pipe, "SELECT seller_id, order_id FROM intake.rmas WHERE return_id = $1", order.return_id),
        await _rows(pipe, "SELECT seller_id, return_id FROM intake.units WHERE lpn = $1", pipe.id("L1")),
        await pipe.pool.fetchval(
            "SELECT count(*) FROM intake.parked_scans WHERE tracking_number = $1", order.tracking_number
        ),
    )


async def _scan(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    order = f.rma(seller)
    await pipe.feed(pipe.intake, [pipe.record(order, RMA.name)])
    return f.scan(seller, order.tracking_number, [(pipe.id("L1"), "TEE-BLK-M")]), [
        (pipe.id("L1"), seller, order.return_id)
    ]


async def _scan_state(pipe: Pipeline, _event: Any) -> Any:
    return await _rows(
        pipe,
        "SELECT lpn, seller_id, return_id FROM intake.units WHERE lpn = ANY($1::text[])",
        [pipe.id("L1"), pipe.id("L2")],
    )


async def _match(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    order, relabelled = f.rma(seller), f.uid("T")  # its parcel came under a label no return carries
    await pipe.feed(
        pipe.intake,
        [
            pipe.record(order, RMA.name),
            pipe.record(f.scan(seller, relabelled, [(pipe.id("L1"), "TEE-BLK-M")]), PARCEL_SCANNED.name),
        ],
    )
    return f.match(seller, relabelled, order.return_id), ([(pipe.id("L1"), seller, order.return_id)], 0)


async def _match_state(pipe: Pipeline, match: Any) -> Any:
    return (
        await _rows(pipe, "SELECT lpn, seller_id, return_id FROM intake.units WHERE lpn = $1", pipe.id("L1")),
        await pipe.pool.fetchval(
            "SELECT count(*) FROM intake.parked_scans WHERE tracking_number = $1", match.tracking_number
        ),
    )


async def _received_unexpected(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    relabelled = f.uid("T")  # a parcel no return carries, waiting parked
    await pipe.feed(
        pipe.intake, [pipe.record(f.scan(seller, relabelled, [(pipe.id("L1"), "TEE-BLK-M")]), PARCEL_SCANNED.name)]
    )
    return f.received_unexpected(seller, relabelled), ([(pipe.id("L1"), seller, None)], 0)


async def _unexpected_unit(pipe: Pipeline, seller: str) -> RmaIssued:
    """A return of two tees whose parcel held one of them and a hat: the hat, L1, is an unexpected
    unit, and the return's second line has room for it."""
    order = f.rma(seller, lines=[("TEE-BLK-M", 1), ("TEE-BLK-L", 1)])
    scan = f.scan(seller, order.tracking_number, [(pipe.id("L0"), "TEE-BLK-M"), (pipe.id("L1"), "HAT-RED")])
    await pipe.feed(pipe.intake, [pipe.record(order, RMA.name), pipe.record(scan, PARCEL_SCANNED.name)])
    return order


async def _added(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    order = await _unexpected_unit(pipe, seller)
    return f.added(seller, pipe.id("L1"), order.return_id, "l1"), [(pipe.id("L1"), seller, order.return_id, None)]


async def _quarantined(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    await _unexpected_unit(pipe, seller)
    return f.quarantined(seller, pipe.id("L1")), [(pipe.id("L1"), seller, None, "counterfeit")]


async def _unit_state(pipe: Pipeline, _event: Any) -> Any:
    return await _rows(
        pipe, "SELECT lpn, seller_id, return_id, quarantine_reason FROM intake.units WHERE lpn = $1", pipe.id("L1")
    )


async def _inspection(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    await pipe.feed(pipe.grading, [pipe.record(f.received(seller, pipe.id("L1")), UNIT_RECEIVED.name)])
    return f.inspection(seller, pipe.id("L1"), "A"), (seller, "A", 1, [])


async def _refurbishment(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    lpn = pipe.id("L1")
    await pipe.feed(
        pipe.grading,
        [
            pipe.record(f.received(seller, lpn), UNIT_RECEIVED.name),
            pipe.record(f.inspection(seller, lpn, "B"), UNIT_INSPECTED.name),
        ],
    )  # worn box
    return f.refurbished(seller, lpn, "repackaged"), (seller, "A", 2, ["repackaged"])


async def _grading_state(pipe: Pipeline, event: Any) -> Any:
    row = await pipe.pool.fetchrow(
        "SELECT seller_id, grade, revision, refurbished FROM grading.units WHERE lpn = $1", event.lpn
    )
    assert row is not None
    return tuple(row.values())


async def _pick(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    key = await _place(pipe, seller, pipe.id("L1"), "HAT-1")
    # Sold on Amazon while offered on TikTok: TikTok hears -1.
    return f.picked(seller, pipe.id("L1"), channel="amazon"), ((seller, "sold", "amazon"), [(key, 0, 0)])


async def _unit_and_key_state(pipe: Pipeline, event: Any) -> Any:
    unit = await pipe.pool.fetchrow("SELECT seller_id, place, sold_channel FROM ledger.units WHERE lpn = $1", event.lpn)
    assert unit is not None
    keys = await _rows(pipe, "SELECT key, available, picked FROM ledger.stock WHERE seller_id = $1", event.seller_id)
    return tuple(unit.values()), keys


async def _exchange(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    await _place(pipe, seller, pipe.id("L1"), "DRESS-1")
    request = f.exchange(seller, "DRESS-1", exchange_id=pipe.id("X1"))
    return request, ([(seller, "allocated", pipe.id("L1"))], "exchanged")


async def _exchange_state(pipe: Pipeline, request: Any) -> Any:
    return (
        await _rows(
            pipe, "SELECT seller_id, status, lpn FROM ledger.exchanges WHERE exchange_id = $1", request.exchange_id
        ),
        await pipe.pool.fetchval("SELECT place FROM ledger.units WHERE lpn = $1", pipe.id("L1")),
    )


async def _ack(pipe: Pipeline, seller: str) -> tuple[TenantEvent, Any]:
    key = await _place(pipe, seller, pipe.id("L1"), "CAP-1")
    # Rejected: the key is blocked and its unit leaves it (the default policy has nowhere else).
    return f.ack(seller, key, "rejected", reason="needs a brand"), (
        [(seller, "rejected", "needs a brand")],
        ("held", None),
    )


async def _ack_state(pipe: Pipeline, ack: Any) -> Any:
    key = ACKS.key_of(ack)
    blocked = await _rows(pipe, "SELECT seller_id, status, reason FROM ledger.blocked_listings WHERE key = $1", key)
    unit = await pipe.pool.fetchrow("SELECT place, stock_key FROM ledger.units WHERE lpn = $1", pipe.id("L1"))
    assert unit is not None
    return (blocked, tuple(unit.values()))


@dataclass(frozen=True)
class Case:
    topic: Topic
    service: str  # the Pipeline attribute of the service that consumes the topic
    prepare: Callable[[Pipeline, str], Awaitable[tuple[TenantEvent, Any]]]
    state: Callable[[Pipeline, Any], Awaitable[Any]]
    conflict: Callable[[Pipeline], dict[str, Any]]  # other content under the same event_id
    emits: list[tuple[str, str]]  # what one application emits, sorted: (topic, kind of an exception)


CASES = [
    Case(RMA, "intake", _rma, _rma_state, lambda pipe: {"order_id": "other-order"}, [(UNIT_RECEIVED.name, "")]),
    Case(
        PARCEL_SCANNED,
        "intake",
        _scan,
        _scan_state,
        lambda pipe: {"units": [ScannedUnit(lpn=pipe.id("L2"), sku="TEE-BLK-M")]},
        [(UNIT_RECEIVED.name, "")],
    ),
    Case(
        PARCEL_MATCHED,
        "intake",
        _match,
        _match_state,
        lambda pipe: {"operator_id": "someone-else"},
        [(UNIT_RECEIVED.name, "")],
    ),
    Case(
        PARCEL_RECEIVED_UNEXPECTED,
        "intake",
        _received_unexpected,
        _match_state,
        lambda pipe: {"operator_id": "someone-else"},
        [(EXCEPTIONS.name, "unexpected_unit")],
    ),
    Case(
        UNIT_ADDED_TO_RETURN,
        "intake",
        _added,
        _unit_state,
        lambda pipe: {"line_id": "l7"},
        [(UNIT_RECEIVED.name, "")],
    ),
    Case(
        UNIT_QUARANTINED,
        "intake",
        _quarantined,
        _unit_state,
        lambda pipe: {"reason": "torn"},
        [],
    ),
    Case(
        UNIT_INSPECTED,
        "grading",
        _inspection,
        _grading_state,
        lambda pipe: {"checks": InspectionChecks(**f.CHECKS["SCRAP"])},
        [(UNIT_GRADED.name, "")],
    ),
    Case(
        UNIT_REFURBISHED,
        "grading",
        _refurbishment,
        _grading_state,
        lambda pipe: {"actions": ["cleaned"]},
        [(UNIT_GRADED.name, "")],
    ),
    Case(
        UNIT_PICKED,
        "ledger",
        _pick,
        _unit_and_key_state,
        lambda pipe: {"channel": "tiktok"},
        [(STOCK_ADJUSTMENTS.name, "")],
    ),
    Case(
        EXCHANGE_REQUESTED,
        "ledger",
        _exchange,
        _exchange_state,
        lambda pipe: {"sku": "DRESS-2"},
        [(EXCHANGE_ALLOCATED.name, ""), (STOCK_ADJUSTMENTS.name, "")],
    ),
    Case(
        ACKS,
        "ledger",
        _ack,
        _ack_state,
        lambda pipe: {"status": "paused", "reason": "holiday"},
        [(EXCEPTIONS.name, "no_destination"), (ALLOCATIONS.name, ""), (STOCK_ADJUSTMENTS.name, "")],
    ),
]


def test_every_inbound_topic_has_a_case() -> None:
    assert sorted(c.topic.name for c in CASES) == sorted(t.name for t in ALL if t.direction == "inbound")


def _summary(emitted: list[Emitted]) -> list[tuple[str, str]]:
    return sorted((e.topic, e.event.kind if e.topic == EXCEPTIONS.name else "") for e in emitted if e.topic != DLQ.name)


def _letters(emitted: list[Emitted]) -> list:
    return [e.event for e in emitted if e.topic == DLQ.name]


@pytest.fixture
def pipe(pool) -> Pipeline:
    return Pipeline(pool)


@dataclass
class Prepared:
    seller: str
    event: TenantEvent
    applied: Any  # the state once the event is applied
    before: Any  # the state before


@pytest.fixture(params=CASES, ids=lambda case: case.topic.name)
def case(request) -> Case:
    return request.param


@pytest.fixture
async def prepared(pipe: Pipeline, case: Case) -> Prepared:
    [seller] = await pipe.add_sellers("s")
    event, applied = await case.prepare(pipe, seller)
    await pipe.take_outbox(getattr(pipe, case.service))  # what preparing emitted is not under test
    before = await case.state(pipe, event)
    assert before != applied
    return Prepared(seller, event, applied, before)


async def test_an_event_of_an_unknown_seller_becomes_an_exception_and_changes_nothing(
    pipe: Pipeline,
    case: Case,
    prepared: Prepared,
) -> None:
    stranger = f"stranger-{uuid.uuid4().hex[:8]}"  # never registered
    foreign = prepared.event.model_copy(update={"seller_id": stranger})
    processor = getattr(pipe, case.service)
    stats = await pipe.feed(processor, [pipe.record(foreign, case.topic.name)])
    out = await pipe.take_outbox(processor)
    assert [(e.topic, e.event.kind, e.event.seller_id, e.event.source_event_id) for e in out] == [
        (EXCEPTIONS.name, "unknown_seller", stranger, foreign.event_id)
    ]
    assert (stats.applied, stats.exceptions, stats.dead_lettered) == (1, 1, 0)
    assert await case.state(pipe, prepared.event) == prepared.before


async def test_the_same_event_id_with_the_same_content_has_one_effect(
    pipe: Pipeline,
    case: Case,
    prepared: Prepared,
) -> None:
    processor = getattr(pipe, case.service)
    twice = await pipe.feed(
        processor, [pipe.record(prepared.event, case.topic.name), pipe.record(prepared.event, case.topic.name)]
    )
    retried = await pipe.feed(processor, [pipe.record(prepared.event, case.topic.name)])  # an upstream retry
    assert (twice.applied, twice.duplicates, retried.applied, retried.duplicates) == (1, 1, 0, 1)
    assert _summary(await pipe.take_outbox(processor)) == case.emits
    assert await case.state(pipe, prepared.event) == prepared.applied


async def test_the_same_event_id_with_other_content_is_dead_lettered_once_and_the_first_stands(
    pipe: Pipeline,
    case: Case,
    prepared: Prepared,
) -> None:
    processor = getattr(pipe, case.service)
    await pipe.feed(processor, [pipe.record(prepared.event, case.topic.name)])
    conflicting = pipe.record(prepared.event.model_copy(update=case.conflict(pipe)), case.topic.name)
    with capture_logs() as logged:
        stats = await pipe.feed(processor, [conflicting])
    again = await pipe.feed(processor, [conflicting])  # re-delivered: no second dead letter
    out = await pipe.take_outbox(processor)
    assert [(d.kind, d.source.offset, d.seller_id) for d in _letters(out)] == [
        ("conflicting_duplicate", conflicting.offset, prepared.seller)
    ]
    assert (stats.dead_lettered, again.dead_lettered) == (1, 0)
    assert [(line["kind"], line["event_id"]) for line in logged if line["event"] == "dead_lettered"] == [
        ("conflicting_duplicate", str(prepared.event.event_id))
    ]
    assert _summary(out) == case.emits
    assert await case.state(pipe, prepared.event) == prepared.applied


async def test_an_oversized_record_is_dead_lettered_and_the_next_record_of_its_batch_applied(
    pipe: Pipeline,
    case: Case,
    prepared: Prepared,
) -> None:
    processor = getattr(pipe, case.service)
    document = orjson.loads(prepared.event.model_dump_json())
    oversized = pipe.record(
        orjson.dumps({**document, "event_id": str(uuid.uuid4()), "pad": "x" * 300_000}), case.topic.name
    )
    assert oversized.value is not None
    stats = await pipe.feed(processor, [oversized, pipe.record(prepared.event, case.topic.name)])
    out = await pipe.take_outbox(processor)
    assert [(d.kind, d.source.offset, d.raw_size, d.truncated) for d in _letters(out)] == [
        ("oversized", oversized.offset, len(oversized.value), True)
    ]
    assert (stats.of(case.topic.name).dead_lettered, stats.of(case.topic.name).applied) == (1, 1)
    assert _summary(out) == case.emits
    assert await case.state(pipe, prepared.event) == prepared.applied
