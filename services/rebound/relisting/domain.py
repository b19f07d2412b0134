"""Disposition policies: for each graded unit, the places it may go, best first. Pure: no I/O.

A policy is an ordered list of rules; the first rule whose `when` matches the unit gives the
ordered destinations. A unit no rule matches falls back to the default policy (docs/design.md):
A -> the RMA's channel as new; B -> the RMA's channel as open box at 80 %; C -> repair;
SCRAP -> disposal. Prices are decimals, rounded to the currency's minor unit, never floats.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from rebound_contracts import Destination, Money, UnitGraded
from rebound_contracts.common import MAX_AMOUNT, Channel, Condition, Grade
from rebound_contracts.outbound import DestinationKind

STRICT = ConfigDict(frozen=True, extra="forbid")

# The condition vocabularies of the marketplaces that have a condition field. TikTok Shop and
# Shopify have none: an open-box unit is listed under a SKU of its own there.
MARKETPLACE_CONDITIONS: dict[str, dict[str, int | None]] = {
    "ebay": {
        "NEW": 1000,
        "NEW_OTHER": 1500,
        "NEW_WITH_DEFECTS": 1750,
        "CERTIFIED_REFURBISHED": 2000,
        "USED_EXCELLENT": 3000,
        "USED_VERY_GOOD": 4000,
        "USED_GOOD": 5000,
        "USED_ACCEPTABLE": 6000,
        "FOR_PARTS_OR_NOT_WORKING": 7000,
    },
    "amazon": {
        "new_new": None,
        "new_open_box": None,
        "used_like_new": None,
        "used_very_good": None,
        "used_good": None,
        "used_acceptable": None,
    },
}
DEFAULT_MARKETPLACE_CONDITION: dict[tuple[str, str | None], str] = {
    ("ebay", "new"): "NEW",
    ("ebay", "open_box"): "NEW_OTHER",
    ("amazon", "new"): "new_new",
    ("amazon", "open_box"): "new_open_box",
}
CURRENCY_DECIMALS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3}
Percent = Annotated[Decimal, Field(ge=0, lt=100)]
Price = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4)]


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the file and line when known."""


class When(BaseModel):
    model_config = STRICT

    grade: Grade | list[Grade] | None = None
    sku: str | list[str] | None = None
    sku_prefix: str | list[str] | None = None

    def matches(self, grade: str, sku: str) -> list[str] | None:
        """The reasons this matches (grade, SKU), or None when it does not."""
        reasons = []
        if self.grade is not None:
            grades = [self.grade] if isinstance(self.grade, str) else self.grade
            if grade not in grades:
                return None
            reasons.append(f"grade {grade}")
        if self.sku is not None:
            if sku not in ([self.sku] if isinstance(self.sku, str) else self.sku):
                return None
            reasons.append(f"sku {sku}")
        if self.sku_prefix is not None:
            prefixes = [self.sku_prefix] if isinstance(self.sku_prefix, str) else self.sku_prefix
            hit = next((p for p in prefixes if sku.startswith(p)), None)
            if hit is None:
                return None
            reasons.append(f"sku prefix {hit}")
        return reasons or ["any unit"]


class DestinationRule(BaseModel):
    """One destination of a rule, as a seller writes it."""

    model_config = STRICT

    kind: DestinationKind
    channel: Channel | Literal["original"] = "original"
    condition: Condition | None = None
    marketplace_condition: str | None = None
    open_box_sku_suffix: str = "-OB"
    discount_pct: Percent = Decimal(0)
    price: Price | None = None
    floor: Price | None = None
    price_ending: Annotated[Decimal, Field(ge=0, lt=1)] | None = None
    pool: str | None = None
    quota: PositiveInt | None = None
    lot_size: Annotated[int, Field(ge=2, le=100)] | None = None
    unsold_after_days: PositiveInt | None = None

    @model_validator(mode="after")
    def _complete(self) -> DestinationRule:
        if self.kind == "listing" and self.condition is None:
            raise ValueError("a listing needs a condition (new or open_box)")
        if self.kind == "exchange_pool" and self.quota is None:
            raise ValueError("an exchange_pool needs a quota (units held per SKU and warehouse)")
        if self.kind == "lucky_bag" and (self.lot_size is None or self.price is None):
            raise ValueError("a lucky_bag needs a lot_size and the lot's price")
        if self.marketplace_condition is not None:
            vocabulary = MARKETPLACE_CONDITIONS.get(self.channel)
            if vocabulary is None:
                raise ValueError(f"channel {self.channel} has no condition field: leave out marketplace_condition")
            if self.marketplace_condition not in vocabulary:
                raise ValueError(
                    f"{self.channel} has no condition {self.marketplace_condition!r}; it has {', '.join(vocabulary)}"
                )
        return self


class Rule(BaseModel):
    model_config = STRICT

    name: Annotated[str, Field(min_length=1, max_length=80)]
    when: When = When()
    destinations: Annotated[list[DestinationRule], Field(min_length=1)]


