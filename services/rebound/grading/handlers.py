"""Grading handlers: one async function per consumed message type."""

from __future__ import annotations

import structlog

from rebound_contracts import UnitGraded, UnitInspected, UnitReceived, UnitRefurbished
from rebound_contracts.topics import UNIT_GRADED

from ..messaging.ids import derived_id
from ..messaging.processor import Context
from .domain import GradingRepository, UnitState
from .domain import counted_refurbishment, decide_grade

log = structlog.get_logger(__name__)


async def record_receipt(ctx: Context, unit: UnitReceived, repo: GradingRepository) -> None:
    """Intake registered a unit; grade it now if its inspection came first."""
    state = await repo.merge_receipt(unit)
    if state is None:
        state = await repo.take_over(unit)
        if state is None:
            ctx.raise_exception("cross_tenant_reference", f"LPN {unit.lpn} is registered to another seller")
            return
        ctx.raise_exception(
            "cross_tenant_reference",
            f"LPN {unit.lpn} had inspection data from another seller; it was discarded",
        )
    await regrade(ctx, repo, state)


async def grade_unit(ctx: Context, inspection: UnitInspected, repo: GradingRepository) -> None:
    """Grade a unit from its inspection. A later inspection of the same LPN supersedes this one."""
    state = await repo.merge_inspection(inspection)
    if state is None:
        if await repo.owner(inspection.lpn) != inspection.seller_id:
            ctx.raise_exception("cross_tenant_reference", f"LPN {inspection.lpn} belongs to another seller")
        else:
            log.info(
                "inspection_superseded",
                lpn=inspection.lpn,
                event_id=str(inspection.event_id),
                seller_id=inspection.seller_id,
            )
        return
    await regrade(ctx, repo, state)


async def apply_refurbishment(ctx: Context, work: UnitRefurbished, repo: GradingRepository) -> None:
    """Refurbishment after the inspection in force can lift a grade (a B unit whose only flaw was
    its packaging becomes A); work done before that inspection is already in what it saw."""
    state = await repo.merge_refurbishment(work)
    if state is None:
        ctx.raise_exception("cross_tenant_reference", f"LPN {work.lpn} belongs to another seller")
        return
    await regrade(ctx, repo, state)


async def regrade(ctx: Context, repo: GradingRepository, state: UnitState) -> None:
    """Decide the grade once both the receipt and an inspection are known; emit it when it changed."""
    if state.received is None or state.checks is None:
        log.debug(
            "grading_parked",
            lpn=state.lpn,
            seller_id=state.seller_id,
            waiting_for="receipt" if state.received is None else "inspection",
        )
        return
    unit = state.received
    rules = await repo.rules_for(unit.seller_id)
    refurbished = counted_refurbishment(state.refurbishments, state.inspected_at)
    decision = decide_grade(state.checks, refurbished, rules.for_sku(unit.sku))
    if (decision.grade, decision.reasons) == (state.grade, state.reasons):
        return
    revision = state.revision + 1
    await repo.record_grade(unit.lpn, decision.grade, decision.reasons, revision)
    ctx.emit(
        UNIT_GRADED,
        UnitGraded(
            event_id=derived_id(ctx.event.event_id, ctx.event.occurred_at, f"graded:{unit.lpn}:{revision}"),
            occurred_at=ctx.now,
            seller_id=unit.seller_id,
            lpn=unit.lpn,
            sku=unit.sku,
            return_id=unit.return_id,
            grade=decision.grade,
            reasons=list(decision.reasons),
            revision=revision,
            warehouse_id=unit.warehouse_id,
            shop_id=unit.shop_id,
            channel=unit.channel,
            unit_price=unit.unit_price,
            source_event_id=ctx.event.event_id,
        ),
    )
