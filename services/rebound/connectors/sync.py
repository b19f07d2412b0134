"""The connectors' sync loop: each listing key with adjustments to apply gets them, in sequence
order, coalesced into one marketplace call, exactly once.

Per key, under a session advisory lock (one replica at a time; the lock goes with a dead
connector's connection):
1. A write left in doubt by a connector that died is settled first: sent again with its
   idempotency key where the marketplace takes one, elsewhere read back and set to the number the
   delta gives whichever happened (`domain.settle`); a number no write explains (someone else
   wrote) waits for an operator. A write whose sales check is pending is checked.
2. The next run of adjustments is taken (a gap is waited for), the marketplace's number read with
   the sales it already counts, and the intent (number seen, number to write) committed.
3. The write; then, in one transaction, the key's progress, the acknowledgement
   (`storefront.acks.v1`) and any exception, through the outbox, with the write's sales check
   where the marketplace has no compare-and-set; the check runs at once (`_check`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import asyncpg
import structlog

from rebound_contracts import ExceptionRaised, StorefrontAck
from rebound_contracts.outbound import ExceptionKind
from rebound_contracts.topics import ACKS, EXCEPTIONS

from ..messaging import inbox
from ..messaging.outbox import OutboxBuffer
from .adapters import IN_DOUBT, PostgresConnectorRepository, ack_id
from .domain import ConnectorRepository, Intent, Listing, Pending, Requested
from .domain import TokenBucket, drift, next_run, settle, target
from .marketplace import (
    Marketplace,
    MarketplaceError,
    NotYet,
    Paused,
    Refused,
    Stale,
    Throttled,
    Unauthorized,
    Unavailable,
)
from ..db import Connection

log = structlog.get_logger(__name__)

RESTORE_ATTEMPTS = 3
READ_ATTEMPTS = 3
FAULT_KILL_AFTER_WRITE = "REBOUND_FAULT_CONNECTOR_KILL_AFTER_WRITE"


def _fault_kill_after_write() -> int:
    """The fault-injection switch: the process kills itself after its N-th marketplace write,
    before booking it (0: off). Not a setting."""
    nth = int(os.environ.get(FAULT_KILL_AFTER_WRITE) or 0)
    if nth < 0:
        raise ValueError(f"{FAULT_KILL_AFTER_WRITE}={nth}: the number of a write, or 0 (off)")
    return nth


LOCKS = 0x5EB0_0C00  # advisory lock space of listing keys: hashtextextended(key, LOCKS)

MarketplaceFactory = Callable[[ConnectorRepository, Listing], Awaitable[Marketplace | None]]
"""The marketplace of a listing's shop (None: the shop is not connected)."""