class Policy(BaseModel):
    model_config = STRICT

    rules: Annotated[list[Rule], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return self


DEFAULT_POLICY = Policy(
    rules=[
        Rule(name="default-A", when=When(grade="A"), destinations=[DestinationRule(kind="listing", condition="new")]),
        Rule(
            name="default-B",
            when=When(grade="B"),
            destinations=[DestinationRule(kind="listing", condition="open_box", discount_pct=Decimal(20))],
        ),
        Rule(name="default-C", when=When(grade="C"), destinations=[DestinationRule(kind="repair")]),
        Rule(name="default-SCRAP", when=When(grade="SCRAP"), destinations=[DestinationRule(kind="disposal")]),
    ]
)


class Decision(BaseModel):
    model_config = STRICT

    rule: str
    reasons: list[str]
    candidates: list[Destination]


def decide(policy: Policy, unit: UnitGraded) -> Decision:
    """The first matching rule of the seller's policy, else of the default one."""
    for source, rules in (("", policy.rules), ("no rule of the seller's policy matched; ", DEFAULT_POLICY.rules)):
        for rule in rules:
            matched = rule.when.matches(unit.grade, unit.sku)
            if matched is not None:
                reasons = [
                    f"{source}rule {rule.name!r} matched: {', '.join(matched)}",
                    f"graded {unit.grade}: {', '.join(unit.reasons)}",
                ]
                return Decision(
                    rule=rule.name, reasons=reasons, candidates=[destination(d, unit) for d in rule.destinations]
                )
    raise AssertionError("the default policy covers every grade")


def destination(rule: DestinationRule, unit: UnitGraded) -> Destination:
    channel = unit.channel if rule.channel == "original" else rule.channel
    fields: dict[str, Any] = {
        "kind": rule.kind,
        "pool": rule.pool,
        "quota": rule.quota,
        "lot_size": rule.lot_size,
        "unsold_after_days": rule.unsold_after_days,
    }
    if rule.kind == "listing":
        condition = rule.condition
        fields.update(channel=channel, condition=condition)
        wording = rule.marketplace_condition or DEFAULT_MARKETPLACE_CONDITION.get((channel, condition))
        if wording is not None:
            fields.update(
                marketplace_condition=wording, marketplace_condition_id=MARKETPLACE_CONDITIONS[channel][wording]
            )
        elif condition == "open_box":
            fields["listing_sku"] = unit.sku + rule.open_box_sku_suffix
        if channel != unit.channel or condition != "new" or rule.discount_pct or rule.price is not None:
            fields["price"] = price(unit.unit_price, rule)
    elif rule.kind == "lucky_bag":
        fields.update(
            channel=channel, condition="open_box", price=price(unit.unit_price, rule), pool=rule.pool or "lucky-bag"
        )
    elif rule.kind == "bundle_pool":
        fields["pool"] = rule.pool or "bundle"
    return Destination(**fields)


def price(unit_price: Money, rule: DestinationRule) -> Money:
    """Fixed price, or the unit price less the discount; then the price ending, never below the
    floor; rounded to the currency's minor unit, and never above the largest amount a message
    can carry."""
    step = Decimal(1).scaleb(-CURRENCY_DECIMALS.get(unit_price.currency, 2))
    amount = rule.price if rule.price is not None else unit_price.amount * (100 - rule.discount_pct) / 100
    amount = amount.quantize(step, rounding=ROUND_HALF_UP)
    if rule.price_ending is not None:
        ending = rule.price_ending.quantize(step)
        candidate = amount.to_integral_value(rounding=ROUND_FLOOR) + ending
        if candidate > amount:
            candidate -= 1
        amount = candidate
    if rule.floor is not None and amount < rule.floor:
        amount = rule.floor.quantize(step, rounding=ROUND_HALF_UP)
        if rule.price_ending is not None:  # the smallest price with that ending at or above the floor
            candidate = amount.to_integral_value(rounding=ROUND_FLOOR) + rule.price_ending.quantize(step)
            amount = candidate if candidate >= amount else candidate + 1
    # Rounding up a unit price at the contract's largest amount must not make it unsendable.
    highest = MAX_AMOUNT.quantize(step, rounding=ROUND_FLOOR)
    return Money(amount=min(max(amount, Decimal(0)), highest), currency=unit_price.currency)


# --- Storage, as the handlers see it ------------------------------------------------------


class RelistingRepository(Protocol):
    """What relisting's handlers need of storage: the sellers' policies and the decisions taken.
    The PostgreSQL one is `adapters.PostgresRelistingRepository`; mypy holds the unit tests\' fakes to it."""

    async def owner(self, lpn: str) -> str | None:
        """The seller the unit was decided for (earlier in this batch or before); None if never."""

    def record(self, graded: UnitGraded, policy_version: int) -> None:
        """Remember the decision; written by `flush` in one statement (a later grade of the same
        unit in the batch replaces an earlier one)."""

    async def policy_for(self, seller_id: str) -> tuple[Policy, int]:
        """The seller's policy and its version; the default policy is version 0."""
