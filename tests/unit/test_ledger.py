"""Stock placement and the ledger handler, on an in-memory repository."""

from __future__ import annotations

from decimal import Decimal

from rebound.ledger.domain import StockKey, moves, open_box_price, placement
from rebound.ledger.handlers import adjust_stock
from rebound_contracts.topics import LISTINGS, STOCK_ADJUSTMENTS
from tests import factories as f

from .fakes import FakeLedgerRepository, context, emitted


def test_default_policy_a_new_b_open_box_c_and_scrap_nothing() -> None:
    assert placement("s", "tiktok", "W1", "SKU", "A") == StockKey("s", "tiktok", "W1", "SKU", "new")
    assert placement("s", "tiktok", "W1", "SKU", "B") == StockKey("s", "tiktok", "W1", "SKU", "open_box")
    assert placement("s", "tiktok", "W1", "SKU", "C") is None
    assert placement("s", "tiktok", "W1", "SKU", "SCRAP") is None


def test_a_regrade_takes_the_unit_off_one_key_before_putting_it_on_another() -> None:
    new, box = StockKey("s", "t", "w", "k", "new"), StockKey("s", "t", "w", "k", "open_box")
    assert moves(None, new) == [(new, 1)]
    assert moves(new, box) == [(new, -1), (box, 1)]
    assert moves(new, None) == [(new, -1)]
    assert moves(new, new) == []


def test_stock_keys_round_trip_through_text() -> None:
    key = StockKey("s1", "tiktok", "W1", "TEE-M", "open_box")
    assert str(key) == "s1:tiktok:W1:TEE-M:open_box"
    assert StockKey.parse(str(key)) == key


def test_open_box_price_is_80_percent_rounded_to_cents() -> None:
    assert open_box_price(Decimal("19.90")) == Decimal("15.92")
    assert open_box_price(Decimal("0.99")) == Decimal("0.79")


async def test_each_sellable_grade_moves_stock_once_with_gapless_sequences() -> None:
    repo = FakeLedgerRepository()
    out = []
    for lpn in ("L1", "L2"):
        event = f.graded("s1", lpn, "A")
        ctx = context(event)
        await adjust_stock(ctx, event, repo)
        out += emitted(ctx, STOCK_ADJUSTMENTS.name)
    assert [(a.delta, a.available, a.sequence, a.condition) for a in out] == [(1, 1, 1, "new"), (1, 2, 2, "new")]
    assert all(a.adjustment_id == a.event_id for a in out)


async def test_a_regrade_from_a_to_b_moves_stock_between_keys() -> None:
    repo = FakeLedgerRepository()
    first = f.graded("s1", "L1", "A", revision=1)
    await adjust_stock(context(first), first, repo)
    second = f.graded("s1", "L1", "B", revision=2, price="50.00")
    ctx = context(second)
    await adjust_stock(ctx, second, repo)
    moved = emitted(ctx, STOCK_ADJUSTMENTS.name)
    assert [(a.condition, a.delta, a.available, a.cause.kind) for a in moved] == [
        ("new", -1, 0, "unit_regraded"), ("open_box", 1, 1, "unit_regraded")
    ]
    [listing] = emitted(ctx, LISTINGS.name)
    assert listing.price.amount == Decimal("40.00") and listing.condition == "open_box"


async def test_c_and_scrap_add_no_stock_and_a_stale_revision_is_ignored() -> None:
    repo = FakeLedgerRepository()
    c = f.graded("s1", "L1", "C", revision=2)
    ctx = context(c)
    await adjust_stock(ctx, c, repo)
    assert emitted(ctx, STOCK_ADJUSTMENTS.name) == []
    stale = f.graded("s1", "L1", "A", revision=1)
    ctx = context(stale)
    await adjust_stock(ctx, stale, repo)
    assert emitted(ctx, STOCK_ADJUSTMENTS.name) == []
    assert repo.stock == {}


async def test_a_grade_for_another_sellers_lpn_moves_no_stock() -> None:
    repo = FakeLedgerRepository()
    mine = f.graded("owner", "L1", "A")
    await adjust_stock(context(mine), mine, repo)
    theirs = f.graded("intruder", "L1", "C", revision=5)
    ctx = context(theirs)
    await adjust_stock(ctx, theirs, repo)
    assert emitted(ctx, STOCK_ADJUSTMENTS.name) == []
    assert [e.kind for e in emitted(ctx, "returns.exceptions.v1")] == ["cross_tenant_reference"]
    assert repo.stock["owner:tiktok:W1:TEE-BLK-M:new"].available == 1
