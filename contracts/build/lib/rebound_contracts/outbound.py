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

    kind: Literal["unit_graded", "unit_regraded"]
    lpn: Identifier
    source_event_id: UUID


class StockAdjusted(TenantEvent):
    """`storefront.stock-adjustments.v1`: the sellable quantity of one listing key changed.

    Per key (`seller_id:channel:warehouse_id:sku:condition`) `sequence` runs 1, 2, 3... with no
    gap or repeat, and `available` is the running sum of `delta`.
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
    cause: AdjustmentCause


class ListingRequested(TenantEvent):
    """`storefront.listings.v1`: a connector should create or update a listing."""

    action: Literal["upsert"]
    shop_id: Identifier
    channel: Channel
    warehouse_id: Identifier
    sku: Identifier
    condition: Condition
    price: Money
    condition_note: str


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
]


class ExceptionRaised(TenantEvent):
    """`returns.exceptions.v1`: valid input that cannot be applied; an operator must look."""

    kind: ExceptionKind
    detail: str
    source: MessageSource
    source_event_id: UUID
    original: dict[str, Any]


DeadLetterKind = Literal[
    "invalid_json", "schema_violation", "oversized", "conflicting_duplicate", "processing_failed"
]


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
