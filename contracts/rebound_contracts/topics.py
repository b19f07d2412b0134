"""The topic registry: every topic of contract v1, its message model, key, and who uses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from .inbound import (
    ExchangeRequested,
    ParcelMatched,
    ParcelReceivedUnexpected,
    ParcelScanned,
    RmaIssued,
    StorefrontAck,
    UnitAddedToReturn,
    UnitInspected,
    UnitPicked,
    UnitQuarantined,
    UnitRefurbished,
)
from .outbound import (
    DispositionDecided,
    ExceptionRaised,
    ExchangeAllocated,
    InsightRaised,
    ListingRequested,
    MessageDeadLettered,
    StockAdjusted,
    UnitAllocated,
    UnitGraded,
    UnitReceived,
)

Direction = Literal["inbound", "internal", "outbound"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Topic(Generic[M]):
    name: str
    model: type[M]
    key_fields: tuple[str, ...]
    direction: Direction
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    partitions: int = 6
    description: str = ""
    at_least_once: bool = False
    """How Rebound publishes it. False: exactly once, in Kafka transactions (read with
    read_committed, each record appears once). True: at least once, without a transaction; after a
    crash a record can appear again, with the same `event_id`, which its consumers drop (every
    Rebound consumer does, through its inbox). Only topics whose records a repeat cannot harm are
    published so: a transaction costs several times a plain acknowledged send."""

    def key_of(self, message: M) -> str:
        """The Kafka key of `message` on this topic: its key fields joined by ':'."""
        return ":".join(str(getattr(message, field)) for field in self.key_fields)


RMA = Topic(
    "returns.rma.v1",
    RmaIssued,
    ("seller_id", "return_id"),
    "inbound",
    ("shop connector",),
    ("intake", "console"),
    description="Return orders (RMAs) forwarded from the shop.",
)
PARCEL_SCANNED = Topic(
    "wms.parcel-scanned.v1",
    ParcelScanned,
    ("warehouse_id", "tracking_number"),
    "inbound",
    ("WMS dock scanner",),
    ("intake", "console"),
    description="A returned parcel opened at the dock; each unit has an LPN.",
)
PARCEL_MATCHED = Topic(
    "returns.parcel-matched.v1",
    ParcelMatched,
    ("seller_id", "tracking_number"),
    "inbound",
    ("console",),
    ("intake", "console"),
    description="An operator's match of a parcel waiting without its return order to one of the seller's returns.",
)
PARCEL_RECEIVED_UNEXPECTED = Topic(
    "returns.parcel-received-unexpected.v1",
    ParcelReceivedUnexpected,
    ("seller_id", "tracking_number"),
    "inbound",
    ("console",),
    ("intake", "console"),
    description="An operator's receipt of a parcel waiting without its return order as unexpected stock.",
)
UNIT_ADDED_TO_RETURN = Topic(
    "returns.unit-added-to-return.v1",
    UnitAddedToReturn,
    ("lpn",),
    "inbound",
    ("console",),
    ("intake", "console"),
    description="An operator's addition of an unexpected unit to one of the seller's returns, on one of its lines.",
)
UNIT_QUARANTINED = Topic(
    "returns.unit-quarantined.v1",
    UnitQuarantined,
    ("lpn",),
    "inbound",
    ("console",),
    ("intake", "console"),
    description="An operator's decision to set an unexpected unit aside for good.",
)
UNIT_INSPECTED = Topic(
    "wms.unit-inspected.v1",
    UnitInspected,
    ("lpn",),
    "inbound",
    ("WMS QC station",),
    ("grading", "console"),
    description="QC checks of one unit; the latest inspection of an LPN stands.",
)
UNIT_REFURBISHED = Topic(
    "wms.unit-refurbished.v1",
    UnitRefurbished,
    ("lpn",),
    "inbound",
    ("WMS refurbishment station",),
    ("grading", "console"),
    description="Work done on one unit (cleaned, repackaged...).",
)
UNIT_RECEIVED = Topic(
    "returns.unit-received.v1",
    UnitReceived,
    ("lpn",),
    "internal",
    ("intake",),
    ("grading", "WMS", "console"),
    description="A unit matched to its RMA line and sorted to a lane.",
    at_least_once=True,
)
UNIT_GRADED = Topic(
    "returns.unit-graded.v1",
    UnitGraded,
    ("lpn",),
    "outbound",
    ("grading",),
    ("relisting", "analytics", "console"),
    description="A unit's grade (A, B, C, SCRAP) with its reasons.",
    at_least_once=True,
)
STOCK_ADJUSTMENTS = Topic(
    "storefront.stock-adjustments.v1",
    StockAdjusted,
    ("seller_id", "channel", "warehouse_id", "sku", "condition"),
    "outbound",
    ("ledger",),
    ("connectors", "console"),
    description="Sellable stock moves, exactly once, gapless `sequence` per key.",
)
LISTINGS = Topic(
    "storefront.listings.v1",
    ListingRequested,
    ("seller_id", "channel", "warehouse_id", "sku", "condition"),
    "outbound",
    ("ledger",),
    ("connectors",),
    description="Listing requests, e.g. an open-box listing at the seller's discount.",
)
DISPOSITIONS = Topic(
    "returns.disposition-decided.v1",
    DispositionDecided,
    ("lpn",),
    "outbound",
    ("relisting",),
    ("ledger", "analytics", "console"),
    description="Where a graded unit may go, best first, and the policy rule that decided it.",
    at_least_once=True,
)
ALLOCATIONS = Topic(
    "returns.unit-allocated.v1",
    UnitAllocated,
    ("lpn",),
    "outbound",
    ("ledger",),
    ("analytics", "WMS", "console"),
    description="Where a unit now is (listing, pool, lot, repair...), and why earlier candidates were passed over.",
)
UNIT_PICKED = Topic(
    "wms.unit-picked.v1",
    UnitPicked,
    ("lpn",),
    "inbound",
    ("WMS picking",),
    ("ledger", "console"),
    description="A unit picked for a customer order: stock goes down, the storefront is not told.",
)
EXCHANGE_REQUESTED = Topic(
    "returns.exchange-requested.v1",
    ExchangeRequested,
    ("seller_id", "exchange_id"),
    "inbound",
    ("shop connector",),
    ("ledger", "console"),
    description="A buyer wants the same product in another size.",
)
EXCHANGE_ALLOCATED = Topic(
    "returns.exchange-allocated.v1",
    ExchangeAllocated,
    ("seller_id", "exchange_id"),
    "outbound",
    ("ledger",),
    ("WMS", "shop connector", "console"),
    description="Which LPN serves an exchange request, or that none can.",
)
INSIGHTS = Topic(
    "returns.insights.v1",
    InsightRaised,
    ("seller_id", "sku"),
    "outbound",
    ("intake",),
    ("seller marketing",),
    description="Patterns in a seller's returns with the figures behind them, e.g. a size returned as too small.",
)
ACKS = Topic(
    "storefront.acks.v1",
    StorefrontAck,
    ("seller_id", "channel", "warehouse_id", "sku", "condition"),
    "inbound",
    ("connectors",),
    ("ledger", "console"),
    description="Connectors' answers to stock adjustments and listing requests: applied, rejected, paused.",
)
EXCEPTIONS = Topic(
    "returns.exceptions.v1",
    ExceptionRaised,
    ("seller_id",),
    "outbound",
    ("intake", "grading", "relisting", "ledger", "connectors"),
    ("operators", "console"),
    description="Valid input that cannot be applied (unmatched parcel, cross-tenant reference...).",
)
DLQ = Topic(
    "returns.dlq.v1",
    MessageDeadLettered,
    ("consumer",),
    "outbound",
    ("intake", "grading", "relisting", "ledger", "connectors"),
    ("operators", "console"),
    description="Unreadable messages (bad JSON, schema violation, conflicting duplicate), raw.",
)

ALL: tuple[Topic, ...] = (
    RMA,
    PARCEL_SCANNED,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    UNIT_ADDED_TO_RETURN,
    UNIT_QUARANTINED,
    UNIT_INSPECTED,
    UNIT_REFURBISHED,
    UNIT_PICKED,
    EXCHANGE_REQUESTED,
    ACKS,
    UNIT_RECEIVED,
    UNIT_GRADED,
    DISPOSITIONS,
    ALLOCATIONS,
    STOCK_ADJUSTMENTS,
    LISTINGS,
    EXCHANGE_ALLOCATED,
    INSIGHTS,
    EXCEPTIONS,
    DLQ,
)
BY_NAME: dict[str, Topic] = {topic.name: topic for topic in ALL}
