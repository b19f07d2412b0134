"""Intake rules and handlers, on in-memory repositories."""

from __future__ import annotations

import pytest

from rebound.intake.domain import OpenLine, categorise_reason, lane_for, match_units
from rebound.intake.handlers import (
    add_unit_to_return,
    match_parcel,
    quarantine_unit,
    receive_parcel,
    receive_unexpected,
    register_return,
)
from rebound_contracts import UnitAddedToReturn
from rebound_contracts.topics import UNIT_RECEIVED
from tests import factories as f

from .fakes import FakeIntakeRepository, context, emitted


@pytest.mark.parametrize(
    ("channel", "code", "category"),
    [
        ("tiktok", "buyer_refund_item_is_too_small", "SIZE_FIT"),
        ("tiktok", "ecom_order_delivered_refund_and_return_reason_damaged", "DAMAGED"),
        ("shopify", "SIZE_TOO_LARGE", "SIZE_FIT"),
        ("amazon", "APPAREL_STYLE", "CHANGED_MIND"),
        ("ebay", "NOT_AS_DESCRIBED", "NOT_AS_DESCRIBED"),
        ("ebay", "  Doesnt_Fit ", "SIZE_FIT"),
        ("tiktok", "something_new_from_the_marketplace", "OTHER"),
        ("amazon", "buyer_refund_item_is_too_small", "OTHER"),  # a TikTok code means nothing on Amazon
    ],
)
def test_raw_reason_codes_map_to_categories(channel: str, code: str, category: str) -> None:
    assert categorise_reason(channel, code) == category


def test_size_and_changed_mind_take_the_fast_lane_the_rest_full_inspection() -> None:
    assert lane_for("SIZE_FIT") == "FAST"
    assert lane_for("CHANGED_MIND") == "FAST"
    for category in ("QUALITY", "DAMAGED", "NOT_AS_DESCRIBED", "WRONG_ITEM", "OTHER"):
        assert lane_for(category) == "FULL_INSPECTION"


def test_units_match_lines_by_sku_up_to_their_quantity() -> None:
    lines = [OpenLine("l1", "TEE-M", 2, 1), OpenLine("l2", "JEANS-L", 1, 0)]
    matches = match_units(lines, [("a", "TEE-M"), ("b", "TEE-M"), ("c", "JEANS-L"), ("d", "HAT")])
    assert [(m.lpn, m.line_id) for m in matches] == [("a", "l1"), ("b", None), ("c", "l2"), ("d", None)]


async def test_a_scanned_parcel_registers_its_units_and_sorts_them() -> None:
    repo = FakeIntakeRepository()
    order = f.rma("s1", lines=[("TEE-BLK-M", 2)])
    await register_return(context(order), order, repo)
    parcel = f.scan("s1", order.tracking_number, [("L1", "TEE-BLK-M"), ("L2", "TEE-BLK-M")])
    ctx = context(parcel)
    await receive_parcel(ctx, parcel, repo)
    units = emitted(ctx, UNIT_RECEIVED.name)
    assert [(u.lpn, u.return_id, u.lane, u.reason_category) for u in units] == [
        ("L1", order.return_id, "FAST", "SIZE_FIT"),
        ("L2", order.return_id, "FAST", "SIZE_FIT"),
    ]
    assert units[0].unit_price == order.lines[0].unit_price
    assert ctx.exceptions_raised == 0


async def test_a_parcel_before_its_rma_is_parked_and_matched_when_the_rma_arrives() -> None:
    repo = FakeIntakeRepository()
    order = f.rma("s1")
    parcel = f.scan("s1", order.tracking_number, [("L1", "TEE-BLK-M")])
    early = context(parcel)
    await receive_parcel(early, parcel, repo)
    assert emitted(early, UNIT_RECEIVED.name) == []
    assert emitted(early, "returns.exceptions.v1") == []  # its RMA is usually just behind
    assert len(repo.parked) == 1

    late = context(order)
    await register_return(late, order, repo)
    assert [u.lpn for u in emitted(late, UNIT_RECEIVED.name)] == ["L1"]
    assert repo.parked == []