@dataclass
class Syncer:
    pool: asyncpg.Pool
    producer: str
    marketplace_of: MarketplaceFactory
    rate: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Requests a second and burst per channel; a key's shop waits its turn in its bucket."""
    run_limit: int = 500
    clock: Callable[[], float] = time.time
    buckets: dict[tuple[str, str], TokenBucket] = field(default_factory=dict)
    writes: int = 0
    kill_after_write: int = field(default_factory=_fault_kill_after_write)
    flying: dict[str, asyncio.Task[bool]] = field(default_factory=dict)
    """Keys being synced now, by this process."""
    moved: int = 0
    landed: Callable[[], None] | None = None
    """Called when a key's sync ends: another key of its shop may go now."""

    async def round(self, limit: int = 256, concurrency: int = 16, per_shop: int = 2, *, wait: bool = True) -> int:
        """Start syncing the keys due now, at most `concurrency` keys in flight and `per_shop` of
        each shop (a shop that its rate limit holds back does not keep the others waiting).
        `wait`: until they are done; else the keys go on in the background, while the next
        rounds start others. Returns how many keys moved since the last round."""
        # A key holds a connection for its whole sync, marketplace calls included: at most as
        # many keys at once as the pool has connections (the connectors' own pool, not the
        # batch consumer's), less two for renewing a shop's tokens meanwhile and one for the
        # reconciliation.
        cap = max(1, min(concurrency, self.pool.get_max_size() - 3))
        if len(self.flying) < cap:
            async with self.pool.acquire() as conn:
                keys = await PostgresConnectorRepository(conn).due(limit, per_shop, busy=list(self.flying))
            per = Counter(_shop(key) for key in self.flying)
            for key in keys:
                if len(self.flying) >= cap:
                    break
                if per[_shop(key)] >= per_shop:
                    continue
                per[_shop(key)] += 1
                task = self.flying[key] = asyncio.create_task(self.sync_key(key))
                task.add_done_callback(functools.partial(self._landed, key))
        if wait:
            await asyncio.gather(*self.flying.values())
        moved, self.moved = self.moved, 0
        return moved

    def _landed(self, key: str, task: asyncio.Task[bool]) -> None:
        self.flying.pop(key, None)
        if self.landed is not None:
            self.landed()
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("storefront_sync_failed", key=key, error=f"{type(error).__name__}: {error}")
        elif task.result():
            self.moved += 1

    async def sync_key(self, key: str) -> bool:
        return await self._locked(key, self._sync)

    async def reconcile(self, older_than_s: float, limit: int = 64) -> int:
        """Compare the idle keys left uncompared for `older_than_s` with their marketplaces, one at
        a time, with their shops' spare requests only (a sync never waits for one); returns how
        many drifted."""
        async with self.pool.acquire() as conn:
            keys = await PostgresConnectorRepository(conn).idle(limit, older_than_s)
        drifted = 0
        for key in keys:
            drifted += await self._locked(key, self._reconcile)
        return drifted

    def _bucket(self, listing: Listing) -> TokenBucket:
        """The rate limit of the listing's shop."""
        return self.buckets.setdefault(
            (listing.channel, listing.shop_id), TokenBucket(*self.rate.get(listing.channel, (10.0, 10.0)))
        )

    async def _locked(self, key: str, work: Callable[[Connection, str], Awaitable[bool]]) -> bool:
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCKS, key):
                return False  # another replica has it
            try:
                return await work(conn, key)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCKS, key)

    async def _sync(self, conn: Connection, key: str) -> bool:
        repo = PostgresConnectorRepository(conn)
        listing = await repo.listing(key)
        if listing is None or listing.blocked is not None:
            return False
        pending = await repo.pending(key, listing.applied_through, self.run_limit)
        market = await self.marketplace_of(repo, listing)
        if market is None:
            await repo.touch(key)
            log.warning("shop_not_connected", key=key, channel=listing.channel, shop_id=listing.shop_id)
            return False
        if listing.ids is None:
            if pending:
                await self._refuse(
                    conn,
                    repo,
                    listing,
                    pending,
                    "unmapped",
                    "unmapped_listing",
                    f"{key} is not mapped to a {listing.channel} listing{_to_create(listing)}: `rebound connect map`",
                )
            return False
        bucket = self._bucket(listing)
        if bucket.blocked_until > self.clock() + 1.0:
            await repo.touch(key)  # the shop is paused (throttled or not answering): to the back of the queue
            return False
        planned: Intent | None = None  # the write this sync plans, while it is not sent
        run = None
        try:
            if listing.intent is not None:
                finish = self._check if listing.intent.landed else self._resolve
                settled = await finish(conn, repo, listing, market, pending, bucket)
                if settled is None:
                    return False
                listing = settled
            priced = listing.unpriced
            if priced:  # before the quantity: no unit is offered at a price the listing no longer has
                listing = await self._price(conn, repo, listing, market, bucket)
            run = next_run(listing.applied_through, [p.adjustment for p in pending], self.run_limit)
            if run is None:
                return priced  # nothing else to do, or a gap: wait for the adjustment that fills it
            read_at = int(self.clock())
            # The write's tokens are taken with the reads', and the check's with them where there
            # is one: nothing waits between the read and the write, or between the write and the
            # check that takes back a sale it overwrote.
            check_calls = 0 if market.compare_and_set else 2
            ids = listing.ids
            assert ids is not None  # mapped: an unmapped listing returned above
            before, seen = await self._read(market, ids, read_at, bucket, then=1 + check_calls)
            target_ = target(seen, run.delta - listing.owed, market.maximum)
            planned = Intent(
                first=run.first,
                last=run.last,
                seen=seen,
                written=target_.quantity,
                at=read_at,
                sales_before=tuple(sorted(before)),
                owed=target_.short,
            )
            await repo.plan(key, planned)
            await market.set_quantity(ids, target_.quantity, seen=seen, key=intent_key(key, planned))
            self._wrote(key)
            written = replace(planned, written_at=self.clock())
            planned = None
            bucket.answered()
            done = [p for p in pending if run.first <= p.adjustment.sequence <= run.last]
            pending = [p for p in pending if p.adjustment.sequence > run.last]
            check = None if market.compare_and_set else written
            # The check's first read goes out with the bookkeeping, not after it: an overwritten
            # sale shows one unit too many on the shop until the check restores it.
            probe = None if check is None else asyncio.ensure_future(self._probe(market, ids))
            try:
                await self._done(conn, repo, listing, done, target_.short, check, owed=target_.short)
            finally:
                probed = await probe if probe is not None else None
            log.debug(
                "storefront_applied",
                key=key,
                first=run.first,
                last=run.last,
                delta=run.delta,
                seen=seen,
                written=target_.quantity,
            )
            if check is not None:
                await self._check(
                    conn,
                    repo,
                    replace(listing, applied_through=run.last, intent=check, owed=target_.short, last=done[-1]),
                    market,
                    pending,
                    bucket,
                    prepaid=check_calls,
                    probed=probed,
                )
            return True
        except Stale as error:
            log.info("storefront_stale", key=key, error=str(error))
        except NotYet as error:
            await repo.wait(key, error.retry_after_s)
            log.info("storefront_not_yet", key=key, error=str(error), retry_after_s=error.retry_after_s)
        except Throttled as error:
            bucket.back_off(self.clock(), error.retry_after_s)
            log.info("storefront_throttled", key=key, retry_after_s=error.retry_after_s)
        except Unavailable as error:
            pause = bucket.failed(self.clock())
            log.warning("storefront_unavailable", key=key, error=str(error), shop_paused_s=pause)
            await repo.touch(key)
            return False  # a write planned here stays in doubt: it may have landed
        except Unauthorized as error:
            # The shop cannot be written at all: not the listing's fault, so no `rejected`. The key
            # waits until the shop is connected again (`rebound connect`), reported once.
            async with conn.transaction():
                await repo.block(key, f"unauthorized: {error}"[:500])
                await self._report(conn, listing, pending, "storefront_unauthorized", str(error), transaction=False)
            return False
        except Refused as error:
            if planned is not None:
                await repo.forget_intent(key)  # refused: nothing was written
            refused = [p for p in pending if run is None or p.adjustment.sequence <= run.last]
            status = "paused" if isinstance(error, Paused) else "rejected"
            await self._refuse(conn, repo, listing, refused, f"{status}: {error}", None, str(error), status=status)
            return False
        if planned is not None:
            await repo.forget_intent(key)  # refused before it was sent: nothing was written
        return False

    async def _read(
        self, market: Marketplace, ids: Mapping[str, str], since: int, bucket: TokenBucket, then: int
    ) -> tuple[frozenset[str], int]:
        """The listing's number, and its sales since `since` made before it was read. A sale
        between two reads of the orders around the number's read may be either: the reads go
        again until none fell between (then the sales are exactly those the number counts), or
        the first read's are taken, the others counted as later (a check then takes one unit
        too many off the listing, never leaves a sale overwritten). The tokens of the `then`
        requests that follow (the write) are taken with the reads'."""
        for attempt in range(READ_ATTEMPTS):
            await self._take(bucket, 3 + then)
            first = await market.sales_since(ids, since)
            seen = await market.quantity(ids)
            second = await market.sales_since(ids, since)
            if first == second:
                break
            if attempt < READ_ATTEMPTS - 1:
                bucket.refund(then)
        return first, seen

    async def _price(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        market: Marketplace,
        bucket: TokenBucket,
    ) -> Listing:
        """The latest listing request's price on the marketplace. A refusal is reported
        (`storefront_listing_refused`, with the marketplace's message) and not tried again until
        a new request: the listing keeps its price, and its quantity moves."""
        assert listing.requested is not None and listing.ids is not None
        request = listing.requested.event
        await self._take(bucket)
        try:
            await market.set_price(listing.ids, request.price.amount, request.price.currency)
        except Refused as error:
            async with conn.transaction():
                await repo.priced(listing.key, request.event_id)
                detail = (
                    f"{listing.key}: the marketplace refused the price {request.price.amount} "
                    f"{request.price.currency}: {error}"
                )
                log.warning("storefront_price_refused", key=listing.key, error=str(error))
                outbox = OutboxBuffer(self.producer)
                outbox.add(EXCEPTIONS, _exception(listing.requested, "storefront_listing_refused", detail))
                await outbox.flush(conn)
        else:
            await repo.priced(listing.key, request.event_id)
            log.info(
                "storefront_priced", key=listing.key, price=str(request.price.amount), currency=request.price.currency
            )
        return replace(listing, priced=request.event_id)

    async def _reconcile(self, conn: Connection, key: str) -> bool:
        """The key's number against its baseline: the last write settled, less the sales since. A
        difference is drift (someone else wrote, or the marketplace lost a sale), reported once
        as `storefront_drift` with both views; the number found is the baseline from then on."""
        repo = PostgresConnectorRepository(conn)
        listing = await repo.listing(key)
        if (
            listing is None
            or listing.blocked is not None
            or listing.intent is not None
            or listing.ids is None
            or listing.last is None
        ):
            return False  # it moved since it was found idle
        market = await self.marketplace_of(repo, listing)
        if market is None:
            return False
        bucket = self._bucket(listing)
        if bucket.wait(self.clock(), 3) > 0:
            return False  # the shop has no spare requests now: next round
        baseline = listing.baseline
        since = baseline.at if baseline is not None else int(self.clock())
        try:
            observed = await self._observe(market, listing.ids, since, bucket)
        except NotYet:
            return False  # its sales are not known that far yet: next round
        except Throttled as error:
            bucket.back_off(self.clock(), error.retry_after_s)
            return False
        except Unavailable:
            bucket.failed(self.clock())
            return False
        except (Unauthorized, Refused, Stale) as error:
            log.warning("storefront_reconcile_failed", key=key, error=str(error))
            return False
        bucket.answered()
        if observed is None:
            await repo.reconciled(key)  # selling as it is read: next time round
            return False
        sales, now = observed
        if baseline is None:  # a number set by hand: taken as found
            await repo.reconciled(
                key,
                Intent(
                    first=listing.applied_through,
                    last=listing.applied_through,
                    seen=now,
                    written=now,
                    at=since,
                    sales_before=tuple(sorted(sales)),
                ),
            )
            return False
        sold = len(sales - set(baseline.sales_before))
        off = drift(baseline.written, sold, now)
        if off == 0:
            await repo.reconciled(key)
            return False
        ledger = listing.last.event
        detail = (
            f"{key}: the marketplace shows {now}, the connector's last write of {baseline.written} less the "
            f"{sold} unit(s) sold since leaves {max(baseline.written - sold, 0)} ({off:+d}"
            f"{': units Rebound never offered are for sale' if off > 0 else ': units are hidden'}); the "
            f"ledger has {ledger.available} available and {ledger.picked} picked through adjustment "
            f"{ledger.sequence}. Someone else changed the quantity: set it right on the marketplace; the "
            "connector applies its next deltas onto the number it finds"
        )
        log.error(
            "storefront_drift",
            key=key,
            marketplace=now,
            written=baseline.written,
            sold=sold,
            drift=off,
            available=ledger.available,
            picked=ledger.picked,
        )
        async with conn.transaction():
            await repo.reconciled(key, replace(baseline, written=now, sales_before=tuple(sorted(sales))))
            await self._report(
                conn,
                listing,
                [],
                "storefront_drift",
                detail,
                transaction=False,
                event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"rebound:drift:{key}:{self.clock()}"),
            )
        return True

    async def _observe(
        self, market: Marketplace, ids: Mapping[str, str], since: int, bucket: TokenBucket
    ) -> tuple[frozenset[str], int] | None:
        """The listing's number and the sales since `since` it counts (the orders read on both
        sides of it agree), or None while a sale keeps falling between the reads."""
        for _ in range(READ_ATTEMPTS):
            await self._take(bucket, 3)
            first = await market.sales_since(ids, since)
            now = await market.quantity(ids)
            second = await market.sales_since(ids, since, known_at=self.clock())
            if first == second:
                return second, now
        return None

    async def _check(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        market: Marketplace,
        pending: list[Pending],
        bucket: TokenBucket,
        prepaid: int = 0,
        probed: tuple[int, float] | None = None,
    ) -> Listing | None:
        """Without compare-and-set, a sale the marketplace made between the read and the write is
        overwritten by it. Its orders tell: the number must be at most what was written less what
        sold since the read; if it is more, that is written, and checked in turn. The number is
        read before the sales (a sale in between makes it look higher, never hides an overwritten
        one), and kept in the intent while the sales up to it are not known yet (nothing else of
        a pass is stored: a pass cut short starts again). The key is returned once its number is
        right; None while sales are still coming in."""
        intent = listing.intent
        assert intent is not None and intent.written_at is not None and listing.ids is not None
        kept = intent.probe_at is not None  # a probe stored by an earlier pass
        if probed is not None and not kept:  # read already, with the write's bookkeeping
            intent = replace(intent, probe_now=probed[0], probe_at=probed[1])
        # `prepaid`: tokens taken already for this pass's reads (and its write, counted third)
        for _ in range(RESTORE_ATTEMPTS):  # a restoring write has a window of its own
            if intent.probe_at is None:
                await self._take(bucket, 1 - min(prepaid, 1))
                intent = replace(intent, probe_now=await market.quantity(listing.ids), probe_at=self.clock())
            assert intent.probe_now is not None and intent.probe_at is not None
            await self._take(bucket, 2 - max(prepaid - 1, 0))  # the sales, and the write they may call for
            prepaid = 0
            try:
                sold = await market.sales_since(listing.ids, intent.at, known_at=intent.probe_at) - set(
                    intent.sales_before
                )
            except NotYet:
                if not kept:
                    await repo.plan(listing.key, intent)  # the number read waits for its sales
                raise
            now, expected = intent.probe_now, max(intent.written - len(sold), 0)
            log.debug(
                "storefront_checked",
                key=listing.key,
                written=intent.written,
                sold=len(sold),
                now=now,
                expected=expected,
            )
            if now <= expected:
                bucket.refund(1)
                oversold = len(sold) - intent.written
                if oversold > listing.owed:
                    # A buyer bought an overwritten unit before it was taken back: the key's next
                    # unit goes to that order.
                    await self._oversold(conn, repo, listing, pending, oversold)
                await repo.settled(listing.key)
                return replace(listing, intent=None, baseline=intent, owed=max(listing.owed, oversold))
            # The check itself does not change: whatever this write overwrites in turn is a sale
            # since the same read, found on the next pass.
            intent = replace(intent, written_at=self.clock(), probe_now=None, probe_at=None)
            if kept:  # the stored number is not the listing's any more
                await repo.plan(listing.key, intent)
                kept = False
            # Its check follows at once: an overwritten unit is on offer until then.
            await self._take(bucket, 4)
            prepaid = 3
            await market.set_quantity(listing.ids, expected, seen=now)
            self._wrote(listing.key)
            log.warning("storefront_sales_restored", key=listing.key, sold=len(sold), now=now, restored=expected)
        log.warning("storefront_still_selling", key=listing.key, checks=RESTORE_ATTEMPTS)
        return None

    async def _probe(self, market: Marketplace, ids: Mapping[str, str]) -> tuple[int, float] | None:
        """The listing's number and when it was read; None when the marketplace did not say (the
        check reads it again)."""
        try:
            return await market.quantity(ids), self.clock()
        except MarketplaceError as error:
            log.info("storefront_probe_failed", error=str(error))
            return None

    async def _resolve(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        market: Marketplace,
        pending: list[Pending],
        bucket: TokenBucket,
    ) -> Listing | None:
        """The listing once its write in doubt is settled, or None when an operator must decide.

        Where the marketplace takes an idempotency key, the same write goes again with the same
        key: it lands once (a number moved since makes it stale: nothing landed, plan again).
        Elsewhere the listing is read back, its number first and then the sales since the first
        read (a sale in between is one no write overwrote), and set to `domain.settle`'s number:
        the run is applied either way, and checked as any write is."""
        intent = listing.intent
        assert intent is not None and listing.ids is not None
        done = [p for p in pending if intent.first <= p.adjustment.sequence <= intent.last]
        if market.idempotent:
            await self._take(bucket)
            try:
                await market.set_quantity(
                    listing.ids, intent.written, seen=intent.seen, key=intent_key(listing.key, intent)
                )
            except Stale:
                log.info("storefront_in_doubt_resolved", key=listing.key, landed=False, written=intent.written)
                await repo.forget_intent(listing.key)
                return await repo.listing(listing.key)
            log.info("storefront_in_doubt_resolved", key=listing.key, landed=True, written=intent.written)
            await self._applied(conn, repo, listing, done, intent.last, None, owed=intent.owed)
            return await repo.listing(listing.key)
        if intent.probe_at is None:  # kept: a marketplace may not know the sales up to it yet
            await self._take(bucket)
            intent = replace(intent, probe_now=await market.quantity(listing.ids), probe_at=self.clock())
            await repo.plan(listing.key, intent)
        assert intent.probe_now is not None
        await self._take(bucket, 2)  # the sales, and the write that settles
        sold = await market.sales_since(listing.ids, intent.at, known_at=intent.probe_at) - set(intent.sales_before)
        now = intent.probe_now
        settled = settle(intent.written, intent.seen, len(sold), now)
        log.info(
            "storefront_in_doubt_resolved",
            key=listing.key,
            written=intent.written,
            seen=intent.seen,
            sold=len(sold),
            now=now,
            settled=settled,
        )
        if settled is None:
            async with conn.transaction():
                await repo.block(listing.key, IN_DOUBT)
                await self._report(
                    conn,
                    listing,
                    pending,
                    "storefront_in_doubt",
                    f"{listing.key}: a write of {intent.written} over {intent.seen} may or may not "
                    f"have landed, and {now} is neither ({len(sold)} sold since): someone else wrote; "
                    "set the quantity, then unblock the key",
                    transaction=False,
                )
            return None
        # Written whatever `now` says: a sale after it was read may have moved the number already.
        # Before the run is booked: if this write fails too, the next try settles it again.
        await market.set_quantity(listing.ids, settled, seen=now)
        self._wrote(listing.key)
        check = replace(intent, written_at=self.clock(), probe_now=None, probe_at=None)
        await self._applied(conn, repo, listing, done, intent.last, check, owed=intent.owed)
        return await self._check(
            conn,
            repo,
            replace(listing, applied_through=intent.last, intent=check, last=done[-1] if done else listing.last),
            market,
            pending,
            bucket,
        )

    async def _oversold(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        pending: list[Pending],
        oversold: int,
    ) -> None:
        log.error("storefront_oversold", key=listing.key, units=oversold)
        async with conn.transaction():
            await repo.owe(listing.key, oversold)
            await self._report(
                conn,
                listing,
                pending,
                "storefront_short",
                f"{listing.key}: the marketplace sold {oversold} unit(s) more than were offered (an "
                "overwritten sale sold again before it was taken back): the key's next units go to "
                "those orders",
                transaction=False,
                event_id=uuid.uuid5(
                    uuid.NAMESPACE_URL, f"rebound:oversold:{listing.key}:{listing.applied_through}:{oversold}"
                ),
            )

    async def _applied(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        done: list[Pending],
        through: int,
        check: Intent | None,
        owed: int,
    ) -> None:
        if done:
            await self._done(conn, repo, listing, done, owed, check, owed=owed)
        else:  # applied and acknowledged before: only the progress was not booked
            await repo.applied(listing.key, through, check, owed)

    async def _done(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        done: list[Pending],
        short: int,
        check: Intent | None = None,
        owed: int | None = None,
    ) -> None:
        outbox = OutboxBuffer(self.producer)
        last = done[-1]
        outbox.add(ACKS, _ack(listing.key, last, "applied", ""))
        async with conn.transaction():
            await repo.applied(listing.key, last.adjustment.sequence, check, owed, last)
            if short > listing.owed:
                outbox.add(
                    EXCEPTIONS,
                    _exception(
                        last,
                        "storefront_short",
                        (
                            f"{listing.key}: {short} unit(s) to take back were sold on the marketplace already: "
                            "the key's next units go to those orders"
                        ),
                    ),
                )
            await outbox.flush(conn)

    async def _refuse(
        self,
        conn: Connection,
        repo: ConnectorRepository,
        listing: Listing,
        pending: list[Pending],
        blocked: str,
        kind: ExceptionKind | None,
        reason: str,
        status: str = "rejected",
    ) -> None:
        """The marketplace (or the mapping) refuses the key: it is blocked, and the ledger hears
        `rejected` (or `paused`: the marketplace holds the listing back) once, with the reason, and
        moves its units elsewhere."""
        if not pending:
            await repo.block(listing.key, blocked[:500])
            log.warning("storefront_blocked", key=listing.key, reason=reason)
            return
        outbox = OutboxBuffer(self.producer)
        outbox.add(ACKS, _ack(listing.key, pending[-1], status, reason[:1000]))
        if kind is not None:
            outbox.add(EXCEPTIONS, _exception(pending[-1], kind, reason))
        async with conn.transaction():
            await repo.block(listing.key, blocked[:500])
            await outbox.flush(conn)
        log.warning("storefront_rejected", key=listing.key, status=status, reason=reason)

    async def _report(
        self,
        conn: Connection,
        listing: Listing,
        pending: list[Pending],
        kind: ExceptionKind,
        detail: str,
        *,
        transaction: bool = True,
        event_id: uuid.UUID | None = None,
    ) -> None:
        """An exception about the key, for an operator; it names the key's last adjustment
        pending, or else the last applied."""
        log.error("storefront_exception", key=listing.key, kind=kind, detail=detail)
        about = pending[-1] if pending else listing.last
        if about is None:  # nothing applied or pending on the key: nothing the exception could name
            return
        outbox = OutboxBuffer(self.producer)
        outbox.add(EXCEPTIONS, _exception(about, kind, detail, event_id))
        if transaction:
            async with conn.transaction():
                await outbox.flush(conn)
        else:
            await outbox.flush(conn)

    def _wrote(self, key: str) -> None:
        self.writes += 1
        if self.writes == self.kill_after_write:
            log.warning("fault_injected_connector_kill_after_write", key=key, writes=self.writes)
            os.kill(os.getpid(), signal.SIGKILL)

    async def _take(self, bucket: TokenBucket, requests: int = 1) -> None:
        if requests <= 0:
            return
        while (wait := bucket.wait(self.clock(), requests)) > 0:
            await asyncio.sleep(wait)
        bucket.take(self.clock(), requests)


