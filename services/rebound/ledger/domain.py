"""Stock keys and how stock moves. Pure: no I/O, no clock.

Where a unit goes is decided by relisting (a seller's disposition policy); the ledger places it on
the first candidate that can take it and keeps the per-key counters that the storefront sees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rebound_contracts import Condition, Destination, DispositionDecided, Money


@dataclass(frozen=True)
class StockKey:
    seller_id: str
    channel: str
    warehouse_id: str
    sku: str
    condition: Condition

    def __str__(self) -> str:
        return f"{self.seller_id}:{self.channel}:{self.warehouse_id}:{self.sku}:{self.condition}"

    @classmethod
    def parse(cls, text: str) -> StockKey:
        seller_id, channel, warehouse_id, sku, condition = text.split(":")
        # the text is a key this class wrote (`__str__`): its channel and condition are valid ones
        return cls(seller_id, channel, warehouse_id, sku, condition)  # type: ignore[arg-type]


def listing_key(seller_id: str, warehouse_id: str, sku: str, destination: Destination) -> StockKey:
    """The storefront key a listing destination puts a unit on."""
    assert destination.channel is not None and destination.condition is not None, destination
    return StockKey(seller_id, destination.channel, warehouse_id, sku, destination.condition)


def lot_key(seller_id: str, warehouse_id: str, lot_id: str, destination: Destination) -> StockKey:
    """A lucky-bag lot is one listing of its own, quantity 1."""
    assert destination.channel is not None, destination
    return StockKey(seller_id, destination.channel, warehouse_id, f"LOT-{lot_id}", "open_box")


def moves(current: StockKey | None, target: StockKey | None) -> list[tuple[StockKey, int]]:
    """The stock moves that take a unit from `current` to `target`: take it off first, then put it on."""
    if current == target:
        return []
    steps: list[tuple[StockKey, int]] = []
    if current is not None:
        steps.append((current, -1))
    if target is not None:
        steps.append((target, +1))
    return steps


@dataclass(frozen=True)
class Counter:
    available: int
    sequence: int
    picked: int


@dataclass
class Unit:
    lpn: str
    seller_id: str
    sku: str
    warehouse_id: str
    shop_id: str
    revision: int
    decision: DispositionDecided | None = None
    place: str | None = None
    stock_key: StockKey | None = None
    pool: str | None = None
    lot_id: str | None = None
    candidate: int | None = None
    placed_at: datetime | None = None


# --- Storage, as the handlers see it ------------------------------------------------------


class LedgerRepository(Protocol):
    """What the ledger's handlers need of storage: where each unit is, the stock counters, lots, exchanges.
    The PostgreSQL one is `adapters.PostgresLedgerRepository`; mypy holds the unit tests\' fakes to it."""

    async def unit_for_update(self, lpn: str) -> Unit | None: ...

    async def save(self, unit: Unit, now: datetime) -> None: ...

    async def units_on_key_for_update(self, key: StockKey) -> list[Unit]: ...

    async def count_in_exchange_pool(self, seller_id: str, warehouse_id: str, sku: str) -> int: ...

    async def pooled_for_update(self, seller_id: str, warehouse_id: str, pool: str, limit: int) -> list[Unit]:
        """The oldest units waiting in a lucky-bag pool."""

    async def exchange_candidate_for_update(self, seller_id: str, warehouse_id: str, sku: str) -> Unit | None:
        """A unit of `sku` to serve an exchange: from the exchange pool first, else off a listing
        (new before open box, longest listed first)."""

    async def adjust(self, key: StockKey, shop_id: str, delta: int) -> Counter:
        """Move the counter of `key` by `delta` and take the key's next sequence number."""

    async def picked(self, key: StockKey) -> Counter:
        """A unit of `key` left for an order the storefront took itself: no sequence number."""

    async def key_exists(self, key: StockKey) -> bool: ...

    async def blocked(self, key: StockKey) -> str | None: ...

    async def block(self, key: StockKey, status: str, reason: str, ref_event_id: object) -> bool:
        """Block `key`; False when it already was."""

    async def add_lot(
        self, lot_id: str, seller_id: str, warehouse_id: str, pool: str, key: StockKey, lpns: list[str]
    ) -> None: ...

    async def sell_lot(self, lot_id: str) -> tuple[StockKey, list[str]] | None:
        """Mark a listed lot sold: its key and units, or None when it was sold already."""

    async def mark_sold(self, lpns: list[str], at: datetime, channel: str, price: Money) -> None:
        """`price`: what each of `lpns` sold for (its share of a lot's price)."""

    async def record_exchange(
        self, seller_id: str, exchange_id: str, status: str, lpn: str | None, source: str | None
    ) -> bool:
        """Record the answer; False when this exchange id was answered before."""
