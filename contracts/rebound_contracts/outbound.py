"""Events produced by Rebound for storefront connectors, operators and the WMS."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, NonNegativeInt, PositiveInt

from .common import (
    FROZEN,
    Channel,
    Condition,
    Envelope,
    Grade,
    Identifier,
    Lane,
    Money,
    ReasonCategory,
    TenantEvent,
)


class UnitReceived(TenantEvent):
    """`returns.unit-received.v1`: a scanned unit was matched to its RMA line and sorted to a lane."""

    lpn: Identifier
    sku: Identifier
    warehouse_id: Identifier
    tracking_number: Identifier
    return_id: Identifier
    order_id: Identifier
    line_id: Identifier
    shop_id: Identifier
    channel: Channel
    reason_code: str
    reason_category: ReasonCategory
    lane: Lane
    unit_price: Money
    size: str | None = None
    colour: str | None = None


class UnitGraded(TenantEvent):
    """`returns.unit-graded.v1`: a unit got its grade, or a new one. `revision` counts per LPN."""

    lpn: Identifier
    sku: Identifier
    return_id: Identifier
    grade: Grade
    reasons: Annotated[list[str], Field(min_length=1)]
    revision: PositiveInt
    warehouse_id: Identifier
    shop_id: Identifier
    channel: Channel
    unit_price: Money
    source_event_id: UUID


class AdjustmentCause(BaseModel):
    model_config = FROZEN

    kind: Literal[
        "unit_graded", "unit_regraded", "unit_reallocated", "exchange_allocated", "lot_formed", "sold_elsewhere"
    ]
    lpn: Identifier
    source_event_id: UUID


class StockAdjusted(TenantEvent):
    """`storefront.stock-adjustments.v1`: the sellable quantity of one listing key changed.
    Per key (`seller_id:channel:warehouse_id:sku:condition`) `sequence` runs 1, 2, 3... with no
    gap or repeat. `picked` counts the key's units the warehouse has picked for orders so far:
    the storefront counted those sales itself, so no -1 is sent for them, and `available` is the
    running sum of `delta` minus `picked`.
    """

    adjustment_id: UUID
    shop_id: Identifier
    channel: Channel
    warehouse_id: Identifier
    sku: Identifier
    condition: Condition
    delta: int
    available: NonNegativeInt
    sequence: PositiveInt
    picked: NonNegativeInt = 0
    cause: AdjustmentCause


class LotContents(BaseModel):
    """The units of a lucky-bag lot, sold together as one listing of quantity 1."""

    model_config = FROZEN

    lot_id: Identifier
    lpns: Annotated[list[Identifier], Field(min_length=1)]
    skus: Annotated[list[Identifier], Field(min_length=1)]


class ListingRequested(TenantEvent):
    """`storefront.listings.v1`: a connector should create or update a listing. `listing_sku` is
    the SKU to list under when the channel has no condition field (a TikTok Shop open-box unit
    gets a listing of its own); `marketplace_condition` is the channel's own vocabulary
    (eBay `NEW_OTHER`, condition id 1500; Amazon `new_open_box`...)."""

    action: Literal["upsert"]
    shop_id: Identifier
    channel: Channel
    warehouse_id: Identifier
    sku: Identifier
    condition: Condition
    price: Money
    condition_note: str
    listing_sku: Identifier | None = None
    marketplace_condition: str | None = None
    marketplace_condition_id: int | None = None
    quantity_limit: PositiveInt | None = None
    lot: LotContents | None = None


DestinationKind = Literal[
    "listing", "exchange_pool", "lucky_bag", "bundle_pool", "repair", "parts_harvest", "liquidation", "disposal"
]


class Destination(BaseModel):
    """One place a unit can go. Only `listing` and `lucky_bag` put stock on a storefront."""

    model_config = FROZEN

    kind: DestinationKind
    channel: Channel | None = None
    condition: Condition | None = None
    listing_sku: Identifier | None = None
    marketplace_condition: str | None = None
    marketplace_condition_id: int | None = None
    price: Money | None = None
    """None: the unit joins the listing at the listing's own price (the original listing)."""
    pool: Identifier | None = None
    quota: PositiveInt | None = None
    """exchange_pool: at most this many units per SKU and warehouse are held back."""
    lot_size: PositiveInt | None = None
    """lucky_bag: a lot is formed and listed once this many units are pooled."""
    unsold_after_days: PositiveInt | None = None
    """listing: a unit still unsold after this many days moves on to the next destination."""


