"""eBay's 250 revisions of a listing a calendar day: the adapter's pacing, over days of a listing
that sells without pause, the Pacific day the revisions are counted in, and which refusal says the
day's revisions are spent."""

from __future__ import annotations

from datetime import datetime

import pytest

from rebound.connectors.ebay import (
    PACE_BURST,
    PACIFIC,
    REVISIONS_A_DAY,
    RevisionPacing,
    revision_day,
    revision_limit_reached,
    seconds_to_next_day,
)

HOUR = 3600


def _pacific(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=PACIFIC).timestamp()


def _hot_listing(pacing: RevisionPacing, start: float, seconds: float) -> list[float]:
    """A listing with something to write at every moment: a write whenever the pacing allows."""
    written, now = [], start
    while now < start + seconds:
        wait = pacing.wait("offer", now)
        if wait > 0:
            now += wait
            continue
        pacing.spend("offer", now)
        written.append(now)
    return written


@pytest.mark.parametrize("start", [_pacific(2026, 7, 14, 9, 0), _pacific(2026, 11, 1, 0, 0)])
def test_no_25_hours_hold_more_than_250_revisions_and_a_hot_listing_still_gets_them(start: float) -> None:
    written = _hot_listing(RevisionPacing(), start, 4 * 24 * HOUR)
    assert written[:PACE_BURST] == [start] * PACE_BURST
    assert written[PACE_BURST] == pytest.approx(start + 450)
    for first in written:  # any calendar day anywhere, the 25-hour one of a DST change too
        assert sum(first <= at < first + 25 * HOUR for at in written) <= REVISIONS_A_DAY
    for day in {revision_day(at) for at in written[:-1]}:
        assert sum(revision_day(at) == day for at in written) <= REVISIONS_A_DAY
    assert len(written) >= 4 * 24 * 8  # eight an hour after the first fifty


def test_listings_are_paced_each_on_their_own_and_a_write_beyond_the_pace_never_refills_it() -> None:
    pacing, now = RevisionPacing(burst=2, per_s=1 / 450), 1_000.0
    for _ in range(3):  # the third: written while the first two were in flight
        pacing.spend("a", now)
    assert pacing.wait("a", now) == pytest.approx(450) and pacing.wait("b", now) == 0


def test_a_listing_refused_for_the_day_waits_until_then() -> None:
    pacing, now = RevisionPacing(), _pacific(2026, 7, 14, 22, 0)
    pacing.close("offer", now, seconds_to_next_day(now))
    assert pacing.wait("offer", now + HOUR) == pytest.approx(HOUR)
    assert pacing.wait("offer", now + 2 * HOUR + 450) == 0


@pytest.mark.parametrize(
    ("at", "to_midnight"),
    [
        (_pacific(2026, 7, 14, 16, 30), 7.5 * HOUR),  # 23:30 UTC: not UTC's midnight, Pacific's
        (_pacific(2026, 3, 7, 23, 0), HOUR),
        (_pacific(2026, 3, 8, 0, 0), 23 * HOUR),  # the day the clocks go forward
        (_pacific(2026, 11, 1, 0, 0), 25 * HOUR),  # and back
    ],
)
def test_the_revision_day_ends_at_pacific_midnight(at: float, to_midnight: float) -> None:
    assert seconds_to_next_day(at) == to_midnight
    assert revision_day(at + to_midnight) != revision_day(at) == revision_day(at + to_midnight - 1)


@pytest.mark.parametrize(
    ("error", "until_tomorrow"),
    [
        (
            {
                "errorId": 25019,
                "message": "Cannot revise listing.",
                "parameters": [
                    {
                        "name": "0",
                        "value": ("This listing has been revised 250 times today, the most allowed in a calendar day."),
                    }
                ],
            },
            True,
        ),
        # 25019 for reasons a new day does not clear, as sellers have reported them
        (
            {
                "errorId": 25019,
                "message": "Cannot revise listing.",
                "parameters": [
                    {"name": "0", "value": "<font color='#757575'>Computerspiel ab 18...</font>"},
                    {"name": "2", "value": "BLOCK_DE_USK_NewMessaging_NOV2015"},
                ],
            },
            False,
        ),
        ({"errorId": 25019, "message": "Cannot revise listing."}, False),
        ({"errorId": 25002, "message": "A user error has occurred. Revision limit"}, False),
    ],
)
def test_only_the_daily_revision_limit_waits_for_the_next_day(error: dict, until_tomorrow: bool) -> None:
    assert revision_limit_reached(error) is until_tomorrow
