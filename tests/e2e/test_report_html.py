"""The HTML report in a real headless Chromium: offline, its script draws every chart, and the
drawn bars and cells match the report's figures."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path


from rebound.reports.domain import UnitFacts, build_report
from rebound.reports.render import as_html
from tests.browsers import chromium


def run_browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No network: --dump-dom of a file:// page with the proxy pointed nowhere proves it is self-contained.
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=5000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _report():
    scanned = datetime(2026, 11, 2, 8, tzinfo=UTC)
    units = []
    for n in range(60):
        size, colour = ("S", "M", "L", "XL")[n % 4], ("black", "red", "navy")[n % 3]
        grade = ("A", "A", "A", "B", "C", "SCRAP")[n % 6]
        sold = grade in ("A", "B") and n % 2 == 0
        units.append(
            UnitFacts(
                lpn=f"L{n}",
                return_id=f"R{n}",
                sku=f"DRESS-{colour[:3].upper()}-{size}",
                size=size,
                colour=colour,
                reason_code="APPAREL_TOO_SMALL" if n % 3 else "UNWANTED_ITEM",
                reason_category=("SIZE_FIT", "CHANGED_MIND", "QUALITY")[n % 3],
                price=Decimal("39.90"),
                currency="USD",
                scanned_at=scanned + timedelta(days=n % 20),
                grade=grade,
                place="sold" if sold else "listing",
                first_offered_at=scanned + timedelta(days=n % 20, hours=n % 50) if grade in ("A", "B") else None,
                sold_at=scanned + timedelta(days=25) if sold else None,
                sold_price=Decimal("39.90") if sold else None,
            )
        )
    return build_report("seller-html", date(2026, 11, 1), date(2026, 11, 30), units, datetime(2026, 12, 1, tzinfo=UTC))


def test_the_browser_draws_every_chart_of_the_report(tmp_path: Path) -> None:
    report = _report()
    page = tmp_path / "report.html"
    page.write_text(as_html(report), encoding="utf-8")

    rendered = run_browser(tmp_path, "--dump-dom", page.as_uri())
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = Elements()
    dom.feed(rendered.stdout)
    body = next(attrs for tag, attrs in dom.tags if tag == "body")
    assert body.get("data-charts-drawn") == "5"  # the script ran to its end

    def within(chart_id: str, kind: str) -> list[dict[str, str]]:
        """Elements of class `kind` inside the chart's container (charts follow each other)."""
        start = next(i for i, (_, a) in enumerate(dom.tags) if a.get("id") == chart_id)
        end = next((i for i, (_, a) in enumerate(dom.tags) if i > start and "data-chart" in a), len(dom.tags))
        return [a for _, a in dom.tags[start:end] if kind in a.get("class", "").split()]

    reasons = within("chart-reasons", "bar")
    assert [int(b["data-value"]) for b in reasons] == [t.units for t in report.by_reason]
    assert all(float(b["width"]) > 0 for b in reasons)
    cells = within("chart-heatmap", "cell")
    assert len(cells) == len(report.sizes) * len(report.colours) == 12
    assert {(c["data-size"], c["data-colour"]): int(c["data-value"]) for c in cells} == {
        (c.size, c.colour): c.units for c in report.size_colour
    }
    assert [(s["data-grade"], int(s["data-value"])) for s in within("chart-grades", "segment")] == [
        (t.key, t.units) for t in report.grade_mix
    ]
    assert (
        len(within("chart-recovery", "returned"))
        == len(within("chart-recovery", "recovered"))
        == len(report.recovery_by_week)
    )
    recovered = sum(Decimal(b["data-value"]) for b in within("chart-recovery", "recovered"))
    assert recovered == report.money[0].recovered_value
    bars = [int(b["data-value"]) for b in within("chart-dock", "bar")]
    assert bars == [t.units for t in report.dock_to_stock.buckets]

    shot = tmp_path / "report.png"
    taken = run_browser(tmp_path, "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0 and shot.stat().st_size > 20_000, taken.stderr[-2000:]
