"""Relisting handlers: one disposition per grade (and per policy version), with the rule that
decided it."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from rebound_contracts import DispositionDecided, MessageSource, UnitGraded
from rebound_contracts.topics import DISPOSITIONS

from ..messaging.ids import derived_id
from ..messaging.outbox import OutboxBuffer
from ..messaging.processor import Context
from .domain import RelistingRepository
from .adapters import PostgresRelistingRepository
from .domain import decide

log = structlog.get_logger(__name__)


async def decide_disposition(ctx: Context, graded: UnitGraded, repo: RelistingRepository) -> None:
    """Where the unit may go, best first. The ledger places it; a newer grade decides again.
    A grade naming an LPN decided for another seller changes nothing and is reported."""
    owner = await repo.owner(graded.lpn)
    if owner is not None and owner != graded.seller_id:
        ctx.raise_exception("cross_tenant_reference", f"LPN {graded.lpn} belongs to another seller")
        return
    policy, version = await repo.policy_for(graded.seller_id)
    decision = decide(policy, graded)
    ctx.emit(
        DISPOSITIONS,
        DispositionDecided(
            event_id=derived_id(
                graded.event_id, graded.occurred_at, "disposition" if version == 0 else f"disposition:{version}"
            ),
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
        ),
    )
    repo.record(graded, version)


async def redecide_after_policy_change(pool: asyncpg.Pool, producer: str, now: datetime, limit: int = 500) -> int:
    """Decide again the units whose seller set a new policy since; the ledger moves them."""
    async with pool.acquire() as conn, conn.transaction():
        repo = PostgresRelistingRepository(conn)
        outdated = await repo.outdated_decisions(limit)
        outbox = OutboxBuffer(producer)
        source = MessageSource(topic="relisting.policy-sweep", partition=0, offset=0)
        for graded in outdated:
            ctx = Context(conn=conn, outbox=outbox, source=source, now=now, event=graded)
            await decide_disposition(ctx, graded, repo)
        await repo.flush()
        await outbox.flush(conn)
    if outdated:
        log.info("units_decided_again", units=len(outdated), reason="policy_changed")
    return len(outdated)
