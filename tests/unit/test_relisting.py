"""Disposition policies: rules, pricing, marketplace vocabularies, and policy files."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rebound.relisting.domain import DEFAULT_POLICY, DestinationRule, PolicyError, decide, price
from rebound.relisting.handlers import decide_disposition
from rebound.relisting.policy_file import dump_policy, parse_policy
from rebound_contracts import Money
from rebound_contracts.topics import DISPOSITIONS, EXCEPTIONS
from tests import factories as f

from .fakes import context, emitted

POLICY = """\
rules:
  - name: dresses
    when: {grade: B, sku_prefix: [DRESS-, GOWN-]}
    destinations:
      - {kind: exchange_pool, quota: 2}
      - {kind: listing, channel: ebay, condition: open_box, marketplace_condition: USED_EXCELLENT}
      - {kind: listing, channel: amazon, condition: open_box, discount_pct: 30, floor: "12.00"}
  - name: scrap-parts
    when: {grade: SCRAP, sku: [PHONE-X]}
    destinations: [{kind: parts_harvest}]
"""


def test_the_first_matching_rule_decides_and_says_why() -> None:
    decision = decide(parse_policy(POLICY), f.graded("s", "L1", "B", sku="GOWN-RED-M", price="20.00"))
    assert decision.rule == "dresses"
    assert decision.reasons[0] == "rule 'dresses' matched: grade B, sku prefix GOWN-"
    kinds = [(c.kind, c.channel, c.marketplace_condition, c.marketplace_condition_id) for c in decision.candidates]
    assert kinds == [
        ("exchange_pool", None, None, None),
        ("listing", "ebay", "USED_EXCELLENT", 3000),
        ("listing", "amazon", "new_open_box", None),
    ]
    assert decision.candidates[2].price == Money(amount=Decimal("14.00"), currency="USD")


def test_a_unit_no_rule_matches_follows_the_default_policy() -> None:
    policy = parse_policy(POLICY)
    for grade, kind, condition in (
        ("A", "listing", "new"),
        ("B", "listing", "open_box"),
        ("C", "repair", None),
        ("SCRAP", "disposal", None),
    ):
        decision = decide(policy, f.graded("s", "L1", grade, sku="HAT-1", price="19.90"))
        assert decision.rule == f"default-{grade}" and decision.reasons[0].startswith("no rule of the seller")
        [candidate] = decision.candidates
        assert (candidate.kind, candidate.condition) == (kind, condition)


def test_the_default_policy_keeps_the_original_listing_price_and_lists_b_at_80_percent() -> None:
    a = decide(DEFAULT_POLICY, f.graded("s", "L1", "A", price="19.90")).candidates[0]
    b = decide(DEFAULT_POLICY, f.graded("s", "L1", "B", sku="TEE-M", price="19.90")).candidates[0]
    assert (a.channel, a.price) == ("tiktok", None)  # joins the existing listing at its own price
    assert b.price is not None
    assert (b.channel, b.listing_sku, b.price.amount) == ("tiktok", "TEE-M-OB", Decimal("15.92"))


@pytest.mark.parametrize(
    ("rule", "unit_price", "expected"),
    [
        (dict(discount_pct=20), Money(amount="19.90", currency="USD"), "15.92"),
        (dict(discount_pct=25, price_ending="0.99"), Money(amount="39.90", currency="USD"), "28.99"),
        (dict(discount_pct=90, floor="9.99"), Money(amount="39.90", currency="USD"), "9.99"),
        (dict(discount_pct=90, floor="10.50", price_ending="0.99"), Money(amount="39.90", currency="USD"), "10.99"),
        (dict(discount_pct=15), Money(amount="1999", currency="JPY"), "1699"),
        (dict(price="29.00"), Money(amount="5.00", currency="EUR"), "29.00"),
        (dict(discount_pct=0), Money(amount="9999999999.9999", currency="USD"), "9999999999.99"),
        (dict(discount_pct=0, price_ending="0.99"), Money(amount="9999999999.9999", currency="USD"), "9999999999.99"),
        (dict(discount_pct=0), Money(amount="9999999999.9999", currency="JPY"), "9999999999"),
    ],
)
def test_prices_are_decimal_rounded_to_the_currency_and_never_below_the_floor(
    rule: dict, unit_price: Money, expected: str
) -> None:
    result = price(unit_price, DestinationRule(kind="listing", condition="open_box", **rule))
    assert (format(result.amount, "f"), result.currency) == (expected, unit_price.currency)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - name: x\n    destinations:\n      - kind: listing\n",
            "4: rules.0.destinations.0: a listing needs a condition",
        ),
        (
            "rules:\n  - name: x\n    destinations:\n      - {kind: teleport}\n",
            "4: rules.0.destinations.0.kind: Input should be",
        ),
        (
            "rules:\n  - name: x\n    destinations:\n      - {kind: listing, channel: tiktok, condition: new,\n"
            "         marketplace_condition: NEW}\n",
            "4: rules.0.destinations.0: channel tiktok has no condition field",
        ),
        (
            "rules:\n  - name: x\n    destinations:\n      - {kind: listing, channel: ebay, condition: new,\n"
            "         marketplace_condition: MINT}\n",
            "ebay has no condition 'MINT'",
        ),
        (
            "rules:\n  - name: x\n    destinations: [{kind: exchange_pool}]\n",
            "3: rules.0.destinations.0: an exchange_pool needs a quota",
        ),
        (
            "rules:\n  - name: x\n    destinations: [{kind: repair}]\n"
            "  - name: x\n    destinations: [{kind: repair}]\n",
            "1: (policy): two rules are named 'x'",
        ),
        (
            "rules:\n  - name: x\n    whne: {grade: A}\n    destinations: [{kind: repair}]\n",
            "3: rules.0.whne: Extra inputs",
        ),
        ("rules: [\n  {name: x,\n", ": not valid YAML or JSON"),
        (
            '{"rules": [{"name": "x", "destinations": [{"kind": "listing", "condition": "used"}]}]}',
            "1: rules.0.destinations.0.condition",
        ),
    ],
)
def test_a_bad_policy_file_names_its_line_and_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yaml")
    assert str(caught.value).startswith("policy.yaml:") and message in str(caught.value)


def test_a_policy_shown_as_yaml_can_be_set_again_unchanged() -> None:
    policy = parse_policy(POLICY)
    assert parse_policy(dump_policy(policy)) == policy
    assert parse_policy(dump_policy(DEFAULT_POLICY)) == DEFAULT_POLICY


class _Policies:
    def __init__(self, policy, owners: dict[str, str] | None = None) -> None:
        self.policy = policy
        self.owners = owners or {}
        self.recorded: list = []

    async def owner(self, lpn: str) -> str | None:
        return self.owners.get(lpn)

    async def policy_for(self, seller_id: str):
        return self.policy, 7

    def record(self, graded, version: int) -> None:
        self.recorded.append((graded.lpn, graded.revision, version))


async def test_the_handler_emits_one_disposition_per_grade_with_its_revision_and_rule() -> None:
    graded = f.graded("s1", "L1", "B", revision=3, sku="DRESS-1", price="50.00")
    ctx = context(graded)
    policies = _Policies(parse_policy(POLICY))
    await decide_disposition(ctx, graded, policies)
    [decided] = emitted(ctx, DISPOSITIONS.name)
    assert policies.recorded == [("L1", 3, 7)]  # so a later policy decides it again
    assert (decided.seller_id, decided.lpn, decided.grade_revision, decided.policy_version, decided.rule) == (
        "s1",
        "L1",
        3,
        7,
        "dresses",
    )
    assert decided.source_event_id == graded.event_id and len(decided.candidates) == 3


async def test_a_grade_of_a_unit_decided_for_another_seller_is_reported_and_decides_nothing() -> None:
    graded = f.graded("intruder", "L1", "SCRAP", revision=2)
    ctx = context(graded)
    policies = _Policies(DEFAULT_POLICY, owners={"L1": "owner"})
    await decide_disposition(ctx, graded, policies)
    assert emitted(ctx, DISPOSITIONS.name) == [] and policies.recorded == []
    [raised] = emitted(ctx, EXCEPTIONS.name)
    assert (raised.kind, raised.seller_id, raised.source_event_id) == (
        "cross_tenant_reference",
        "intruder",
        graded.event_id,
    )
