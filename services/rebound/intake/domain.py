"""Intake rules: what a marketplace's reason code means, which lane a unit takes, how a parcel's
units match its return order. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rebound_contracts import Lane, ReasonCategory

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
