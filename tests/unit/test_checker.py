"""The guarantee checker finds each fault it is meant to find, and nothing in a clean history.

Histories are built from the contracts' models and handed to the checker as the raw JSON the
topics carry: the checker reads them by itself."""

from __future__ import annotations

import ast
import inspect
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from rebound.simulation import checker
from rebound.simulation.checker import History, Raw, Report, check
from rebound_contracts import (
    AdjustmentCause,
    Destination,
    DispositionDecided,
    ExchangeAllocated,
    ExchangeRequested,
    ListingRequested,
    LotContents,
    MessageDeadLettered,
    MessageSource,
    Money,
    StockAdjusted,
    UnitAllocated,
    UnitGraded,
    UnitPicked,
)
from rebound_contracts import topics

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SELLER, OTHER = "chk-seller-1", "chk-seller-2"
PRICE = Money(amount="19.90", currency="USD")
NEW_KEY = f"{SELLER}:tiktok:W1:TEE-BLK-M:new"


def graded(
    lpn: str, grade: str = "A", *, seller: str = SELLER, sku: str = "TEE-BLK-M", at: datetime = T0, revision: int = 1
) -> UnitGraded:
    return UnitGraded(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller,
        lpn=lpn,
        sku=sku,
        return_id="R1",
        grade=grade,
        reasons=["packaging=intact"],
        revision=revision,
        warehouse_id="W1",
        shop_id="shop-1",
        channel="tiktok",
        unit_price=PRICE,
        source_event_id=uuid.uuid4(),
    )


def adjusted(
    cause: UnitGraded | DispositionDecided,
    sequence: int,
    available: int,
    *,
    delta: int = 1,
    condition: str = "new",
    sku: str | None = None,
    seller: str | None = None,
    at: datetime | None = None,
    picked: int = 0,
    kind: str | None = None,
    source: uuid.UUID | None = None,
) -> StockAdjusted:
    adjustment_id = uuid.uuid4()
    revision = cause.revision if isinstance(cause, UnitGraded) else cause.grade_revision
    return StockAdjusted(
        event_id=adjustment_id,
        adjustment_id=adjustment_id,
        occurred_at=at or cause.occurred_at + timedelta(seconds=1),
        seller_id=seller or cause.seller_id,
        shop_id="shop-1",
        channel="tiktok",
        warehouse_id="W1",
        sku=sku or cause.sku,
        condition=condition,
        delta=delta,
        available=available,
        sequence=sequence,
        picked=picked,
        cause=AdjustmentCause(
            kind=kind or ("unit_graded" if revision == 1 else "unit_regraded"),
            lpn=cause.lpn,
            source_event_id=source or cause.event_id,
        ),
    )


def decided(grade: UnitGraded, *, policy_version: int = 1, priced: bool = False) -> DispositionDecided:
    return DispositionDecided(
        event_id=uuid.uuid4(),
        occurred_at=grade.occurred_at + timedelta(milliseconds=500),
        seller_id=grade.seller_id,
        lpn=grade.lpn,
        sku=grade.sku,
        grade=grade.grade,
        grade_revision=grade.revision,
        warehouse_id="W1",
        shop_id="shop-1",
        channel="tiktok",
        unit_price=PRICE,
        policy_version=policy_version,
        rule="default",
        reasons=["graded A"],
        candidates=[_destination(priced)],
        source_event_id=grade.event_id,
    )


def _destination(priced: bool) -> Destination:
    return Destination(kind="listing", channel="tiktok", condition="new", price=PRICE if priced else None)


def allocated(disposition: DispositionDecided, *, priced: bool = False, at: datetime | None = None) -> UnitAllocated:
    return UnitAllocated(
        event_id=uuid.uuid4(),
        occurred_at=at or disposition.occurred_at + timedelta(seconds=1),
        seller_id=disposition.seller_id,
        lpn=disposition.lpn,
        sku=disposition.sku,
        warehouse_id="W1",
        grade=disposition.grade,
        grade_revision=disposition.grade_revision,
        rule="default",
        cause="decided",
        candidate=0,
        destination=_destination(priced),
        source_event_id=disposition.event_id,
    )