async def test_an_operator_matches_a_parked_parcel_to_a_return_of_another_tracking_number() -> None:
    repo = FakeIntakeRepository()
    order = f.rma("s1", lines=[("TEE-BLK-M", 1)])
    await register_return(context(order), order, repo)
    parcel = f.scan("s1", "RELABELLED-1", [("L1", "TEE-BLK-M")])  # a label no return carries
    await receive_parcel(context(parcel), parcel, repo)
    assert len(repo.parked) == 1

    matched = f.match("s1", "RELABELLED-1", order.return_id)
    ctx = context(matched)
    await match_parcel(ctx, matched, repo)
    [unit] = emitted(ctx, UNIT_RECEIVED.name)
    assert (unit.lpn, unit.return_id, unit.tracking_number, unit.lane) == (
        "L1",
        order.return_id,
        "RELABELLED-1",
        "FAST",
    )
    assert repo.parked == [] and ctx.exceptions_raised == 0

    again = context(matched)  # the parcel was received: a second match finds nothing to take
    await match_parcel(again, f.match("s1", "RELABELLED-1", order.return_id), repo)
    [exception] = emitted(again, "returns.exceptions.v1")
    assert exception.kind == "unknown_reference" and "RELABELLED-1" in exception.detail


async def test_a_match_to_a_return_the_seller_does_not_have_leaves_the_parcel_parked() -> None:
    repo = FakeIntakeRepository()
    others = f.rma("s2")
    await register_return(context(others), others, repo)
    parcel = f.scan("s1", "RELABELLED-2", [("L1", "TEE-BLK-M")])
    await receive_parcel(context(parcel), parcel, repo)
    matched = f.match("s1", "RELABELLED-2", others.return_id)  # another seller's return id
    ctx = context(matched)
    await match_parcel(ctx, matched, repo)
    assert emitted(ctx, UNIT_RECEIVED.name) == []
    [exception] = emitted(ctx, "returns.exceptions.v1")
    assert exception.kind == "unknown_reference" and others.return_id in exception.detail
    assert len(repo.parked) == 1


async def test_a_unit_the_rma_does_not_list_is_parked_as_an_exception() -> None:
    repo = FakeIntakeRepository()
    order = f.rma("s1", lines=[("TEE-BLK-M", 1)])
    await register_return(context(order), order, repo)
    parcel = f.scan("s1", order.tracking_number, [("L1", "TEE-BLK-M"), ("L2", "HAT-RED")])
    ctx = context(parcel)
    await receive_parcel(ctx, parcel, repo)
    assert [u.lpn for u in emitted(ctx, UNIT_RECEIVED.name)] == ["L1"]
    exceptions = emitted(ctx, "returns.exceptions.v1")
    assert [(e.kind, e.original["event_id"]) for e in exceptions] == [("unexpected_unit", str(parcel.event_id))]
    assert repo.units["L2"]["return_id"] is None  # kept, never dropped


async def test_an_operator_receives_a_parked_parcel_as_unexpected_stock_whose_units_each_wait_for_a_decision() -> None:
    repo = FakeIntakeRepository()
    parcel = f.scan("s1", "NO-RETURN-1", [("L1", "TEE-BLK-M"), ("L2", "HAT-RED")])
    await receive_parcel(context(parcel), parcel, repo)
    received = f.received_unexpected("s1", "NO-RETURN-1")
    ctx = context(received)
    await receive_unexpected(ctx, received, repo)
    assert emitted(ctx, UNIT_RECEIVED.name) == [] and repo.parked == []
    exceptions = emitted(ctx, "returns.exceptions.v1")
    assert [(e.kind, e.lpn, e.original["event_id"]) for e in exceptions] == [
        ("unexpected_unit", "L1", str(parcel.event_id)),
        ("unexpected_unit", "L2", str(parcel.event_id)),
    ]
    assert {lpn: (u["seller_id"], u["return_id"]) for lpn, u in repo.units.items()} == {
        "L1": ("s1", None),
        "L2": ("s1", None),
    }
    again = context(received)  # nothing waits under that label any more
    await receive_unexpected(again, f.received_unexpected("s1", "NO-RETURN-1"), repo)
    [exception] = emitted(again, "returns.exceptions.v1")
    assert exception.kind == "unknown_reference" and "NO-RETURN-1" in exception.detail


async def _with_unexpected_hat(repo: FakeIntakeRepository):
    order = f.rma("s1", lines=[("TEE-BLK-M", 1), ("TEE-BLK-L", 1)])
    await register_return(context(order), order, repo)
    parcel = f.scan("s1", order.tracking_number, [("L1", "TEE-BLK-M"), ("L2", "HAT-RED")])
    await receive_parcel(context(parcel), parcel, repo)
    return order


