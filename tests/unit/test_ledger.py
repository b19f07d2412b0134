"""Stock keys and moves. The allocation handlers run against the real PostgreSQL in
tests/integration/test_allocation.py: their correctness is in the queries as much as in Python."""

from __future__ import annotations

from rebound.ledger.domain import StockKey, listing_key, lot_key, moves
from rebound_contracts import Destination


def test_a_move_takes_the_unit_off_one_key_before_putting_it_on_another() -> None:
    new, box = StockKey("s", "t", "w", "k", "new"), StockKey("s", "t", "w", "k", "open_box")
    assert moves(None, new) == [(new, 1)]
    assert moves(new, box) == [(new, -1), (box, 1)]
    assert moves(new, None) == [(new, -1)]
    assert moves(new, new) == []


def test_stock_keys_round_trip_through_text() -> None:
    key = StockKey("s1", "tiktok", "W1", "TEE-M", "open_box")
    assert str(key) == "s1:tiktok:W1:TEE-M:open_box"
    assert StockKey.parse(str(key)) == key


def test_a_listing_destination_names_its_key_and_a_lot_gets_a_sku_of_its_own() -> None:
    ebay = Destination(kind="listing", channel="ebay", condition="open_box")
    assert listing_key("s1", "W1", "TEE-M", ebay) == StockKey("s1", "ebay", "W1", "TEE-M", "open_box")
    bag = Destination(kind="lucky_bag", channel="tiktok", condition="open_box", pool="bag")
    assert lot_key("s1", "W1", "0123abcd", bag) == StockKey("s1", "tiktok", "W1", "LOT-0123abcd", "open_box")
