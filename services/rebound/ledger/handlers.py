"""Ledger handlers: place each unit in exactly one place and keep the storefront's stock exact.

A unit is on at most one storefront key at a time. Moving it is -1 on the key it leaves before
+1 on the key it joins, in the same transaction, so no reader ever sees it offered twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg
import structlog

from rebound_contracts import (
    AdjustmentCause,
    Destination,
    DispositionDecided,
    ExchangeAllocated,
    ExchangeRequested,
    ListingRequested,
    LotContents,
    MessageSource,
    Money,
    SkippedDestination,
    StockAdjusted,
    StorefrontAck,
    UnitAllocated,
    UnitPicked,
)
from rebound_contracts.outbound import ExceptionKind
from rebound_contracts.topics import ALLOCATIONS, EXCHANGE_ALLOCATED, LISTINGS, STOCK_ADJUSTMENTS

from ..db import advisory_xact_locks
from ..messaging.outbox import OutboxBuffer
from ..messaging.processor import Context
from .domain import Counter, LedgerRepository, Unit
from .adapters import PostgresLedgerRepository
from .domain import StockKey, listing_key, lot_key, moves

log = structlog.get_logger(__name__)

SETTLED = frozenset({"sold", "exchanged", "lot"})
"""Places a unit is not moved from any more: it left stock, or it is sold as part of a lot."""
SWEEP_NAMESPACE = uuid.UUID("3d0c6a52-5f1e-4c7b-9a43-8b0f2e61d7a9")


# --- the handlers -------------------------------------------------------------------------------


async def place_unit(ctx: Context, decided: DispositionDecided, repo: LedgerRepository) -> None:
    """Place a unit by its (new) disposition: the first candidate that can take it."""
    unit = await repo.unit_for_update(decided.lpn)
    if unit is not None and unit.seller_id != decided.seller_id:
        ctx.raise_exception("cross_tenant_reference", f"LPN {decided.lpn} belongs to another seller")
        return
    # A newer grade, or the same grade decided again under a newer policy, replaces the decision.
    applied = (unit.revision, unit.decision.policy_version if unit.decision else 0) if unit else None
    if applied is not None and (decided.grade_revision, decided.policy_version) <= applied:
        log.info(
            "disposition_stale",
            lpn=decided.lpn,
            revision=decided.grade_revision,
            policy_version=decided.policy_version,
            applied=applied,
            event_id=str(decided.event_id),
        )
        return
    policy_changed = applied is not None and decided.grade_revision == applied[0]
    if unit is None:
        unit = Unit(
            lpn=decided.lpn,
            seller_id=decided.seller_id,
            sku=decided.sku,
            warehouse_id=decided.warehouse_id,
            shop_id=decided.shop_id,
            revision=0,
        )
    elif unit.place in SETTLED:
        # Regraded after it was sold, exchanged or bagged: it is not ours to move any more.
        log.info("regrade_after_unit_left", lpn=unit.lpn, place=unit.place, revision=decided.grade_revision)
        unit.revision = decided.grade_revision
        await repo.save(unit, ctx.now)
        return
    unit.revision, unit.decision = decided.grade_revision, decided
    await allocate(ctx, repo, unit, start=0, cause="policy_changed" if policy_changed else "decided")


async def apply_ack(ctx: Context, ack: StorefrontAck, repo: LedgerRepository) -> None:
    """A connector answered. Rejected or paused: block the listing key and move its units on."""
    key = StockKey(ack.seller_id, ack.channel, ack.warehouse_id, ack.sku, ack.condition)
    if not await repo.key_exists(key):
        ctx.raise_exception("unknown_reference", f"acknowledgement for {key}, which Rebound never stocked")
        return
    if ack.status == "applied":
        log.debug("storefront_applied", key=str(key), ref_event_id=str(ack.ref_event_id))
        return
    if not await repo.block(key, ack.status, ack.reason, ack.ref_event_id):
        log.info("listing_already_blocked", key=str(key), status=ack.status)
        return
    log.warning(
        "listing_blocked",
        key=str(key),
        status=ack.status,
        reason=ack.reason,
        ref_event_id=str(ack.ref_event_id),
        seller_id=ack.seller_id,
    )
    cause = "listing_rejected" if ack.status == "rejected" else "listing_paused"
    for unit in await repo.units_on_key_for_update(key):
        await allocate(
            ctx,
            repo,
            unit,
            start=(unit.candidate or 0) + 1,
            cause=cause,
            skipped=[_skip(unit, f"{key} {ack.status} by the connector: {ack.reason or 'no reason'}")],
        )


async def apply_pick(ctx: Context, pick: UnitPicked, repo: LedgerRepository) -> None:
    """The warehouse picked a unit for an order. The storefront counted the sale itself: the
    ledger goes down without a -1, or the shop would be decremented twice."""
    unit = await repo.unit_for_update(pick.lpn)
    if unit is None or unit.seller_id != pick.seller_id:
        kind: ExceptionKind = "unknown_lpn" if unit is None else "cross_tenant_reference"
        ctx.raise_exception(kind, f"picked LPN {pick.lpn} is not a unit of this seller in Rebound's stock")
        return
    if unit.warehouse_id != pick.warehouse_id or unit.place not in ("listing", "lot"):
        ctx.raise_exception(
            "unexpected_pick",
            f"LPN {pick.lpn} was picked in {pick.warehouse_id} for order "
            f"{pick.order_id}, but it is {unit.place} in {unit.warehouse_id}",
        )
        return
    if unit.place == "lot":
        sold = await repo.sell_lot(unit.lot_id or "")
        if sold is None:
            ctx.raise_exception("unexpected_pick", f"lot {unit.lot_id} of LPN {pick.lpn} was sold already")
            return
        key, lpns = sold
    else:
        assert unit.stock_key is not None
        key, lpns = unit.stock_key, [unit.lpn]
    if key.channel == pick.channel:
        counter = await repo.picked(key)
        log.info("unit_picked", lpn=pick.lpn, key=str(key), order_id=pick.order_id, available=counter.available)
    else:
        # Sold on another channel: the channel it was listed on still offers it, so it hears -1.
        counter = await repo.adjust(key, unit.shop_id, -1)
        _emit_adjustment(ctx, key, unit.shop_id, -1, counter, "sold_elsewhere", unit.lpn)
    await repo.mark_sold(lpns, ctx.now, pick.channel, _sold_price(unit, len(lpns)))


async def serve_exchange(ctx: Context, request: ExchangeRequested, repo: LedgerRepository) -> None:
    """Serve a size exchange from the exchange pool, else from sellable stock (-1 on the listing
    it is taken from, so the shop cannot sell it too), else answer unavailable."""
    unit = await repo.exchange_candidate_for_update(request.seller_id, request.warehouse_id, request.sku)
    status, source = (
        ("unavailable", None)
        if unit is None
        else ("allocated", "exchange_pool" if unit.place == "exchange_pool" else "stock")
    )
    if not await repo.record_exchange(
        request.seller_id, request.exchange_id, status, unit.lpn if unit else None, source
    ):
        log.info("exchange_already_answered", exchange_id=request.exchange_id, seller_id=request.seller_id)
        return
    if unit is not None:
        if unit.place == "listing":
            assert unit.stock_key is not None
            counter = await repo.adjust(unit.stock_key, unit.shop_id, -1)
            _emit_adjustment(ctx, unit.stock_key, unit.shop_id, -1, counter, "exchange_allocated", unit.lpn)
        unit.place, unit.stock_key, unit.pool, unit.placed_at = "exchanged", None, None, ctx.now
        await repo.save(unit, ctx.now)
    ctx.emit(
        EXCHANGE_ALLOCATED,
        ExchangeAllocated(
            event_id=uuid.uuid5(ctx.event.event_id, "exchange"),
            occurred_at=ctx.now,
            seller_id=request.seller_id,
            exchange_id=request.exchange_id,
            return_id=request.return_id,
            warehouse_id=request.warehouse_id,
            sku=request.sku,
            status=status,
            lpn=unit.lpn if unit else None,
            source=source,
            source_event_id=request.event_id,
        ),
    )


async def move_unsold(pool: asyncpg.Pool, outbox_producer: str, now: datetime, limit: int = 200) -> int:
    """Units listed longer than their destination's `unsold_after_days` move to the next
    candidate, each in a transaction of its own under its seller's allocation lock."""
    async with pool.acquire() as conn:
        stale = await PostgresLedgerRepository(conn).stale_listings(now, limit)
    moved = 0
    for lpn, seller_id, warehouse_id in stale:
        async with pool.acquire() as conn, conn.transaction():
            await advisory_xact_locks(conn, [allocation_lock(seller_id, warehouse_id)])
            repo = PostgresLedgerRepository(conn)
            unit = await repo.unit_for_update(lpn)
            if unit is None or unit.place != "listing" or unit.decision is None or unit.placed_at is None:
                continue
            days = unit.decision.candidates[unit.candidate or 0].unsold_after_days
            if days is None or (now - unit.placed_at).days < days:
                continue
            source = MessageSource(topic="ledger.unsold-sweep", partition=0, offset=0)
            trigger = unit.decision.model_copy(
                update={"event_id": uuid.uuid5(SWEEP_NAMESPACE, f"{lpn}:{unit.placed_at.isoformat()}")}
            )
            outbox = OutboxBuffer(outbox_producer)
            ctx = Context(conn=conn, outbox=outbox, source=source, now=now, event=trigger)
            await allocate(
                ctx,
                repo,
                unit,
                start=(unit.candidate or 0) + 1,
                cause="unsold",
                skipped=[_skip(unit, f"unsold after {days} days on {unit.stock_key}")],
            )
            await repo.flush()
            await outbox.flush(conn)
            moved += 1
    if moved:
        log.info("unsold_units_moved", units=moved)
    return moved