def listing(key: str, at: datetime, *, lot: LotContents | None = None) -> ListingRequested:
    seller, channel, warehouse, sku, condition = key.split(":")
    return ListingRequested(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller,
        action="upsert",
        shop_id="shop-1",
        channel=channel,
        warehouse_id=warehouse,
        sku=sku,
        condition=condition,
        price=PRICE,
        condition_note="Open box",
        quantity_limit=1 if lot else None,
        lot=lot,
    )


def request(exchange_id: str, *, seller: str = SELLER) -> ExchangeRequested:
    return ExchangeRequested(
        event_id=uuid.uuid4(),
        occurred_at=T0,
        seller_id=seller,
        exchange_id=exchange_id,
        return_id="R1",
        shop_id="shop-1",
        channel="tiktok",
        warehouse_id="W1",
        sku="TEE-BLK-L",
    )


def answer(asked: ExchangeRequested, lpn: str | None = None) -> ExchangeAllocated:
    return ExchangeAllocated(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(seconds=1),
        seller_id=asked.seller_id,
        exchange_id=asked.exchange_id,
        return_id=asked.return_id,
        warehouse_id="W1",
        sku=asked.sku,
        status="allocated" if lpn else "unavailable",
        lpn=lpn,
        source="exchange_pool" if lpn else None,
        source_event_id=asked.event_id,
    )


def picked(lpn: str, *, channel: str = "tiktok") -> UnitPicked:
    return UnitPicked(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(hours=2),
        seller_id=SELLER,
        warehouse_id="W1",
        lpn=lpn,
        channel=channel,
        order_id="O-1",
    )


def refusal(topic: str, partition: int, offset: int) -> MessageDeadLettered:
    return MessageDeadLettered(
        event_id=uuid.uuid4(),
        occurred_at=T0,
        consumer="ledger",
        kind="schema_violation",
        error="bad",
        source=MessageSource(topic=topic, partition=partition, offset=offset),
        raw_base64="e30=",
        raw_size=2,
    )


def raw(models: Iterable[BaseModel], topic: topics.Topic[Any] | None = None) -> list[Raw]:
    """Each model as the raw record a topic carries: its JSON, its Kafka key, offsets in order."""
    return [
        Raw(0, offset, topic.key_of(model) if topic is not None else None, model.model_dump(mode="json"))
        for offset, model in enumerate(models)
    ]


def history(
    adjustments: Iterable[StockAdjusted] = (),
    grades: Iterable[UnitGraded] = (),
    *,
    dispositions: Iterable[DispositionDecided] = (),
    allocations: Iterable[UnitAllocated] = (),
    listings: Iterable[ListingRequested] = (),
    answers: Iterable[ExchangeAllocated] = (),
    requests: Iterable[ExchangeRequested] = (),
    picks: Iterable[UnitPicked] = (),
    refusals: Iterable[MessageDeadLettered] = (),
) -> History:
    return History(
        adjustments=raw(adjustments, topics.STOCK_ADJUSTMENTS),
        grades=raw(grades, topics.UNIT_GRADED),
        dispositions=raw(dispositions, topics.DISPOSITIONS),
        allocations=raw(allocations, topics.ALLOCATIONS),
        listings=raw(listings, topics.LISTINGS),
        exchange_answers=raw(answers, topics.EXCHANGE_ALLOCATED),
        exchange_requests=raw(requests, topics.EXCHANGE_REQUESTED),
        picks=raw(picks, topics.UNIT_PICKED),
        refusals=raw(refusals),
    )


def clean_history() -> tuple[list[UnitGraded], list[StockAdjusted], dict[str, int]]:
    """Three units graded A, one B later regraded A: every check must pass."""
    g1, g2, g3 = graded("L1"), graded("L2"), graded("L3", "B")
    g3a = graded("L3", "A", at=T0 + timedelta(hours=1), revision=2)
    adjustments = [
        adjusted(g1, 1, 1),
        adjusted(g2, 2, 2),
        adjusted(g3, 1, 1, condition="open_box"),
        adjusted(g3a, 2, 0, delta=-1, condition="open_box"),
        adjusted(g3a, 3, 3),
    ]
    expected = {NEW_KEY: 3}
    return [g1, g2, g3, g3a], adjustments, expected


