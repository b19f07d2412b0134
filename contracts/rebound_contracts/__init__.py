"""Rebound's public contract v1. Depends on pydantic only; imports nothing from the services."""

from .common import Channel, Condition, Envelope, Grade, Lane, Money, ReasonCategory, TenantEvent
from .inbound import (
    ExchangeRequested,
    InspectionChecks,
    ParcelScanned,
    RmaIssued,
    RmaLine,
    ScannedUnit,
    StorefrontAck,
    UnitInspected,
    UnitPicked,
    UnitRefurbished,
)
from .outbound import (
    AdjustmentCause,
    Destination,
    DispositionDecided,
    ExceptionRaised,
    ExchangeAllocated,
    InsightRaised,
    ListingRequested,
    LotContents,
    MessageDeadLettered,
    MessageSource,
    SkippedDestination,
    StockAdjusted,
    UnitAllocated,
    UnitGraded,
    UnitReceived,
)
from .topics import ALL as ALL_TOPICS
from .topics import BY_NAME as TOPICS_BY_NAME
from .topics import Topic

__all__ = [
    "ALL_TOPICS", "TOPICS_BY_NAME", "AdjustmentCause", "Channel", "Condition", "Destination",
    "DispositionDecided", "Envelope", "ExceptionRaised", "ExchangeAllocated", "ExchangeRequested",
    "Grade", "InsightRaised", "InspectionChecks", "Lane", "ListingRequested", "LotContents", "MessageDeadLettered",
    "MessageSource", "Money", "ParcelScanned", "ReasonCategory", "RmaIssued", "RmaLine",
    "ScannedUnit", "SkippedDestination", "StockAdjusted", "StorefrontAck", "TenantEvent", "Topic",
    "UnitAllocated", "UnitGraded", "UnitInspected", "UnitPicked", "UnitReceived", "UnitRefurbished",
]
