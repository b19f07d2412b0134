"""Intake handlers: one async function per consumed message type."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta


import structlog

from rebound_contracts import (
    InsightRaised,
    MessageSource,
    Money,
    ParcelMatched,
    ParcelReceivedUnexpected,
    ParcelScanned,
    RmaIssued,
    UnitAddedToReturn,
    UnitQuarantined,
    UnitReceived,
)
from rebound_contracts.topics import INSIGHTS, UNIT_RECEIVED

from ..messaging.ids import derived_id
from ..messaging.outbox import OutboxBuffer
from ..messaging.processor import Context
from ..reports import queries as reports
from ..reports.insights import size_signals
from .domain import IntakeRepository, LineDetail, RegisteredUnit, ReturnOrder
from .domain import categorise_reason, lane_for, match_units
from ..db import Connection

log = structlog.get_logger(__name__)

INSIGHT_NAMESPACE = uuid.UUID("6f1d2b7e-3c4a-4e58-9b0d-2a7c5e9f1b43")
_ON_ANOTHER_RETURN = "tracking number {} is on another seller's return; the parcel waits for a return of its own seller"


async def register_return(ctx: Context, rma: RmaIssued, repo: IntakeRepository) -> None:
    """Record a return order; a parcel that arrived before it is matched now."""
    category = categorise_reason(rma.channel, rma.reason_code)
    if not await repo.add_rma(rma, category, lane_for(category)):
        log.info(
            "return_already_registered", seller_id=rma.seller_id, return_id=rma.return_id, event_id=str(rma.event_id)
        )
        return
    for scan, source in await repo.take_parked_scans(rma.seller_id, rma.tracking_number):
        parked_ctx = dataclasses.replace(ctx, event=scan, source=source, exceptions_raised=0)
        log.debug(
            "parked_parcel_matched",
            seller_id=rma.seller_id,
            return_id=rma.return_id,
            tracking_number=rma.tracking_number,
            event_id=str(scan.event_id),
        )
        await receive_parcel(parked_ctx, scan, repo)
        ctx.exceptions_raised += parked_ctx.exceptions_raised
    for scan, source in await repo.others_parked(rma.seller_id, rma.tracking_number):
        # Another seller's parcel under this tracking number: reported, and left waiting for a
        # return of its own seller (a tenant's return never takes or discards another's parcel).
        parked_ctx = dataclasses.replace(ctx, event=scan, source=source, exceptions_raised=0)
        parked_ctx.raise_exception("cross_tenant_reference", _ON_ANOTHER_RETURN.format(scan.tracking_number))
        ctx.exceptions_raised += parked_ctx.exceptions_raised


async def match_parcel(ctx: Context, match: ParcelMatched, repo: IntakeRepository) -> None:
    """An operator's match of a parcel waiting without its return order to one of the seller's
    returns: its units are received against that return, as if it carried the parcel's number."""
    rma = await repo.rma_by_id(match.seller_id, match.return_id)
    if rma is None:
        ctx.raise_exception(
            "unknown_reference",
            f"return {match.return_id} is not one of this seller's; parcel {match.tracking_number} stays parked",
        )
        return
    for scan, source in await _take_parked(ctx, match.tracking_number, repo):
        parked_ctx = dataclasses.replace(ctx, event=scan, source=source, exceptions_raised=0)
        log.info(
            "parked_parcel_matched_by_operator",
            seller_id=match.seller_id,
            return_id=rma.return_id,
            tracking_number=scan.tracking_number,
            operator_id=match.operator_id,
        )
        await receive_parcel(parked_ctx, scan, repo, rma)
        ctx.exceptions_raised += parked_ctx.exceptions_raised


async def _take_parked(
    ctx: Context, tracking_number: str, repo: IntakeRepository
) -> list[tuple[ParcelScanned, MessageSource]]:
    """The seller's parcels parked under `tracking_number`, un-parked for an operator's decision;
    none, reported, when nothing waits (received meanwhile, or never scanned)."""
    scans = await repo.take_parked_scans(ctx.event.seller_id, tracking_number)
    if not scans:
        ctx.raise_exception(
            "unknown_reference",
            f"no parcel of this seller waits under tracking number {tracking_number} (received already?)",
        )
    return scans


