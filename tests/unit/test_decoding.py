"""How the batch consumer reads a record: every kind of bad input gets its own clear outcome."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import model_validator

from rebound.messaging.inbox import canonical_json, fingerprint, position_id
from rebound.messaging.processor import Route, dead_letter, decode
from rebound_contracts import UnitInspected
from rebound_contracts.topics import (
    ACKS,
    ALL,
    EXCHANGE_REQUESTED,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    PARCEL_SCANNED,
    RMA,
    UNIT_ADDED_TO_RETURN,
    UNIT_INSPECTED,
    UNIT_PICKED,
    UNIT_QUARANTINED,
    UNIT_REFURBISHED,
)
from tests import factories as f
from tests.factories import Record


async def _noop(*_: object) -> None:
    return None


ROUTES = {t.name: Route(t, _noop, lambda conn: None) for t in ALL if t.direction == "inbound"}
INBOUND = list(ROUTES)


def _decode(topic: str, value: bytes | None, limit: int = 256 * 1024):
    return decode(Record(topic, value, partition=2, offset=41, key=b"k"), ROUTES.get(topic), limit)


def _valid(topic: str) -> dict:
    event = {
        RMA.name: lambda: f.rma("s1"),
        PARCEL_SCANNED.name: lambda: f.scan("s1", "T1", [("L1", "SKU")]),
        PARCEL_MATCHED.name: lambda: f.match("s1", "T1", "R1"),
        PARCEL_RECEIVED_UNEXPECTED.name: lambda: f.received_unexpected("s1", "T1"),
        UNIT_ADDED_TO_RETURN.name: lambda: f.added("s1", "L1", "R1"),
        UNIT_QUARANTINED.name: lambda: f.quarantined("s1", "L1"),
        UNIT_INSPECTED.name: lambda: f.inspection("s1", "L1"),
        UNIT_REFURBISHED.name: lambda: f.refurbished("s1", "L1", "repackaged"),
        UNIT_PICKED.name: lambda: f.picked("s1", "L1"),
        EXCHANGE_REQUESTED.name: lambda: f.exchange("s1", "TEE-BLK-L"),
        ACKS.name: lambda: f.ack("s1", "s1:tiktok:W1:TEE-BLK-M:new", "applied"),
    }[topic]()
    return orjson.loads(event.model_dump_json())


def test_a_valid_event_decodes_and_tolerates_unknown_fields() -> None:
    document = {**_valid(RMA.name), "marketplace_extra": {"x": 1}}
    item = _decode(RMA.name, orjson.dumps(document))
    assert item.failure is None and item.event.return_id == document["return_id"]
    assert item.digest == fingerprint(document)


def test_every_inbound_topic_of_the_registry_is_covered() -> None:
    assert INBOUND == [
        RMA.name,
        PARCEL_SCANNED.name,
        PARCEL_MATCHED.name,
        PARCEL_RECEIVED_UNEXPECTED.name,
        UNIT_ADDED_TO_RETURN.name,
        UNIT_QUARANTINED.name,
        UNIT_INSPECTED.name,
        UNIT_REFURBISHED.name,
        UNIT_PICKED.name,
        EXCHANGE_REQUESTED.name,
        ACKS.name,
    ]
    for topic in INBOUND:
        assert _decode(topic, orjson.dumps(_valid(topic))).failure is None


@pytest.mark.parametrize("topic", INBOUND)
@pytest.mark.parametrize(
    ("mutate", "kind", "says"),
    [
        (lambda d: b"{not json", "invalid_json", "not UTF-8 JSON"),
        (lambda d: b"\xff\xfe\x00", "invalid_json", "not UTF-8 JSON"),
        (lambda d: b"[1, 2]", "schema_violation", "must be a JSON object"),
        (lambda d: orjson.dumps({**d, "occurred_at": "yesterday"}), "schema_violation", "occurred_at"),
        (lambda d: orjson.dumps({k: v for k, v in d.items() if k != "seller_id"}), "schema_violation", "seller_id"),
        (lambda d: orjson.dumps({**d, "event_id": 12}), "schema_violation", "event_id"),
        (lambda d: orjson.dumps({**d, "occurred_at": "2026-11-01T10:00:00"}), "schema_violation", "occurred_at"),
        (lambda d: orjson.dumps({**d, "pad": "x" * 300_000}), "oversized", "the limit is"),
    ],
)
def test_unreadable_input_is_dead_lettered_with_a_reason(topic: str, mutate, kind: str, says: str) -> None:
    item = _decode(topic, mutate(_valid(topic)))
    assert item.event is None
    assert item.failure[0] == kind and says in item.failure[1]


@pytest.mark.parametrize(
    ("topic", "mutate", "field"),
    [
        (RMA.name, lambda d: d["lines"][0].update(quantity=0), "lines.0.quantity"),
        (RMA.name, lambda d: d["lines"][0].update(quantity=-3), "lines.0.quantity"),
        (RMA.name, lambda d: d.update(channel="wish"), "channel"),
        (RMA.name, lambda d: d["lines"][0]["unit_price"].update(amount="abc"), "lines.0.unit_price.amount"),
        (RMA.name, lambda d: d.update(lines=[]), "lines"),
        (UNIT_INSPECTED.name, lambda d: d["checks"].update(packaging="shredded"), "checks.packaging"),
        (UNIT_INSPECTED.name, lambda d: d["checks"].pop("irreparable"), "checks.irreparable"),
        (PARCEL_SCANNED.name, lambda d: d["units"][0].update(lpn=""), "units.0.lpn"),
        (PARCEL_SCANNED.name, lambda d: d.update(tracking_number="has:colon"), "tracking_number"),
        (UNIT_REFURBISHED.name, lambda d: d.update(actions=["polished"]), "actions.0"),
        (UNIT_REFURBISHED.name, lambda d: d.update(actions=[]), "actions"),
        (UNIT_PICKED.name, lambda d: d.update(channel="wish"), "channel"),
        (UNIT_PICKED.name, lambda d: d.update(lpn=7), "lpn"),
        (UNIT_PICKED.name, lambda d: d.pop("order_id"), "order_id"),
        (EXCHANGE_REQUESTED.name, lambda d: d.update(channel="etsy"), "channel"),
        (EXCHANGE_REQUESTED.name, lambda d: d.update(sku=["TEE"]), "sku"),
        (EXCHANGE_REQUESTED.name, lambda d: d.pop("exchange_id"), "exchange_id"),
        (ACKS.name, lambda d: d.update(status="lost"), "status"),
        (ACKS.name, lambda d: d.update(condition="used"), "condition"),
        (ACKS.name, lambda d: d.update(channel="wish"), "channel"),
        (ACKS.name, lambda d: d.update(ref_event_id="not-a-uuid"), "ref_event_id"),
        (ACKS.name, lambda d: d.pop("warehouse_id"), "warehouse_id"),
    ],
)
def test_schema_violations_name_the_field(topic: str, mutate, field: str) -> None:
    document = _valid(topic)
    mutate(document)
    item = _decode(topic, orjson.dumps(document))
    assert item.failure[0] == "schema_violation" and field in item.failure[1]
    assert item.seller_id == "s1"  # kept for the dead letter, so operators can route it
    assert item.event_id == document["event_id"]  # and for its log line


def test_a_dead_letter_keeps_the_raw_bytes_and_where_they_came_from() -> None:
    raw = b'{"event_id": nope}'
    item = decode(Record(RMA.name, raw, partition=3, offset=99), ROUTES[RMA.name], 1024)
    letter = dead_letter(item, "rebound-intake", datetime.now(UTC))
    assert base64.b64decode(letter.raw_base64) == raw and letter.raw_size == len(raw)
    assert (letter.source.topic, letter.source.partition, letter.source.offset) == (RMA.name, 3, 99)
    assert letter.kind == "invalid_json" and letter.consumer == "rebound-intake"
    # its id is derived from the position, so a re-delivered record is dead-lettered once
    assert letter.event_id == position_id(RMA.name, 3, 99)


def test_an_oversized_dead_letter_is_truncated_and_says_so() -> None:
    raw = b"x" * 200_000
    letter = dead_letter(decode(Record(RMA.name, raw), ROUTES[RMA.name], 1024), "c", datetime.now(UTC))
    assert letter.truncated and letter.raw_size == 200_000
    assert len(base64.b64decode(letter.raw_base64)) < 200_000


def test_fingerprints_ignore_key_order_but_not_content() -> None:
    a = {"x": 1, "y": [1, 2]}
    assert fingerprint(a) == fingerprint({"y": [1, 2], "x": 1})
    assert fingerprint(a) != fingerprint({"x": 2, "y": [1, 2]})
    assert position_id("t", 1, 2) == position_id("t", 1, 2) != position_id("t", 1, 3)
    assert isinstance(position_id("t", 1, 2), uuid.UUID)


def _nested(depth: int) -> list:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize("topic", INBOUND)
def test_an_unknown_field_nested_deeper_than_orjson_writes_is_read_as_a_valid_event(topic: str) -> None:
    valid = _valid(topic)
    document = {**valid, "extra": _nested(300)}
    item = _decode(topic, orjson.dumps(valid)[:-1] + b"," + _deep_extra(300) + b"}")
    assert item.failure is None and item.event is not None
    assert item.digest == fingerprint(document) == fingerprint(dict(reversed(document.items())))
    assert item.digest != fingerprint({**document, "extra": _nested(299)})


def _deep_extra(depth: int) -> bytes:
    return b'"extra":' + b"[" * depth + b"]" * depth


def test_nesting_beyond_what_json_parsing_allows_is_dead_lettered_as_invalid_json() -> None:
    raw = orjson.dumps(_valid(RMA.name))[:-1] + b"," + _deep_extra(5000) + b"}"
    item = _decode(RMA.name, raw)
    assert item.event is None and item.failure[0] == "invalid_json"


@pytest.mark.parametrize(
    "document",
    [
        {"b": [1, {"z": None, "a": 1.5e300}, "x\u0000", True], "a": {"é": -0.0, "c": []}, "n": -(2**63), "": {}},
        [],
        {},
        "text",
        18446744073709551615,
        5e-324,
    ],
)
def test_the_canonical_form_is_what_orjson_writes_with_sorted_keys(document: Any) -> None:
    assert canonical_json(document) == orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("topic", INBOUND)
def test_a_nul_character_in_a_string_of_the_contract_is_a_schema_violation(topic: str) -> None:
    document = _valid(topic)
    document["seller_id"] = "s\u00001"
    item = _decode(topic, orjson.dumps(document))
    assert item.failure[0] == "schema_violation" and "seller_id" in item.failure[1]


def test_a_nul_character_in_free_text_is_a_schema_violation_and_in_an_unknown_field_is_ignored() -> None:
    document = _valid(RMA.name)
    assert _decode(RMA.name, orjson.dumps({**document, "note": "a\u0000b"})).failure is None
    item = _decode(RMA.name, orjson.dumps({**document, "reason_code": "too\u0000small"}))
    assert item.failure[0] == "schema_violation" and "reason_code" in item.failure[1]


class _Exploding(UnitInspected):
    """The topic's own model, but its validation fails in a way no rule foresees."""

    @model_validator(mode="before")
    @classmethod
    def _explode(cls, data: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")


def test_a_failure_no_rule_foresees_dead_letters_the_record_instead_of_raising() -> None:
    route = Route(dataclasses.replace(UNIT_INSPECTED, model=_Exploding), _noop, lambda conn: None)
    raw = orjson.dumps(_valid(UNIT_INSPECTED.name))
    item = decode(Record(UNIT_INSPECTED.name, raw, partition=1, offset=7), route, 1024 * 1024)
    assert item.event is None and item.failure == (
        "processing_failed",
        "while decoding: RecursionError: maximum recursion depth exceeded",
    )
    assert item.seller_id == "s1"  # what was read before the failure still routes the dead letter
    letter = dead_letter(item, "rebound-grading", datetime.now(UTC))
    assert base64.b64decode(letter.raw_base64) == raw and letter.kind == "processing_failed"
