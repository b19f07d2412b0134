"""Builders of valid contract events with fresh ids, shared by every test layer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rebound_contracts import (
    AdjustmentCause,
    ExchangeRequested,
    InspectionChecks,
    ListingRequested,
    Money,
    ParcelMatched,
    ParcelReceivedUnexpected,
    ParcelScanned,
    RmaIssued,
    RmaLine,
    ScannedUnit,
    StockAdjusted,
    StorefrontAck,
    UnitAddedToReturn,
    UnitGraded,
    UnitInspected,
    UnitPicked,
    UnitQuarantined,
    UnitReceived,
    UnitRefurbished,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@dataclass
class Record:
    """A Kafka record as the batch processor reads it (aiokafka's ConsumerRecord has these)."""

    topic: str
    value: bytes | None
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def uid(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def rma(
    seller_id: str,
    *,
    tracking: str | None = None,
    lines: list[tuple[str, int]] | None = None,
    reason_code: str = "buyer_refund_item_is_too_small",
    channel: str = "tiktok",
    price: str = "19.90",
    at: datetime = T0,
) -> RmaIssued:
    return RmaIssued(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller_id,
        shop_id=f"shop-{seller_id}",
        channel=channel,
        return_id=uid("R"),
        order_id=uid("O"),
        tracking_number=tracking or uid("T"),
        reason_code=reason_code,
        lines=[
            RmaLine(
                line_id=f"l{i}",
                sku=sku,
                quantity=qty,
                unit_price=Money(amount=price, currency="USD"),
                size="M",
                colour="black",
            )
            for i, (sku, qty) in enumerate(lines or [("TEE-BLK-M", 1)])
        ],
    )


def scan(
    seller_id: str,
    tracking: str,
    units: list[tuple[str, str]],
    *,
    warehouse: str = "W1",
    at: datetime = T0 + timedelta(days=3),
) -> ParcelScanned:
    return ParcelScanned(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller_id,
        warehouse_id=warehouse,
        station_id="dock-1",
        operator_id="op-1",
        tracking_number=tracking,
        units=[ScannedUnit(lpn=lpn, sku=sku) for lpn, sku in units],
    )


def match(seller_id: str, tracking: str, return_id: str, *, at: datetime = T0 + timedelta(days=4)) -> ParcelMatched:
    return ParcelMatched(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller_id,
        tracking_number=tracking,
        return_id=return_id,
        operator_id="op-anna",
    )


def received_unexpected(
    seller_id: str, tracking: str, *, at: datetime = T0 + timedelta(days=4)
) -> ParcelReceivedUnexpected:
    return ParcelReceivedUnexpected(
        event_id=uuid.uuid4(), occurred_at=at, seller_id=seller_id, tracking_number=tracking, operator_id="op-anna"
    )


def added(
    seller_id: str, lpn: str, return_id: str, line_id: str = "l0", *, at: datetime = T0 + timedelta(days=4)
) -> UnitAddedToReturn:
    return UnitAddedToReturn(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller_id,
        lpn=lpn,
        return_id=return_id,
        line_id=line_id,
        operator_id="op-anna",
    )


def quarantined(
    seller_id: str, lpn: str, reason: str = "counterfeit", *, at: datetime = T0 + timedelta(days=4)
) -> UnitQuarantined:
    return UnitQuarantined(
        event_id=uuid.uuid4(), occurred_at=at, seller_id=seller_id, lpn=lpn, reason=reason, operator_id="op-anna"
    )


CHECKS = {
    "A": dict(packaging="intact", appearance="as_new", function="works", accessories="complete", irreparable=False),
    "B": dict(packaging="worn", appearance="as_new", function="works", accessories="complete", irreparable=False),
    "C": dict(packaging="intact", appearance="as_new", function="faulty", accessories="complete", irreparable=False),
    "SCRAP": dict(
        packaging="damaged", appearance="major_flaw", function="faulty", accessories="complete", irreparable=True
    ),
}


def inspection(
    seller_id: str, lpn: str, grade: str = "A", *, at: datetime = T0 + timedelta(days=3, hours=1), warehouse: str = "W1"
) -> UnitInspected:
    return UnitInspected(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller_id,
        warehouse_id=warehouse,
        lpn=lpn,
        inspector_id="qc-1",
        checks=InspectionChecks(**CHECKS[grade]),
    )


def refurbished(seller_id: str, lpn: str, *actions: str, at: datetime = T0 + timedelta(days=4)) -> UnitRefurbished:
    return UnitRefurbished(
        event_id=uuid.uuid4(),
        occurred_at=at,
        seller_id=seller_id,
        warehouse_id="W1",
        lpn=lpn,
        actions=list(actions or ("repackaged",)),
    )


def received(seller_id: str, lpn: str, *, sku: str = "TEE-BLK-M", channel: str = "tiktok") -> UnitReceived:
    return UnitReceived(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=3),
        seller_id=seller_id,
        lpn=lpn,
        sku=sku,
        warehouse_id="W1",
        tracking_number=uid("T"),
        return_id=uid("R"),
        order_id=uid("O"),
        line_id="l0",
        shop_id=f"shop-{seller_id}",
        channel=channel,
        reason_code="buyer_refund_item_is_too_small",
        reason_category="SIZE_FIT",
        lane="FAST",
        unit_price=Money(amount="19.90", currency="USD"),
    )


def graded(
    seller_id: str, lpn: str, grade: str, revision: int = 1, *, sku: str = "TEE-BLK-M", price: str = "20.00"
) -> UnitGraded:
    return UnitGraded(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=3, hours=2),
        seller_id=seller_id,
        lpn=lpn,
        sku=sku,
        return_id=uid("R"),
        grade=grade,
        reasons=["test"],
        revision=revision,
        warehouse_id="W1",
        shop_id=f"shop-{seller_id}",
        channel="tiktok",
        unit_price=Money(amount=price, currency="USD"),
        source_event_id=uuid.uuid4(),
    )


