"""The wire contract: committed schemas are fresh, models accept what docs/contracts.md promises."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from rebound_contracts import ALL_TOPICS, Money, RmaIssued, StockAdjusted, schema

EXAMPLE_RMA = {
    "event_id": str(uuid.uuid4()),
    "occurred_at": "2026-11-01T10:00:00+08:00",
    "seller_id": "seller-1",
    "shop_id": "shop-1",
    "channel": "tiktok",
    "return_id": "R1",
    "order_id": "O1",
    "tracking_number": "T1",
    "reason_code": "buyer_refund_item_is_too_small",
    "lines": [{"line_id": "1", "sku": "TEE-M", "quantity": 1, "unit_price": {"amount": "19.90", "currency": "USD"}}],
}


def test_committed_schemas_match_the_models() -> None:
    assert schema.stale_files() == [], "run: make schemas"


def test_the_stale_check_notices_an_edited_schema(tmp_path: Path) -> None:
    schema.write(tmp_path)
    assert schema.stale_files(tmp_path) == []
    target = tmp_path / f"{ALL_TOPICS[0].name}.json"
    target.write_text(target.read_text().replace('"title"', '"titel"', 1))
    assert schema.stale_files(tmp_path) == [target]


def test_every_topic_has_a_schema_with_its_key_and_partitions() -> None:
    for topic in ALL_TOPICS:
        document = json.loads((schema.SCHEMA_DIR / f"{topic.name}.json").read_text())
        assert document["x-topic"]["key"] == ":".join(topic.key_fields)
        assert document["x-topic"]["partitions"] == topic.partitions >= 6  # every topic is keyed


def test_every_schema_declares_its_dialect_and_holds_what_the_models_accept() -> None:
    from jsonschema import Draft202012Validator

    for topic in ALL_TOPICS:
        document = json.loads((schema.SCHEMA_DIR / f"{topic.name}.json").read_text())
        assert document["$schema"] == schema.DRAFT == Draft202012Validator.META_SCHEMA["$id"]
        Draft202012Validator.check_schema(document)
    rma = json.loads((schema.SCHEMA_DIR / "returns.rma.v1.json").read_text())
    assert list(Draft202012Validator(rma).iter_errors(EXAMPLE_RMA)) == []
    assert list(Draft202012Validator(rma).iter_errors({**EXAMPLE_RMA, "lines": []}))  # the model refuses it too
    with pytest.raises(ValidationError):
        RmaIssued.model_validate({**EXAMPLE_RMA, "lines": []})


def test_money_travels_as_a_decimal_string() -> None:
    assert json.loads(Money(amount="19.90", currency="USD").model_dump_json()) == {"amount": "19.90", "currency": "USD"}
    with pytest.raises(ValidationError):
        Money(amount="-1", currency="USD")
    with pytest.raises(ValidationError):
        Money(amount="1", currency="usd")


def test_unknown_fields_are_tolerated_missing_ones_are_not() -> None:
    assert RmaIssued.model_validate({**EXAMPLE_RMA, "new_marketplace_field": 1}).return_id == "R1"
    missing = {k: v for k, v in EXAMPLE_RMA.items() if k != "tracking_number"}
    with pytest.raises(ValidationError, match="tracking_number"):
        RmaIssued.model_validate(missing)


def test_timestamps_need_an_offset_and_models_are_frozen() -> None:
    with pytest.raises(ValidationError, match="occurred_at"):
        RmaIssued.model_validate({**EXAMPLE_RMA, "occurred_at": "2026-11-01T10:00:00"})
    rma = RmaIssued.model_validate(EXAMPLE_RMA)
    with pytest.raises(ValidationError):
        rma.return_id = "other"


def test_stock_adjustment_keys_follow_the_contract() -> None:
    from rebound_contracts.topics import STOCK_ADJUSTMENTS

    adjustment = StockAdjusted.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "adjustment_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-01T10:00:00Z",
            "seller_id": "s1",
            "shop_id": "shop",
            "channel": "tiktok",
            "warehouse_id": "W1",
            "sku": "TEE-M",
            "condition": "open_box",
            "delta": -1,
            "available": 0,
            "sequence": 2,
            "cause": {"kind": "unit_regraded", "lpn": "L1", "source_event_id": str(uuid.uuid4())},
        }
    )
    assert STOCK_ADJUSTMENTS.key_of(adjustment) == "s1:tiktok:W1:TEE-M:open_box"
    with pytest.raises(ValidationError, match="available"):
        StockAdjusted.model_validate({**adjustment.model_dump(mode="json"), "available": -1})


def test_contracts_import_nothing_from_the_services() -> None:
    package = Path(schema.__file__).parent
    for source in package.glob("*.py"):
        imports = [line for line in source.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in imports if line.split()[1].split(".")[0] == "rebound"], source