def faults(report: Report) -> dict[str, int]:
    return {name: getattr(report, name) for name in Report.FAULTS if getattr(report, name)}


def judge(adjustments: Iterable[StockAdjusted], grades: Iterable[UnitGraded], expected: dict[str, int] | None = None):
    return faults(check(history(adjustments, grades), expected))


# --- what the checker is -------------------------------------------------------------------------


def test_the_checker_imports_neither_the_services_nor_the_contracts():
    tree = ast.parse(inspect.getsource(checker))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith(("rebound", "pydantic")) for name in imported), imported
    assert not any(node.level for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))


def test_its_topic_names_are_the_contracts():
    assert checker.STOCK_ADJUSTMENTS == topics.STOCK_ADJUSTMENTS.name
    assert checker.UNIT_GRADED == topics.UNIT_GRADED.name
    assert checker.DISPOSITIONS == topics.DISPOSITIONS.name
    assert checker.ALLOCATIONS == topics.ALLOCATIONS.name
    assert checker.LISTINGS == topics.LISTINGS.name
    assert checker.EXCHANGE_ALLOCATED == topics.EXCHANGE_ALLOCATED.name
    assert checker.EXCHANGE_REQUESTED == topics.EXCHANGE_REQUESTED.name
    assert checker.UNIT_PICKED == topics.UNIT_PICKED.name
    assert (checker.DLQ, checker.EXCEPTIONS) == (topics.DLQ.name, topics.EXCEPTIONS.name)
    key = topics.STOCK_ADJUSTMENTS.key_of(adjusted(graded("L1"), 1, 1))
    assert checker.stock_key(*key.split(":")) == key == NEW_KEY


# --- exactly once, per key -------------------------------------------------------------------------


def test_a_clean_history_is_ok():
    grades, adjustments, expected = clean_history()
    report = check(history(adjustments, grades), expected)
    assert report.ok, report.as_dict()
    assert (report.adjustments, report.keys) == (5, 2)
    assert report.as_dict()["ok"] is True


def test_a_duplicate_adjustment_is_found_once():
    grades, adjustments, expected = clean_history()
    assert judge(adjustments[:2] + [adjustments[1]] + adjustments[2:], grades, expected) == {"duplicates": 1}


def test_a_gap_counts_the_missing_numbers():
    grades, adjustments, _ = clean_history()
    g4 = graded("L4")
    late = adjusted(g4, 6, 3)  # sequence 3 was expected: 3, 4, 5 are missing
    assert judge(adjustments[:2] + [late], grades + [g4]) == {"gaps": 3}


def test_a_sequence_that_does_not_start_at_one_is_a_gap():
    g = graded("L1")
    assert judge([adjusted(g, 2, 1)], [g]) == {"gaps": 1}


def test_a_repeated_sequence_number_is_found():
    grades, adjustments, _ = clean_history()
    g4 = graded("L4")
    again = adjusted(g4, 2, 3)  # another adjustment claims sequence 2
    assert judge(adjustments[:2] + [again], grades + [g4]) == {"repeats": 1}


def test_available_that_is_not_the_running_sum_is_found_once():
    grades, adjustments, _ = clean_history()
    g4, g5 = graded("L4"), graded("L5")
    wrong = adjusted(g4, 3, 5)  # should be 3
    after = adjusted(g5, 4, 6)  # consistent with the wrong one: counted once
    assert judge(adjustments[:2] + [wrong, after], grades + [g4, g5]) == {"running_sum_errors": 1}


def test_negative_available_is_found():
    g = graded("L1")
    below = history([adjusted(g, 1, 0, delta=-1)], [g])
    below.adjustments[0].document["available"] = -1
    assert faults(check(below, None)) == {"running_sum_errors": 1}


# --- graded first ------------------------------------------------------------------------------------


def test_a_plus_one_without_a_grade_is_found():
    assert judge([adjusted(graded("L1"), 1, 1)], []) == {"ungraded": 1}


def test_a_plus_one_before_its_grade_is_found():
    g = graded("L1", at=T0 + timedelta(hours=1))
    assert judge([adjusted(g, 1, 1, at=T0)], [g]) == {"ungraded": 1}