def picked(seller_id: str, lpn: str, *, channel: str = "tiktok", warehouse: str = "W1") -> UnitPicked:
    return UnitPicked(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=5),
        seller_id=seller_id,
        warehouse_id=warehouse,
        lpn=lpn,
        channel=channel,
        order_id=uid("O"),
    )


def exchange(seller_id: str, sku: str, *, exchange_id: str | None = None, warehouse: str = "W1") -> ExchangeRequested:
    return ExchangeRequested(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=5),
        seller_id=seller_id,
        exchange_id=exchange_id or uid("X"),
        return_id=uid("R"),
        shop_id=f"shop-{seller_id}",
        channel="tiktok",
        warehouse_id=warehouse,
        sku=sku,
    )


def ack(seller_id: str, key: str, status: str, *, reason: str = "") -> StorefrontAck:
    """An answer for the listing key `seller:channel:warehouse:sku:condition`."""
    _, channel, warehouse, sku, condition = key.split(":")
    return StorefrontAck(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=5),
        seller_id=seller_id,
        ref_event_id=uuid.uuid4(),
        status=status,
        reason=reason,
        shop_id=f"shop-{seller_id}",
        channel=channel,
        warehouse_id=warehouse,
        sku=sku,
        condition=condition,
    )


def adjusted(
    seller_id: str,
    sku: str,
    sequence: int,
    delta: int,
    *,
    available: int = 0,
    channel: str = "tiktok",
    warehouse: str = "W1",
    condition: str = "new",
) -> StockAdjusted:
    """A stock adjustment of the key `seller:channel:warehouse:sku:condition`."""
    return StockAdjusted(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=4),
        seller_id=seller_id,
        adjustment_id=uuid.uuid4(),
        shop_id=f"shop-{seller_id}",
        channel=channel,
        warehouse_id=warehouse,
        sku=sku,
        condition=condition,
        delta=delta,
        available=available,
        sequence=sequence,
        cause=AdjustmentCause(
            kind="unit_graded" if delta > 0 else "unit_reallocated", lpn=uid("L"), source_event_id=uuid.uuid4()
        ),
    )


def listing(
    seller: str, sku: str, price: str, note: str, *, later: int = 0, condition: str = "open_box", currency: str = "USD"
) -> ListingRequested:
    """A listing request for the key `seller:tiktok:W1:sku:condition`."""
    return ListingRequested(
        event_id=uuid.uuid4(),
        occurred_at=T0 + timedelta(days=4, minutes=later),
        seller_id=seller,
        action="upsert",
        shop_id=f"shop-{seller}",
        channel="tiktok",
        warehouse_id="W1",
        sku=sku,
        condition=condition,
        price=Money(amount=Decimal(price), currency=currency),
        condition_note=note,
        listing_sku=f"{sku}-OB" if condition == "open_box" else None,
    )
