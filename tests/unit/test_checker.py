"""The guarantee checker finds each fault it is meant to find, and nothing in a clean history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from rebound.simulation.checker import Record, Report, check
from rebound_contracts import AdjustmentCause, Money, StockAdjusted, UnitGraded

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SELLER, OTHER = "chk-seller-1", "chk-seller-2"


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
        unit_price=Money(amount="19.90", currency="USD"),
        source_event_id=uuid.uuid4(),
    )


def adjusted(
    cause: UnitGraded,
    sequence: int,
    available: int,
    *,
    delta: int = 1,
    condition: str = "new",
    seller: str | None = None,
    at: datetime | None = None,
) -> StockAdjusted:
    adjustment_id = uuid.uuid4()
    return StockAdjusted(
        event_id=adjustment_id,
        adjustment_id=adjustment_id,
        occurred_at=at or cause.occurred_at + timedelta(seconds=1),
        seller_id=seller or cause.seller_id,
        shop_id="shop-1",
        channel="tiktok",
        warehouse_id="W1",
        sku=cause.sku,
        condition=condition,
        delta=delta,
        available=available,
        sequence=sequence,
        cause=AdjustmentCause(
            kind="unit_graded" if cause.revision == 1 else "unit_regraded",
            lpn=cause.lpn,
            source_event_id=cause.event_id,
        ),
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
    expected = {f"{SELLER}:tiktok:W1:TEE-BLK-M:new": 3}
    return [g1, g2, g3, g3a], adjustments, expected


def faults(report: Report) -> dict[str, int]:
    return {name: getattr(report, name) for name in Report.FAULTS if getattr(report, name)}


def test_a_clean_history_is_ok():
    grades, adjustments, expected = clean_history()
    report = check(adjustments, grades, expected)
    assert report.ok, report.as_dict()
    assert (report.adjustments, report.keys) == (5, 2)
    assert report.as_dict()["ok"] is True


def test_a_duplicate_adjustment_is_found_once():
    grades, adjustments, expected = clean_history()
    report = check(adjustments[:2] + [adjustments[1]] + adjustments[2:], grades, expected)
    assert faults(report) == {"duplicates": 1}


def test_a_gap_counts_the_missing_numbers():
    grades, adjustments, _ = clean_history()
    g4 = graded("L4")
    late = adjusted(g4, 6, 3)  # sequence 3 was expected: 3, 4, 5 are missing
    report = check(adjustments[:2] + [late], grades + [g4], None)
    assert faults(report) == {"gaps": 3}


def test_a_sequence_that_does_not_start_at_one_is_a_gap():
    g = graded("L1")
    assert faults(check([adjusted(g, 2, 1)], [g], None)) == {"gaps": 1}


def test_a_repeated_sequence_number_is_found():
    grades, adjustments, _ = clean_history()
    g4 = graded("L4")
    again = adjusted(g4, 2, 3)  # another adjustment claims sequence 2
    report = check(adjustments[:2] + [again], grades + [g4], None)
    assert faults(report) == {"repeats": 1}


def test_available_that_is_not_the_running_sum_is_found_once():
    grades, adjustments, _ = clean_history()
    g4, g5 = graded("L4"), graded("L5")
    wrong = adjusted(g4, 3, 5)  # should be 3
    after = adjusted(g5, 4, 6)  # consistent with the wrong one: counted once
    report = check(adjustments[:2] + [wrong, after], grades + [g4, g5], None)
    assert faults(report) == {"running_sum_errors": 1}


def test_negative_available_is_found():
    g = graded("L1")
    below = StockAdjusted.model_construct(**(adjusted(g, 1, 0, delta=-1).__dict__ | {"available": -1}))
    report = check([below], [g], None)
    assert faults(report) == {"running_sum_errors": 1}


def test_a_plus_one_without_a_grade_is_found():
    g = graded("L1")
    report = check([adjusted(g, 1, 1)], [], None)
    assert faults(report) == {"ungraded": 1}


def test_a_plus_one_before_its_grade_is_found():
    g = graded("L1", at=T0 + timedelta(hours=1))
    report = check([adjusted(g, 1, 1, at=T0)], [g], None)
    assert faults(report) == {"ungraded": 1}


def test_a_plus_one_for_a_c_grade_is_found():
    g = graded("L1", "C")
    report = check([adjusted(g, 1, 1)], [g], None)
    assert faults(report) == {"ungraded": 1}


def test_a_plus_one_whose_cause_is_another_units_grade_is_found():
    g1, g2 = graded("L1"), graded("L2")
    wrong = adjusted(g1, 1, 1).model_copy(
        update={"cause": AdjustmentCause(kind="unit_graded", lpn="L2", source_event_id=g1.event_id)}
    )
    assert faults(check([wrong], [g1, g2], None)) == {"ungraded": 1}


def test_a_minus_one_needs_no_grade_of_its_own():
    grades, adjustments, expected = clean_history()
    assert check(adjustments, grades, expected).ungraded == 0


def test_stock_of_another_sellers_unit_is_misplaced():
    g = graded("L1", seller=OTHER)
    mine = adjusted(g, 1, 1, seller=SELLER)
    assert faults(check([mine], [g], None)) == {"misplaced": 1}


def test_an_adjustment_on_another_sellers_key_is_misplaced():
    g = graded("L1")
    adj = adjusted(g, 1, 1)
    record = Record(partition=0, offset=0, key=f"{OTHER}:tiktok:W1:TEE-BLK-M:new", model=adj)
    assert faults(check([record], [g], None)) == {"misplaced": 1}
    proper = Record(partition=0, offset=0, key=f"{SELLER}:tiktok:W1:TEE-BLK-M:new", model=adj)
    assert check([proper], [g], None).ok


def test_wrong_final_stock_is_lost_or_extra():
    grades, adjustments, expected = clean_history()
    report = check(adjustments[:-1], grades, expected)  # the last +1 never came
    assert faults(report) == {"lost_or_extra": 1}
    assert report.keys_off == 1
    extra = check(adjustments, grades, expected | {f"{SELLER}:tiktok:W1:TEE-BLK-L:new": 2})
    assert faults(extra) == {"lost_or_extra": 2}


def test_without_expected_stock_final_stock_is_not_judged():
    grades, adjustments, _ = clean_history()
    report = check(adjustments[:-1], grades, None)
    assert report.ok and not report.stock_checked


def test_unreadable_messages_fail_the_report():
    assert not check([], [], None, unreadable=1).ok


def test_read_topic_triples_are_accepted():
    grades, adjustments, expected = clean_history()
    triples = [(0, i, a) for i, a in enumerate(adjustments)]
    assert check(triples, grades, expected).ok


def test_a_unit_put_on_a_second_key_before_leaving_the_first_is_offered_twice():
    g = graded("L1", "B")
    ga = graded("L1", "A", at=T0 + timedelta(hours=1), revision=2)
    moved_late = [
        adjusted(g, 1, 1, condition="open_box"),
        adjusted(ga, 1, 1),  # +1 new ...
        adjusted(ga, 2, 0, delta=-1, condition="open_box", at=ga.occurred_at + timedelta(seconds=5)),
    ]
    assert faults(check(moved_late, [g, ga], None)) == {"offered_twice": 1}
    moved_together = [
        adjusted(g, 1, 1, condition="open_box"),
        adjusted(ga, 2, 0, delta=-1, condition="open_box"),
        adjusted(ga, 1, 1),
    ]  # -1 and +1 of one transaction share a timestamp
    assert faults(check(moved_together, [g, ga], None)) == {}


def test_picked_units_leave_available_without_a_minus_one():
    g1, g2 = graded("L1"), graded("L2")
    second = adjusted(g2, 2, 1)  # one unit of the key was picked before: 1 + 1 - 1
    assert faults(check([adjusted(g1, 1, 1), second.model_copy(update={"picked": 1})], [g1, g2], None)) == {}
    assert faults(check([adjusted(g1, 1, 1), second], [g1, g2], None)) == {"running_sum_errors": 1}


def test_table_has_a_row_per_check():
    grades, adjustments, expected = clean_history()
    table = check(adjustments, grades, expected).table()
    assert [c.header for c in table.columns][:3] == ["Guarantee", "Check", "Found"]
    assert table.row_count == 9