class DispositionDecided(TenantEvent):
    """`returns.disposition-decided.v1`: where a graded unit may go, best first, and why: the
    policy rule that matched and its reasons. The ledger places the unit on the first candidate
    that can take it, and on the next one when that one stops being available."""

    lpn: Identifier
    sku: Identifier
    grade: Grade
    grade_revision: PositiveInt
    warehouse_id: Identifier
    shop_id: Identifier
    channel: Channel
    unit_price: Money
    policy_version: NonNegativeInt
    rule: str
    reasons: Annotated[list[str], Field(min_length=1)]
    candidates: Annotated[list[Destination], Field(min_length=1)]
    source_event_id: UUID


class SkippedDestination(BaseModel):
    model_config = FROZEN

    candidate: NonNegativeInt
    kind: DestinationKind
    why: str


class UnitAllocated(TenantEvent):
    """`returns.unit-allocated.v1`: where a unit now is. `destination` is None when no candidate
    could take it (it is held in the warehouse and reported). `skipped` says why the earlier
    candidates were passed over."""

    lpn: Identifier
    sku: Identifier
    warehouse_id: Identifier
    grade: Grade
    grade_revision: PositiveInt
    rule: str
    cause: Literal["decided", "policy_changed", "listing_rejected", "listing_paused", "unsold"]
    candidate: NonNegativeInt | None
    destination: Destination | None
    skipped: list[SkippedDestination] = []
    lot_id: Identifier | None = None
    source_event_id: UUID


class ExchangeAllocated(TenantEvent):
    """`returns.exchange-allocated.v1`: the answer to an exchange request: which LPN the WMS
    should pick (from the size-exchange pool, or taken off a storefront listing), or unavailable."""

    exchange_id: Identifier
    return_id: Identifier
    warehouse_id: Identifier
    sku: Identifier
    status: Literal["allocated", "unavailable"]
    lpn: Identifier | None = None
    source: Literal["exchange_pool", "stock"] | None = None
    source_event_id: UUID


Share = Annotated[float, Field(ge=0, le=1)]


class InsightRaised(TenantEvent):
    """`returns.insights.v1`: a pattern in one seller's returns worth acting on, with the figures
    behind it, raised once per seller, product, size, kind and period (a calendar month of dock
    scans). `size_runs_small`: buyers send this size of the product (`sku`, its SKUs without the
    size) back as too small far more often than its sizes on average, so its size chart may be off;
    `size_runs_large` likewise. `size_*` figures count this size's returned units, `sku_*` all of
    the product's; `*_matching` those returned for the reason the kind names."""

    kind: Literal["size_runs_small", "size_runs_large"]
    sku: Identifier
    size: Annotated[str, Field(min_length=1, max_length=32)]
    skus: Annotated[list[Identifier], Field(min_length=1)]
    period: Annotated[str, Field(pattern=r"^\d{4}-\d{2}$")]
    size_returns: PositiveInt
    size_matching: NonNegativeInt
    size_share: Share
    sku_returns: PositiveInt
    sku_matching: NonNegativeInt
    sku_share: Share
    z_score: float
    summary: str


class MessageSource(BaseModel):
    model_config = FROZEN

    topic: str
    partition: NonNegativeInt
    offset: NonNegativeInt


ExceptionKind = Literal[
    "unknown_seller",
    "unmatched_parcel",
    "unexpected_unit",
    "cross_tenant_reference",
    "duplicate_lpn",
    "unknown_lpn",
    "unexpected_pick",
    "unknown_reference",
    "no_destination",
    "unmapped_listing",
    "storefront_in_doubt",
    "storefront_short",
    "storefront_unauthorized",
    "storefront_drift",
    "storefront_listing_refused",
    "processing_parked",
]


class ExceptionRaised(TenantEvent):
    """`returns.exceptions.v1`: valid input that cannot be applied; an operator must look."""

    kind: ExceptionKind
    detail: str
    source: MessageSource
    source_event_id: UUID
    original: dict[str, Any]
    lpn: Identifier | None = None
    """The unit the exception is about, when it is about one unit of `original` (an
    `unexpected_unit`, say): what an operator acts on."""


DeadLetterKind = Literal["invalid_json", "schema_violation", "oversized", "conflicting_duplicate", "processing_failed"]


class MessageDeadLettered(Envelope):
    """`returns.dlq.v1`: a message that could not be read or applied at all, kept byte for byte."""

    seller_id: str | None = None
    kind: DeadLetterKind
    error: str
    source: MessageSource
    key: str | None = None
    raw_base64: str
    raw_size: NonNegativeInt
    truncated: bool = False
    consumer: str
