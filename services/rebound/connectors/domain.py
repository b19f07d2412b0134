"""What a storefront connector decides, whatever the marketplace. Pure: no I/O, no clock (the
time is an argument).

Rebound's `available` does not know the sales a marketplace took that the warehouse has not
picked yet, so a connector never writes it. It applies Rebound's deltas, in `sequence` order, onto
the marketplace's own current number: a sale the marketplace made meanwhile stays made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import orjson
from rebound_contracts import ListingRequested, MessageSource, StockAdjusted


@dataclass(frozen=True)
class Adjustment:
    """What a connector keeps of one `storefront.stock-adjustments.v1` record."""

    sequence: int
    delta: int
    adjustment_id: UUID


@dataclass(frozen=True)
class Run:
    """Adjustments of one key applied together, in one marketplace call: `first`..`last`, with
    no gap, after the last one applied."""

    first: int
    last: int
    delta: int
    adjustment_ids: tuple[UUID, ...]


def next_run(applied_through: int, pending: Iterable[Adjustment], limit: int = 500) -> Run | None:
    """The adjustments to apply next: those following `applied_through` without a gap, at most
    `limit`. A gap (a sequence not received yet) is waited for, never skipped; one already applied
    is ignored (a redelivery)."""
    by_sequence = {a.sequence: a for a in pending if a.sequence > applied_through}
    taken: list[Adjustment] = []
    sequence = applied_through + 1
    while sequence in by_sequence and len(taken) < limit:
        taken.append(by_sequence[sequence])
        sequence += 1
    if not taken:
        return None
    return Run(
        first=taken[0].sequence,
        last=taken[-1].sequence,
        delta=sum(a.delta for a in taken),
        adjustment_ids=tuple(a.adjustment_id for a in taken),
    )


@dataclass(frozen=True)
class Target:
    """The quantity to write so that `delta` lands on the marketplace's current number `seen`,
    and how much of a negative delta could not land (units already sold there)."""

    quantity: int
    short: int


def target(seen: int, delta: int, maximum: int) -> Target:
    """Never below zero: a -1 for a unit the marketplace already sold (before the warehouse picked
    it) cannot be taken back, and is reported as `short`. Never above the marketplace's maximum."""
    wanted = seen + delta
    return Target(quantity=min(max(wanted, 0), maximum), short=max(-wanted, 0))


def settle(written: int, seen: int, sold: int, now: int) -> int | None:
    """The number a listing must have after a write of `written` over `seen` that may or may not
    have landed (a connector died meanwhile), `sold` units having sold since `seen` was read and
    `now` read before those sales were: the delta on what is left, `written - sold`, whichever
    happened. Had it not landed, the listing shows `seen` less some of those sales; had it landed,
    `written` less some (those made before it landed were overwritten). Any other number means
    someone else wrote: None, an operator decides."""
    low, high = max(min(seen, written) - sold, 0), max(seen, written)
    return max(written - sold, 0) if low <= now <= high else None


def drift(written: int, sold: int, now: int) -> int:
    """How far a listing's number `now` is from what the connector's last write of `written`
    leaves once `sold` units sold after it: positive, the marketplace offers units Rebound never
    made available there (an oversell waiting to happen); negative, it hides units that are.
    Zero whatever the buyers did: only a write no connector made (a seller's edit, another tool)
    or a sale the marketplace does not list moves it."""
    return now - max(written - sold, 0)


MAX_PAUSE_S = 8.0


@dataclass
class TokenBucket:
    """A marketplace's rate limit for one shop: `rate` requests a second, bursts of `burst`.
    `wait(now)` says how long to wait before the next request; `take(now)` spends one. A read and
    the write that depends on it take their tokens together, so that nothing waits between them."""

    rate: float
    burst: float
    tokens: float = 0.0
    started: bool = False
    """A bucket starts full at its first use."""
    at: float = 0.0
    blocked_until: float = 0.0
    failures: int = 0
    """Transient failures in a row: each doubles the pause before the shop is tried again."""

    def _refill(self, now: float) -> None:
        if not self.started:
            self.tokens, self.at, self.started = self.burst, now, True
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait(self, now: float, requests: int = 1) -> float:
        """How long until `requests` may go one after the other (at most a burst's worth)."""
        self._refill(now)
        return max(self.blocked_until - now, 0.0, (min(requests, self.burst) - self.tokens) / self.rate)

    def take(self, now: float, requests: int = 1) -> None:
        self._refill(now)
        self.tokens -= requests

    def refund(self, requests: int) -> None:
        """Requests taken and not made."""
        self.tokens = min(self.burst, self.tokens + requests)

    def failed(self, now: float) -> float:
        """The shop did not answer: pause it 0.5 s, doubling with each failure in a row, up to
        `MAX_PAUSE_S`, so a marketplace that is down costs a request per pause, not one per key,
        and one that is back is found again within seconds. Returns the pause."""
        self.failures += 1
        pause = min(0.5 * 2 ** (self.failures - 1), MAX_PAUSE_S)
        self.back_off(now, pause)
        return pause

    def answered(self) -> None:
        self.failures = 0

    def back_off(self, now: float, seconds: float) -> None:
        """The marketplace said to slow down (429 with Retry-After, a throttle status): no request
        before then, and the bucket starts empty."""
        self._refill(now)
        self.blocked_until = max(self.blocked_until, now + seconds)
        self.tokens = 0.0
        self.at = now