def allocation_lock(seller_id: str, warehouse_id: str) -> str:
    """Everything an event can change (keys, pools, lots) lies within one seller and warehouse."""
    return f"alloc:{seller_id}:{warehouse_id}"


# --- allocation ----------------------------------------------------------------------------------


async def allocate(
    ctx: Context,
    repo: LedgerRepository,
    unit: Unit,
    *,
    start: int,
    cause: str,
    skipped: Sequence[SkippedDestination] = (),
) -> None:
    """Take `unit` from where it is and place it on the first candidate from `start` on that can
    take it; say where it went and why the others could not."""
    decided = unit.decision
    assert decided is not None
    passed = list(skipped)
    chosen: int | None = None
    for index in range(start, len(decided.candidates)):
        why = await _unavailable(repo, unit, decided.candidates[index])
        if why is None:
            chosen = index
            break
        passed.append(SkippedDestination(candidate=index, kind=decided.candidates[index].kind, why=why))
    target = decided.candidates[chosen] if chosen is not None else None
    new_key = (
        listing_key(unit.seller_id, unit.warehouse_id, unit.sku, target)
        if target is not None and target.kind == "listing"
        else None
    )

    first_time = unit.place is None
    for key, delta in moves(unit.stock_key, new_key):
        counter = await repo.adjust(key, unit.shop_id, delta)
        kind = "unit_graded" if first_time else "unit_regraded" if cause == "decided" else "unit_reallocated"
        adjustment_id = _emit_adjustment(ctx, key, unit.shop_id, delta, counter, kind, unit.lpn)
        if delta > 0 and counter.available == 1 and target is not None and target.price is not None:
            _request_listing(ctx, key, unit, target, adjustment_id)

    unit.stock_key, unit.candidate, unit.placed_at, unit.pool, unit.lot_id = new_key, chosen, ctx.now, None, None
    unit.place = target.kind if target is not None else "held"
    if target is not None and target.kind in ("lucky_bag", "bundle_pool"):
        unit.pool = target.pool
    await repo.save(unit, ctx.now)
    if target is None:
        ctx.raise_exception(
            "no_destination",
            f"LPN {unit.lpn}: no destination of rule {decided.rule!r} can take it; held in the warehouse",
        )
    elif target.kind == "lucky_bag":
        await _maybe_form_lot(ctx, repo, unit, target)
    ctx.emit(
        ALLOCATIONS,
        UnitAllocated(
            event_id=uuid.uuid5(ctx.event.event_id, f"allocated:{unit.lpn}:{cause}:{chosen}"),
            occurred_at=ctx.now,
            seller_id=unit.seller_id,
            lpn=unit.lpn,
            sku=unit.sku,
            warehouse_id=unit.warehouse_id,
            grade=decided.grade,
            grade_revision=decided.grade_revision,
            rule=decided.rule,
            cause=cause,
            candidate=chosen,
            destination=target,
            skipped=passed,
            lot_id=unit.lot_id,
            source_event_id=ctx.event.event_id,
        ),
    )


