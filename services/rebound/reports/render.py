"""The seller report three ways: a terminal table, JSON, and one self-contained HTML file whose
charts an inline script draws as SVG from the report's own JSON (no network, works offline)."""

from __future__ import annotations

import html
import re

from rich.console import Group
from rich.table import Table

from .model import SellerReport
from .page import SCRIPT, TEMPLATE

TOP_SKUS = 15


def as_json(report: SellerReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share:.1%}"


def _hours(hours: float | None) -> str:
    if hours is None:
        return "—"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def as_table(report: SellerReport) -> Group:
    """Rich renderables for a terminal."""
    title = f"Returns of {report.seller_id}, {report.period_from} – {report.period_to}"
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column("What")
    summary.add_column("Figure", justify="right")
    summary.add_column("Detail")
    summary.add_row("units returned", f"{report.units_returned:,}", f"{report.returns:,} returns")
    summary.add_row(
        "graded",
        f"{sum(t.units for t in report.grade_mix if t.key != 'ungraded'):,}",
        ", ".join(f"{t.key} {t.units:,} ({t.share:.0%})" for t in report.grade_mix),
    )
    summary.add_row("offered again", f"{report.units_offered:,}", "on a storefront listing or in a lot")
    summary.add_row("resale rate", _pct(report.resale_rate), f"{report.units_resold:,} units resold")
    summary.add_row("loss rate", _pct(report.loss_rate), f"{report.units_lost:,} units graded C or SCRAP")
    for money in report.money:
        summary.add_row(
            f"recovery ({money.currency})",
            _pct(money.recovery_rate),
            f"{money.recovered_value:,.2f} earned by resold units first sold for {money.resold_original_value:,.2f}",
        )
        summary.add_row(
            f"loss value ({money.currency})",
            _pct(money.loss_value_rate),
            f"{money.lost_value:,.2f} of {money.returned_value:,.2f} returned",
        )
    dock = report.dock_to_stock
    summary.add_row(
        "dock to stock",
        _hours(dock.median_hours),
        f"median; p90 {_hours(dock.p90_hours)}; {dock.not_offered:,} units not offered yet",
    )

    reasons = Table(title="Return reasons", title_justify="left")
    reasons.add_column("Reason")
    reasons.add_column("Units", justify="right")
    reasons.add_column("Share", justify="right")
    for tally in report.by_reason:
        reasons.add_row(tally.key, f"{tally.units:,}", _pct(tally.share))

    skus = Table(title=f"Most returned SKUs (top {TOP_SKUS})", title_justify="left")
    for column, justify in (
        ("SKU", "left"),
        ("Units", "right"),
        ("Share", "right"),
        ("Size/fit", "right"),
        ("Top reason", "left"),
        ("Resold", "right"),
    ):
        skus.add_column(column, justify=justify)  # type: ignore[arg-type]  # "left"/"right": rich's JustifyMethod
    for row in report.by_sku[:TOP_SKUS]:
        skus.add_row(row.sku, f"{row.units:,}", _pct(row.share), f"{row.size_fit:,}", row.top_reason, f"{row.resold:,}")

    heat = Table(title="Returned units by size and colour", title_justify="left")
    heat.add_column("Colour")
    for size in report.sizes:
        heat.add_column(size, justify="right")
    cells = {(c.size, c.colour): c.units for c in report.size_colour}
    for colour in report.colours:
        heat.add_row(colour, *(f"{cells.get((size, colour), 0):,}" for size in report.sizes))

    parts: list = [summary, reasons, skus, heat]
    if report.size_signals:
        signals = Table(title="Size signals", title_justify="left", show_header=False)
        signals.add_column("Signal")
        for signal in report.size_signals:
            signals.add_row(signal.summary)
        parts.append(signals)
    return Group(*parts)


def as_html(report: SellerReport) -> str:
    """One HTML document: styles, data and the chart script inline."""
    # Inside <script>, "</script" or "<!--" in a SKU would end or derail the element: JSON may
    # spell "<" as an escape instead.
    data = report.model_dump_json().replace("<", "\\u003c")
    values = {"title": html.escape(f"Returns report — {report.seller_id}"), "data": data, "script": SCRIPT}
    # One pass, so a placeholder inside a value (a seller id can be anything) is never expanded.
    return re.sub(r"\{\{(title|data|script)\}\}", lambda m: values[m.group(1)], TEMPLATE)
