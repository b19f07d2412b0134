"""Seller reports and size insights on the real PostgreSQL, from returns sent through intake,
grading, relisting and the ledger, and units then sold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from rebound.intake.handlers import INSIGHT_NAMESPACE, raise_insights
from rebound.messaging.outbox import OutboxBuffer
from rebound.reports.render import as_json
from rebound.reports.report import UnknownSeller, seller_report
from rebound_contracts.topics import (
    DISPOSITIONS,
    INSIGHTS,
    PARCEL_SCANNED,
    RMA,
    UNIT_GRADED,
    UNIT_PICKED,
    UNIT_RECEIVED,
)
from tests import factories as f

from .pipeline import Pipeline

pytestmark = pytest.mark.integration

# A month no other test or simulated wave uses, so the insight job sees this test's returns alone.
ISSUED = datetime(2031, 3, 2, 9, 0, tzinfo=UTC)
SCANNED = ISSUED + timedelta(days=2)
MARCH = (date(2031, 3, 1), date(2031, 3, 31))
SMALL = "buyer_refund_item_is_too_small"
UNWANTED = "ecom_order_delivered_refund_and_return_reason_no_longer_needed"


@pytest.fixture
def pipe(pool) -> Pipeline:
    return Pipeline(pool)


async def _return(pipe: Pipeline, seller: str, items: list[tuple[str, str, str, str, str]]) -> list[str]:
    """One RMA, parcel and inspection per (sku, size, colour, reason code, grade), through every
    service; the LPNs, in order."""
    inbound, inspections, lpns = [], [], []
    for n, (sku, size, colour, reason, grade) in enumerate(items):
        order = f.rma(seller, lines=[(sku, 1)], reason_code=reason, price="40.00", at=ISSUED)
        line = order.lines[0].model_copy(update={"size": size, "colour": colour})
        order = order.model_copy(update={"lines": [line]})
        lpn = pipe.id(f"{seller[-12:]}-{n}")
        lpns.append(lpn)
        inbound += [
            pipe.record(order, RMA.name),
            pipe.record(f.scan(seller, order.tracking_number, [(lpn, sku)], at=SCANNED), PARCEL_SCANNED.name),
        ]
        inspections.append(
            pipe.record(f.inspection(seller, lpn, grade, at=SCANNED + timedelta(hours=1)), "wms.unit-inspected.v1")
        )
    await pipe.feed(pipe.intake, inbound)
    received = pipe.forward(await pipe.take_outbox(pipe.intake), UNIT_RECEIVED.name)
    await pipe.feed(pipe.grading, inspections + received)
    await pipe.feed(pipe.relisting, pipe.forward(await pipe.take_outbox(pipe.grading), UNIT_GRADED.name))
    await pipe.feed(pipe.ledger, pipe.forward(await pipe.take_outbox(pipe.relisting), DISPOSITIONS.name))
    await pipe.take_outbox(pipe.ledger)
    return lpns


def _dresses() -> list[tuple[str, str, str, str, str]]:
    """36 dresses: size S comes back as too small 11 times in 12, M and L rarely."""
    items = []
    for size, small in (("S", 11), ("M", 2), ("L", 1)):
        for i in range(12):
            grade = "B" if i == 3 else "C" if i == 5 else "SCRAP" if (size, i) == ("L", 7) else "A"
            items.append(
                (f"DRESS-RED-{size}", size, "red" if i % 2 else "black", SMALL if i < small else UNWANTED, grade)
            )
    return items


async def test_the_report_counts_reasons_grades_resale_recovery_and_loss_of_one_seller(pipe: Pipeline) -> None:
    seller, other = await pipe.add_sellers("rep-a", "rep-b")
    items = _dresses()
    lpns = await _return(pipe, seller, items)
    theirs = await _return(pipe, other, [("BSKU-X-M", "M", "teal", SMALL, "A")] * 3)
    grades = {lpn: item[4] for lpn, item in zip(lpns, items)}
    sold_a = [lpn for lpn in lpns if grades[lpn] == "A"][:10]
    sold_b = [lpn for lpn in lpns if grades[lpn] == "B"][:1]
    await pipe.feed(pipe.ledger, [pipe.record(f.picked(seller, lpn), UNIT_PICKED.name) for lpn in sold_a + sold_b])
    await pipe.feed(pipe.ledger, [pipe.record(f.picked(other, theirs[0]), UNIT_PICKED.name)])
    await pipe.take_outbox(pipe.ledger)

    async with pipe.pool.acquire() as conn:
        report = await seller_report(conn, seller, *MARCH, datetime.now(UTC))
        facts = await conn.fetch(
            "SELECT lpn, first_offered_at, sold_at, sold_price, sold_channel FROM ledger.units"
            " WHERE lpn = ANY($1::text[])",
            lpns,
        )

    assert (report.units_returned, report.returns) == (36, 36)
    assert {t.key: t.units for t in report.by_reason} == {"SIZE_FIT": 14, "CHANGED_MIND": 22}
    assert {t.key: t.units for t in report.grade_mix} == {"A": 29, "B": 3, "C": 3, "SCRAP": 1}
    assert (report.units_resold, report.units_lost) == (11, 4)
    assert report.resale_rate == pytest.approx(11 / 36, abs=1e-4)
    assert report.loss_rate == pytest.approx(4 / 36, abs=1e-4)
    [usd] = report.money
    # A units sold on their original listing at the line's price; the B unit open box at 80 %.
    assert (usd.recovered_value, usd.resold_original_value, usd.lost_value) == (
        Decimal("432.0000"),
        Decimal("440.0000"),
        Decimal("160.0000"),
    )
    assert report.units_offered == 32 and report.dock_to_stock.offered == 32  # A and B: listed; C, SCRAP: not
    by_lpn = {r["lpn"]: r for r in facts}
    assert all(by_lpn[lpn]["sold_channel"] == "tiktok" and by_lpn[lpn]["sold_at"] for lpn in sold_a + sold_b)
    assert by_lpn[sold_b[0]]["sold_price"] == Decimal("32.0000")
    assert {(c.size, c.colour): c.units for c in report.size_colour} == {
        (s, c): 6 for s in ("S", "M", "L") for c in ("black", "red")
    }
    [signal] = report.size_signals
    assert (signal.kind, signal.sku, signal.size, signal.size_matching, signal.sku_matching) == (
        "size_runs_small",
        "DRESS-RED",
        "S",
        11,
        14,
    )
    assert [(w.week, w.returned, w.resold) for w in report.recovery_by_week if w.returned] == [
        (date(2031, 3, 3), 36, 11)
    ]

    # Tenant isolation: nothing of the other seller, who has returns, sales and SKUs of its own.
    text = as_json(report)
    assert other not in text and "BSKU" not in text and not any(lpn in text for lpn in theirs)
    async with pipe.pool.acquire() as conn:
        theirs_report = await seller_report(conn, other, *MARCH, datetime.now(UTC))
        with pytest.raises(UnknownSeller):
            await seller_report(conn, pipe.id("nobody"), *MARCH, datetime.now(UTC))
    assert (theirs_report.units_returned, theirs_report.units_resold) == (3, 1)
    assert "DRESS" not in json.dumps(theirs_report.model_dump(mode="json"))


async def test_a_size_running_small_is_raised_once_with_its_figures(pipe: Pipeline) -> None:
    seller, other = await pipe.add_sellers("ins-a", "ins-b")
    await _return(pipe, seller, _dresses())
    await _return(pipe, other, [("DRESS-RED-M", "M", "red", UNWANTED, "A")] * 12)

    async def run() -> list:
        async with pipe.pool.acquire() as conn, conn.transaction():
            outbox = OutboxBuffer(pipe.intake.consumer)
            await raise_insights(conn, outbox, datetime(2031, 3, 20, tzinfo=UTC))
            await outbox.flush(conn)
        return [
            e
            for e in await pipe.take_outbox(pipe.intake)
            if e.topic == INSIGHTS.name and e.event.seller_id in (seller, other)
        ]

    [raised] = await run()
    insight = raised.event
    assert raised.key == f"{seller}:DRESS-RED"
    assert (insight.kind, insight.sku, insight.size, insight.skus, insight.period) == (
        "size_runs_small",
        "DRESS-RED",
        "S",
        ["DRESS-RED-S"],
        "2031-03",
    )
    assert (insight.size_returns, insight.size_matching, insight.sku_returns, insight.sku_matching) == (12, 11, 36, 14)
    assert insight.size_share == pytest.approx(11 / 12, abs=1e-4) and insight.z_score >= 3
    assert insight.event_id == uuid.uuid5(INSIGHT_NAMESPACE, f"{seller}:DRESS-RED:S:size_runs_small:2031-03")
    assert await run() == []  # the job runs again: nothing new, nothing twice