async def _unavailable(repo: LedgerRepository, unit: Unit, candidate: Destination) -> str | None:
    """Why `candidate` cannot take `unit` now, or None when it can."""
    if candidate.kind == "listing":
        key = listing_key(unit.seller_id, unit.warehouse_id, unit.sku, candidate)
        if key == unit.stock_key:
            return None
        blocked = await repo.blocked(key)
        return f"listing {key} is blocked ({blocked})" if blocked else None
    if candidate.kind == "exchange_pool":
        if unit.place == "exchange_pool":
            return None  # it holds its slot already
        held = await repo.count_in_exchange_pool(unit.seller_id, unit.warehouse_id, unit.sku)
        quota = candidate.quota or 0
        return f"exchange pool for {unit.sku} is full ({held}/{quota})" if held >= quota else None
    return None


async def _maybe_form_lot(ctx: Context, repo: LedgerRepository, unit: Unit, bag: Destination) -> None:
    """Once `lot_size` units wait in the pool, they become one lot listed with quantity 1; they
    are no longer offered alone (they never were: pooled units are on no listing)."""
    size = bag.lot_size or 0
    if size < 2:
        return  # a bag without a lot size (policies require one) waits for an operator
    pooled = await repo.pooled_for_update(unit.seller_id, unit.warehouse_id, bag.pool or "", size)
    if len(pooled) < size:
        return
    lot_id = uuid.uuid5(ctx.event.event_id, f"lot:{unit.lpn}").hex[:16]
    key = lot_key(unit.seller_id, unit.warehouse_id, lot_id, bag)
    lpns = [u.lpn for u in pooled]
    await repo.add_lot(lot_id, unit.seller_id, unit.warehouse_id, bag.pool or "", key, lpns)
    for member in pooled:
        member.place, member.lot_id = "lot", lot_id
        if member.lpn == unit.lpn:
            unit.place, unit.lot_id = "lot", lot_id
        await repo.save(member, ctx.now)
    counter = await repo.adjust(key, unit.shop_id, +1)
    adjustment_id = _emit_adjustment(ctx, key, unit.shop_id, +1, counter, "lot_formed", unit.lpn)
    skus = sorted({u.sku for u in pooled})
    assert bag.price is not None
    ctx.emit(
        LISTINGS,
        ListingRequested(
            event_id=uuid.uuid5(adjustment_id, "listing"),
            occurred_at=ctx.now,
            seller_id=unit.seller_id,
            action="upsert",
            shop_id=unit.shop_id,
            channel=key.channel,
            warehouse_id=key.warehouse_id,
            sku=key.sku,
            condition="open_box",
            price=bag.price,
            quantity_limit=1,
            condition_note=f"Lucky bag: {len(lpns)} returned items, each inspected and graded",
            lot=LotContents(lot_id=lot_id, lpns=lpns, skus=skus),
        ),
    )
    log.info("lot_formed", lot_id=lot_id, seller_id=unit.seller_id, units=len(lpns), key=str(key))


