"""Relisting handlers: one disposition per grade, with the rule that decided it."""

from __future__ import annotations

import uuid

from rebound_contracts import DispositionDecided, UnitGraded
from rebound_contracts.topics import DISPOSITIONS

from ..messaging.processor import Context
from .adapters import RelistingRepository
from .domain import decide


async def decide_disposition(ctx: Context, graded: UnitGraded, repo: RelistingRepository) -> None:
    """Where the unit may go, best first. The ledger places it; a newer grade decides again."""
    policy, version = await repo.policy_for(graded.seller_id)
    decision = decide(policy, graded)
    ctx.emit(DISPOSITIONS, DispositionDecided(
        event_id=uuid.uuid5(graded.event_id, "disposition"),
        occurred_at=ctx.now,
        seller_id=graded.seller_id,
        lpn=graded.lpn,
        sku=graded.sku,
        grade=graded.grade,
        grade_revision=graded.revision,
        warehouse_id=graded.warehouse_id,
        shop_id=graded.shop_id,
        channel=graded.channel,
        unit_price=graded.unit_price,
        policy_version=version,
        rule=decision.rule,
        reasons=decision.reasons,
        candidates=decision.candidates,
        source_event_id=graded.event_id,
    ))
