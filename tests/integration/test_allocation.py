"""Relisting and channel publishing on the real PostgreSQL: policies, one unit in one place,
connectors' answers, picks, exchanges, lots and unsold units."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from rebound.ledger.handlers import move_unsold
from rebound.relisting.adapters import set_policy
from rebound.relisting.handlers import redecide_after_policy_change
from rebound.relisting.policy_file import parse_policy
from rebound_contracts.topics import (
    ACKS,
    ALLOCATIONS,
    DISPOSITIONS,
    EXCEPTIONS,
    EXCHANGE_ALLOCATED,
    EXCHANGE_REQUESTED,
    LISTINGS,
    STOCK_ADJUSTMENTS,
    UNIT_GRADED,
    UNIT_PICKED,
)
from tests import factories as f

from .pipeline import Emitted, Pipeline

pytestmark = pytest.mark.integration

POLICY = """
rules:
  - name: dresses-b
    when: {grade: B, sku_prefix: DRESS-}
    destinations:
      - {kind: exchange_pool, quota: 1}
      - {kind: listing, channel: ebay, condition: open_box, discount_pct: 25, floor: "9.99", price_ending: "0.99",
         unsold_after_days: 30}
      - {kind: listing, condition: open_box, discount_pct: 30}
  - name: tees-lucky
    when: {grade: [A, B], sku_prefix: TEE-}
    destinations:
      - {kind: lucky_bag, lot_size: 3, price: "29.00", pool: live-stream}