def _to_create(listing: Listing) -> str:
    """The listing a key was asked to be, for whoever creates it on the marketplace."""
    if listing.requested is None:
        return ""
    request = listing.requested.event
    marketplace = ", ".join(
        f"{name} {value}"
        for name, value in (
            ("listed as SKU", request.listing_sku),
            ("condition", request.marketplace_condition),
            ("condition id", request.marketplace_condition_id),
            ("at most", request.quantity_limit),
        )
        if value
    )
    return (
        f"; create it in shop {request.shop_id}: {request.condition} at {request.price.amount} "
        f'{request.price.currency}{f" ({marketplace})" if marketplace else ""}, "{request.condition_note}"'
    )


def _shop(key: str) -> tuple[str, str]:
    """The seller and marketplace of a key: its shop's share of a round is counted by them."""
    seller, channel, _rest = key.split(":", 2)
    return seller, channel


def intent_key(key: str, intent: Intent) -> str:
    """The idempotency key of a write: the same intent, the same key."""
    return str(
        uuid.uuid5(
            uuid.NAMESPACE_URL, f"rebound:write:{key}:{intent.first}-{intent.last}:{intent.seen}->{intent.written}"
        )
    )


def _ack(key: str, last: Pending, status: str, reason: str) -> StorefrontAck:
    event = last.event
    return StorefrontAck(
        event_id=ack_id(key, last.adjustment.sequence, status),
        occurred_at=datetime.now(UTC),
        seller_id=event.seller_id,
        ref_event_id=event.event_id,
        status=status,
        reason=reason,
        shop_id=event.shop_id,
        channel=event.channel,
        warehouse_id=event.warehouse_id,
        sku=event.sku,
        condition=event.condition,
    )


def _exception(
    about: Pending | Requested, kind: ExceptionKind, detail: str, event_id: uuid.UUID | None = None
) -> ExceptionRaised:
    """About an adjustment or a listing request; `event_id`: by default one per kind and record
    (a retry raises it once)."""
    event = about.event
    return ExceptionRaised(
        event_id=event_id
        or inbox.position_id(f"{about.source.topic}#{kind}", about.source.partition, about.source.offset),
        occurred_at=datetime.now(UTC),
        seller_id=event.seller_id,
        kind=kind,
        detail=detail,
        source=about.source,
        source_event_id=event.event_id,
        original=event.model_dump(mode="json"),
    )
