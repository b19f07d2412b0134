"""Where a grade is decided. Grading rules are data (per seller, optionally per SKU prefix);
the default rule is docs/design.md's. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rebound_contracts import UnitInspected, UnitReceived, UnitRefurbished

GRADES = ("A", "B", "C", "SCRAP")
CHECK_VALUES: dict[str, tuple[Any, ...]] = {
    "packaging": ("intact", "worn", "damaged", "missing"),
    "appearance": ("as_new", "minor_flaw", "major_flaw"),
    "function": ("works", "faulty", "not_applicable"),
    "accessories": ("complete", "incomplete"),
    "irreparable": (True, False),
}
IDEAL = {"packaging": "intact", "appearance": "as_new", "accessories": "complete", "irreparable": False}


class InvalidGradingRules(ValueError):
    """A seller's grading rules cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Rule:
    grade: str
    any_of: Mapping[str, frozenset[Any]] | None = None  # matches when one condition holds
    all_of: Mapping[str, frozenset[Any]] | None = None  # matches when every condition holds

    def matched(self, checks: Mapping[str, Any]) -> list[str] | None:
        """The conditions that made this rule match (as reasons), or None."""
        if self.any_of is not None:
            hits = [f"{k}={_show(checks[k])}" for k, values in self.any_of.items() if checks[k] in values]
            return hits or None
        if self.all_of is not None:
            if all(checks[k] in values for k, values in self.all_of.items()):
                return [f"{k}={_show(checks[k])}" for k in self.all_of]
            return None
        return [f"{k}={_show(v)}" for k, v in checks.items() if k in IDEAL and v != IDEAL[k]] or [
            "no stricter rule matched"
        ]


@dataclass(frozen=True)
class GradingRules:
    default: tuple[Rule, ...]
    by_sku_prefix: tuple[tuple[str, tuple[Rule, ...]], ...] = ()

    def for_sku(self, sku: str) -> tuple[Rule, ...]:
        # The longest matching prefix wins.
        best = max((p for p, _ in self.by_sku_prefix if sku.startswith(p)), key=len, default=None)
        return dict(self.by_sku_prefix)[best] if best is not None else self.default


@dataclass(frozen=True)
class Decision:
    grade: str
    reasons: tuple[str, ...]


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Refurbishment:
    """Work done on a unit, and when (the refurbishment event's `occurred_at`)."""

    at: datetime
    actions: tuple[str, ...]


def counted_refurbishment(history: Iterable[Refurbishment], inspected_at: datetime | None) -> tuple[str, ...]:
    """The refurbishment actions that may lift a unit's grade: those done after the inspection in
    force. An inspection sees the unit as it is, earlier work included, so work done before it
    lifts nothing. With no inspection yet, all of them (the inspection to come decides)."""
    return tuple(
        sorted(
            {action for work in history if inspected_at is None or work.at > inspected_at for action in work.actions}
        )
    )