async def receive_parcel(
    ctx: Context, scan: ParcelScanned, repo: IntakeRepository, rma: ReturnOrder | None = None
) -> None:
    """Match a scanned parcel to its return order (`rma`, when an operator chose it), register its
    units, sort them into lanes."""
    if rma is None:
        rma = await repo.rma_for_tracking(scan.seller_id, scan.tracking_number)
    if rma is None:
        if await repo.sellers_with_tracking(scan.tracking_number):
            # Reported, and parked all the same: the seller's own return may carry the number too,
            # and another tenant's return never takes this parcel.
            ctx.raise_exception("cross_tenant_reference", _ON_ANOTHER_RETURN.format(scan.tracking_number))
            await repo.park_scan(scan, ctx.source, reported=True)
        else:
            # Its RMA is usually a moment behind (another topic, another partition): park quietly;
            # `report_unmatched_parcels` tells operators about the ones that wait too long.
            await repo.park_scan(scan, ctx.source)
        log.debug(
            "parcel_parked", seller_id=scan.seller_id, tracking_number=scan.tracking_number, event_id=str(scan.event_id)
        )
        return

    fresh = await _registrable(ctx, scan, repo)
    details = await repo.lines_for_update(rma.seller_id, rma.return_id)
    by_line = {d.line.line_id: d for d in details}
    matches = match_units([d.line for d in details], fresh)
    await repo.add_units(
        scan,
        [
            (m.lpn, m.sku, rma.return_id if m.line_id else None, m.line_id, rma.lane if m.line_id else None)
            for m in matches
        ],
    )
    for match in matches:
        if match.line_id is None:
            ctx.raise_exception(
                "unexpected_unit",
                f"LPN {match.lpn} (SKU {match.sku}) is not expected by return {rma.return_id}; parked",
                lpn=match.lpn,
            )
            continue
        received = RegisteredUnit(
            match.lpn, scan.seller_id, match.sku, scan.warehouse_id, scan.tracking_number, rma.return_id, None
        )
        ctx.emit(UNIT_RECEIVED, _received(received, rma, by_line[match.line_id], scan.event_id, scan.occurred_at))


async def _registrable(ctx: Context, scan: ParcelScanned, repo: IntakeRepository) -> list[tuple[str, str]]:
    """The (lpn, sku) of the scan's units that are not registered yet; an LPN registered already
    is reported (another seller's, or a duplicate of this seller's)."""
    owners = await repo.owners_of([unit.lpn for unit in scan.units])
    fresh = []
    for unit in scan.units:
        owner = owners.get(unit.lpn)
        if owner is None:
            fresh.append((unit.lpn, unit.sku))
            owners[unit.lpn] = scan.seller_id  # a parcel listing the same LPN twice counts it once
        elif owner != scan.seller_id:
            ctx.raise_exception("cross_tenant_reference", f"LPN {unit.lpn} belongs to another seller")
        else:
            ctx.raise_exception("duplicate_lpn", f"LPN {unit.lpn} is already registered")
    return fresh


def _received(unit: RegisteredUnit, rma: ReturnOrder, line: LineDetail, cause: uuid.UUID, at: datetime) -> UnitReceived:
    """The unit, received against `rma`'s `line`: what grading, the WMS and the console learn."""
    return UnitReceived(
        event_id=derived_id(cause, at, unit.lpn),
        occurred_at=at,
        seller_id=unit.seller_id,
        lpn=unit.lpn,
        sku=unit.sku,
        warehouse_id=unit.warehouse_id,
        tracking_number=unit.tracking_number,
        return_id=rma.return_id,
        order_id=rma.order_id,
        line_id=line.line.line_id,
        shop_id=rma.shop_id,
        channel=rma.channel,
        reason_code=rma.reason_code,
        reason_category=rma.reason_category,
        lane=rma.lane,
        unit_price=Money(amount=line.unit_price, currency=line.currency),
        size=line.size,
        colour=line.colour,
    )


async def receive_unexpected(ctx: Context, received: ParcelReceivedUnexpected, repo: IntakeRepository) -> None:
    """An operator received a parcel that waits without its return order as unexpected stock: its
    units are registered to the seller, each one an `unexpected_unit` for an operator to add to a
    return or quarantine."""
    for scan, source in await _take_parked(ctx, received.tracking_number, repo):
        parked_ctx = dataclasses.replace(ctx, event=scan, source=source, exceptions_raised=0)
        fresh = await _registrable(parked_ctx, scan, repo)
        await repo.add_units(scan, [(lpn, sku, None, None, None) for lpn, sku in fresh])
        for lpn, sku in fresh:
            parked_ctx.raise_exception(
                "unexpected_unit",
                f"LPN {lpn} (SKU {sku}) came in parcel {scan.tracking_number}, received without a return order; parked",
                lpn=lpn,
            )
        log.info(
            "parked_parcel_received_unexpected",
            seller_id=scan.seller_id,
            tracking_number=scan.tracking_number,
            units=len(fresh),
            operator_id=received.operator_id,
        )
        ctx.exceptions_raised += parked_ctx.exceptions_raised


async def _unexpected_unit(ctx: Context, seller_id: str, lpn: str, repo: IntakeRepository) -> RegisteredUnit | None:
    """The seller's unexpected unit `lpn`, locked; None, reported, when it is not one."""
    unit = await repo.unit_for_update(lpn)
    if unit is None or unit.seller_id != seller_id:
        ctx.raise_exception("unknown_lpn", f"LPN {lpn} is not a unit of this seller", lpn=lpn)
        return None
    if unit.quarantine_reason is not None:
        ctx.raise_exception("unknown_reference", f"LPN {lpn} is quarantined ({unit.quarantine_reason})", lpn=lpn)
        return None
    if unit.return_id is not None:
        ctx.raise_exception("unknown_reference", f"LPN {lpn} is received against return {unit.return_id}", lpn=lpn)
        return None
    return unit