def test_a_plus_one_for_a_c_grade_is_found():
    g = graded("L1", "C")
    assert judge([adjusted(g, 1, 1)], [g]) == {"ungraded": 1}


def test_a_plus_one_whose_cause_is_another_units_grade_is_found():
    g1, g2 = graded("L1"), graded("L2")
    wrong = adjusted(g1, 1, 1).model_copy(
        update={"cause": AdjustmentCause(kind="unit_graded", lpn="L2", source_event_id=g1.event_id)}
    )
    assert judge([wrong], [g1, g2]) == {"ungraded": 1}


def test_a_minus_one_needs_no_grade_of_its_own():
    grades, adjustments, expected = clean_history()
    assert check(history(adjustments, grades), expected).ungraded == 0


def test_a_plus_one_of_an_old_grade_after_the_unit_was_downgraded_is_found():
    a = graded("L1")
    c = graded("L1", "C", at=T0 + timedelta(hours=1), revision=2)
    on, off = adjusted(a, 1, 1), adjusted(c, 2, 0, delta=-1)
    again = adjusted(a, 3, 1, at=c.occurred_at + timedelta(seconds=5))  # the A grade's +1, applied late
    assert judge([on, off], [a, c]) == {}
    assert judge([on, off, again], [a, c]) == {"after_downgrade": 1}


def test_a_unit_left_on_offer_after_its_latest_grade_became_scrap_is_found():
    a = graded("L1")
    scrap = graded("L1", "SCRAP", at=T0 + timedelta(hours=1), revision=2)
    assert judge([adjusted(a, 1, 1)], [a, scrap]) == {"after_downgrade": 1}
    assert judge([adjusted(a, 1, 1)], [a, graded("L1", "B", revision=2)]) == {}
    sold = check(history([adjusted(a, 1, 1)], [a, scrap], picks=[picked("L1")]), None)
    assert faults(sold) == {}  # picked before its regrade: it left the shelf


def test_a_downgrade_the_ledger_acted_on_by_an_allocation_makes_an_older_plus_one_stale():
    a = graded("L1")
    c = graded("L1", "C", at=T0 + timedelta(hours=1), revision=2)
    moved_off = allocated(decided(c), at=c.occurred_at + timedelta(seconds=1))  # no -1: it was not on offer
    late = adjusted(a, 1, 1, at=c.occurred_at + timedelta(seconds=5))
    report = check(history([late], [a, c], allocations=[moved_off]), None)
    assert report.after_downgrade == 1 and "grade 1 after 2" in report.examples["after_downgrade"][0]


# --- tenants ------------------------------------------------------------------------------------------


def test_stock_of_another_sellers_unit_is_misplaced():
    g = graded("L1", seller=OTHER)
    assert judge([adjusted(g, 1, 1, seller=SELLER)], [g]) == {"misplaced": 1}


def test_an_adjustment_on_another_sellers_key_is_misplaced():
    g = graded("L1")
    mine = history([adjusted(g, 1, 1)], [g])
    assert check(mine, None).ok
    mine.adjustments[0] = Raw(0, 0, f"{OTHER}:tiktok:W1:TEE-BLK-M:new", mine.adjustments[0].document)
    assert faults(check(mine, None)) == {"misplaced": 1}
    assert faults(check(mine, None, sellers=[OTHER])) == {"misplaced": 1}  # read for the key's seller too


def test_records_without_a_seller_are_counted_not_skipped():
    grades, adjustments, expected = clean_history()
    sellerless = history(adjustments, grades)
    del sellerless.adjustments[0].document["seller_id"]
    sellerless.grades[1].document["seller_id"] = None
    report = check(sellerless, None, sellers=[SELLER])
    assert report.unattributed == 2, report.examples
    assert check(history(adjustments, grades), None, sellers=[SELLER]).unattributed == 0


def test_other_sellers_records_are_not_judged():
    g = graded("L9", seller=OTHER)
    theirs = adjusted(g, 7, 1)  # a gap, but not the checked seller's
    grades, adjustments, expected = clean_history()
    assert check(history(adjustments + [theirs], grades + [g]), expected, sellers=[SELLER]).ok


# --- the contract ---------------------------------------------------------------------------------


