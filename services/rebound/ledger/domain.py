"""Stock keys and how stock moves. Pure: no I/O, no clock.

Where a unit goes is decided by relisting (a seller's disposition policy); the ledger places it on
the first candidate that can take it and keeps the per-key counters that the storefront sees."""

from __future__ import annotations

from dataclasses import dataclass

from rebound_contracts import Condition, Destination


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