@dataclass(frozen=True)
class Intent:
    """A write in flight: adjustments `first`..`last` of a key, the marketplace's number `seen`
    before it and the `written` one. `at` (Unix seconds) is when the number was read, and
    `sales_before` the sales since `at` known before it was read: the sales since `at` not among
    them happened after the read."""

    first: int
    last: int
    seen: int
    written: int
    at: int
    sales_before: tuple[str, ...] = ()
    owed: int = 0
    """What the key owes once this write is booked (`Listing.owed`)."""
    written_at: float | None = None
    """None while the write is in flight (in doubt if the connector dies). Once it has landed on a
    marketplace without compare-and-set: when, and the key's sales are checked against it (a sale
    made between the read and the write was overwritten) before the key moves again."""

    probe_now: int | None = None
    probe_at: float | None = None
    """While a write in doubt is settled: the number read back, and when (its sales up to then
    may not be known yet)."""

    @property
    def landed(self) -> bool:
        return self.written_at is not None


@dataclass(frozen=True)
class Requested:
    """A key's latest listing request, and where it was read."""

    event: ListingRequested
    source: MessageSource

    @classmethod
    def parse(cls, document: str | bytes) -> Requested:
        kept = orjson.loads(document)
        return cls(ListingRequested.model_validate(kept["event"]), MessageSource.model_validate(kept["source"]))


@dataclass(frozen=True)
class Listing:
    key: str
    seller_id: str
    channel: str
    shop_id: str
    ids: Mapping[str, str] | None
    applied_through: int
    intent: Intent | None
    blocked: str | None
    owed: int = 0
    """Units the marketplace sold beyond what was offered: the next deltas are written less these."""
    baseline: Intent | None = None
    """The last write settled on the marketplace (`written` at `at`, the sales before it): its
    number must be `written` less the sales since. None: nothing to compare with yet."""
    last: Pending | None = None
    """The last adjustment applied: the ledger's view of the key, and what an exception about it
    refers to when no adjustment is pending."""
    requested: Requested | None = None
    """The key's latest listing request (`storefront.listings.v1`)."""
    priced: uuid.UUID | None = None
    """The request whose price is on the marketplace."""

    @property
    def unpriced(self) -> bool:
        return self.requested is not None and self.priced != self.requested.event.event_id


@dataclass(frozen=True)
class Pending:
    adjustment: Adjustment
    event: StockAdjusted
    source: MessageSource


# --- Storage, as the handlers see it ------------------------------------------------------


class ConnectorRepository(Protocol):
    """What the connectors need of storage: shops, listing keys and their progress, adjustments to apply.
    The PostgreSQL one is `adapters.PostgresConnectorRepository`; mypy holds the unit tests\' fakes to it."""

    async def record(self, adjustment: StockAdjusted, source: MessageSource) -> bool:
        """Keep an adjustment until it is applied; False when it was applied or kept already."""

    async def request(self, request: ListingRequested, source: MessageSource) -> None:
        """Keep a key's latest listing request (one older than the kept one is ignored)."""

    async def priced(self, key: str, request: uuid.UUID) -> None:
        """The request's price is on the marketplace (or was refused there, and reported)."""

    async def listing(self, key: str) -> Listing | None: ...

    async def pending(self, key: str, after: int, limit: int) -> list[Pending]: ...

    async def reconciled(self, key: str, baseline: Intent | None = None) -> None:
        """The key's number was compared with its marketplace's; `baseline`, when given, is the
        one to compare with from now on."""

    async def plan(self, key: str, intent: Intent) -> None: ...

    async def forget_intent(self, key: str) -> None:
        """The write planned was not made."""

    async def settled(self, key: str) -> None:
        """The write in flight is on the marketplace with the right number: the baseline."""

    async def owe(self, key: str, owed: int) -> None: ...

    async def applied(
        self, key: str, through: int, check: Intent | None = None, owed: int | None = None, last: Pending | None = None
    ) -> None:
        """Adjustments through `through` are on the marketplace, `last` the last of them when
        given; `check`: the write whose sales are still to be checked (None: nothing is left to
        check, and the write in flight is the baseline); `owed`, when given, what the key owes
        from now on."""

    async def block(self, key: str, reason: str) -> None:
        """The key waits for an operator. A write in doubt or a check it had stays: they are
        settled once it is unblocked (`unblock`)."""

    async def touch(self, key: str) -> None:
        """Put the key at the back of the queue (it waits for its shop)."""

    async def wait(self, key: str, seconds: float) -> None:
        """The key is not due again for `seconds` (its shop's other keys are)."""

    async def shop(self, seller_id: str, channel: str, shop_id: str) -> tuple[dict, dict | None] | None: ...

    async def store_tokens(self, seller_id: str, channel: str, shop_id: str, tokens: Mapping[str, Any]) -> None: ...
