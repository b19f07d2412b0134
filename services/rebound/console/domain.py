"""What the console keeps of each event: a line saying what happened and why, what it can be found
by, and, for exceptions and dead letters, the case an operator works. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from rebound_contracts import (
    DispositionDecided,
    ExceptionRaised,
    ExchangeAllocated,
    ExchangeRequested,
    MessageDeadLettered,
    ParcelMatched,
    ParcelReceivedUnexpected,
    ParcelScanned,
    RmaIssued,
    StockAdjusted,
    StorefrontAck,
    UnitAddedToReturn,
    UnitAllocated,
    UnitGraded,
    UnitInspected,
    UnitPicked,
    UnitQuarantined,
    UnitReceived,
    UnitRefurbished,
)
from rebound_contracts.common import Money
from rebound_contracts.outbound import Destination

THROUGH_KINDS = ("return", "tracking", "ref")
"""Keys a unit's trace follows to events that name no unit: its return order, its parcel, the
shop's answers to its adjustments."""

# Fields of an event (or of the event an exception carries) that name a key, at any depth; a
# stock adjustment and the shop's answer to it also share a `ref`.
_FIELD_KINDS = {
    "lpn": "lpn",
    "return_id": "return",
    "tracking_number": "tracking",
    "order_id": "order",
    "sku": "sku",
    "buyer_id": "buyer",
}


@dataclass(frozen=True)
class Case:
    """An exception or a dead letter, as work for an operator."""

    case_id: str
    source: str  # exception | dead_letter | waiting
    kind: str
    seller_id: str | None
    opened_at: datetime
    detail: str
    topic: str
    partition: int
    offset: int
    consumer: str | None
    key: str | None
    event: dict[str, Any]


@dataclass(frozen=True)
class StockLevel:
    seller_id: str
    channel: str
    warehouse_id: str
    sku: str
    condition: str
    available: int
    picked: int
    sequence: int
    at: datetime


@dataclass(frozen=True)
class ShopAnswer:
    seller_id: str
    channel: str
    warehouse_id: str
    sku: str
    condition: str
    status: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Waiting:
    """An event the pipeline keeps until another arrives: a scan waits for its return order, an
    inspection for its unit's receipt."""

    kind: str  # scan | inspection
    seller_id: str
    key: str  # the scan's tracking number, the inspection's LPN
    warehouse_id: str
    since: datetime


@dataclass(frozen=True)
class Arrived:
    """A unit's receipt, or an operator's decision that ends a wait: what waited for it (a parcel's
    scan, a unit's inspection) waits no more, for `why`."""

    seller_id: str
    tracking_number: str | None
    lpn: str | None
    why: str = "the unit's receipt arrived"


@dataclass(frozen=True)
class Placed:
    """Where a unit was allocated (`place` None: held in the warehouse), or that it was picked."""

    seller_id: str
    lpn: str
    at: datetime
    picked: bool = False
    warehouse_id: str | None = None
    sku: str | None = None
    place: str | None = None
    channel: str | None = None
    condition: str | None = None


@dataclass
class Projection:
    """What one event adds to the console's tables."""

    summary: str | None = None  # None: not on any timeline (a dead letter)
    keys: set[tuple[str, str]] = field(default_factory=set)
    case: Case | None = None
    stock: StockLevel | None = None
    answer: ShopAnswer | None = None
    waiting: Waiting | None = None
    arrived: Arrived | None = None
    placed: Placed | None = None


def money(value: Money | None) -> str:
    return f"{value.amount} {value.currency}" if value is not None else "the listing's own price"


def destination(d: Destination) -> str:
    if d.kind == "listing":
        where = f"{d.channel} listing, {d.condition}" + (f" as {d.listing_sku}" if d.listing_sku else "")
        return f"{where}, at {money(d.price)}"
    if d.kind == "exchange_pool":
        return f"exchange pool {d.pool or ''}".rstrip() + (f" (quota {d.quota})" if d.quota else "")
    if d.kind == "lucky_bag":
        return f"lucky bag of {d.lot_size} on {d.channel}"
    return d.kind.replace("_", " ")


def keys_in(document: Any) -> Iterator[tuple[str, str]]:
    """Every key a document names, however deep (an RMA's lines, a scan's units)."""
    if isinstance(document, dict):
        for name, value in document.items():
            kind = _FIELD_KINDS.get(name)
            if kind is not None and isinstance(value, str) and value:
                yield kind, value
            elif isinstance(value, dict | list):
                yield from keys_in(value)
    elif isinstance(document, list):
        for item in document:
            yield from keys_in(item)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _listing(e: StockAdjusted | StorefrontAck) -> str:
    return f"{e.channel}:{e.warehouse_id}:{e.sku}:{e.condition}"