def effective_checks(checks: Mapping[str, Any], refurbished: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """Inspection checks after refurbishment: repackaging makes packaging intact, repair makes a
    faulty (but not irreparable) unit work."""
    result = dict(checks)
    notes = []
    if "repackaged" in refurbished and result["packaging"] != "intact":
        notes.append(f"repackaged: packaging {result['packaging']} -> intact")
        result["packaging"] = "intact"
    if "repaired" in refurbished and result["function"] == "faulty" and not result["irreparable"]:
        notes.append("repaired: function faulty -> works")
        result["function"] = "works"
    return result, notes


def decide_grade(checks: Mapping[str, Any], refurbished: Collection[str], rules: Sequence[Rule]) -> Decision:
    """The grade of a unit: the first rule that matches its (refurbished) checks, with reasons."""
    effective, notes = effective_checks(checks, refurbished)
    for rule in rules:
        reasons = rule.matched(effective)
        if reasons is not None:
            return Decision(rule.grade, tuple(reasons + notes))
    raise InvalidGradingRules("no rule matched; the last rule must have no condition")


def _conditions(raw: Any, where: str) -> dict[str, frozenset[Any]]:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidGradingRules(f"{where}: expected a non-empty mapping of check -> allowed values")
    parsed = {}
    for check, values in raw.items():
        if check not in CHECK_VALUES:
            raise InvalidGradingRules(f"{where}: unknown check {check!r} (known: {', '.join(CHECK_VALUES)})")
        values = values if isinstance(values, list) else [values]
        bad = [v for v in values if v not in CHECK_VALUES[check]]
        if bad or not values:
            raise InvalidGradingRules(f"{where}.{check}: {bad or 'no values'} not among {list(CHECK_VALUES[check])}")
        parsed[check] = frozenset(values)
    return parsed


def parse_rule_list(raw: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidGradingRules(f"{where}: expected a non-empty list of rules")
    rules = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, Mapping) or item.get("grade") not in GRADES:
            raise InvalidGradingRules(f"{here}: each rule needs a grade among {list(GRADES)}")
        if "any" in item and "all" in item:
            raise InvalidGradingRules(f"{here}: use 'any' or 'all', not both")
        unknown = set(item) - {"grade", "any", "all"}
        if unknown:
            raise InvalidGradingRules(f"{here}: unknown keys {sorted(unknown)}")
        rules.append(
            Rule(
                grade=item["grade"],
                any_of=_conditions(item["any"], f"{here}.any") if "any" in item else None,
                all_of=_conditions(item["all"], f"{here}.all") if "all" in item else None,
            )
        )
    if rules[-1].any_of is not None or rules[-1].all_of is not None:
        raise InvalidGradingRules(f"{where}: the last rule must have no condition (it catches the rest)")
    return tuple(rules)


def parse_rules(raw: Any) -> GradingRules:
    """Validate a seller's rules document: {"default": [...], "by_sku_prefix": {"SHOE-": [...]}}."""
    if not isinstance(raw, Mapping):
        raise InvalidGradingRules("rules: expected a mapping with a 'default' list")
    unknown = set(raw) - {"default", "by_sku_prefix"}
    if unknown:
        raise InvalidGradingRules(f"rules: unknown keys {sorted(unknown)}")
    prefixes = raw.get("by_sku_prefix", {})
    if not isinstance(prefixes, Mapping):
        raise InvalidGradingRules("rules.by_sku_prefix: expected a mapping of prefix -> rules")
    return GradingRules(
        default=parse_rule_list(raw.get("default", DEFAULT_RULES_DOCUMENT["default"]), "rules.default"),
        by_sku_prefix=tuple(
            (prefix, parse_rule_list(rules, f"rules.by_sku_prefix.{prefix}")) for prefix, rules in prefixes.items()
        ),
    )


DEFAULT_RULES_DOCUMENT: dict[str, Any] = {
    "default": [
        {"grade": "SCRAP", "any": {"irreparable": [True]}},
        {"grade": "C", "any": {"function": ["faulty"], "accessories": ["incomplete"], "appearance": ["major_flaw"]}},
        {"grade": "A", "all": {"packaging": ["intact"], "appearance": ["as_new"]}},
        {"grade": "B"},
    ]
}
DEFAULT_RULES = parse_rules(DEFAULT_RULES_DOCUMENT)


@dataclass(frozen=True)
class UnitState:
    lpn: str
    seller_id: str
    received: UnitReceived | None
    checks: dict[str, Any] | None
    inspected_at: datetime | None
    refurbishments: tuple[Refurbishment, ...]
    grade: str | None
    reasons: tuple[str, ...]
    revision: int


# --- Storage, as the handlers see it ------------------------------------------------------


class GradingRepository(Protocol):
    """What grading's handlers need of storage: each unit's receipt, inspection, refurbishments and grade.
    The PostgreSQL one is `adapters.PostgresGradingRepository`; mypy holds the unit tests\' fakes to it."""

    async def owner(self, lpn: str) -> str | None: ...

    async def merge_receipt(self, unit: UnitReceived) -> UnitState | None: ...

    async def take_over(self, unit: UnitReceived) -> UnitState | None:
        """The receipt is authoritative: drop what another seller's events left on this LPN."""

    async def merge_inspection(self, inspection: UnitInspected) -> UnitState | None:
        """Store the inspection unless a later one of the same seller is already stored."""

    async def merge_refurbishment(self, work: UnitRefurbished) -> UnitState | None: ...

    async def record_grade(self, lpn: str, grade: str, reasons: tuple[str, ...], revision: int) -> None: ...

    async def rules_for(self, seller_id: str) -> GradingRules: ...
