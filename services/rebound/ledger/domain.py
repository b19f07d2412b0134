"""Where a graded unit is offered and how stock moves. Pure: no I/O, no clock.

The placement policy here is DESIGN.md's default; relisting policies per seller plug in as
another `Placement` source without touching the stock arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from rebound_contracts import Condition

OPEN_BOX_PRICE_RATIO = Decimal("0.80")


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


def default_condition(grade: str) -> Condition | None:
    """A -> sold as new; B -> open box; C and SCRAP add no sellable stock."""
    return {"A": "new", "B": "open_box"}.get(grade)  # type: ignore[return-value]


def placement(seller_id: str, channel: str, warehouse_id: str, sku: str, grade: str) -> StockKey | None:
    condition = default_condition(grade)
    return StockKey(seller_id, channel, warehouse_id, sku, condition) if condition else None


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


def open_box_price(unit_price: Decimal) -> Decimal:
    return (unit_price * OPEN_BOX_PRICE_RATIO).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
