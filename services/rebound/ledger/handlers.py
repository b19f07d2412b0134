"""Ledger handlers: one async function per consumed message type."""

from __future__ import annotations

import uuid

import structlog

from rebound_contracts import AdjustmentCause, ListingRequested, Money, StockAdjusted, UnitGraded
from rebound_contracts.topics import LISTINGS, STOCK_ADJUSTMENTS

from ..messaging.processor import Context
from .adapters import LedgerRepository
from .domain import moves, open_box_price, placement

log = structlog.get_logger(__name__)


async def adjust_stock(ctx: Context, graded: UnitGraded, repo: LedgerRepository) -> None:
    """Put a newly sellable unit on its storefront key, or move it when it was regraded."""
    current = await repo.placement_for_update(graded.lpn)
    if current is not None and current.seller_id != graded.seller_id:
        ctx.raise_exception("cross_tenant_reference", f"LPN {graded.lpn} belongs to another seller")
        return
    if current is not None and graded.revision <= current.revision:
        log.info("grade_revision_stale", lpn=graded.lpn, revision=graded.revision,
                 applied_revision=current.revision, event_id=str(graded.event_id))
        return
    target = placement(graded.seller_id, graded.channel, graded.warehouse_id, graded.sku, graded.grade)
    kind = "unit_graded" if current is None else "unit_regraded"
    for key, delta in moves(current.stock_key if current else None, target):
        counter = await repo.adjust(key, graded.shop_id, delta)
        adjustment_id = uuid.uuid5(graded.event_id, f"{key}:{delta}")
        ctx.emit(STOCK_ADJUSTMENTS, StockAdjusted(
            event_id=adjustment_id,
            adjustment_id=adjustment_id,
            occurred_at=ctx.now,
            seller_id=graded.seller_id,
            shop_id=graded.shop_id,
            channel=key.channel,
            warehouse_id=key.warehouse_id,
            sku=key.sku,
            condition=key.condition,
            delta=delta,
            available=counter.available,
            sequence=counter.sequence,
            cause=AdjustmentCause(kind=kind, lpn=graded.lpn, source_event_id=graded.event_id),
        ))
        if key.condition == "open_box" and delta > 0 and counter.available == 1:
            ctx.emit(LISTINGS, ListingRequested(
                event_id=uuid.uuid5(adjustment_id, "listing"),
                occurred_at=ctx.now,
                seller_id=graded.seller_id,
                action="upsert",
                shop_id=graded.shop_id,
                channel=key.channel,
                warehouse_id=key.warehouse_id,
                sku=key.sku,
                condition="open_box",
                price=Money(amount=open_box_price(graded.unit_price.amount), currency=graded.unit_price.currency),
                condition_note="Open box: inspected and graded B (minor flaw); "
                + ", ".join(graded.reasons),
            ))
    await repo.place(graded.lpn, graded.seller_id, target, graded.revision)
