"""Connector handlers: an adjustment is kept, in the batch's transaction, until the sync loop has
applied it to its marketplace (`sync.Syncer`)."""

from __future__ import annotations

from rebound_contracts import StockAdjusted

from ..messaging.processor import Context
from .adapters import ConnectorRepository


async def keep_adjustment(ctx: Context, adjustment: StockAdjusted, repo: ConnectorRepository) -> None:
    await repo.record(adjustment, ctx.source)