async def test_an_unexpected_unit_added_to_a_return_line_is_received_against_it_once() -> None:
    repo = FakeIntakeRepository()
    order = await _with_unexpected_hat(repo)
    added = f.added("s1", "L2", order.return_id, "l1")
    ctx = context(added)
    await add_unit_to_return(ctx, added, repo)
    [unit] = emitted(ctx, UNIT_RECEIVED.name)
    assert (unit.lpn, unit.sku, unit.return_id, unit.line_id, unit.lane, unit.unit_price.amount) == (
        "L2",
        "HAT-RED",
        order.return_id,
        "l1",
        "FAST",
        order.lines[1].unit_price.amount,
    )
    assert unit.occurred_at == added.occurred_at and ctx.exceptions_raised == 0
    assert [d.line.received for d in repo.lines[("s1", order.return_id)]] == [1, 1]
    second, quarantined = f.added("s1", "L2", order.return_id, "l1"), f.quarantined("s1", "L2")
    for decision in (second, quarantined):
        again = context(decision)  # it is received: no second receipt, no quarantine
        if isinstance(decision, UnitAddedToReturn):
            await add_unit_to_return(again, decision, repo)
        else:
            await quarantine_unit(again, decision, repo)
        assert emitted(again, UNIT_RECEIVED.name) == []
        [exception] = emitted(again, "returns.exceptions.v1")
        assert (exception.kind, exception.lpn) == ("unknown_reference", "L2")
        assert order.return_id in exception.detail
    assert repo.units["L2"]["quarantine_reason"] is None


async def test_an_addition_to_a_return_line_that_is_not_there_or_full_leaves_the_unit_waiting() -> None:
    repo = FakeIntakeRepository()
    order = await _with_unexpected_hat(repo)
    others = f.rma("s2")
    await register_return(context(others), others, repo)
    for decision, why in (
        (f.added("s1", "L2", order.return_id, "l9"), "has no line l9"),
        (f.added("s1", "L2", others.return_id), "is not one of this seller's"),
        (f.added("s1", "L2", order.return_id, "l0"), "has all its 1 unit(s) already"),  # L1 filled it
    ):
        ctx = context(decision)
        await add_unit_to_return(ctx, decision, repo)
        assert emitted(ctx, UNIT_RECEIVED.name) == []
        [exception] = emitted(ctx, "returns.exceptions.v1")
        assert (exception.kind, exception.lpn) == ("unexpected_unit", "L2")  # a new case, to decide again
        assert why in exception.detail and decision.return_id in exception.detail
    assert repo.units["L2"]["return_id"] is None


async def test_a_quarantined_unit_is_never_received_and_another_sellers_unit_is_not_touched() -> None:
    repo = FakeIntakeRepository()
    order = await _with_unexpected_hat(repo)
    quarantined = f.quarantined("s1", "L2", "counterfeit")
    ctx = context(quarantined)
    await quarantine_unit(ctx, quarantined, repo)
    assert ctx.outbox.rows == [] and repo.units["L2"]["quarantine_reason"] == "counterfeit"
    added = f.added("s1", "L2", order.return_id, "l1")
    later = context(added)
    await add_unit_to_return(later, added, repo)
    [exception] = emitted(later, "returns.exceptions.v1")
    assert exception.kind == "unknown_reference" and "quarantined (counterfeit)" in exception.detail
    assert emitted(later, UNIT_RECEIVED.name) == []
    foreign = f.quarantined("s2", "L2", "not mine")
    refused = context(foreign)
    await quarantine_unit(refused, foreign, repo)
    [exception] = emitted(refused, "returns.exceptions.v1")
    assert (exception.kind, exception.seller_id) == ("unknown_lpn", "s2")
    assert repo.units["L2"]["quarantine_reason"] == "counterfeit"


