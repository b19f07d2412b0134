"""The console's projector against the real PostgreSQL: a batch read twice (a crash between the
transaction and the offset commit) changes nothing, an operator's work on a case survives it, a
key's stock is its highest sequence whatever order adjustments come in, and a record the console
cannot read is left to the service that dead-letters it while the rest of its batch is stored."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from pydantic import BaseModel

from rebound.console import cases as work
from rebound.console.app import READS
from rebound.console.projector import Projector
from rebound.console.stock import elsewhere, levels
from rebound.console.trace import trace, units_named
from rebound.console.waiting import CASE_KIND, escalate, waiting
from rebound.messaging import inbox
from rebound_contracts import (
    TOPICS_BY_NAME,
    Destination,
    ExceptionRaised,
    MessageDeadLettered,
    MessageSource,
    UnitAllocated,
)
from rebound_contracts.topics import (
    ACKS,
    ALLOCATIONS,
    DLQ,
    EXCEPTIONS,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
    UNIT_INSPECTED,
    UNIT_PICKED,
    UNIT_RECEIVED,
)
from tests import factories as f
from tests.factories import Record


def _records(messages: list[tuple[str, BaseModel | bytes]]) -> list[Record]:
    records = []
    for offset, (topic, message) in enumerate(messages):
        if isinstance(message, BaseModel):
            key, value = TOPICS_BY_NAME[topic].key_of(message).encode(), message.model_dump_json().encode()
        else:
            key, value = b"raw", message
        records.append(Record(topic, value, 0, offset, key))
    return records


async def _counts(pool, seller: str) -> tuple[int, int, int]:
    return tuple(
        await pool.fetchrow(
            "SELECT (SELECT count(*) FROM console.events WHERE seller_id = $1),"
            " (SELECT count(*) FROM console.event_keys JOIN console.events USING (event_id) WHERE seller_id = $1),"
            " (SELECT count(*) FROM console.cases WHERE seller_id = $1)",
            seller,
        )
    )


async def test_a_batch_read_twice_changes_nothing_and_stock_keeps_the_highest_sequence(pool) -> None:
    seller = f.uid("console-seller-")
    lpn = f.uid("L")
    rma = f.rma(seller)
    scan = f.scan(seller, rma.tracking_number, [(lpn, "TEE-BLK-M")])
    newer, older = (
        f.adjusted(seller, "TEE-BLK-M", 7, +1, available=3),
        f.adjusted(seller, "TEE-BLK-M", 6, -1, available=2),
    )
    answer = f.ack(seller, f"{seller}:tiktok:W1:TEE-BLK-M:new", "rejected", reason="listing deleted")
    # A position of this run alone: a dead letter's id is its position's.
    source = MessageSource(topic=UNIT_INSPECTED.name, partition=2, offset=uuid.uuid4().int >> 66)
    raw = b'{"seller_id": "' + seller.encode() + b'", "lpn": 7}'
    letter = MessageDeadLettered(
        event_id=inbox.position_id(source.topic, source.partition, source.offset),
        occurred_at=f.T0,
        seller_id=seller,
        kind="schema_violation",
        error="lpn: Input should be a valid string",
        source=source,
        key=lpn,
        raw_base64=base64.b64encode(raw).decode(),
        raw_size=len(raw),
        consumer="rebound-grading",
    )
    exception = ExceptionRaised(
        event_id=uuid.uuid4(),
        occurred_at=f.T0 + timedelta(days=3, minutes=1),  # intake reports it after the scan
        seller_id=seller,
        kind="unexpected_unit",
        detail=f"LPN {lpn} is not expected",
        source=MessageSource(topic=PARCEL_SCANNED.name, partition=0, offset=9),
        source_event_id=scan.event_id,
        original=orjson.loads(scan.model_dump_json()),
    )
    records = _records(
        [
            (RMA.name, rma),
            (PARCEL_SCANNED.name, scan),
            (PARCEL_SCANNED.name, b"{not json"),  # intake dead-letters it; the console skips it
            (STOCK_ADJUSTMENTS.name, newer),
            (STOCK_ADJUSTMENTS.name, older),
            (ACKS.name, answer),
            (DLQ.name, letter),
            (EXCEPTIONS.name, exception),
        ]
    )
    projector = Projector(f"it-console-{seller}", READS, pool)

    stats = await projector.process(records)
    assert stats.applied == len(records) - 1
    first = await _counts(pool, seller)
    assert first == (6, first[1], 2) and first[1] > 6
    async with pool.acquire() as conn:
        await work.close(conn, str(letter.event_id), "dismissed", "sent again by the WMS", "op-1")

    await projector.process(records)  # the same batch again, as after a crash before the offset commit
    assert await _counts(pool, seller) == first
    async with pool.acquire() as conn:
        assert (await work.get_case(conn, str(letter.event_id))).status == "dismissed", "a replayed case stays worked"
        steps = await trace(conn, lpn)
        stock = await conn.fetchrow("SELECT * FROM console.stock WHERE seller_id = $1", seller)
    assert [s.topic for s in steps] == [RMA.name, PARCEL_SCANNED.name, EXCEPTIONS.name]
    assert steps[2].summary == f"exception unexpected_unit: LPN {lpn} is not expected"
    assert (stock["available"], stock["sequence"]) == (3, 7), "the highest sequence wins, not the last read"
    assert (stock["ack_status"], stock["ack_reason"]) == ("rejected", "listing deleted")


async def test_what_waits_is_listed_an_inspection_waiting_too_long_is_a_case_and_its_receipt_resolves_it(pool) -> None:
    seller = f.uid("console-waits-")
    early, late = f.uid("L"), f.uid("L")
    rma = f.rma(seller)
    scan = f.scan(seller, f.uid("T"), [(early, "TEE-BLK-M")])  # a label no return carries
    inspection, inspected_late = f.inspection(seller, early), f.inspection(seller, late)
    receipt_first = f.received(seller, late)  # read before its inspection: nothing waits for it
    projector = Projector("rebound-console", READS, pool)
    await projector.process(_records([(RMA.name, rma), (PARCEL_SCANNED.name, scan), (UNIT_INSPECTED.name, inspection)]))
    await projector.process(_records([(UNIT_RECEIVED.name, receipt_first), (UNIT_INSPECTED.name, inspected_late)]))

    async with pool.acquire() as conn:
        found = await waiting(conn, [seller])
        assert [(w.kind, w.key, w.case_id) for w in found] == [
            ("scan", scan.tracking_number, None),
            ("inspection", early, None),
        ]
        assert await waiting(conn, [f.uid("another-")]) == [], "another seller sees none of it"

        # Read a minute ago or more: the inspection becomes a case, once; the scan is intake's to report.
        async with conn.transaction():
            assert await escalate(conn, datetime.now(UTC) + timedelta(minutes=1)) >= 1
        async with conn.transaction():
            await escalate(conn, datetime.now(UTC) + timedelta(minutes=1))
        [case] = await work.list_cases(conn, kind=CASE_KIND, seller_id=seller)
        assert (case.source, case.key, case.event["original"]["lpn"]) == ("waiting", early, early)
        assert [w.case_id for w in await waiting(conn, [seller])] == [None, case.case_id]

    # The parcel is matched and received: nothing waits, and the case is resolved by the console.
    received = f.received(seller, early)
    await projector.process(
        _records([(UNIT_RECEIVED.name, received.model_copy(update={"tracking_number": scan.tracking_number}))])
    )
    async with pool.acquire() as conn:
        assert await waiting(conn, [seller]) == []
        resolved = await work.get_case(conn, case.case_id)
        trail = await work.audit_trail(conn, case.case_id)
    assert resolved.status == "resolved"
    assert [(e.actor, e.action, e.detail) for e in trail] == [
        ("rebound-console", "resolve", {"reason": "the unit's receipt arrived"})
    ]


def _allocated(seller: str, lpn: str, destination: Destination | None, *, days: float) -> UnitAllocated:
    return UnitAllocated(
        event_id=uuid.uuid4(),
        occurred_at=f.T0 + timedelta(days=days),
        seller_id=seller,
        lpn=lpn,
        sku="TEE-BLK-M",
        warehouse_id="W1",
        grade="A",
        grade_revision=1,
        rule="default",
        cause="decided",
        candidate=0 if destination else None,
        destination=destination,
        source_event_id=uuid.uuid4(),
    )


async def test_each_key_shows_the_units_on_offer_and_the_rest_where_they_sit(pool) -> None:
    seller = f.uid("console-units-")
    sold, offered, moved, pooled, held = (f.uid("L") for _ in range(5))
    listing = Destination(kind="listing", channel="tiktok", condition="new")
    pool_of_exchanges = Destination(kind="exchange_pool", pool="sizes")
    projector = Projector("rebound-console", READS, pool)
    await projector.process(
        _records(
            [
                (STOCK_ADJUSTMENTS.name, f.adjusted(seller, "TEE-BLK-M", 1, +1, available=2)),
                (ALLOCATIONS.name, _allocated(seller, sold, listing, days=4)),
                (ALLOCATIONS.name, _allocated(seller, offered, listing, days=4)),
                (UNIT_PICKED.name, f.picked(seller, sold)),  # a day after it was offered
                # Read newest first: the unit moved from the listing to the pool stays in the pool.
                (ALLOCATIONS.name, _allocated(seller, moved, pool_of_exchanges, days=6)),
                (ALLOCATIONS.name, _allocated(seller, moved, listing, days=4)),
                (ALLOCATIONS.name, _allocated(seller, pooled, pool_of_exchanges, days=4)),
                (ALLOCATIONS.name, _allocated(seller, held, None, days=4)),
            ]
        )
    )
    async with pool.acquire() as conn:
        [level] = await levels(conn, [seller])
        others = await elsewhere(conn, [seller])
    assert (level.on_offer, level.lpns) == (1, (offered,))
    assert [(e.place, e.units, sorted(e.lpns)) for e in others] == [
        ("exchange_pool", 2, sorted([moved, pooled])),
        ("held", 1, [held]),
    ]


async def test_a_buyer_names_the_returns_and_units_of_its_seller_only(pool) -> None:
    seller, other = f.uid("console-buyer-"), f.uid("console-buyer-")
    buyer, shared_return = f.uid("buyer-"), f.uid("R")
    mine = f.rma(seller).model_copy(update={"buyer_id": buyer, "return_id": shared_return})
    theirs = f.rma(other).model_copy(update={"return_id": shared_return})  # same return id, no buyer
    unit, their_unit = f.uid("L"), f.uid("L")
    records: list[tuple[str, BaseModel | bytes]] = [
        (RMA.name, mine),
        (RMA.name, theirs),
        (UNIT_RECEIVED.name, f.received(seller, unit).model_copy(update={"return_id": shared_return})),
        (UNIT_RECEIVED.name, f.received(other, their_unit).model_copy(update={"return_id": shared_return})),
    ]
    await Projector("rebound-console", READS, pool).process(_records(records))
    async with pool.acquire() as conn:
        assert await work.returns_named(conn, seller, buyer) == [shared_return]
        assert await work.returns_named(conn, other, buyer) == []
        assert await units_named(conn, buyer) == [(seller, unit)], "the buyer's returns, not another seller's"
        assert await units_named(conn, buyer, sellers=[other]) == []