def test_records_that_lack_what_the_checker_reads_are_unreadable():
    grades, adjustments, expected = clean_history()
    broken = history(adjustments, grades)
    del broken.adjustments[4].document["delta"]
    broken.grades[0].document["revision"] = "1"
    broken.unreadable.append((checker.LISTINGS, 0, 7, "not a JSON object"))
    report = check(broken, None)
    assert report.unreadable == 3 and not report.ok


# --- one place -------------------------------------------------------------------------------------


def test_a_unit_put_on_a_second_key_before_leaving_the_first_is_offered_twice():
    g = graded("L1", "B")
    ga = graded("L1", "A", at=T0 + timedelta(hours=1), revision=2)
    moved_late = [
        adjusted(g, 1, 1, condition="open_box"),
        adjusted(ga, 1, 1),  # +1 new ...
        adjusted(ga, 2, 0, delta=-1, condition="open_box", at=ga.occurred_at + timedelta(seconds=5)),
    ]
    assert judge(moved_late, [g, ga]) == {"offered_twice": 1}
    moved_together = [
        adjusted(g, 1, 1, condition="open_box"),
        adjusted(ga, 2, 0, delta=-1, condition="open_box"),
        adjusted(ga, 1, 1),
    ]  # -1 and +1 of one transaction share a timestamp
    assert judge(moved_together, [g, ga]) == {}


def test_a_unit_added_twice_to_the_key_it_is_on_is_found():
    g = graded("L1")
    ga = graded("L1", at=T0 + timedelta(hours=1), revision=2)
    assert judge([adjusted(g, 1, 1), adjusted(ga, 2, 2)], [g, ga], {NEW_KEY: 2}) == {"added_twice": 1}
    off_and_on = [adjusted(g, 1, 1), adjusted(ga, 2, 0, delta=-1), adjusted(ga, 3, 1, at=ga.occurred_at + timedelta(1))]
    assert judge(off_and_on, [g, ga]) == {}


# --- picks ------------------------------------------------------------------------------------------


def test_picked_units_leave_available_without_a_minus_one():
    g1, g2 = graded("L1"), graded("L2")
    second = adjusted(g2, 2, 1, picked=1)  # one unit of the key was picked before: 1 + 1 - 1
    sold = check(history([adjusted(g1, 1, 1), second], [g1, g2], picks=[picked("L1")]), None)
    assert faults(sold) == {}
    assert judge([adjusted(g1, 1, 1), adjusted(g2, 2, 1)], [g1, g2]) == {"running_sum_errors": 1}


def test_a_loss_disguised_as_a_pick_is_found():
    g1, g2 = graded("L1"), graded("L2")
    lost = [adjusted(g1, 1, 1), adjusted(g2, 2, 1, picked=1)]  # consistent sums, but nobody picked
    report = check(history(lost, [g1, g2]), None)
    assert faults(report) == {"unbacked_picks": 1}
    elsewhere = check(history(lost, [g1, g2], picks=[picked("L1", channel="amazon")]), None)
    assert faults(elsewhere) == {"unbacked_picks": 1}  # a sale on another channel is not this key's pick
    twice = check(history(lost, [g1, g2], picks=[picked("L9"), picked("L9")]), None)
    assert faults(twice) == {"unbacked_picks": 1}  # a unit that was never on the key


# --- allocations ------------------------------------------------------------------------------------


def placed_unit() -> tuple[UnitGraded, DispositionDecided, StockAdjusted, UnitAllocated]:
    g = graded("L1")
    d = decided(g)
    a = allocated(d)
    return g, d, adjusted(d, 1, 1, at=a.occurred_at), a


def test_a_move_without_its_allocation_is_found():
    g, d, adj, a = placed_unit()
    assert faults(check(history([adj], [g], dispositions=[d], allocations=[a]), None)) == {}
    report = check(history([adj], [g], dispositions=[d]), None)
    assert faults(report) == {"allocations_missing": 1}  # the move's, and the disposition's: one unit, one cause