"""


@pytest.fixture
def pipe(pool) -> Pipeline:
    return Pipeline(pool)


async def _seller_with_policy(pipe: Pipeline, name: str = "s", policy: str = POLICY) -> str:
    [seller] = await pipe.add_sellers(name)
    async with pipe.pool.acquire() as conn:
        assert await set_policy(conn, seller, parse_policy(policy)) == 1
    return seller


def _events(emitted: list[Emitted], topic: str) -> list:
    return [e.event for e in emitted if e.topic == topic]


async def _place(pipe: Pipeline, grades: list) -> list[Emitted]:
    await pipe.feed(pipe.ledger, await pipe.decide(grades))
    return await pipe.take_outbox(pipe.ledger)


async def _send(pipe: Pipeline, topic: str, events: list) -> list[Emitted]:
    await pipe.feed(pipe.ledger, [pipe.record(e, topic) for e in events])
    return await pipe.take_outbox(pipe.ledger)


async def test_the_first_destination_that_can_take_a_unit_gets_it_and_the_others_say_why(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(pipe)
    first, second = pipe.id("D1"), pipe.id("D2")
    out = await _place(
        pipe,
        [
            f.graded(seller, first, "B", sku="DRESS-RED-S", price="39.90"),
            f.graded(seller, second, "B", sku="DRESS-RED-S", price="39.90"),
        ],
    )
    placed = {a.lpn: a for a in _events(out, ALLOCATIONS.name)}
    assert placed[first].destination.kind == "exchange_pool" and placed[first].skipped == []
    assert placed[second].destination.channel == "ebay"
    assert [(s.kind, s.why) for s in placed[second].skipped] == [
        ("exchange_pool", "exchange pool for DRESS-RED-S is full (1/1)")
    ]
    assert placed[second].rule == "dresses-b"
    # Only the eBay unit is offered anywhere: once, on eBay's open-box key, in eBay's vocabulary.
    assert [(a.channel, a.condition, a.delta, a.cause.lpn) for a in _events(out, STOCK_ADJUSTMENTS.name)] == [
        ("ebay", "open_box", 1, second)
    ]
    [listing] = _events(out, LISTINGS.name)
    assert (listing.marketplace_condition, listing.marketplace_condition_id, str(listing.price.amount)) == (
        "NEW_OTHER",
        1500,
        "28.99",
    )  # 39.90 less 25 % is 29.93: the highest .99 price not above it


async def test_without_a_policy_b_goes_to_its_own_open_box_listing_at_80_percent(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("plain")
    out = await _place(
        pipe,
        [
            f.graded(seller, pipe.id("B1"), "B", sku="CAP-1", price="19.90"),
            f.graded(seller, pipe.id("C1"), "C", sku="CAP-1"),
        ],
    )
    [listing] = _events(out, LISTINGS.name)
    # TikTok Shop has no condition field: the open-box unit is listed under a SKU of its own.
    assert (listing.channel, listing.listing_sku, str(listing.price.amount)) == ("tiktok", "CAP-1-OB", "15.92")
    kinds = {a.lpn: (a.rule, a.destination.kind) for a in _events(out, ALLOCATIONS.name)}
    assert kinds == {pipe.id("B1"): ("default-B", "listing"), pipe.id("C1"): ("default-C", "repair")}


async def test_a_rejected_listing_moves_its_units_on_and_takes_no_more(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(pipe)
    lpns = [pipe.id(f"D{i}") for i in range(3)]
    await _place(pipe, [f.graded(seller, lpn, "B", sku="DRESS-BLU-M", price="40.00") for lpn in lpns])
    ebay = f"{seller}:ebay:W1:DRESS-BLU-M:open_box"
    out = await _send(pipe, ACKS.name, [f.ack(seller, ebay, "rejected", reason="category needs a brand")])
    moves = [
        (STOCK_ADJUSTMENTS.key_of(a).split(":")[1], a.delta, a.cause.kind) for a in _events(out, STOCK_ADJUSTMENTS.name)
    ]
    # Each of the two eBay units: off eBay first, then onto the TikTok open-box listing.
    assert moves == [
        ("ebay", -1, "unit_reallocated"),
        ("tiktok", 1, "unit_reallocated"),
        ("ebay", -1, "unit_reallocated"),
        ("tiktok", 1, "unit_reallocated"),
    ]
    assert {a.cause for a in _events(out, ALLOCATIONS.name)} == {"listing_rejected"}
    later = await _place(pipe, [f.graded(seller, pipe.id("D9"), "B", sku="DRESS-BLU-M", price="40.00")])
    [allocated] = _events(later, ALLOCATIONS.name)
    assert allocated.destination.channel == "tiktok"
    assert "blocked (rejected: category needs a brand)" in allocated.skipped[-1].why
    again = await _send(pipe, ACKS.name, [f.ack(seller, ebay, "rejected", reason="again")])
    assert _events(again, STOCK_ADJUSTMENTS.name) == []


async def test_a_picked_unit_leaves_the_ledger_without_a_minus_one_to_the_storefront(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("shop")
    lpns = [pipe.id(f"A{i}") for i in range(3)]
    await _place(pipe, [f.graded(seller, lpn, "A", sku="HAT-1") for lpn in lpns[:2]])
    out = await _send(pipe, UNIT_PICKED.name, [f.picked(seller, lpns[0], channel="tiktok")])
    assert _events(out, STOCK_ADJUSTMENTS.name) == []  # the shop counted its own sale
    [adjustment] = _events(await _place(pipe, [f.graded(seller, lpns[2], "A", sku="HAT-1")]), STOCK_ADJUSTMENTS.name)
    assert (adjustment.sequence, adjustment.available, adjustment.picked) == (3, 2, 1)  # 1 + 1 - 1 picked + 1
    elsewhere = await _send(pipe, UNIT_PICKED.name, [f.picked(seller, lpns[1], channel="amazon")])
    [minus] = _events(elsewhere, STOCK_ADJUSTMENTS.name)  # sold on Amazon: TikTok must stop offering it
    assert (minus.channel, minus.delta, minus.cause.kind) == ("tiktok", -1, "sold_elsewhere")
    twice = await _send(pipe, UNIT_PICKED.name, [f.picked(seller, lpns[0])])
    assert [e.kind for e in _events(twice, EXCEPTIONS.name)] == ["unexpected_pick"]


async def test_an_exchange_is_served_from_the_pool_then_from_stock_then_unavailable(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(pipe)
    pooled, listed = pipe.id("D1"), pipe.id("D2")
    await _place(pipe, [f.graded(seller, lpn, "B", sku="DRESS-GRN-L", price="30.00") for lpn in (pooled, listed)])
    answers = []
    for request in (
        f.exchange(seller, "DRESS-GRN-L"),
        f.exchange(seller, "DRESS-GRN-L"),
        f.exchange(seller, "DRESS-GRN-L"),
    ):
        out = await _send(pipe, EXCHANGE_REQUESTED.name, [request])
        [answer] = _events(out, EXCHANGE_ALLOCATED.name)
        answers.append(
            (
                answer.status,
                answer.lpn,
                answer.source,
                [(a.channel, a.delta, a.cause.kind) for a in _events(out, STOCK_ADJUSTMENTS.name)],
            )
        )
    assert answers == [
        ("allocated", pooled, "exchange_pool", []),  # held back for this: the storefront never saw it
        ("allocated", listed, "stock", [("ebay", -1, "exchange_allocated")]),  # eBay cannot sell it too
        ("unavailable", None, None, []),
    ]


async def test_an_exchange_retried_under_a_new_event_id_is_not_served_twice(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(pipe)
    await _place(pipe, [f.graded(seller, pipe.id(f"D{i}"), "B", sku="DRESS-1", price="30.00") for i in range(2)])
    first = f.exchange(seller, "DRESS-1", exchange_id=pipe.id("X1"))
    retry = first.model_copy(update={"event_id": f.uuid.uuid4()})
    out = await _send(pipe, EXCHANGE_REQUESTED.name, [first, retry])
    assert len(_events(out, EXCHANGE_ALLOCATED.name)) == 1
    left = await pipe.pool.fetchval(
        "SELECT count(*) FROM ledger.units WHERE seller_id = $1 AND place = 'exchanged'", seller
    )
    assert left == 1


async def test_a_full_lucky_bag_becomes_one_listing_of_one_lot(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(pipe)
    lpns = [pipe.id(f"T{i}") for i in range(4)]
    out = await _place(pipe, [f.graded(seller, lpn, "A", sku=f"TEE-{i}") for i, lpn in enumerate(lpns)])
    [lot] = _events(out, STOCK_ADJUSTMENTS.name)
    assert (lot.sku.startswith("LOT-"), lot.delta, lot.available, lot.cause.kind) == (True, 1, 1, "lot_formed")
    [listing] = _events(out, LISTINGS.name)
    assert (listing.quantity_limit, str(listing.price.amount)) == (1, "29.00")
    assert sorted(listing.lot.lpns) == sorted(lpns[:3])
    places = {
        r["lpn"]: r["place"]
        for r in await pipe.pool.fetch("SELECT lpn, place FROM ledger.units WHERE seller_id = $1", seller)
    }
    assert places == {lpns[0]: "lot", lpns[1]: "lot", lpns[2]: "lot", lpns[3]: "lucky_bag"}
    sold = await _send(pipe, UNIT_PICKED.name, [f.picked(seller, lpns[1])])
    assert _events(sold, STOCK_ADJUSTMENTS.name) == []
    states = {
        r["lpn"]: r["place"]
        for r in await pipe.pool.fetch("SELECT lpn, place FROM ledger.units WHERE lpn = ANY($1::text[])", lpns[:3])
    }
    assert set(states.values()) == {"sold"}


async def test_a_unit_unsold_too_long_moves_to_the_next_destination(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(pipe)
    await _place(pipe, [f.graded(seller, pipe.id(f"D{i}"), "B", sku="DRESS-OLD", price="30.00") for i in range(2)])
    now = datetime.now(UTC)
    await pipe.pool.execute(
        "UPDATE ledger.units SET placed_at = $2 WHERE seller_id = $1 AND place = 'listing'",
        seller,
        now - timedelta(days=31),
    )
    assert await move_unsold(pipe.pool, pipe.ledger.consumer, now) >= 1
    out = await pipe.take_outbox(pipe.ledger)
    mine = [a for a in _events(out, STOCK_ADJUSTMENTS.name) if a.seller_id == seller]
    assert [(a.channel, a.delta) for a in mine] == [("ebay", -1), ("tiktok", 1)]
    [moved] = [a for a in _events(out, ALLOCATIONS.name) if a.seller_id == seller]
    assert moved.cause == "unsold" and "unsold after 30 days" in moved.skipped[0].why
    assert await move_unsold(pipe.pool, pipe.ledger.consumer, now) == 0 or not [
        a for a in _events(await pipe.take_outbox(pipe.ledger), STOCK_ADJUSTMENTS.name) if a.seller_id == seller
    ]


async def test_no_event_of_one_seller_reaches_another_sellers_units(pipe: Pipeline) -> None:
    owner, intruder = await pipe.add_sellers("owner", "intruder")
    lpn = pipe.id("A1")
    await _place(pipe, [f.graded(owner, lpn, "A", sku="SHOE-9")])
    out = await _send(pipe, UNIT_PICKED.name, [f.picked(intruder, lpn)])
    assert [e.kind for e in _events(out, EXCEPTIONS.name)] == ["cross_tenant_reference"]
    out = await _send(pipe, EXCHANGE_REQUESTED.name, [f.exchange(intruder, "SHOE-9")])
    assert [(a.status, a.lpn) for a in _events(out, EXCHANGE_ALLOCATED.name)] == [("unavailable", None)]
    # The intruder's ack can only name the intruder's own keys, which Rebound never stocked.
    out = await _send(pipe, ACKS.name, [f.ack(intruder, f"{intruder}:tiktok:W1:SHOE-9:new", "paused")])
    assert [e.kind for e in _events(out, EXCEPTIONS.name)] == ["unknown_reference"]
    # Relisting refuses the intruder's grade of the unit (see the next test); a disposition that
    # names the unit all the same is refused by the ledger too.
    [decided] = await pipe.decide([f.graded(intruder, pipe.id("Z1"), "C", revision=2, sku="SHOE-9")])
    assert decided.value is not None
    forged = DISPOSITIONS.model.model_validate_json(decided.value).model_copy(update={"lpn": lpn})
    out = await _send(pipe, DISPOSITIONS.name, [forged])
    assert [e.kind for e in _events(out, EXCEPTIONS.name)] == ["cross_tenant_reference"]
    row = await pipe.pool.fetchrow("SELECT seller_id, place FROM ledger.units WHERE lpn = $1", lpn)
    assert row is not None
    assert (row["seller_id"], row["place"]) == (owner, "listing")


async def test_a_grade_of_another_sellers_unit_changes_none_of_its_owners_decisions(pipe: Pipeline) -> None:
    owner, intruder = await pipe.add_sellers("owner", "intruder")
    decided, fresh = pipe.id("A1"), pipe.id("A2")
    await pipe.decide([f.graded(owner, decided, "A", sku="SHOE-9")])
    await pipe.feed(
        pipe.relisting,
        [
            pipe.record(f.graded(intruder, decided, "C", revision=2, sku="SHOE-9"), UNIT_GRADED.name),
            # A unit relisting has not decided yet, graded by its owner and the intruder in one batch.
            pipe.record(f.graded(owner, fresh, "B", sku="SHOE-9"), UNIT_GRADED.name),
            pipe.record(f.graded(intruder, fresh, "SCRAP", revision=2, sku="SHOE-9"), UNIT_GRADED.name),
        ],
    )
    out = await pipe.take_outbox(pipe.relisting)
    assert [(e.event.seller_id, e.event.lpn, e.event.grade) for e in out if e.topic == DISPOSITIONS.name] == [
        (owner, fresh, "B")
    ]
    raised = sorted(
        (e.event.kind, e.event.seller_id, e.event.original["lpn"]) for e in out if e.topic == EXCEPTIONS.name
    )
    assert raised == sorted(
        [("cross_tenant_reference", intruder, decided), ("cross_tenant_reference", intruder, fresh)]
    )

    async def decisions() -> dict:
        rows = await pipe.pool.fetch(
            "SELECT lpn, seller_id, grade_revision, policy_version, graded->>'grade' AS grade"
            " FROM relisting.decisions WHERE lpn = ANY($1::text[])",
            [decided, fresh],
        )
        return {r["lpn"]: tuple(r.values())[1:] for r in rows}

    assert await decisions() == {decided: (owner, 1, 0, "A"), fresh: (owner, 1, 0, "B")}

    async def sweep() -> list:
        # The sweep is global: keep the events of this test's sellers only.
        while await redecide_after_policy_change(pipe.pool, pipe.relisting.consumer, datetime.now(UTC)):
            pass
        return [e.event for e in await pipe.take_outbox(pipe.relisting) if e.event.seller_id in (owner, intruder)]

    async with pipe.pool.acquire() as conn:  # the intruder's new policy decides none of the owner's units again
        await set_policy(
            conn,
            intruder,
            parse_policy("rules: [{name: scrap-all, when: {grade: [A, B]}, destinations: [{kind: disposal}]}]"),
        )
    assert await sweep() == []
    async with pipe.pool.acquire() as conn:  # the owner's does, from the owner's own grades
        await set_policy(conn, owner, None)
    assert sorted((d.seller_id, d.lpn, d.grade, d.policy_version) for d in await sweep()) == [
        (owner, decided, "A", 1),
        (owner, fresh, "B", 1),
    ]
    assert await decisions() == {decided: (owner, 1, 1, "A"), fresh: (owner, 1, 1, "B")}


async def test_concurrent_decisions_and_rejections_never_offer_a_unit_in_two_places(pipe: Pipeline) -> None:
    seller = await _seller_with_policy(
        pipe,
        policy="""
