"""Where a grade is decided, and the grading handlers on in-memory repositories."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from rebound.grading.domain import (
    DEFAULT_RULES,
    InvalidGradingRules,
    Refurbishment,
    counted_refurbishment,
    decide_grade,
    parse_rules,
)
from rebound.grading.handlers import apply_refurbishment, grade_unit, record_receipt
from rebound_contracts import InspectionChecks, UnitInspected, UnitReceived, UnitRefurbished
from rebound_contracts.topics import UNIT_GRADED
from tests import factories as f

from .fakes import FakeGradingRepository, context, emitted

BASE = dict(packaging="intact", appearance="as_new", function="works", accessories="complete", irreparable=False)


@pytest.mark.parametrize(
    ("changes", "grade"),
    [
        ({}, "A"),
        ({"function": "not_applicable"}, "A"),
        ({"packaging": "worn"}, "B"),
        ({"packaging": "missing"}, "B"),
        ({"appearance": "minor_flaw"}, "B"),
        ({"function": "faulty"}, "C"),
        ({"accessories": "incomplete"}, "C"),
        ({"appearance": "major_flaw"}, "C"),
        ({"irreparable": True}, "SCRAP"),
        ({"irreparable": True, "function": "works"}, "SCRAP"),
    ],
)
def test_default_rule_of_the_design(changes: dict, grade: str) -> None:
    assert decide_grade({**BASE, **changes}, (), DEFAULT_RULES.default).grade == grade


def test_every_grade_carries_its_reasons() -> None:
    decision = decide_grade({**BASE, "function": "faulty", "accessories": "incomplete"}, (), DEFAULT_RULES.default)
    assert decision.reasons == ("function=faulty", "accessories=incomplete")
    assert decide_grade({**BASE, "packaging": "worn"}, (), DEFAULT_RULES.default).reasons == ("packaging=worn",)


def test_repackaging_turns_a_packaging_only_b_into_an_a_but_not_a_flawed_one() -> None:
    repacked = decide_grade({**BASE, "packaging": "worn"}, ("repackaged",), DEFAULT_RULES.default)
    assert repacked.grade == "A"
    assert "repackaged: packaging worn -> intact" in repacked.reasons
    flawed = {**BASE, "packaging": "worn", "appearance": "minor_flaw"}
    assert decide_grade(flawed, ("repackaged",), DEFAULT_RULES.default).grade == "B"


def test_repair_lifts_a_faulty_unit_unless_irreparable() -> None:
    assert decide_grade({**BASE, "function": "faulty"}, ("repaired",), DEFAULT_RULES.default).grade == "A"
    assert (
        decide_grade({**BASE, "function": "faulty", "irreparable": True}, ("repaired",), DEFAULT_RULES.default).grade
        == "SCRAP"
    )


def test_seller_rules_are_data_with_sku_prefix_overrides() -> None:
    rules = parse_rules(
        {
            "default": [{"grade": "C", "any": {"packaging": ["missing"]}}, {"grade": "A"}],
            "by_sku_prefix": {"SHOE-": [{"grade": "B", "any": {"packaging": ["worn", "damaged"]}}, {"grade": "A"}]},
        }
    )
    assert decide_grade({**BASE, "packaging": "missing"}, (), rules.for_sku("TEE-M")).grade == "C"
    assert decide_grade({**BASE, "packaging": "worn"}, (), rules.for_sku("TEE-M")).grade == "A"
    assert decide_grade({**BASE, "packaging": "worn"}, (), rules.for_sku("SHOE-42")).grade == "B"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a mapping"),
        ({"default": []}, "non-empty list"),
        ({"default": [{"grade": "Z"}]}, "grade among"),
        ({"default": [{"grade": "C", "any": {"colour": ["red"]}}, {"grade": "A"}]}, "unknown check 'colour'"),
        (
            {"default": [{"grade": "C", "any": {"function": ["broken"]}}, {"grade": "A"}]},
            "rules.default[0].any.function",
        ),
        ({"default": [{"grade": "A", "all": {"packaging": ["intact"]}}]}, "last rule must have no condition"),
        ({"default": [{"grade": "A", "any": {"packaging": "intact"}, "all": {"packaging": "intact"}}]}, "not both"),
        ({"defaults": []}, "unknown keys"),
    ],
)
def test_bad_rules_are_refused_with_where_and_why(document: object, message: str) -> None:
    with pytest.raises(InvalidGradingRules, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_rules(document)


async def test_an_inspection_before_the_receipt_is_parked_then_graded() -> None:
    repo = FakeGradingRepository()
    early = f.inspection("s1", "L1", "A")
    ctx = context(early)
    await grade_unit(ctx, early, repo)
    assert emitted(ctx, UNIT_GRADED.name) == []

    unit = f.received("s1", "L1")
    ctx = context(unit)
    await record_receipt(ctx, unit, repo)
    [graded] = emitted(ctx, UNIT_GRADED.name)
    assert (graded.lpn, graded.grade, graded.revision, graded.return_id) == ("L1", "A", 1, unit.return_id)


async def test_a_reinspection_regrades_and_an_older_one_is_ignored() -> None:
    repo = FakeGradingRepository()
    unit = f.received("s1", "L1")
    await record_receipt(context(unit), unit, repo)
    first = f.inspection("s1", "L1", "A")
    await grade_unit(context(first), first, repo)
    later = f.inspection("s1", "L1", "C", at=first.occurred_at.replace(hour=first.occurred_at.hour + 1))
    ctx = context(later)
    await grade_unit(ctx, later, repo)
    assert [(g.grade, g.revision) for g in emitted(ctx, UNIT_GRADED.name)] == [("C", 2)]

    stale = f.inspection("s1", "L1", "A", at=first.occurred_at.replace(minute=30))
    ctx = context(stale)
    await grade_unit(ctx, stale, repo)
    assert emitted(ctx, UNIT_GRADED.name) == []
    assert repo.units["L1"].grade == "C"


async def test_repackaging_a_b_unit_emits_a_new_grade() -> None:
    repo = FakeGradingRepository()
    unit = f.received("s1", "L1")
    await record_receipt(context(unit), unit, repo)
    look = f.inspection("s1", "L1", "B")
    await grade_unit(context(look), look, repo)
    work = f.refurbished("s1", "L1", "repackaged", "cleaned")
    ctx = context(work)
    await apply_refurbishment(ctx, work, repo)
    assert [(g.grade, g.revision) for g in emitted(ctx, UNIT_GRADED.name)] == [("A", 2)]


async def test_an_inspection_of_another_sellers_lpn_changes_nothing() -> None:
    repo = FakeGradingRepository()
    unit = f.received("owner", "L1")
    await record_receipt(context(unit), unit, repo)
    attack = f.inspection("intruder", "L1", "SCRAP")
    ctx = context(attack)
    await grade_unit(ctx, attack, repo)
    assert [e.kind for e in emitted(ctx, "returns.exceptions.v1")] == ["cross_tenant_reference"]
    assert repo.units["L1"].seller_id == "owner" and repo.units["L1"].checks is None


async def test_refurbishment_reported_by_another_seller_changes_nothing() -> None:
    repo = FakeGradingRepository()
    unit = f.received("owner", "L1")
    await record_receipt(context(unit), unit, repo)
    look = f.inspection("owner", "L1", "B")
    await grade_unit(context(look), look, repo)
    work = f.refurbished("intruder", "L1", "repackaged")
    ctx = context(work)
    await apply_refurbishment(ctx, work, repo)
    assert [e.kind for e in emitted(ctx, "returns.exceptions.v1")] == ["cross_tenant_reference"]
    assert emitted(ctx, UNIT_GRADED.name) == [] and repo.units["L1"].grade == "B"


async def test_the_receipt_wins_over_an_early_inspection_from_another_seller() -> None:
    repo = FakeGradingRepository()
    forged = f.inspection("intruder", "L1", "SCRAP")
    await grade_unit(context(forged), forged, repo)  # before intake registered the LPN: parked
    unit = f.received("owner", "L1")
    ctx = context(unit)
    await record_receipt(ctx, unit, repo)
    assert [e.kind for e in emitted(ctx, "returns.exceptions.v1")] == ["cross_tenant_reference"]
    assert emitted(ctx, UNIT_GRADED.name) == []  # the forged checks were discarded, not graded
    assert repo.units["L1"].seller_id == "owner" and repo.units["L1"].checks is None


def test_only_work_done_after_the_inspection_in_force_counts() -> None:
    at = f.T0
    history = [
        Refurbishment(at + timedelta(hours=1), ("repackaged",)),
        Refurbishment(at + timedelta(hours=3), ("cleaned",)),
    ]
    assert counted_refurbishment(history, None) == ("cleaned", "repackaged")
    assert counted_refurbishment(history, at) == ("cleaned", "repackaged")
    assert counted_refurbishment(history, at + timedelta(hours=2)) == ("cleaned",)
    assert counted_refurbishment(history, at + timedelta(hours=1)) == ("cleaned",)  # the same instant: before
    assert counted_refurbishment(history, at + timedelta(hours=4)) == ()


def _looked_at(lpn: str, packaging: str, at: datetime) -> UnitInspected:
    inspection = f.inspection("s1", lpn, "A", at=at)
    return inspection.model_copy(update={"checks": InspectionChecks(**{**BASE, "packaging": packaging})})


async def _final_grade(events: list[UnitReceived | UnitInspected | UnitRefurbished]) -> str | None:
    repo = FakeGradingRepository()
    for event in events:
        if isinstance(event, UnitReceived):
            await record_receipt(context(event), event, repo)
        elif isinstance(event, UnitInspected):
            await grade_unit(context(event), event, repo)
        else:
            await apply_refurbishment(context(event), event, repo)
    return repo.units[events[0].lpn].grade


def _repackaged_then_reinspected(lpn: str) -> list:
    """Packaging missing (B), repackaged (A), then a re-inspection finds the new box damaged (B)."""
    t = f.T0 + timedelta(days=3)
    return [
        _looked_at(lpn, "missing", t),
        f.refurbished("s1", lpn, "repackaged", at=t + timedelta(hours=2)),
        _looked_at(lpn, "damaged", t + timedelta(days=1)),
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
@pytest.mark.parametrize("receipt_first", [True, False])
async def test_a_reinspection_after_repackaging_grades_the_unit_as_it_is_in_any_arrival_order(
    order: tuple[int, ...],
    receipt_first: bool,
) -> None:
    lpn = f.uid("L")
    events = [_repackaged_then_reinspected(lpn)[i] for i in order]
    receipt = f.received("s1", lpn)
    assert await _final_grade([receipt, *events] if receipt_first else [*events, receipt]) == "B"


@pytest.mark.parametrize("refurbishment_first", [True, False])
async def test_repackaging_after_the_inspection_lifts_it_whichever_arrives_first(refurbishment_first: bool) -> None:
    lpn = f.uid("L")
    looked, work, _ = _repackaged_then_reinspected(lpn)
    events: list[UnitInspected | UnitRefurbished] = [work, looked] if refurbishment_first else [looked, work]
    assert await _final_grade([f.received("s1", lpn), *events]) == "A"


@pytest.mark.parametrize("refurbishment_first", [True, False])
async def test_repackaging_before_the_inspection_lifts_nothing(refurbishment_first: bool) -> None:
    lpn = f.uid("L")
    t = f.T0 + timedelta(days=3)
    work, looked = f.refurbished("s1", lpn, "repackaged", at=t), _looked_at(lpn, "worn", t + timedelta(hours=1))
    events: list[UnitInspected | UnitRefurbished] = [work, looked] if refurbishment_first else [looked, work]
    assert await _final_grade([f.received("s1", lpn), *events]) == "B"
