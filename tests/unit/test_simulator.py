"""The return-wave simulator: deterministic, contract-valid, and honest about what it expects."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from rebound.simulation.wave import (
    BAD_KINDS,
    DEEP_NESTING,
    HOSTILE_KINDS,
    OVERSIZED_BYTES,
    REASON_CODES,
    SCHEMA_INVALID_KINDS,
    Wave,
    WaveConfig,
    condition_of,
    default_grade,
    generate,
)
from rebound_contracts import InspectionChecks, ParcelScanned, RmaIssued
from rebound_contracts.common import MAX_AMOUNT
from rebound_contracts.topics import BY_NAME, PARCEL_SCANNED, RMA

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def wave(**overrides: Any) -> Wave:
    config: dict[str, Any] = {"units": 1_000, "seed": 11, "start": START} | overrides
    return generate(WaveConfig(**config))


@pytest.fixture(scope="module")
def faulty() -> Wave:
    return wave(
        units=2_000, duplicate_rate=0.03, out_of_order_rate=0.1, bad_rate=0.01, hostile_rate=0.01, reinspect_rate=0.05
    )


def valid_messages(w: Wave):
    """(index, topic, model) of every message that is not one of the crafted bad ones."""
    for i, m in enumerate(w.messages):
        if i not in w.bad_kinds:  # read as the services read (pydantic's own JSON parser stops at depth 200)
            yield i, m.topic, BY_NAME[m.topic].model.model_validate(json.loads(m.value))


def test_same_config_gives_byte_identical_messages():
    first, second = wave(bad_rate=0.01, duplicate_rate=0.02), wave(bad_rate=0.01, duplicate_rate=0.02)
    assert first.messages == second.messages
    assert first.expected_stock == second.expected_stock


def test_different_seeds_differ_and_do_not_share_ids():
    a, b = wave(seed=1), wave(seed=2)
    assert a.messages != b.messages
    assert not set(a.sellers) & set(b.sellers)
    assert not set(a.expected_grades) & set(b.expected_grades)


def test_units_are_exactly_the_configured_number():
    w = wave(units=777)
    assert w.units == len(w.expected_grades) == 777


def test_every_valid_message_validates_against_its_topic_and_key(faulty: Wave):
    count = 0
    for i, topic, model in valid_messages(faulty):
        assert faulty.messages[i].key == BY_NAME[topic].key_of(model).encode()
        count += 1
    assert count == len(faulty.messages) - len(faulty.bad_kinds)


def test_every_bad_kind_is_produced_and_is_wrong(faulty: Wave):
    kinds = Counter(faulty.bad_kinds.values())
    assert set(kinds) == set(BAD_KINDS)
    assert kinds == Counter(faulty.bad_by_kind)
    first_seen: dict[str, bytes] = {}
    for i, m in enumerate(faulty.messages):
        kind = faulty.bad_kinds.get(i)
        if kind is None:
            first_seen.setdefault(json.loads(m.value)["event_id"], m.value)
            continue
        model = BY_NAME[m.topic].model
        if kind in SCHEMA_INVALID_KINDS:
            with pytest.raises(ValidationError):
                model.model_validate_json(m.value)
        elif kind == "oversized":
            assert len(m.value) > OVERSIZED_BYTES
        elif kind == "conflicting_duplicate":
            event_id = str(model.model_validate_json(m.value).event_id)
            assert event_id in first_seen, "a conflict must come after the event it conflicts with"
            assert first_seen[event_id] != m.value
        elif kind == "unknown_seller":
            assert model.model_validate_json(m.value).seller_id not in faulty.sellers
        elif kind == "cross_tenant":
            event = model.model_validate_json(m.value)
            assert event.seller_id in faulty.sellers
            assert str(event.event_id) not in first_seen


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    return depth


def _hostile_kind(document: dict) -> str | None:
    if _depth(document.get("extra")) == DEEP_NESTING:
        return "deep_nesting"
    if sum(key.startswith("x_") for key in document) == 1000:
        return "many_unknown_fields"
    if "marketplace_numbers" in document and all(
        line["unit_price"]["amount"] == str(MAX_AMOUNT) for line in document["lines"]
    ):
        return "edge_numbers"
    if any(isinstance(v, str) and len(v) == 128 and v.endswith("字") for v in document.values()):
        return "long_strings"
    return None


def test_hostile_messages_are_the_waves_own_events_written_as_a_hostile_sender_would(faulty: Wave):
    assert set(faulty.hostile_by_kind) == set(HOSTILE_KINDS) and min(faulty.hostile_by_kind.values()) > 0
    seen: dict[str, set[str]] = {}
    for i, topic, model in valid_messages(faulty):
        kind = _hostile_kind(json.loads(faulty.messages[i].value))
        if kind is not None:
            seen.setdefault(kind, set()).add(str(model.event_id))
            assert faulty.messages[i].key == BY_NAME[topic].key_of(model).encode()
    assert {kind: len(ids) for kind, ids in seen.items()} == faulty.hostile_by_kind


def test_cross_tenant_messages_name_another_sellers_parcel_or_unit(faulty: Wave):
    owner_of_tracking, owner_of_lpn = {}, {}
    for _, topic, model in valid_messages(faulty):
        if topic == PARCEL_SCANNED.name:
            owner_of_tracking[model.tracking_number] = model.seller_id
            owner_of_lpn.update({u.lpn: model.seller_id for u in model.units})
    for i, kind in faulty.bad_kinds.items():
        if kind != "cross_tenant":
            continue
        m = faulty.messages[i]
        event = BY_NAME[m.topic].model.model_validate_json(m.value)
        if isinstance(event, ParcelScanned):
            owner = owner_of_tracking[event.tracking_number]
        else:
            owner = owner_of_lpn[event.lpn]
        assert owner != event.seller_id


def test_expected_stock_follows_from_expected_grades(faulty: Wave):
    rmas: dict[tuple[str, str], RmaIssued] = {}
    units: dict[str, tuple[str, str, str, str]] = {}  # lpn -> seller, warehouse, sku, tracking
    for _, topic, model in valid_messages(faulty):
        if topic == RMA.name:
            rmas.setdefault((model.seller_id, model.tracking_number), model)
        elif topic == PARCEL_SCANNED.name:
            for unit in model.units:
                units.setdefault(unit.lpn, (model.seller_id, model.warehouse_id, unit.sku, model.tracking_number))
    expected: Counter[str] = Counter()
    for lpn, grade in faulty.expected_grades.items():
        seller, warehouse, sku, tracking = units[lpn]
        condition = condition_of(grade)
        if condition:
            channel = rmas[(seller, tracking)].channel
            expected[f"{seller}:{channel}:{warehouse}:{sku}:{condition}"] += 1
    assert dict(expected) == faulty.expected_stock


def test_expected_grades_follow_the_latest_inspection_and_the_refurbishment_after_it(faulty: Wave):
    latest: dict[str, tuple[datetime, InspectionChecks]] = {}
    work: dict[str, list[tuple[datetime, list[str]]]] = {}
    for _, topic, model in valid_messages(faulty):
        if topic == "wms.unit-inspected.v1":
            if model.lpn not in latest or model.occurred_at > latest[model.lpn][0]:
                latest[model.lpn] = (model.occurred_at, model.checks)
        elif topic == "wms.unit-refurbished.v1":
            work.setdefault(model.lpn, []).append((model.occurred_at, model.actions))
    after: dict[str, set[str]] = {}
    for lpn, grade in faulty.expected_grades.items():
        inspected_at, checks = latest[lpn]
        after[lpn] = {a for at, actions in work.get(lpn, ()) if at > inspected_at for a in actions}
        assert default_grade(checks, after[lpn]) == grade
    repackaged_to_a = [
        lpn for lpn, actions in after.items() if "repackaged" in actions and faulty.expected_grades[lpn] == "A"
    ]
    assert repackaged_to_a, "some B units whose only flaw was packaging become A once repackaged"
    damaged_again = [
        lpn
        for lpn, done in work.items()
        if any("repackaged" in actions for _, actions in done)
        and lpn in faulty.expected_grades
        and "repackaged" not in after[lpn]
        and latest[lpn][1].packaging == "damaged"
        and faulty.expected_grades[lpn] == "B"
    ]
    assert damaged_again, "some repackaged units are re-inspected with the new box damaged, and stay B"


def test_reasons_are_mostly_size_and_raw_marketplace_codes():
    w = wave(units=3_000)
    size_codes = {code for codes in REASON_CODES["size"].values() for code in codes}
    known = {code for by_channel in REASON_CODES.values() for codes in by_channel.values() for code in codes}
    total = sum(w.by_reason_code.values())
    size = sum(n for code, n in w.by_reason_code.items() if code in size_codes)
    assert total == w.parcels
    assert 0.5 < size / total < 0.7
    assert set(w.by_reason_code) <= known
    assert "weird_code_xyz" in w.by_reason_code or "RETURN_REASON_UNMAPPED_42" in w.by_reason_code
    assert w.by_intended_grade["A"] / w.units > 0.6


def test_out_of_order_sends_scans_before_their_rma_and_inspections_before_their_scan(faulty: Wave):
    # index in the wave of the first such message, by tracking number or LPN
    rma_at: dict[str, int] = {}
    scan_at: dict[str, int] = {}
    first_inspection_at: dict[str, int] = {}
    refurbishment_at: dict[str, int] = {}
    lpn_tracking = {}
    for i, topic, model in valid_messages(faulty):
        if topic == RMA.name:
            rma_at.setdefault(model.tracking_number, i)
        elif topic == PARCEL_SCANNED.name:
            scan_at.setdefault(model.tracking_number, i)
            lpn_tracking.update({u.lpn: model.tracking_number for u in model.units})
        elif topic == "wms.unit-inspected.v1":
            first_inspection_at.setdefault(model.lpn, i)
        elif topic == "wms.unit-refurbished.v1":
            refurbishment_at.setdefault(model.lpn, i)
    early_scans = {t for t, i in scan_at.items() if i < rma_at[t]}
    assert len(early_scans) == faulty.out_of_order > 0
    refurbished_first = 0
    for lpn, tracking in lpn_tracking.items():
        if tracking in early_scans:
            assert first_inspection_at[lpn] < scan_at[tracking]
            refurbished_first += refurbishment_at.get(lpn, len(faulty.messages)) < first_inspection_at[lpn]
    assert refurbished_first > 0, "some refurbishments arrive before the inspection they came after"


def test_in_order_wave_has_no_surprises():
    w = wave(units=500, reinspect_rate=0.0)
    assert w.bad_kinds == {} and w.duplicates == 0 and w.out_of_order == 0
    event_ids = [json.loads(m.value)["event_id"] for m in w.messages]
    assert len(event_ids) == len(set(event_ids))


def test_duplicates_are_identical_copies_sent_later(faulty: Wave):
    seen: dict[tuple[str, str], int] = {}  # an event id is unique per seller
    copies = 0
    for i, m in enumerate(faulty.messages):
        if i in faulty.bad_kinds:
            continue
        document = json.loads(m.value)
        event = (document["seller_id"], document["event_id"])
        if event in seen:
            copies += 1
            assert faulty.messages[seen[event]] == m
        else:
            seen[event] = i
    assert copies == faulty.duplicates > 0


def test_some_valid_events_carry_an_event_id_another_seller_used_too(faulty: Wave):
    sellers_of: dict[str, set[str]] = {}
    for _, _, model in valid_messages(faulty):
        sellers_of.setdefault(str(model.event_id), set()).add(model.seller_id)
    shared = [event_id for event_id, sellers in sellers_of.items() if len(sellers) > 1]
    assert len(shared) == faulty.shared_event_ids > 0


def test_default_grade_is_designs_rule():
    def checks(**kw):
        return InspectionChecks(
            **(
                {
                    "packaging": "intact",
                    "appearance": "as_new",
                    "function": "works",
                    "accessories": "complete",
                    "irreparable": False,
                }
                | kw
            )
        )

    assert default_grade(checks()) == "A"
    assert default_grade(checks(packaging="worn")) == "B"
    assert default_grade(checks(packaging="worn"), ["repackaged"]) == "A"
    assert default_grade(checks(appearance="minor_flaw"), ["repackaged"]) == "B"
    assert default_grade(checks(accessories="incomplete")) == "C"
    assert default_grade(checks(irreparable=True)) == "SCRAP"


def test_config_rejects_naive_start_and_bad_rates():
    with pytest.raises(ValueError):
        WaveConfig(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        WaveConfig(bad_rate=1.5, start=START)
    with pytest.raises(ValueError, match="unknown bad kinds"):
        WaveConfig(bad_kinds=("invalid_json", "not_a_kind"), start=START)


def test_a_wave_sends_only_the_bad_kinds_it_is_told_to():
    chosen = ("invalid_json", "unknown_seller")
    some, every = wave(bad_rate=0.05, bad_kinds=chosen), wave(bad_rate=0.05)
    assert set(some.bad_by_kind) == set(chosen)
    assert sum(some.bad_by_kind.values()) == sum(every.bad_by_kind.values())  # as many, of those kinds
    assert "conflicting_duplicate" in every.bad_by_kind  # none named: every kind


def test_each_shop_order_is_picked_from_its_key_and_an_order_without_a_unit_is_oversold():
    from rebound.simulation import Offered, picks_for_orders

    on_keys = {
        "k1": [Offered("L1", "s", "W1", "tiktok"), Offered("L2", "s", "W1", "tiktok")],
        "k2": [Offered("L3", "s", "W1", "tiktok")],
    }
    picks, unfilled = picks_for_orders(on_keys, {"k1": 1, "k2": 2, "k3": 1}, 7, START, "tiktok")
    assert [json.loads(p.value)["lpn"] for p in picks] == ["L1", "L3"]
    assert unfilled == 2  # a second unit of k2 and any of k3: sold on the shop, never offered there
    assert all(json.loads(p.value)["channel"] == "tiktok" for p in picks)
    other, _ = picks_for_orders(on_keys, {"k1": 1, "k2": 2, "k3": 1}, 7, START, "shopify")
    assert not {json.loads(p.value)["event_id"] for p in picks} & {json.loads(p.value)["event_id"] for p in other}


def test_a_conflicting_copy_of_the_longest_identifier_is_still_a_valid_identifier() -> None:
    from pydantic import TypeAdapter

    from rebound.simulation.wave import _other_identifier
    from rebound_contracts.common import IDENTIFIER_MAX_LENGTH, Identifier

    valid = TypeAdapter(Identifier)
    for value in ("DOCK-3", "D" * IDENTIFIER_MAX_LENGTH, "字" * (IDENTIFIER_MAX_LENGTH - 2) + "-X"):
        other = _other_identifier(value)
        assert other != value and valid.validate_python(other) == other
