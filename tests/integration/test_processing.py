"""The services' batch processing against the real PostgreSQL: inbox, outbox, parking, locks."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from rebound.intake.adapters import PostgresIntakeRepository
from rebound.intake.handlers import report_unmatched_parcels
from rebound.messaging import inbox
from rebound.messaging.outbox import OutboxBuffer
from rebound_contracts.topics import (
    DISPOSITIONS,
    DLQ,
    EXCEPTIONS,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
    UNIT_GRADED,
    UNIT_INSPECTED,
    UNIT_RECEIVED,
    UNIT_REFURBISHED,
)
from tests import factories as f

from .pipeline import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def pipe(pool) -> Pipeline:
    return Pipeline(pool)


async def _through_everything(pipe: Pipeline, inbound: list) -> dict[str, list]:
    """Feed inbound records to intake and grading, then everything downstream; return all events."""
    out: dict[str, list] = defaultdict(list)
    intake_records = [r for r in inbound if r.topic in (RMA.name, PARCEL_SCANNED.name)]
    grading_records = [r for r in inbound if r.topic not in (RMA.name, PARCEL_SCANNED.name)]
    await pipe.feed(pipe.intake, intake_records)
    from_intake = await pipe.take_outbox(pipe.intake)
    await pipe.feed(pipe.grading, grading_records + pipe.forward(from_intake, UNIT_RECEIVED.name))
    from_grading = await pipe.take_outbox(pipe.grading)
    await pipe.feed(pipe.relisting, pipe.forward(from_grading, UNIT_GRADED.name))
    from_relisting = await pipe.take_outbox(pipe.relisting)
    await pipe.feed(pipe.ledger, pipe.forward(from_relisting, DISPOSITIONS.name))
    from_ledger = await pipe.take_outbox(pipe.ledger)
    for emitted in from_intake + from_grading + from_relisting + from_ledger:
        out[emitted.topic].append(emitted.event)
    return out


async def test_a_return_flows_to_exactly_one_adjustment_per_sellable_unit(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    order = f.rma(seller, lines=[("TEE-BLK-M", 1), ("JEANS-L", 1), ("HAT", 1)])
    parcel = f.scan(
        seller,
        order.tracking_number,
        [(pipe.id("A1"), "TEE-BLK-M"), (pipe.id("B1"), "JEANS-L"), (pipe.id("C1"), "HAT")],
    )
    out = await _through_everything(
        pipe,
        [
            pipe.record(f.inspection(seller, pipe.id("A1"), "A"), UNIT_INSPECTED.name),  # inspected before the scan
            pipe.record(parcel, PARCEL_SCANNED.name),  # scanned before the RMA
            pipe.record(order, RMA.name),
            pipe.record(f.inspection(seller, pipe.id("B1"), "B"), UNIT_INSPECTED.name),
            pipe.record(f.inspection(seller, pipe.id("C1"), "C"), UNIT_INSPECTED.name),
        ],
    )
    assert sorted((g.lpn, g.grade) for g in out[UNIT_GRADED.name]) == [
        (pipe.id("A1"), "A"),
        (pipe.id("B1"), "B"),
        (pipe.id("C1"), "C"),
    ]
    adjustments = sorted(
        (a.cause.lpn, a.condition, a.delta, a.available, a.sequence) for a in out[STOCK_ADJUSTMENTS.name]
    )
    assert adjustments == [(pipe.id("A1"), "new", 1, 1, 1), (pipe.id("B1"), "open_box", 1, 1, 1)]
    assert out[EXCEPTIONS.name] == []  # parked a moment, then matched: nothing for operators
    stock = await pipe.pool.fetch("SELECT key, available FROM ledger.stock WHERE seller_id = $1", seller)
    assert sorted((r["key"].split(":")[3:], r["available"]) for r in stock) == [
        (["JEANS-L", "open_box"], 1),
        (["TEE-BLK-M", "new"], 1),
    ]


async def test_a_redelivered_batch_has_no_second_effect(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    order = f.rma(seller)
    batch = [
        pipe.record(order, RMA.name),
        pipe.record(f.scan(seller, order.tracking_number, [(pipe.id("L1"), "TEE-BLK-M")]), PARCEL_SCANNED.name),
    ]
    first = await pipe.feed(pipe.intake, batch)
    assert (first.applied, len(await pipe.take_outbox(pipe.intake))) == (2, 1)
    again = await pipe.feed(pipe.intake, batch)  # the same records, as after a crash before the offset commit
    assert (again.applied, again.duplicates) == (0, 2)
    assert await pipe.take_outbox(pipe.intake) == []


async def test_the_same_event_id_with_other_content_is_dead_lettered_once(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    order = f.rma(seller)
    forged = order.model_copy(update={"order_id": "other-order"})
    conflicting = pipe.record(forged, RMA.name)
    await pipe.feed(pipe.intake, [pipe.record(order, RMA.name), conflicting, pipe.record(order, RMA.name)])
    await pipe.feed(pipe.intake, [conflicting])  # re-delivered: still one dead letter
    emitted = await pipe.take_outbox(pipe.intake)
    letters = [e.event for e in emitted if e.topic == DLQ.name]
    assert [(d.kind, d.source.offset) for d in letters] == [("conflicting_duplicate", conflicting.offset)]
    assert orjson.loads(base64.b64decode(letters[0].raw_base64))["order_id"] == "other-order"
    kept = await pipe.pool.fetchval(
        "SELECT order_id FROM intake.rmas WHERE seller_id = $1 AND return_id = $2", seller, order.return_id
    )
    assert kept == order.order_id


async def test_bad_records_are_dead_lettered_and_the_batch_goes_on(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    order = f.rma(seller)
    bad = [pipe.record(b"{oops", RMA.name), pipe.record(b'{"event_id": 1}', RMA.name), pipe.record(b"", RMA.name)]
    stats = await pipe.feed(pipe.intake, [bad[0], bad[1], pipe.record(order, RMA.name), bad[2]])
    assert (stats.applied, stats.dead_lettered) == (1, 3)
    emitted = await pipe.take_outbox(pipe.intake)
    assert sorted(e.event.kind for e in emitted if e.topic == DLQ.name) == [
        "invalid_json",
        "invalid_json",
        "schema_violation",
    ]
    assert await pipe.pool.fetchval("SELECT count(*) FROM intake.rmas WHERE seller_id = $1", seller) == 1


async def test_events_of_an_unknown_seller_become_exceptions(pipe: Pipeline) -> None:
    stranger = f"stranger-{uuid.uuid4().hex[:8]}"
    order = f.rma(stranger)
    stats = await pipe.feed(pipe.intake, [pipe.record(order, RMA.name)])
    assert stats.exceptions == 1
    [emitted] = await pipe.take_outbox(pipe.intake)
    assert (emitted.topic, emitted.event.kind, emitted.event.seller_id) == (EXCEPTIONS.name, "unknown_seller", stranger)
    assert await pipe.pool.fetchval("SELECT count(*) FROM intake.rmas WHERE seller_id = $1", stranger) == 0


async def test_a_seller_cannot_inspect_or_scan_another_sellers_units(pipe: Pipeline) -> None:
    owner, intruder = await pipe.add_sellers("owner", "intruder")
    order = f.rma(owner)
    out = await _through_everything(
        pipe,
        [
            pipe.record(order, RMA.name),
            pipe.record(f.scan(owner, order.tracking_number, [(pipe.id("L1"), "TEE-BLK-M")]), PARCEL_SCANNED.name),
            pipe.record(f.inspection(owner, pipe.id("L1"), "A"), UNIT_INSPECTED.name),
        ],
    )
    assert len(out[STOCK_ADJUSTMENTS.name]) == 1
    later = f.inspection(intruder, pipe.id("L1"), "SCRAP")
    attack = await _through_everything(
        pipe,
        [
            pipe.record(later, UNIT_INSPECTED.name),
            pipe.record(f.scan(intruder, order.tracking_number, [(pipe.id("L9"), "TEE-BLK-M")]), PARCEL_SCANNED.name),
        ],
    )
    assert sorted(e.kind for e in attack[EXCEPTIONS.name]) == ["cross_tenant_reference", "cross_tenant_reference"]
    assert attack[STOCK_ADJUSTMENTS.name] == [] and attack[UNIT_GRADED.name] == []
    assert (
        await pipe.pool.fetchval(
            "SELECT grade FROM grading.units WHERE lpn = $2 AND seller_id = $1", owner, pipe.id("L1")
        )
        == "A"
    )


async def test_seller_grading_rules_come_from_the_registry(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("strict")
    await pipe.pool.execute(
        "UPDATE rebound.sellers SET grading_rules = $2 WHERE seller_id = $1",
        seller,
        orjson.dumps({"default": [{"grade": "C", "any": {"packaging": ["worn"]}}, {"grade": "A"}]}).decode(),
    )
    order = f.rma(seller)
    out = await _through_everything(
        pipe,
        [
            pipe.record(order, RMA.name),
            pipe.record(f.scan(seller, order.tracking_number, [(pipe.id("L1"), "TEE-BLK-M")]), PARCEL_SCANNED.name),
            pipe.record(f.inspection(seller, pipe.id("L1"), "B"), UNIT_INSPECTED.name),  # packaging worn
        ],
    )
    assert [(g.grade, g.reasons) for g in out[UNIT_GRADED.name]] == [("C", ["packaging=worn"])]


async def test_an_inspection_and_a_refurbishment_in_one_batch_regrade_in_revision_order(pipe: Pipeline) -> None:
    # They come on different topics, so a batch after a restart often holds both.
    [seller] = await pipe.add_sellers("s")
    lpn = pipe.id("L1")
    await pipe.feed(pipe.grading, [pipe.record(f.received(seller, lpn), UNIT_RECEIVED.name)])
    await pipe.feed(
        pipe.grading,
        [
            pipe.record(f.inspection(seller, lpn, "B"), UNIT_INSPECTED.name),  # packaging worn
            pipe.record(f.refurbished(seller, lpn, "repackaged"), UNIT_REFURBISHED.name),
        ],
    )
    grades = [e.event for e in await pipe.take_outbox(pipe.grading) if e.topic == UNIT_GRADED.name]
    assert [(g.grade, g.revision) for g in grades] == [("B", 1), ("A", 2)]
    await pipe.feed(pipe.ledger, await pipe.decide(grades))
    moves = [
        (e.event.condition, e.event.delta)
        for e in await pipe.take_outbox(pipe.ledger)
        if e.topic == STOCK_ADJUSTMENTS.name
    ]
    assert moves == [("open_box", 1), ("open_box", -1), ("new", 1)]


async def test_a_receipt_outlives_the_later_batches_that_do_not_carry_it(pipe: Pipeline) -> None:
    # Receipt, inspection and refurbishment each in a batch of its own: the last regrade needs
    # the receipt the first batch stored, though the second one wrote the unit without it.
    [seller] = await pipe.add_sellers("s")
    lpn = pipe.id("L1")
    receipt = f.received(seller, lpn)
    for message, topic in [
        (receipt, UNIT_RECEIVED.name),
        (f.inspection(seller, lpn, "B"), UNIT_INSPECTED.name),  # packaging worn
        (f.refurbished(seller, lpn, "repackaged"), UNIT_REFURBISHED.name),
    ]:
        await pipe.feed(pipe.grading, [pipe.record(message, topic)])
    grades = [e.event for e in await pipe.take_outbox(pipe.grading) if e.topic == UNIT_GRADED.name]
    assert [(g.grade, g.revision, g.sku) for g in grades] == [("B", 1, receipt.sku), ("A", 2, receipt.sku)]
    stored = await pipe.pool.fetchval("SELECT received->>'return_id' FROM grading.units WHERE lpn = $1", lpn)
    assert stored == receipt.return_id


async def test_concurrent_batches_on_shared_keys_keep_sequences_gapless(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("busy")
    skus = ["TEE-1", "TEE-2", "TEE-3"]
    events = [f.graded(seller, pipe.id(f"L{i}"), "A" if i % 3 else "B", sku=skus[i % 3]) for i in range(600)]
    regrades = [f.graded(seller, pipe.id(f"L{i}"), "B", revision=2, sku=skus[i % 3]) for i in range(0, 600, 7) if i % 3]
    decided = await pipe.decide(events)
    batches = [decided[i::4] for i in range(4)]
    # Replicas of the ledger (one consumer name) take batches that share every stock key.
    await asyncio.gather(*(pipe.feed(pipe.ledger, b) for b in batches))
    await pipe.feed(pipe.ledger, await pipe.decide(regrades))
    adjustments = [e.event for e in await pipe.take_outbox(pipe.ledger) if e.topic == STOCK_ADJUSTMENTS.name]
    by_key = defaultdict(list)
    for a in adjustments:  # outbox id order = the order the relay publishes in
        by_key[STOCK_ADJUSTMENTS.key_of(a)].append(a)
    for history in by_key.values():
        assert [a.sequence for a in history] == list(range(1, len(history) + 1))
        running = 0
        for a in history:
            running += a.delta
            assert a.available == running >= 0
    rows = {
        r["key"]: r["available"]
        for r in await pipe.pool.fetch("SELECT key, available FROM ledger.stock WHERE seller_id = $1", seller)
    }
    moved = len([i for i in range(0, 600, 7) if i % 3 == 1])
    assert sum(rows.values()) == 600
    assert rows[f"{seller}:tiktok:W1:TEE-1:open_box"] == 200
    assert rows[f"{seller}:tiktok:W1:TEE-2:open_box"] == moved
    assert rows[f"{seller}:tiktok:W1:TEE-2:new"] == 200 - moved


async def test_a_parcel_parked_too_long_is_reported_once(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    lost = f.scan(seller, f"T-{pipe.tag}", [(pipe.id("L1"), "TEE-BLK-M")])
    await pipe.feed(pipe.intake, [pipe.record(lost, PARCEL_SCANNED.name)])
    assert await pipe.take_outbox(pipe.intake) == []

    async def sweep(waited: timedelta) -> list:
        async with pipe.pool.acquire() as conn, conn.transaction():
            outbox = OutboxBuffer(pipe.intake.consumer)
            await report_unmatched_parcels(conn, PostgresIntakeRepository(conn), outbox, datetime.now(UTC), waited)
            await outbox.flush(conn)
        return [e.event for e in await pipe.take_outbox(pipe.intake) if e.event.source_event_id == lost.event_id]

    assert await sweep(timedelta(hours=1)) == []  # not waited long enough yet
    [reported] = await sweep(timedelta(0))
    assert (reported.kind, reported.seller_id, reported.original["tracking_number"]) == (
        "unmatched_parcel",
        seller,
        lost.tracking_number,
    )
    assert await sweep(timedelta(0)) == []  # once
    order = f.rma(seller, tracking=lost.tracking_number)  # still applied when its RMA comes
    await pipe.feed(pipe.intake, [pipe.record(order, RMA.name)])
    assert [e.event.lpn for e in await pipe.take_outbox(pipe.intake)] == [pipe.id("L1")]


async def test_pruning_keeps_what_a_redelivery_could_still_need(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("s")
    records = [pipe.record(f.rma(seller), RMA.name, partition=p) for p in (0, 0, 1)]
    await pipe.feed(pipe.intake, records)
    await pipe.take_outbox(pipe.intake)
    consumer = pipe.intake.consumer
    count = "SELECT count(*) FROM rebound.inbox WHERE consumer = $1"
    assert await pipe.pool.fetchval(count, consumer) == 3
    async with pipe.pool.acquire() as conn:
        # committed past the first record of partition 0 only; partition 1 not committed at all
        assert await inbox.prune(conn, consumer, {(RMA.name, 0): records[1].offset}, older_than_s=3600) == 0
        assert await inbox.prune(conn, consumer, {(RMA.name, 0): records[1].offset}, older_than_s=0) == 1
    assert await pipe.pool.fetchval(count, consumer) == 2
    # the records still at or above the committed offset are still deduplicated
    again = await pipe.feed(pipe.intake, records[1:])
    assert (again.applied, again.duplicates) == (0, 2)


async def test_a_record_whose_dead_letter_cannot_be_encoded_still_gets_one_and_the_batch_goes_on(pool) -> None:
    """A handler failing with a message pydantic will not encode (a lone surrogate): its record's
    dead letter carries only what the consumer wrote itself, and the next record is applied."""
    from rebound.grading.adapters import PostgresGradingRepository
    from rebound.messaging.processor import BatchProcessor, Route

    async def fails(ctx, event, repo) -> None:
        if event.lpn.startswith("BAD"):
            raise RuntimeError("undecodable \udcff")

    pipe = Pipeline(pool)
    [seller] = await pipe.add_sellers("s")
    processor = BatchProcessor(
        f"it-surrogate-{pipe.tag}", [Route(UNIT_INSPECTED, fails, PostgresGradingRepository)], pool
    )
    bad, good = f.inspection(seller, pipe.id("BAD")), f.inspection(seller, pipe.id("L1"))
    stats = await processor.process([pipe.record(bad, UNIT_INSPECTED.name), pipe.record(good, UNIT_INSPECTED.name)])
    assert (stats.applied, stats.dead_lettered) == (1, 1)
    [letter] = [e.event for e in await pipe.take_outbox(processor) if e.topic == DLQ.name]
    assert letter.kind == "processing_failed" and "undecodable \\udcff" in letter.error
    assert letter.seller_id is None and base64.b64decode(letter.raw_base64) == bad.model_dump_json().encode()


async def test_another_sellers_return_never_takes_or_discards_a_parked_parcel(pipe: Pipeline) -> None:
    victim, intruder = await pipe.add_sellers("victim", "intruder")
    tracking = f"T-{pipe.tag}"
    parcel = f.scan(victim, tracking, [(pipe.id("V1"), "TEE-BLK-M")])
    await pipe.feed(pipe.intake, [pipe.record(parcel, PARCEL_SCANNED.name)])  # its RMA is late: parked
    assert await pipe.take_outbox(pipe.intake) == []
    # Another tenant's returns claim the tracking number: the parcel is reported once, and stays.
    for _ in range(2):
        await pipe.feed(pipe.intake, [pipe.record(f.rma(intruder, tracking=tracking), RMA.name)])
    [reported] = [e.event for e in await pipe.take_outbox(pipe.intake)]
    assert (reported.kind, reported.seller_id, reported.source_event_id) == (
        "cross_tenant_reference",
        victim,
        parcel.event_id,
    )
    await pipe.feed(pipe.intake, [pipe.record(f.rma(victim, tracking=tracking), RMA.name)])
    assert [e.event.lpn for e in await pipe.take_outbox(pipe.intake)] == [pipe.id("V1")]
    assert (
        await pipe.pool.fetchval("SELECT count(*) FROM intake.parked_scans WHERE tracking_number = $1", tracking) == 0
    )


async def test_another_seller_reusing_an_event_id_is_applied_as_its_own_event(pipe: Pipeline) -> None:
    first, second = await pipe.add_sellers("first", "second")
    mine = f.rma(first)
    theirs = f.rma(second).model_copy(update={"event_id": mine.event_id})  # same id, another tenant
    stats = await pipe.feed(pipe.intake, [pipe.record(mine, RMA.name), pipe.record(theirs, RMA.name)])
    assert (stats.applied, stats.dead_lettered, stats.duplicates) == (2, 0, 0)
    again = await pipe.feed(pipe.intake, [pipe.record(theirs, RMA.name), pipe.record(mine, RMA.name)])
    assert (again.applied, again.duplicates) == (0, 2)  # each still a duplicate of its own seller's
    assert [e.topic for e in await pipe.take_outbox(pipe.intake)] == []
    stored = await pipe.pool.fetch(
        "SELECT seller_id, return_id FROM intake.rmas WHERE seller_id = ANY($1::text[]) ORDER BY seller_id",
        [first, second],
    )
    assert [(r["seller_id"], r["return_id"]) for r in stored] == [
        (first, mine.return_id),
        (second, theirs.return_id),
    ]


async def test_an_inbox_row_from_before_seller_scoped_claims_still_makes_a_redelivery_a_duplicate(
    pipe: Pipeline,
) -> None:
    [seller] = await pipe.add_sellers("s")
    applied = f.rma(seller)
    record = pipe.record(applied, RMA.name)
    await pipe.feed(pipe.intake, [record])
    await pipe.take_outbox(pipe.intake)
    # as a row written before claims carried their seller: no seller
    moved = await pipe.pool.execute(
        "UPDATE rebound.inbox SET seller_id = '' WHERE consumer = $1 AND event_id = $2",
        pipe.intake.consumer,
        applied.event_id,
    )
    assert moved == "UPDATE 1"
    again = await pipe.feed(pipe.intake, [record])
    assert (again.applied, again.duplicates) == (0, 1)
    forged = pipe.record(applied.model_copy(update={"order_id": "other-order"}), RMA.name)
    conflict = await pipe.feed(pipe.intake, [forged])
    assert conflict.dead_lettered == 1
    [letter] = [e.event for e in await pipe.take_outbox(pipe.intake) if e.topic == DLQ.name]
    assert letter.kind == "conflicting_duplicate"


async def test_two_sellers_parcels_with_one_event_id_are_both_parked_and_each_taken_by_its_return(
    pipe: Pipeline,
) -> None:
    first, second = await pipe.add_sellers("first", "second")
    mine = f.scan(first, f"T1-{pipe.tag}", [(pipe.id("A1"), "TEE-BLK-M")])
    theirs = f.scan(second, f"T2-{pipe.tag}", [(pipe.id("B1"), "TEE-BLK-M")]).model_copy(
        update={"event_id": mine.event_id}
    )
    await pipe.feed(pipe.intake, [pipe.record(mine, PARCEL_SCANNED.name), pipe.record(theirs, PARCEL_SCANNED.name)])
    assert await pipe.take_outbox(pipe.intake) == []  # both wait for their return orders
    await pipe.feed(
        pipe.intake,
        [
            pipe.record(f.rma(first, tracking=mine.tracking_number), RMA.name),
            pipe.record(f.rma(second, tracking=theirs.tracking_number), RMA.name),
        ],
    )
    received = sorted((e.event.seller_id, e.event.lpn) for e in await pipe.take_outbox(pipe.intake))
    assert received == sorted([(first, pipe.id("A1")), (second, pipe.id("B1"))])
