"""Intake rules: what a marketplace's reason code means, which lane a unit takes, how a parcel's
units match its return order. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID
from typing import Protocol

from rebound_contracts import Lane, MessageSource, ParcelScanned, ReasonCategory, RmaIssued

# The marketplaces' raw return reason codes, by channel. Keys are lower case.
REASON_CODES: dict[str, dict[str, ReasonCategory]] = {
    "tiktok": {
        "buyer_refund_item_is_too_small": "SIZE_FIT",
        "buyer_refund_item_is_too_large": "SIZE_FIT",
        "ecom_order_delivered_refund_and_return_reason_size_not_fit": "SIZE_FIT",
        "ecom_order_delivered_refund_and_return_reason_no_longer_needed": "CHANGED_MIND",
        "ecom_order_delivered_refund_and_return_reason_changed_mind": "CHANGED_MIND",
        "ecom_order_delivered_refund_and_return_reason_damaged": "DAMAGED",
        "ecom_order_delivered_refund_and_return_reason_defective": "QUALITY",
        "ecom_order_delivered_refund_and_return_reason_quality_issue": "QUALITY",
        "ecom_order_delivered_refund_and_return_reason_not_as_described": "NOT_AS_DESCRIBED",
        "ecom_order_delivered_refund_and_return_reason_wrong_item": "WRONG_ITEM",
    },
    "shopify": {
        "size_too_small": "SIZE_FIT",
        "size_too_large": "SIZE_FIT",
        "unwanted": "CHANGED_MIND",
        "style": "CHANGED_MIND",
        "color": "CHANGED_MIND",
        "defective": "QUALITY",
        "not_as_described": "NOT_AS_DESCRIBED",
        "wrong_item": "WRONG_ITEM",
        "other": "OTHER",
        "unknown": "OTHER",
    },
    "amazon": {
        "apparel_too_small": "SIZE_FIT",
        "apparel_too_large": "SIZE_FIT",
        "apparel_style": "CHANGED_MIND",
        "unwanted_item": "CHANGED_MIND",
        "ordered_wrong_item": "CHANGED_MIND",
        "found_better_price": "CHANGED_MIND",
        "defective": "QUALITY",
        "quality_unacceptable": "QUALITY",
        "missing_parts": "QUALITY",
        "damaged_by_carrier": "DAMAGED",
        "damaged_by_fc": "DAMAGED",
        "not_as_described": "NOT_AS_DESCRIBED",
        "not_compatible": "NOT_AS_DESCRIBED",
        "switcheroo": "WRONG_ITEM",
        "no_reason_given": "OTHER",
    },
    "ebay": {
        "doesnt_fit": "SIZE_FIT",
        "wrong_size": "SIZE_FIT",
        "no_longer_need_item": "CHANGED_MIND",
        "changed_mind": "CHANGED_MIND",
        "found_better_price": "CHANGED_MIND",
        "ordered_accidentally": "CHANGED_MIND",
        "defective_item": "QUALITY",
        "missing_parts": "QUALITY",
        "arrived_damaged": "DAMAGED",
        "not_as_described": "NOT_AS_DESCRIBED",
        "different_from_listing": "NOT_AS_DESCRIBED",
        "wrong_item": "WRONG_ITEM",
        "other": "OTHER",
    },
}

FAST_LANE_CATEGORIES: frozenset[ReasonCategory] = frozenset({"SIZE_FIT", "CHANGED_MIND"})


def categorise_reason(channel: str, reason_code: str) -> ReasonCategory:
    """The reason category of a marketplace's raw code; codes we do not know are OTHER."""
    return REASON_CODES.get(channel, {}).get(reason_code.strip().lower(), "OTHER")


def lane_for(category: ReasonCategory) -> Lane:
    """Size/fit and changed-mind returns are likely intact: fast lane. The rest: full inspection."""
    return "FAST" if category in FAST_LANE_CATEGORIES else "FULL_INSPECTION"


@dataclass(frozen=True)
class OpenLine:
    """An RMA line and how many of its units have arrived."""

    line_id: str
    sku: str
    quantity: int
    received: int

    @property
    def remaining(self) -> int:
        return self.quantity - self.received


@dataclass(frozen=True)
class Match:
    lpn: str
    sku: str
    line_id: str | None  # None: the return order does not expect this unit


