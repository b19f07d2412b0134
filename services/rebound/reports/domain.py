"""The seller report from the facts of each returned unit. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from .insights import FitCount, size_signals
from .model import CurrencyValues, DockToStock, HeatCell, SellerReport, SkuReturns, Tally, WeekRecovery

GRADES = ("A", "B", "C", "SCRAP")
LOST_GRADES = frozenset({"C", "SCRAP"})
SIZE_ORDER = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "2XL", "3XL", "4XL")
DOCK_TO_STOCK_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 4 h", 4),
    ("4–24 h", 24),
    ("1–2 d", 48),
    ("2–4 d", 96),
    ("4–7 d", 168),
    ("> 7 d", math.inf),
)
"""(label, upper bound in hours)."""


@dataclass(frozen=True)
class UnitFacts:
    """What is known of one returned unit, from intake, grading and the ledger."""

    lpn: str
    return_id: str
    sku: str
    size: str | None
    colour: str | None
    reason_code: str
    reason_category: str
    price: Decimal
    currency: str
    scanned_at: datetime
    grade: str | None = None
    place: str | None = None
    first_offered_at: datetime | None = None
    sold_at: datetime | None = None
    sold_price: Decimal | None = None


def size_key(size: str) -> tuple[int, float, str]:
    """Apparel sizes in their natural order, then numeric sizes by value, then the rest."""
    upper = size.upper()
    if upper in SIZE_ORDER:
        return (0, SIZE_ORDER.index(upper), upper)
    try:
        return (1, float(size), upper)
    except ValueError:
        return (2, 0.0, upper)


def week_of(moment: datetime) -> date:
    """The Monday of the ISO week of `moment` (UTC)."""
    day = moment.date()
    return day - timedelta(days=day.weekday())


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _ratio(part: float | Decimal, whole: float | Decimal) -> float | None:
    return round(float(part) / float(whole), 4) if whole else None


def _tallies(counter: Counter[str], total: int, order: Iterable[str] | None = None) -> list[Tally]:
    keys = list(order) if order is not None else [k for k, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]
    return [Tally(key=k, units=counter[k], share=round(counter[k] / total, 4) if total else 0.0) for k in keys]


def build_report(
    seller_id: str, period_from: date, period_to: date, units: Sequence[UnitFacts], generated_at: datetime
) -> SellerReport:
    total = len(units)
    reasons = Counter(u.reason_category for u in units)
    codes = Counter(u.reason_code for u in units)
    sizes = Counter(u.size or "—" for u in units)
    colours = Counter(u.colour or "—" for u in units)
    cells = Counter((u.size or "—", u.colour or "—") for u in units)
    size_order = sorted(sizes, key=size_key)
    colour_order = sorted(colours, key=lambda c: (-colours[c], c))

    grades = Counter(u.grade or "ungraded" for u in units)
    grade_order = [g for g in (*GRADES, "ungraded") if grades[g]]
    graded = [u for u in units if u.grade is not None]
    lost = [u for u in graded if u.grade in LOST_GRADES]
    resold = [u for u in units if u.place == "sold"]

    by_sku: dict[str, list[UnitFacts]] = defaultdict(list)
    for u in units:
        by_sku[u.sku].append(u)
    sku_rows = [
        SkuReturns(
            sku=sku,
            units=len(rows),
            share=round(len(rows) / total, 4),
            size_fit=sum(1 for u in rows if u.reason_category == "SIZE_FIT"),
            top_reason=Counter(u.reason_category for u in rows).most_common(1)[0][0],
            resold=sum(1 for u in rows if u.place == "sold"),
        )
        for sku, rows in sorted(by_sku.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]

    money = _money(units, graded, lost, resold)
    main_currency = money[0].currency if money else "USD"
    fit_counts = Counter((u.sku, u.size, u.reason_category, u.reason_code) for u in units)

    return SellerReport(
        seller_id=seller_id,
        period_from=period_from,
        period_to=period_to,
        generated_at=generated_at,
        units_returned=total,
        returns=len({u.return_id for u in units}),
        by_reason=_tallies(reasons, total),
        by_reason_code=_tallies(codes, total),
        by_sku=sku_rows,
        by_size=_tallies(sizes, total, size_order),
        by_colour=_tallies(colours, total, colour_order),
        sizes=size_order,
        colours=colour_order,
        size_colour=[HeatCell(size=s, colour=c, units=cells[(s, c)]) for s in size_order for c in colour_order],
        grade_mix=_tallies(grades, total, grade_order),
        units_offered=sum(1 for u in units if u.first_offered_at is not None),
        units_resold=len(resold),
        resale_rate=_ratio(len(resold), total),
        units_lost=len(lost),
        loss_rate=_ratio(len(lost), len(graded)),
        money=money,
        dock_to_stock=_dock_to_stock(units),
        recovery_by_week=_weeks(units, period_from, period_to, main_currency),
        size_signals=size_signals(
            FitCount(sku, size, category, code, n)
            for (sku, size, category, code), n in sorted(fit_counts.items(), key=str)
        ),
    )


def _money(
    units: Sequence[UnitFacts], graded: Sequence[UnitFacts], lost: Sequence[UnitFacts], resold: Sequence[UnitFacts]
) -> list[CurrencyValues]:
    """Per currency, largest returned value first. A unit sells in the currency it was bought in."""

    def by_currency(
        rows: Iterable[UnitFacts], amount: Callable[[UnitFacts], Decimal] = lambda u: u.price
    ) -> dict[str, Decimal]:
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for u in rows:
            sums[u.currency] += amount(u)
        return sums

    returned, graded_value = by_currency(units), by_currency(graded)
    resold_original, lost_value = by_currency(resold), by_currency(lost)
    recovered = by_currency(resold, lambda u: u.sold_price if u.sold_price is not None else Decimal(0))
    figures = [
        CurrencyValues(
            currency=c,
            returned_value=returned[c],
            resold_original_value=resold_original[c],
            recovered_value=recovered[c],
            recovery_rate=_ratio(recovered[c], resold_original[c]),
            lost_value=lost_value[c],
            loss_value_rate=_ratio(lost_value[c], graded_value[c]),
        )
        for c in returned
    ]
    return sorted(figures, key=lambda m: (-m.returned_value, m.currency))


def _dock_to_stock(units: Sequence[UnitFacts]) -> DockToStock:
    hours = sorted(
        max(0.0, (u.first_offered_at - u.scanned_at).total_seconds() / 3600)
        for u in units
        if u.first_offered_at is not None
    )
    counts: Counter[str] = Counter()
    for h in hours:
        counts[next(label for label, bound in DOCK_TO_STOCK_BUCKETS if h < bound)] += 1
    median, p90 = percentile(hours, 0.5), percentile(hours, 0.9)
    return DockToStock(
        offered=len(hours),
        not_offered=len(units) - len(hours),
        median_hours=round(median, 2) if median is not None else None,
        p90_hours=round(p90, 2) if p90 is not None else None,
        buckets=_tallies(counts, len(hours), [label for label, _ in DOCK_TO_STOCK_BUCKETS]),
    )


def _weeks(units: Sequence[UnitFacts], period_from: date, period_to: date, currency: str) -> list[WeekRecovery]:
    """Every week of the period, empty ones too, so a chart's time axis has no holes."""
    returned: Counter[date] = Counter()
    resold: Counter[date] = Counter()
    value: dict[date, Decimal] = defaultdict(Decimal)
    recovered: dict[date, Decimal] = defaultdict(Decimal)
    for u in units:
        week = week_of(u.scanned_at)
        returned[week] += 1
        if u.place == "sold":
            resold[week] += 1
        if u.currency == currency:
            value[week] += u.price
            if u.place == "sold" and u.sold_price is not None:
                recovered[week] += u.sold_price
    weeks, week = [], period_from - timedelta(days=period_from.weekday())
    while week <= period_to:
        weeks.append(
            WeekRecovery(
                week=week,
                returned=returned[week],
                resold=resold[week],
                currency=currency,
                returned_value=value[week],
                recovered_value=recovered[week],
            )
        )
        week += timedelta(days=7)
    return weeks
