"""What a connector decides, whatever the marketplace: runs in sequence order, deltas onto the
marketplace's own number, in-doubt writes resolved by reading back, rate limits."""

from __future__ import annotations

import uuid

import pytest

from rebound.connectors.domain import Adjustment, TokenBucket, drift, next_run, settle, target


def _adjustments(*pairs: tuple[int, int]) -> list[Adjustment]:
    return [Adjustment(sequence, delta, uuid.uuid4()) for sequence, delta in pairs]


def test_a_run_takes_what_follows_the_last_applied_sequence_without_a_gap() -> None:
    pending = _adjustments((3, 1), (4, 1), (5, -1), (7, 1))
    run = next_run(2, pending)
    assert run is not None
    assert (run.first, run.last, run.delta) == (3, 5, 1)
    assert run.adjustment_ids == tuple(a.adjustment_id for a in pending[:3])
    assert next_run(5, pending) is None  # 6 has not come: wait for it, never skip
    later = next_run(6, pending)
    assert later is not None and later.first == 7


def test_adjustments_already_applied_are_ignored_and_a_run_has_a_limit() -> None:
    pending = _adjustments(*[(s, 1) for s in range(1, 11)])
    run = next_run(4, pending, limit=3)
    assert run is not None
    assert (run.first, run.last, run.delta) == (5, 7, 3)
    assert next_run(10, pending) is None


def test_a_delta_lands_on_the_marketplaces_own_number() -> None:
    assert target(seen=3, delta=2, maximum=99_999).quantity == 5
    # Two units sold on the marketplace that the warehouse has not picked: they stay sold.
    assert target(seen=1, delta=1, maximum=99_999).quantity == 2
    assert (target(seen=1, delta=-1, maximum=99_999).quantity, target(seen=1, delta=-1, maximum=99_999).short) == (0, 0)
    taken_back = target(seen=0, delta=-2, maximum=99_999)
    assert (taken_back.quantity, taken_back.short) == (0, 2)
    assert target(seen=99_999, delta=1, maximum=99_999).quantity == 99_999


@pytest.mark.parametrize(
    ("written", "seen", "sold", "now", "settled"),
    [
        (5, 3, 0, 5, 5),  # landed
        (5, 3, 0, 3, 5),  # did not land: the +2 is written
        (5, 3, 2, 3, 3),  # landed, then two sold
        (5, 3, 2, 5, 3),  # landed over two sales made before it: they are taken off again
        (5, 3, 2, 1, 3),  # did not land, two sold
        (5, 3, 4, 1, 1),
        (2, 3, 0, 2, 2),  # a -1 that landed
        (2, 3, 0, 3, 2),  # a -1 that did not
        (2, 3, 3, 0, 0),  # sold out either way
        (5, 3, 0, 7, None),  # someone else wrote
        (5, 3, 1, 1, None),  # ... or took more than what sold
        (3, 3, 0, 3, 3),  # nothing to write
    ],
)
def test_a_write_in_doubt_settles_on_the_delta_less_what_sold_whichever_happened(
    written: int, seen: int, sold: int, now: int, settled: int | None
) -> None:
    assert settle(written, seen, sold, now) == settled


def test_a_token_bucket_allows_its_burst_then_its_rate_and_honours_retry_after() -> None:
    bucket = TokenBucket(rate=5.0, burst=5.0)
    for _ in range(5):
        assert bucket.wait(0.0) == 0.0
        bucket.take(0.0)
    assert bucket.wait(0.0) == pytest.approx(0.2)
    assert bucket.wait(0.2) == pytest.approx(0.0)
    bucket.take(0.2)
    bucket.back_off(0.2, 2.0)
    assert bucket.wait(1.0) == pytest.approx(1.2)
    assert bucket.wait(2.2) == pytest.approx(0.0)


def test_a_shop_that_does_not_answer_is_paused_longer_each_time_and_resumes_once_it_answers() -> None:
    bucket = TokenBucket(rate=10.0, burst=10.0)
    assert [bucket.failed(0.0) for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert bucket.wait(0.0) == pytest.approx(8.0)
    bucket.answered()
    assert bucket.failed(100.0) == 0.5


def test_drift_counts_what_no_sale_explains():
    assert drift(written=5, sold=2, now=3) == 0  # buyers only
    assert drift(written=5, sold=2, now=9) == 6  # someone offered six units Rebound never made available
    assert drift(written=5, sold=2, now=1) == -2  # two units hidden
    assert drift(written=1, sold=3, now=0) == 0  # oversold: reported by the write's check, not as drift