def _emit_adjustment(
    ctx: Context, key: StockKey, shop_id: str, delta: int, counter: Counter, kind: str, lpn: str
) -> uuid.UUID:
    adjustment_id = uuid.uuid5(ctx.event.event_id, f"{lpn}:{key}:{delta}")
    ctx.emit(
        STOCK_ADJUSTMENTS,
        StockAdjusted(
            event_id=adjustment_id,
            adjustment_id=adjustment_id,
            occurred_at=ctx.now,
            seller_id=key.seller_id,
            shop_id=shop_id,
            channel=key.channel,
            warehouse_id=key.warehouse_id,
            sku=key.sku,
            condition=key.condition,
            delta=delta,
            available=counter.available,
            sequence=counter.sequence,
            picked=counter.picked,
            cause=AdjustmentCause(kind=kind, lpn=lpn, source_event_id=ctx.event.event_id),
        ),
    )
    return adjustment_id


def _request_listing(ctx: Context, key: StockKey, unit: Unit, target: Destination, adjustment_id: uuid.UUID) -> None:
    """A listing of its own (open box, another marketplace, a discount) is asked for when its
    first unit arrives; the original listing already exists and keeps its price."""
    decided = unit.decision
    assert decided is not None and target.price is not None
    graded = "; ".join(decided.reasons[1:]) or f"graded {decided.grade}"
    note = (
        f"Open box: inspected and {graded}" if key.condition == "open_box" else f"New: returned, inspected and {graded}"
    )
    ctx.emit(
        LISTINGS,
        ListingRequested(
            event_id=uuid.uuid5(adjustment_id, "listing"),
            occurred_at=ctx.now,
            seller_id=unit.seller_id,
            action="upsert",
            shop_id=unit.shop_id,
            channel=key.channel,
            warehouse_id=key.warehouse_id,
            sku=key.sku,
            condition=key.condition,
            price=target.price,
            condition_note=note,
            listing_sku=target.listing_sku,
            marketplace_condition=target.marketplace_condition,
            marketplace_condition_id=target.marketplace_condition_id,
        ),
    )


def _sold_price(unit: Unit, units_sold: int) -> Money:
    """The price of the destination the unit was sold from (the RMA line's unit price on the
    original listing, which keeps its own price), shared evenly among a lot's units."""
    assert unit.decision is not None
    offered = unit.decision.candidates[unit.candidate or 0].price or unit.decision.unit_price
    share = (offered.amount / units_sold).quantize(Decimal("0.0001"))
    return Money(amount=share, currency=offered.currency)


def _skip(unit: Unit, why: str) -> SkippedDestination:
    assert unit.decision is not None
    index = unit.candidate or 0
    return SkippedDestination(candidate=index, kind=unit.decision.candidates[index].kind, why=why)