async def _line(repo: IntakeRepository, rma: ReturnOrder, line_id: str) -> LineDetail | None:
    """The return's line `line_id`, read for update."""
    return next(
        (d for d in await repo.lines_for_update(rma.seller_id, rma.return_id) if d.line.line_id == line_id), None
    )


async def add_unit_to_return(ctx: Context, added: UnitAddedToReturn, repo: IntakeRepository) -> None:
    """An operator added an unexpected unit to one of the seller's returns, on one of its lines:
    the unit is received against it (and counted on the line) like any unit of that return."""
    unit = await _unexpected_unit(ctx, added.seller_id, added.lpn, repo)
    if unit is None:
        return
    rma = await repo.rma_by_id(added.seller_id, added.return_id)
    if rma is None:
        refused = f"return {added.return_id} is not one of this seller's"
    elif (line := await _line(repo, rma, added.line_id)) is None:
        refused = f"return {rma.return_id} has no line {added.line_id}"
    elif line.line.remaining <= 0:
        refused = f"line {added.line_id} of return {rma.return_id} has all its {line.line.quantity} unit(s) already"
    else:
        await repo.receive_unit(unit, rma, line.line.line_id)
        log.info(
            "unexpected_unit_added_to_return",
            seller_id=unit.seller_id,
            lpn=unit.lpn,
            return_id=rma.return_id,
            line_id=line.line.line_id,
            operator_id=added.operator_id,
        )
        ctx.emit(UNIT_RECEIVED, _received(unit, rma, line, added.event_id, added.occurred_at))
        return
    # Still unexpected, still waiting: a case of its own, for the operator to decide again.
    ctx.raise_exception("unexpected_unit", f"{refused}; LPN {added.lpn} (SKU {unit.sku}) stays parked", lpn=unit.lpn)


async def quarantine_unit(ctx: Context, quarantined: UnitQuarantined, repo: IntakeRepository) -> None:
    """An operator set an unexpected unit aside for good: it can no longer be added to a return."""
    unit = await _unexpected_unit(ctx, quarantined.seller_id, quarantined.lpn, repo)
    if unit is None:
        return
    await repo.quarantine_unit(unit, quarantined.reason, quarantined.occurred_at)
    log.info(
        "unexpected_unit_quarantined",
        seller_id=unit.seller_id,
        lpn=unit.lpn,
        reason=quarantined.reason,
        operator_id=quarantined.operator_id,
    )


async def report_unmatched_parcels(
    conn: Connection, repo: IntakeRepository, outbox: OutboxBuffer, now: datetime, waited: timedelta
) -> int:
    """Raise one `unmatched_parcel` exception for each parcel parked longer than `waited`."""
    stale = await repo.unreported_parked_scans(now - waited)
    for scan, source in stale:
        Context(conn=conn, outbox=outbox, source=source, now=now, event=scan).raise_exception(
            "unmatched_parcel",
            f"no return order with tracking number {scan.tracking_number} after {waited}; "
            "still parked, applied if its RMA arrives",
        )
    await repo.mark_reported([(scan.seller_id, scan.event_id) for scan, _ in stale], now)
    return len(stale)


def insight_periods(now: datetime) -> list[tuple[str, datetime, datetime]]:
    """The previous and the current calendar month (UTC) as (name, start, end): late scans of
    last month still count towards its insights."""
    current = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous = (current - timedelta(days=1)).replace(day=1)
    following = (current + timedelta(days=32)).replace(day=1)
    return [(f"{previous:%Y-%m}", previous, current), (f"{current:%Y-%m}", current, following)]


async def raise_insights(conn: Connection, outbox: OutboxBuffer, now: datetime) -> int:
    """Emit `returns.insights.v1` for each size that runs small or large (see
    `reports.insights`), once per seller, product, size, kind and month."""
    raised = 0
    for seller_id in await reports.sellers(conn):
        for period, start, end in insight_periods(now):
            for signal in size_signals(await reports.fit_counts(conn, seller_id, start, end)):
                event_id = uuid.uuid5(
                    INSIGHT_NAMESPACE, f"{seller_id}:{signal.sku}:{signal.size}:{signal.kind}:{period}"
                )
                if not await reports.record_insight(
                    conn, seller_id, signal.sku, signal.size, signal.kind, period, event_id
                ):
                    continue
                outbox.add(
                    INSIGHTS,
                    InsightRaised(
                        event_id=event_id,
                        occurred_at=now,
                        seller_id=seller_id,
                        period=period,
                        **signal.model_dump(
                            include={
                                "kind",
                                "sku",
                                "size",
                                "skus",
                                "size_returns",
                                "size_matching",
                                "size_share",
                                "sku_returns",
                                "sku_matching",
                                "sku_share",
                                "z_score",
                                "summary",
                            }
                        ),
                    ),
                )
                log.info(
                    "insight_raised",
                    seller_id=seller_id,
                    sku=signal.sku,
                    size=signal.size,
                    kind=signal.kind,
                    period=period,
                    event_id=str(event_id),
                )
                raised += 1
    return raised