async def test_a_tracking_number_of_another_seller_is_reported_and_the_parcel_waits_for_its_own_return() -> None:
    repo = FakeIntakeRepository()
    order = f.rma("victim")
    await register_return(context(order), order, repo)
    parcel = f.scan("intruder", order.tracking_number, [("L1", "TEE-BLK-M")])
    ctx = context(parcel)
    await receive_parcel(ctx, parcel, repo)
    assert [e.kind for e in emitted(ctx, "returns.exceptions.v1")] == ["cross_tenant_reference"]
    assert emitted(ctx, UNIT_RECEIVED.name) == [] and repo.units == {}
    assert [s.event_id for s, _ in repo.parked] == [parcel.event_id]  # not the victim's; not lost either
    # the exception names no data of the other seller
    assert "victim" not in emitted(ctx, "returns.exceptions.v1")[0].model_dump_json()
    own = f.rma("intruder").model_copy(update={"tracking_number": order.tracking_number})
    ctx = context(own)
    await register_return(ctx, own, repo)  # a return of its own seller takes it
    assert [u.lpn for u in emitted(ctx, UNIT_RECEIVED.name)] == ["L1"] and repo.parked == []


async def test_an_lpn_of_another_seller_is_refused_and_the_rest_of_the_parcel_goes_on() -> None:
    repo = FakeIntakeRepository()
    theirs = f.rma("other")
    await register_return(context(theirs), theirs, repo)
    await receive_parcel(context(theirs), f.scan("other", theirs.tracking_number, [("SHARED", "TEE-BLK-M")]), repo)
    mine = f.rma("s1", lines=[("TEE-BLK-M", 2)])
    await register_return(context(mine), mine, repo)
    parcel = f.scan("s1", mine.tracking_number, [("SHARED", "TEE-BLK-M"), ("L2", "TEE-BLK-M")])
    ctx = context(parcel)
    await receive_parcel(ctx, parcel, repo)
    assert [e.kind for e in emitted(ctx, "returns.exceptions.v1")] == ["cross_tenant_reference"]
    assert [u.lpn for u in emitted(ctx, UNIT_RECEIVED.name)] == ["L2"]
    assert repo.units["SHARED"]["seller_id"] == "other"


async def test_unit_received_ids_are_derived_so_a_replay_emits_the_same_event() -> None:
    async def run_once() -> list:
        repo = FakeIntakeRepository()
        await register_return(context(order), order, repo)
        ctx = context(parcel)
        await receive_parcel(ctx, parcel, repo)
        return [u.event_id for u in emitted(ctx, UNIT_RECEIVED.name)]

    order = f.rma("s1")
    parcel = f.scan("s1", order.tracking_number, [("L1", "TEE-BLK-M")])
    assert await run_once() == await run_once()


async def test_a_return_never_takes_or_discards_a_parked_parcel_of_another_seller() -> None:
    repo = FakeIntakeRepository()
    victim = f.scan("victim", "T-SHARED", [("V1", "TEE-BLK-M")])
    await receive_parcel(context(victim), victim, repo)  # nobody's RMA yet: parked
    hostile = f.rma("intruder").model_copy(update={"tracking_number": "T-SHARED"})
    ctx = context(hostile)
    await register_return(ctx, hostile, repo)  # another seller's return with the victim's tracking number
    [reported] = emitted(ctx, "returns.exceptions.v1")
    assert (reported.kind, reported.seller_id, reported.source_event_id) == (
        "cross_tenant_reference",
        "victim",
        victim.event_id,
    )
    assert emitted(ctx, UNIT_RECEIVED.name) == [] and [s.event_id for s, _ in repo.parked] == [victim.event_id]
    again = f.rma("intruder").model_copy(update={"tracking_number": "T-SHARED"})
    ctx = context(again)
    await register_return(ctx, again, repo)
    assert emitted(ctx, "returns.exceptions.v1") == []  # told once
    own = f.rma("victim").model_copy(update={"tracking_number": "T-SHARED"})
    ctx = context(own)
    await register_return(ctx, own, repo)
    assert [u.lpn for u in emitted(ctx, UNIT_RECEIVED.name)] == ["V1"] and repo.parked == []


async def test_two_sellers_may_use_the_same_return_id_without_touching_each_other() -> None:
    repo = FakeIntakeRepository()
    first = f.rma("a")
    second = f.rma("b").model_copy(update={"return_id": first.return_id})
    await register_return(context(first), first, repo)
    await register_return(context(second), second, repo)
    parcel = f.scan("b", second.tracking_number, [("L1", "TEE-BLK-M")])
    ctx = context(parcel)
    await receive_parcel(ctx, parcel, repo)
    [unit] = emitted(ctx, UNIT_RECEIVED.name)
    assert (unit.seller_id, unit.shop_id) == ("b", second.shop_id)
    assert repo.lines[("a", first.return_id)][0].line.received == 0