def _summary(event: BaseModel) -> str:
    match event:
        case RmaIssued():
            skus = ", ".join(sorted({line.sku for line in event.lines}))
            units = sum(line.quantity for line in event.lines)
            return (
                f"return {event.return_id} of order {event.order_id} on {event.channel}: "
                f"{_plural(units, 'unit')} of {skus}, reason {event.reason_code!r}, parcel {event.tracking_number}"
            )
        case ParcelScanned():
            return (
                f"parcel {event.tracking_number} opened at {event.warehouse_id} (station {event.station_id}, "
                f"operator {event.operator_id}): {_plural(len(event.units), 'unit')}"
            )
        case ParcelMatched():
            return f"parcel {event.tracking_number} matched to return {event.return_id} by operator {event.operator_id}"
        case ParcelReceivedUnexpected():
            return f"parcel {event.tracking_number} received as unexpected stock by operator {event.operator_id}"
        case UnitAddedToReturn():
            return (
                f"added to return {event.return_id} line {event.line_id} by operator {event.operator_id}"
                " (an unexpected unit)"
            )
        case UnitQuarantined():
            return f"quarantined by operator {event.operator_id}: {event.reason}"
        case UnitReceived():
            return (
                f"received against return {event.return_id} line {event.line_id}: reason {event.reason_category} "
                f"({event.reason_code!r}), lane {event.lane}"
            )
        case UnitInspected():
            c = event.checks
            checks = f"packaging {c.packaging}, appearance {c.appearance}, function {c.function}, "
            checks += f"accessories {c.accessories}" + (", irreparable" if c.irreparable else "")
            return f"inspected by {event.inspector_id}: {checks}"
        case UnitRefurbished():
            return f"refurbished: {', '.join(event.actions)}"
        case UnitGraded():
            return f"graded {event.grade} (revision {event.revision}): {'; '.join(event.reasons)}"
        case DispositionDecided():
            options = "; ".join(f"{n}. {destination(d)}" for n, d in enumerate(event.candidates, 1))
            return f"rule {event.rule!r} (policy v{event.policy_version}) for grade {event.grade}: {options}"
        case UnitAllocated():
            skipped = "".join(f"; skipped {s.kind}: {s.why}" for s in event.skipped)
            if event.destination is None:
                return f"no destination could take it ({event.cause}){skipped}"
            return (
                f"placed on {destination(event.destination)} (candidate {event.candidate}, rule {event.rule!r}, "
                f"{event.cause.replace('_', ' ')}){skipped}"
            )
        case StockAdjusted():
            return (
                f"{event.delta:+d} on {_listing(event)} ({event.cause.kind.replace('_', ' ')}): "
                f"available {event.available}, sequence {event.sequence}"
            )
        case StorefrontAck():
            reason = f": {event.reason}" if event.reason else ""
            return f"{event.channel} shop answered {event.status} for {_listing(event)}{reason}"
        case UnitPicked():
            return f"picked for {event.channel} order {event.order_id}"
        case ExchangeRequested():
            return f"exchange {event.exchange_id} requested on return {event.return_id} for {event.sku}"
        case ExchangeAllocated():
            unit = f"unit {event.lpn} from {event.source}" if event.lpn else "no unit"
            return f"exchange {event.exchange_id} {event.status}: {unit}"
        case ExceptionRaised():
            return f"exception {event.kind}: {event.detail}"
    return type(event).__name__


def project(event: BaseModel) -> Projection:
    """What `event` (any model the console consumes) adds to the console's tables."""
    if isinstance(event, MessageDeadLettered):
        return Projection(case=dead_letter_case(event))
    projection = Projection(summary=_summary(event))
    document = event.model_dump(mode="json")
    if isinstance(event, ExceptionRaised):
        projection.keys |= set(keys_in(event.original))
        projection.case = exception_case(event)
        return projection
    projection.keys |= set(keys_in(document))
    if isinstance(event, StockAdjusted):
        projection.keys |= {("lpn", event.cause.lpn), ("ref", str(event.event_id))}
        projection.stock = StockLevel(
            event.seller_id,
            event.channel,
            event.warehouse_id,
            event.sku,
            event.condition,
            event.available,
            event.picked,
            event.sequence,
            event.occurred_at,
        )
    if isinstance(event, ParcelScanned):
        projection.waiting = Waiting(
            "scan", event.seller_id, event.tracking_number, event.warehouse_id, event.occurred_at
        )
    if isinstance(event, UnitInspected):
        projection.waiting = Waiting("inspection", event.seller_id, event.lpn, event.warehouse_id, event.occurred_at)
    if isinstance(event, UnitReceived):
        projection.arrived = Arrived(event.seller_id, event.tracking_number, event.lpn)
    if isinstance(event, ParcelReceivedUnexpected):
        projection.arrived = Arrived(event.seller_id, event.tracking_number, None, "received as unexpected stock")
    if isinstance(event, UnitQuarantined):
        projection.arrived = Arrived(event.seller_id, None, event.lpn, "the unit was quarantined")
    if isinstance(event, UnitAllocated):
        where = event.destination
        projection.placed = Placed(
            event.seller_id,
            event.lpn,
            event.occurred_at,
            warehouse_id=event.warehouse_id,
            sku=event.sku,
            place=where.kind if where else None,
            channel=where.channel if where else None,
            condition=where.condition if where else None,
        )
    if isinstance(event, UnitPicked):
        projection.placed = Placed(event.seller_id, event.lpn, event.occurred_at, picked=True, channel=event.channel)
    if isinstance(event, StorefrontAck):
        projection.keys.add(("ref", str(event.ref_event_id)))
        projection.answer = ShopAnswer(
            event.seller_id,
            event.channel,
            event.warehouse_id,
            event.sku,
            event.condition,
            event.status,
            event.reason,
            event.occurred_at,
        )
    return projection


def exception_case(event: ExceptionRaised) -> Case:
    return Case(
        case_id=str(event.event_id),
        source="exception",
        kind=event.kind,
        seller_id=event.seller_id,
        opened_at=event.occurred_at,
        detail=event.detail,
        topic=event.source.topic,
        partition=event.source.partition,
        offset=event.source.offset,
        consumer=None,
        key=None,
        event=event.model_dump(mode="json"),
    )


def dead_letter_case(event: MessageDeadLettered) -> Case:
    return Case(
        case_id=str(event.event_id),
        source="dead_letter",
        kind=event.kind,
        seller_id=event.seller_id,
        opened_at=event.occurred_at,
        detail=event.error,
        topic=event.source.topic,
        partition=event.source.partition,
        offset=event.source.offset,
        consumer=event.consumer,
        key=event.key,
        event=event.model_dump(mode="json"),
    )
