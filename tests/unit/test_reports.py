"""The seller report's figures and the size-fit rule, on hand-made facts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from rebound.reports.domain import UnitFacts, build_report, percentile, size_key
from rebound.reports.insights import (
    MIN_PRODUCT_RETURNS,
    MIN_SIZE_RETURNS,
    FitCount,
    fit_direction,
    product_of,
    size_signals,
)
from rebound.reports.render import as_html, as_json

SCAN = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
SMALL = "buyer_refund_item_is_too_small"


def unit(
    n: int,
    *,
    sku: str = "TEE-BLK-M",
    size: str = "M",
    colour: str = "black",
    grade: str | None = "A",
    place: str | None = None,
    price: str = "20.00",
    sold: str | None = None,
    offered_after_h: float | None = None,
    scanned: datetime = SCAN,
    reason: str = SMALL,
    category: str = "SIZE_FIT",
) -> UnitFacts:
    return UnitFacts(
        lpn=f"L{n}",
        return_id=f"R{n // 2}",
        sku=sku,
        size=size,
        colour=colour,
        reason_code=reason,
        reason_category=category,
        price=Decimal(price),
        currency="USD",
        scanned_at=scanned,
        grade=grade,
        place=place,
        first_offered_at=scanned + timedelta(hours=offered_after_h) if offered_after_h is not None else None,
        sold_at=scanned + timedelta(days=3) if sold else None,
        sold_price=Decimal(sold) if sold else None,
    )


def report(units: list[UnitFacts]):
    return build_report("s1", date(2026, 11, 1), date(2026, 11, 30), units, datetime(2026, 12, 1, tzinfo=UTC))


def test_resale_recovery_and_loss_rates_come_from_the_units_places_grades_and_prices() -> None:
    units = [
        unit(1, place="sold", sold="20.00", offered_after_h=2),  # original listing: full price
        unit(2, place="sold", sold="16.00", grade="B", offered_after_h=5),  # open box at 80 %
        unit(3, place="listing", offered_after_h=30),
        unit(4, grade="C", place="repair"),
        unit(5, grade="SCRAP", place="disposal", price="40.00"),
        unit(6, grade=None),
    ]
    r = report(units)
    assert (r.units_returned, r.returns, r.units_resold, r.units_offered) == (6, 4, 2, 3)
    assert r.resale_rate == pytest.approx(2 / 6, abs=1e-4)
    assert (r.units_lost, r.loss_rate) == (2, pytest.approx(2 / 5, abs=1e-4))  # of the graded units
    money = r.money[0]
    assert (money.returned_value, money.resold_original_value, money.recovered_value) == (
        Decimal("140.00"),
        Decimal("40.00"),
        Decimal("36.00"),
    )
    assert money.recovery_rate == pytest.approx(0.9)
    assert money.lost_value == Decimal("60.00") and money.loss_value_rate == pytest.approx(60 / 120, abs=1e-4)
    assert [(t.key, t.units) for t in r.grade_mix] == [("A", 2), ("B", 1), ("C", 1), ("SCRAP", 1), ("ungraded", 1)]


def test_dock_to_stock_counts_offered_units_only_and_buckets_them() -> None:
    units = [unit(i, offered_after_h=h) for i, h in enumerate([1, 2, 3, 10, 30, 200])] + [unit(9)]
    d = report(units).dock_to_stock
    assert (d.offered, d.not_offered, d.median_hours, d.p90_hours) == (6, 1, 3.0, 200.0)
    assert {t.key: t.units for t in d.buckets} == {
        "< 4 h": 3,
        "4–24 h": 1,
        "1–2 d": 1,
        "2–4 d": 0,
        "4–7 d": 0,
        "> 7 d": 1,
    }
    assert percentile([], 0.5) is None


def test_sizes_colours_and_weeks_are_complete_and_in_order() -> None:
    units = [
        unit(1, size="XL", colour="red"),
        unit(2, size="S", colour="black"),
        unit(3, size="S", colour="black"),
        unit(4, size="M", colour="red", place="sold", sold="19.90", scanned=SCAN + timedelta(days=14)),
    ]
    r = report(units)
    assert r.sizes == ["S", "M", "XL"] and r.colours == ["black", "red"]
    assert {(c.size, c.colour): c.units for c in r.size_colour} == {
        ("S", "black"): 2,
        ("S", "red"): 0,
        ("M", "black"): 0,
        ("M", "red"): 1,
        ("XL", "black"): 0,
        ("XL", "red"): 1,
    }
    assert [w.week for w in r.recovery_by_week] == [date(2026, 10, 26) + timedelta(weeks=i) for i in range(6)]
    by_week = {w.week: (w.returned, w.resold, w.recovered_value) for w in r.recovery_by_week}
    assert by_week[date(2026, 11, 2)] == (3, 0, Decimal(0))
    assert by_week[date(2026, 11, 16)] == (1, 1, Decimal("19.90"))
    assert sorted(["10", "XS", "8", "L", "one-size"], key=size_key) == ["XS", "L", "8", "10", "one-size"]


def test_the_product_of_a_sku_drops_its_size_and_the_direction_comes_from_the_raw_code() -> None:
    assert product_of("TEE-BLK-M", "M") == "TEE-BLK"
    assert product_of("DRESS_RED_xl", "XL") == "DRESS_RED"
    assert product_of("DRESS-42", "M") == "DRESS-42"
    assert fit_direction("SIZE_FIT", "APPAREL_TOO_SMALL") == "too_small"
    assert fit_direction("SIZE_FIT", "size_too_large") == "too_large"
    assert fit_direction("SIZE_FIT", "DOESNT_FIT") is None
    assert fit_direction("CHANGED_MIND", "too_small_but_changed_mind") is None


def _counts(small_by_size: dict[str, tuple[int, int]]) -> list[FitCount]:
    """size -> (units returned too small, units returned for another reason)."""
    counts = []
    for size, (small, other) in small_by_size.items():
        counts.append(FitCount(f"DRESS-RED-{size}", size, "SIZE_FIT", SMALL, small))
        counts.append(FitCount(f"DRESS-RED-{size}", size, "CHANGED_MIND", "UNWANTED", other))
    return counts


def test_a_size_returned_as_too_small_far_above_its_products_average_is_a_signal() -> None:
    signals = size_signals(_counts({"S": (18, 2), "M": (4, 26), "L": (3, 27), "XL": (2, 18)}))
    assert [(s.kind, s.sku, s.size, s.skus) for s in signals] == [
        ("size_runs_small", "DRESS-RED", "S", ["DRESS-RED-S"])
    ]
    s = signals[0]
    assert (s.size_returns, s.size_matching, s.sku_returns, s.sku_matching) == (20, 18, 100, 27)
    assert s.size_share == 0.9 and s.sku_share == 0.27 and s.z_score > 3
    assert "DRESS-RED in size S: 18 of 20" in s.summary


@pytest.mark.parametrize(
    "counts",
    [
        {"S": (7, 1), "M": (4, 26), "L": (3, 27), "XL": (2, 18)},  # the size has too few returns
        {"S": (9, 1), "M": (1, 9)},  # the product has too few returns
        {"S": (9, 11), "M": (7, 13), "L": (8, 12), "XL": (6, 14)},  # every size alike: no outlier
    ],
)
def test_too_few_returns_or_an_even_spread_is_no_signal(counts: dict[str, tuple[int, int]]) -> None:
    assert MIN_SIZE_RETURNS == 10 and MIN_PRODUCT_RETURNS == 30
    assert size_signals(_counts(counts)) == []


def test_the_report_reads_the_same_in_json_and_a_sku_cannot_break_out_of_the_html_data() -> None:
    r = report([unit(1, sku="</script><script>alert(1)</script>", size="M"), unit(2)])
    assert json.loads(as_json(r))["units_returned"] == 2
    page = as_html(r)
    assert page.count("</script>") == 2 and "alert(1)" in page  # data and chart script; the SKU stays data
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