rules:
  - name: spread
    when: {grade: [A, B]}
    destinations:
      - {kind: listing, channel: ebay, condition: open_box, discount_pct: 10}
      - {kind: listing, channel: amazon, condition: open_box, discount_pct: 15}
      - {kind: listing, condition: open_box, discount_pct: 20}
""",
    )
    skus = [f"BAG-{i}" for i in range(4)]
    grades = [f.graded(seller, pipe.id(f"U{i}"), "AB"[i % 2], sku=skus[i % 4]) for i in range(400)]
    decided = await pipe.decide(grades)
    rejections = [
        pipe.record(f.ack(seller, f"{seller}:ebay:W1:{sku}:open_box", "rejected", reason="no"), ACKS.name)
        for sku in skus[:2]
    ]
    # A connector answers for keys it was sent: the first units are placed, then replicas of the
    # ledger take interleaved batches of further decisions and connector answers at once.
    await pipe.feed(pipe.ledger, decided[:40])
    batches = [decided[40 + i :: 4] for i in range(4)]
    batches[1] = batches[1][:30] + rejections[:1] + batches[1][30:]
    batches[3] = rejections[1:] + batches[3]
    await asyncio.gather(*(pipe.feed(pipe.ledger, b) for b in batches))
    adjustments = _events(await pipe.take_outbox(pipe.ledger), STOCK_ADJUSTMENTS.name)
    on: dict[str, str] = {}  # lpn -> the key it is offered on, replayed in publication order
    per_key = defaultdict(list)
    for a in adjustments:
        key = STOCK_ADJUSTMENTS.key_of(a)
        per_key[key].append(a)
        if a.delta > 0:
            assert a.cause.lpn not in on, f"{a.cause.lpn} offered on {on.get(a.cause.lpn)} and {key} at once"
            on[a.cause.lpn] = key
        else:
            assert on.pop(a.cause.lpn) == key
    assert len(on) == 400
    assert not any(":ebay:" in key and sku in key for key in on.values() for sku in skus[:2])
    for history in per_key.values():
        assert [a.sequence for a in history] == list(range(1, len(history) + 1))
        assert all(a.available == sum(b.delta for b in history[: i + 1]) for i, a in enumerate(history))


async def test_a_new_policy_moves_the_units_already_offered_minus_one_before_plus_one(pipe: Pipeline) -> None:
    [seller] = await pipe.add_sellers("switch")
    lpns = [pipe.id(f"A{i}") for i in range(3)]
    await _place(pipe, [f.graded(seller, lpn, "A", sku="JACKET-1", price="80.00") for lpn in lpns])
    await pipe.feed(pipe.ledger, await pipe.decide([f.graded(seller, pipe.id("S1"), "A", sku="JACKET-1")]))
    await _send(pipe, UNIT_PICKED.name, [f.picked(seller, pipe.id("S1"))])  # sold: it stays sold
    async with pipe.pool.acquire() as conn:
        await set_policy(
            conn,
            seller,
            parse_policy(
                "rules: [{name: to-amazon, when: {grade: A}, destinations: [{kind: listing, channel: amazon,"
                " condition: new, discount_pct: 5}]}]"
            ),
        )
    # The relisting sweep decides the units again (this test's units only: the sweep is global).
    while await redecide_after_policy_change(pipe.pool, pipe.relisting.consumer, datetime.now(UTC)):
        pass
    again = [e for e in await pipe.take_outbox(pipe.relisting) if e.event.seller_id == seller]
    assert sorted(e.event.lpn for e in again) == sorted([*lpns, pipe.id("S1")])
    assert {(e.event.policy_version, e.event.rule) for e in again} == {(1, "to-amazon")}
    out = await _send(pipe, DISPOSITIONS.name, [e.event for e in again])
    moves = [(a.channel, a.delta, a.cause.kind) for a in _events(out, STOCK_ADJUSTMENTS.name)]
    assert moves == [("tiktok", -1, "unit_reallocated"), ("amazon", 1, "unit_reallocated")] * 3
    assert {a.cause for a in _events(out, ALLOCATIONS.name)} == {"policy_changed"}
    replayed = await _send(pipe, DISPOSITIONS.name, [e.event for e in again])  # stale now: no effect
    assert _events(replayed, STOCK_ADJUSTMENTS.name) == []
