"""Connector handlers: an adjustment is kept, in the batch's transaction, until the sync loop has
applied it to its marketplace (`sync.Syncer`)."""

from __future__ import annotations

from rebound_contracts import ListingRequested, StockAdjusted

from ..messaging.processor import Context
from .domain import ConnectorRepository


async def keep_adjustment(ctx: Context, adjustment: StockAdjusted, repo: ConnectorRepository) -> None:
    await repo.record(adjustment, ctx.source)


async def keep_listing_request(ctx: Context, request: ListingRequested, repo: ConnectorRepository) -> None:
    """What a key's listing should be: shown to whoever maps it (`rebound connect unmapped`) and
    in the exception of a key rejected for want of a listing."""
    await repo.request(request, ctx.source)
