"""Rebound's public contract v1. Depends on pydantic only; imports nothing from the services."""

from .common import Channel, Condition, Envelope, Grade, Lane, Money, ReasonCategory, TenantEvent
from .inbound import (
    InspectionChecks,
    ParcelScanned,
    RmaIssued,
    RmaLine,
    ScannedUnit,
    UnitInspected,
    UnitRefurbished,
)
from .outbound import (
    AdjustmentCause,
    ExceptionRaised,
    ListingRequested,
    MessageDeadLettered,
    MessageSource,
    StockAdjusted,
    UnitGraded,
    UnitReceived,
)
from .topics import ALL as ALL_TOPICS
from .topics import BY_NAME as TOPICS_BY_NAME
from .topics import Topic

__all__ = [
    "ALL_TOPICS", "TOPICS_BY_NAME", "AdjustmentCause", "Channel", "Condition", "Envelope",
    "ExceptionRaised", "Grade", "InspectionChecks", "Lane", "ListingRequested",
    "MessageDeadLettered", "MessageSource", "Money", "ParcelScanned", "ReasonCategory",
    "RmaIssued", "RmaLine", "ScannedUnit", "StockAdjusted", "TenantEvent", "Topic",
    "UnitGraded", "UnitInspected", "UnitReceived", "UnitRefurbished",
]
