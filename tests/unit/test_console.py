"""The console's rules without I/O: what each event adds to the read models (its line, its keys, its
case) and which replays are refused, and why."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from rebound.console.cases import Case, CaseError, replayable
from rebound.console.domain import keys_in, project
from rebound_contracts import ExceptionRaised, MessageDeadLettered, MessageSource
from rebound_contracts.topics import UNIT_INSPECTED
from tests import factories as f


def test_a_grade_is_found_by_its_unit_return_and_sku_and_says_why() -> None:
    graded = f.graded("s1", "LPN-1", "B")
    projection = project(graded)
    assert projection.summary == "graded B (revision 1): test"
    assert {("lpn", "LPN-1"), ("return", graded.return_id), ("sku", "TEE-BLK-M")} <= projection.keys
    assert projection.case is None and projection.stock is None


def test_an_adjustment_names_its_unit_and_the_answer_to_it_names_the_adjustment() -> None:
    adjusted = f.adjusted("s1", "TEE-BLK-M", 4, +1, available=2)
    projection = project(adjusted)
    assert {("lpn", adjusted.cause.lpn), ("ref", str(adjusted.event_id))} <= projection.keys
    assert projection.summary == "+1 on tiktok:W1:TEE-BLK-M:new (unit graded): available 2, sequence 4"
    assert projection.stock is not None and (projection.stock.sequence, projection.stock.available) == (4, 2)
    ack = f.ack("s1", "s1:tiktok:W1:TEE-BLK-M:new", "paused", reason="product frozen")
    answered = project(ack)
    assert ("ref", str(ack.ref_event_id)) in answered.keys and not any(k == "lpn" for k, _ in answered.keys)
    assert answered.summary == "tiktok shop answered paused for tiktok:W1:TEE-BLK-M:new: product frozen"


def test_keys_are_found_at_any_depth() -> None:
    document = {"lines": [{"sku": "A"}, {"nested": {"lpn": "L9", "tracking_number": "T1"}}], "order_id": "O1"}
    assert set(keys_in(document)) == {("sku", "A"), ("lpn", "L9"), ("tracking", "T1"), ("order", "O1")}


def _letter(raw: bytes, kind: str = "schema_violation", truncated: bool = False) -> MessageDeadLettered:
    return MessageDeadLettered(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        seller_id="s1",
        kind=kind,
        error="checks: Field required",
        source=MessageSource(topic=UNIT_INSPECTED.name, partition=0, offset=3),
        key="LPN-1",
        raw_base64=base64.b64encode(raw).decode(),
        raw_size=len(raw) * (2 if truncated else 1),
        truncated=truncated,
        consumer="rebound-grading",
    )


def _case(event: MessageDeadLettered | ExceptionRaised) -> Case:
    made = project(event).case
    assert made is not None
    opened = made.opened_at
    fields: dict[str, Any] = {**made.__dict__, "status": "open", "owner": None, "updated_at": opened}
    return Case(**fields)


def test_a_dead_letter_is_a_case_with_no_line_on_any_timeline() -> None:
    letter = _letter(b"{}")
    projection = project(letter)
    assert projection.summary is None and projection.keys == set()
    assert projection.case is not None and (projection.case.source, projection.case.kind) == (
        "dead_letter",
        "schema_violation",
    )


def test_a_dead_letter_replays_only_valid_for_its_topic() -> None:
    inspection = orjson.loads(f.inspection("s1", "LPN-1").model_dump_json())
    broken = {k: v for k, v in inspection.items() if k != "checks"}
    case = _case(_letter(orjson.dumps(broken)))
    with pytest.raises(CaseError, match=r"not a valid UnitInspected for wms.unit-inspected.v1: checks: Field required"):
        replayable(case, None)
    payload, event = replayable(case, orjson.dumps(inspection))
    assert payload == orjson.dumps(inspection) and str(event.event_id) == inspection["event_id"]


def test_a_truncated_dead_letter_replays_only_corrected() -> None:
    inspection = f.inspection("s1", "LPN-1").model_dump_json().encode()
    case = _case(_letter(inspection[:40], truncated=True))
    with pytest.raises(CaseError, match="--file"):
        replayable(case, None)
    assert replayable(case, inspection)[0] == inspection


def test_a_conflicting_duplicate_needs_an_event_id_of_its_own() -> None:
    inspection = orjson.loads(f.inspection("s1", "LPN-1").model_dump_json())
    case = _case(_letter(orjson.dumps(inspection), kind="conflicting_duplicate"))
    with pytest.raises(CaseError, match="needs an event_id of its own"):
        replayable(case, orjson.dumps(inspection))
    renamed = {**inspection, "event_id": str(uuid.uuid4())}
    assert replayable(case, orjson.dumps(renamed))[1].event_id == uuid.UUID(renamed["event_id"])


def _exception(kind: str) -> ExceptionRaised:
    inspection = f.inspection("s1", "LPN-1")
    return ExceptionRaised(
        event_id=uuid.uuid4(),
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        seller_id="s1",
        kind=kind,
        detail="...",
        source=MessageSource(topic=UNIT_INSPECTED.name, partition=0, offset=3),
        source_event_id=inspection.event_id,
        original=orjson.loads(inspection.model_dump_json()),
    )


def test_an_unknown_sellers_event_replays_under_an_event_id_derived_from_its_own() -> None:
    exception = _exception("unknown_seller")
    payload, event = replayable(_case(exception), None)
    assert event.event_id != exception.source_event_id
    assert replayable(_case(exception), None)[1].event_id == event.event_id, "the same case, the same id"
    again = orjson.loads(payload)
    assert {k: v for k, v in again.items() if k != "event_id"} == {
        k: v for k, v in exception.original.items() if k != "event_id"
    }


def test_an_applied_events_exception_is_not_replayed() -> None:
    with pytest.raises(CaseError, match="was applied: sending it again changes nothing"):
        replayable(_case(_exception("unexpected_unit")), None)