def test_a_latest_disposition_never_allocated_is_found():
    g, d, adj, a = placed_unit()
    newer = decided(g, policy_version=2)  # the same grade under a new policy: re-placed
    assert faults(check(history([adj], [g], dispositions=[d, newer], allocations=[a]), None)) == {
        "allocations_missing": 1
    }
    refused = refusal(checker.DISPOSITIONS, 0, 1)  # the newer one was dead-lettered: nothing to place
    assert faults(check(history([adj], [g], dispositions=[d, newer], allocations=[a], refusals=[refused]), None)) == {}
    sold = check(history([adj], [g], dispositions=[d, newer], allocations=[a], picks=[picked("L1")]), None)
    assert faults(sold) == {}


def test_an_allocation_published_twice_is_found():
    g, d, adj, a = placed_unit()
    assert faults(check(history([adj], [g], dispositions=[d], allocations=[a, a]), None)) == {"allocations_repeated": 1}


# --- listings ---------------------------------------------------------------------------------------


def test_a_priced_key_opened_without_its_listing_request_is_found():
    g = graded("L1", "B")
    d = decided(g, priced=True)
    a = allocated(d, priced=True)
    adj = adjusted(d, 1, 1, condition="open_box", at=a.occurred_at)
    key = f"{SELLER}:tiktok:W1:TEE-BLK-M:open_box"
    requested = listing(key, a.occurred_at)

    def judged(*listings: ListingRequested) -> dict[str, int]:
        return faults(check(history([adj], [g], dispositions=[d], allocations=[a], listings=listings), None))

    assert judged(requested) == {}
    assert judged() == {"listings_missing": 1}
    assert judged(listing(key, a.occurred_at + timedelta(seconds=1))) == {"listings_missing": 1}  # not with the +1
    assert judged(requested, requested) == {"listings_repeated": 1}


def test_a_lot_without_its_listing_is_found():
    t1, t2 = graded("T1", "B"), graded("T2", "B")
    d = decided(t1)  # T1 completes the lot
    a = allocated(d)
    formed = adjusted(d, 1, 1, sku="LOT-abc", condition="open_box", kind="lot_formed", at=a.occurred_at)
    key = f"{SELLER}:tiktok:W1:LOT-abc:open_box"
    lot = listing(key, a.occurred_at, lot=LotContents(lot_id="abc", lpns=["T1", "T2"], skus=["TEE-BLK-M"]))

    def judged(*listings: ListingRequested) -> dict[str, int]:
        return faults(check(history([formed], [t1, t2], dispositions=[d], allocations=[a], listings=listings), None))

    assert judged(lot) == {}
    assert judged() == {"listings_missing": 1}


# --- exchanges --------------------------------------------------------------------------------------


def test_an_exchange_request_without_an_answer_is_found():
    asked = request("X1")
    assert faults(check(history(requests=[asked], answers=[answer(asked)]), None)) == {}
    assert faults(check(history(requests=[asked]), None)) == {"answers_missing": 1}
    refused = refusal(checker.EXCHANGE_REQUESTED, 0, 0)  # dead-lettered: no answer is owed
    assert faults(check(history(requests=[asked], refusals=[refused]), None)) == {}


def test_an_exchange_answered_twice_is_found():
    asked = request("X1")
    once = answer(asked)
    assert faults(check(history(requests=[asked], answers=[once, once]), None)) == {"answers_repeated": 1}
    assert faults(check(history(requests=[asked], answers=[once, answer(asked, "L1")]), None)) == {
        "answers_repeated": 1
    }


# --- the final stock and the report -------------------------------------------------------------------


def test_wrong_final_stock_is_lost_or_extra():
    grades, adjustments, expected = clean_history()
    report = check(history(adjustments[:-1], grades), expected)  # the last +1 never came
    assert faults(report) == {"lost_or_extra": 1}
    assert report.keys_off == 1
    extra = check(history(adjustments, grades), expected | {f"{SELLER}:tiktok:W1:TEE-BLK-L:new": 2})
    assert faults(extra) == {"lost_or_extra": 2}


def test_without_expected_stock_final_stock_is_not_judged():
    grades, adjustments, _ = clean_history()
    report = check(history(adjustments[:-1], grades), None)
    assert report.ok and not report.stock_checked


def test_table_has_a_row_per_check():
    grades, adjustments, expected = clean_history()
    table = check(history(adjustments, grades), expected).table()
    assert [c.header for c in table.columns][:3] == ["Guarantee", "Check", "Found"]
    assert table.row_count == len(Report.FAULTS)