def match_units(lines: Sequence[OpenLine], units: Sequence[tuple[str, str]]) -> list[Match]:
    """Match scanned (lpn, sku) units to RMA lines, in line order, never beyond a line's quantity."""
    remaining = {line.line_id: line.remaining for line in lines}
    matches = []
    for lpn, sku in units:
        line_id = next((line.line_id for line in lines if line.sku == sku and remaining[line.line_id] > 0), None)
        if line_id is not None:
            remaining[line_id] -= 1
        matches.append(Match(lpn=lpn, sku=sku, line_id=line_id))
    return matches


@dataclass(frozen=True)
class ReturnOrder:
    seller_id: str
    return_id: str
    shop_id: str
    channel: str
    order_id: str
    tracking_number: str
    reason_code: str
    reason_category: str
    lane: str

    @classmethod
    def of(cls, rma: RmaIssued, reason_category: str, lane: str) -> ReturnOrder:
        return cls(
            seller_id=rma.seller_id,
            return_id=rma.return_id,
            shop_id=rma.shop_id,
            channel=rma.channel,
            order_id=rma.order_id,
            tracking_number=rma.tracking_number,
            reason_code=rma.reason_code,
            reason_category=reason_category,
            lane=lane,
        )


@dataclass(frozen=True)
class LineDetail:
    line: OpenLine
    unit_price: Decimal
    currency: str
    size: str | None
    colour: str | None


@dataclass(frozen=True)
class RegisteredUnit:
    """A unit intake registered from a dock scan; `return_id` None: an unexpected unit, waiting
    for an operator (added to a return, or quarantined: `quarantine_reason`)."""

    lpn: str
    seller_id: str
    sku: str
    warehouse_id: str
    tracking_number: str
    return_id: str | None
    quarantine_reason: str | None


# --- Storage, as the handlers see it ------------------------------------------------------


class IntakeRepository(Protocol):
    """What intake's handlers need of storage: return orders, units received, parked scans.
    The PostgreSQL one is `adapters.PostgresIntakeRepository`; mypy holds the unit tests\' fakes to it."""

    async def add_rma(self, rma: RmaIssued, reason_category: str, lane: str) -> bool:
        """Register the return order and its lines; False if this seller already has that return id."""

    async def sellers_with_tracking(self, tracking_number: str) -> set[str]: ...

    async def rma_for_tracking(self, seller_id: str, tracking_number: str) -> ReturnOrder | None:
        """The seller's first return order (by issue time) with this tracking number."""

    async def rma_by_id(self, seller_id: str, return_id: str) -> ReturnOrder | None:
        """The seller's return order of that id."""

    async def lines_for_update(self, seller_id: str, return_id: str) -> list[LineDetail]: ...

    async def owners_of(self, lpns: list[str]) -> dict[str, str]:
        """Which seller each already registered LPN belongs to."""

    async def add_units(
        self, scan: ParcelScanned, rows: list[tuple[str, str, str | None, str | None, str | None]]
    ) -> None:
        """Register (lpn, sku, return_id, line_id, lane) rows and count them on their lines."""

    async def unit_for_update(self, lpn: str) -> RegisteredUnit | None:
        """The registered unit, locked until the transaction ends."""

    async def receive_unit(self, unit: RegisteredUnit, rma: ReturnOrder, line_id: str) -> None:
        """Receive an unexpected unit against the return's line (read with `lines_for_update`),
        counting it on the line."""

    async def quarantine_unit(self, unit: RegisteredUnit, reason: str, at: datetime) -> None:
        """Set an unexpected unit aside for good."""

    async def park_scan(self, scan: ParcelScanned, source: MessageSource, *, reported: bool = False) -> None:
        """Keep a scan until a return of its seller carries its tracking number; `reported`: an
        operator was told of it already (it is not reported again as unmatched)."""

    async def take_parked_scans(
        self, seller_id: str, tracking_number: str
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        """Un-park the seller's scans of this tracking number, oldest first. Another seller's stay
        parked: a return never takes a parcel of another tenant."""

    async def others_parked(self, seller_id: str, tracking_number: str) -> list[tuple[ParcelScanned, MessageSource]]:
        """Other sellers' parked scans of this tracking number that no operator was told of yet,
        marked told: they stay parked for a return of their own seller."""

    async def unreported_parked_scans(
        self, parked_before: datetime, limit: int = 500
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        """Parcels parked before `parked_before` and not reported yet, locked for this transaction."""

    async def mark_reported(self, scans: list[tuple[str, UUID]], at: datetime) -> None:
        """Parked scans, by (seller_id, event_id), an operator was told of at `at`."""
