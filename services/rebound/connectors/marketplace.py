"""The one small interface every marketplace adapter implements, and the outcomes it reports.

An adapter reads and writes one listing's quantity as the marketplace counts it, counts the
units the marketplace sold on it since a time, and sets its price. Everything else (ordering, idempotency, rate
limits, retries, reconciliation) is the connector's, written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol


class MarketplaceError(Exception):
    """A call that did not do what it asked."""


class Refused(MarketplaceError):
    """The marketplace refused the write for good (its own message): acknowledged `rejected`."""


class Paused(Refused):
    """The marketplace holds the listing back (deactivated, on hold for a policy): acknowledged
    `paused`, and the key waits for an operator as a refused one does."""


class Throttled(MarketplaceError):
    """Too many requests: wait `retry_after_s`, then try again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Stale(MarketplaceError):
    """A compare-and-set write found another number than the one it expected to replace (the
    marketplace sold meanwhile): nothing was written; read again."""


class Unauthorized(MarketplaceError):
    """The shop cannot be written at all (credentials, scopes, app set-up): no listing's fault.
    The shop waits for an operator; its listings are not rejected."""


class Unavailable(MarketplaceError):
    """A transient failure (5xx, timeout, a connection refused): try again with back-off."""


class NotYet(MarketplaceError):
    """This listing cannot be done now, though the shop answers: its sales are not known that far
    yet (a marketplace whose orders are read in the background), or it has used its revisions for
    the day. The key waits `retry_after_s`; the shop's other listings go on."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Marketplace(Protocol):
    """One shop on one marketplace. `listing` holds the marketplace's ids of a Rebound key
    (TikTok Shop: product_id, sku_id, warehouse_id)."""

    maximum: int
    """The largest quantity the marketplace accepts."""
    compare_and_set: bool
    """Whether a write can say which number it replaces (`seen`), failing with `Stale` when the
    marketplace's number moved since: then no sale can be overwritten between read and write."""
    idempotent: bool
    """Whether a write sent again with the same `key` lands once (the marketplace repeats its first
    answer): a write in doubt is then settled by sending it again."""

    async def quantity(self, listing: Mapping[str, str]) -> int: ...

    async def set_quantity(
        self, listing: Mapping[str, str], quantity: int, *, seen: int | None = None, key: str | None = None
    ) -> None:
        """Write `quantity`; `seen` is the number it replaces (used where `compare_and_set`),
        `key` an idempotency key where the marketplace takes one."""
        ...

    async def sales_since(
        self, listing: Mapping[str, str], since_s: int, *, known_at: float | None = None
    ) -> frozenset[str]:
        """The units sold on `listing` in orders created at or after `since_s` (Unix seconds), by
        an id of each (e.g. its order line). Ids, not a count: a connector compares what it saw
        before a write with what it sees after, whatever the clock's granularity. With
        `known_at`, the answer must hold every sale made up to that moment (Unix seconds), or
        raise `NotYet`; without it, the sales known now will do."""
        ...

    async def set_price(self, listing: Mapping[str, str], amount: Decimal, currency: str) -> None:
        """The listing's price from now on (`storefront.listings.v1`): what a buyer pays for one
        unit."""
        ...
