"""A deterministic return wave: what a busy week of apparel returns looks like on the wire.

`generate` is pure (no I/O, no clock once `start` is fixed): the same `WaveConfig` gives the same
messages byte for byte, so a failing run can be replayed exactly. Alongside the messages it works
out, independently of the services, what the outcome must be (each unit's final grade and each
storefront key's final stock), which is what the checker holds the system to.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic import BaseModel

from rebound_contracts import (
    InspectionChecks,
    Money,
    ParcelScanned,
    RmaIssued,
    RmaLine,
    ScannedUnit,
    UnitInspected,
    UnitRefurbished,
)
from rebound_contracts.common import IDENTIFIER_MAX_LENGTH, MAX_AMOUNT
from rebound_contracts.topics import (
    BY_NAME,
    PARCEL_SCANNED,
    RMA,
    UNIT_INSPECTED,
    UNIT_REFURBISHED,
    Topic,
)


class Outgoing(NamedTuple):
    """One Kafka record to send: the topic, the key and the value, all as they go on the wire."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class WaveConfig:
    """What to simulate. Every field, `start` included, goes into the output: keep `start` fixed
    to replay a wave byte for byte (its default is the current time)."""

    units: int = 10_000
    seed: int = 0
    sellers: int = 4
    warehouses: int = 2
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    bad_rate: float = 0.0
    hostile_rate: float = 0.0
    """Share of the wave's own events written as a hostile sender would (`HOSTILE_KINDS`)."""
    bad_kinds: tuple[str, ...] = ()
    """The kinds of bad input sent (`BAD_KINDS`); none named: every kind."""
    reinspect_rate: float = 0.01
    start: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.units < 1 or self.sellers < 1 or self.warehouses < 1:
            raise ValueError("units, sellers and warehouses must be at least 1")
        for name in ("duplicate_rate", "out_of_order_rate", "bad_rate", "hostile_rate", "reinspect_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be an aware datetime")
        unknown = sorted(set(self.bad_kinds) - set(BAD_KINDS))
        if unknown:
            raise ValueError(f"unknown bad kinds {unknown}: choose from {', '.join(BAD_KINDS)}")


@dataclass(frozen=True)
class Wave:
    """The messages of a wave in send order and what the system must make of them."""

    config: WaveConfig
    messages: list[Outgoing]
    expected_grades: dict[str, str]
    """lpn -> final grade, for the units matched to an RMA line of a valid return."""
    expected_stock: dict[str, int]
    """`seller_id:channel:warehouse_id:sku:condition` -> final available (keys above zero only)."""
    sellers: list[str]
    shops: dict[str, str]
    """seller_id -> the shop_id its events carry."""
    warehouses: list[str]
    parcels: int
    units: int
    unexpected_units: int
    out_of_order: int
    duplicates: int
    by_intended_grade: dict[str, int]
    by_reason_code: dict[str, int]
    bad_by_kind: dict[str, int]
    bad_kinds: dict[int, str]
    """index in `messages` -> kind, for every malformed or wrong message."""
    hostile_by_kind: dict[str, int]
    """Valid events of the wave sent in a hostile form (`HOSTILE_KINDS`), by kind."""
    shared_event_ids: int = 0
    """Valid events that carry an event_id another seller's event of the wave carries too: an
    event id is unique per seller only, so each is applied like any other."""

    def summary(self) -> dict[str, Any]:
        """The counts, for a log line or a table."""
        return {
            "seed": self.config.seed,
            "messages": len(self.messages),
            "sellers": len(self.sellers),
            "parcels": self.parcels,
            "units": self.units,
            "unexpected_units": self.unexpected_units,
            "out_of_order_returns": self.out_of_order,
            "duplicates": self.duplicates,
            "bad": sum(self.bad_by_kind.values()),
            "bad_by_kind": dict(self.bad_by_kind),
            "hostile": sum(self.hostile_by_kind.values()),
            "hostile_by_kind": dict(self.hostile_by_kind),
            "shared_event_ids": self.shared_event_ids,
            "by_intended_grade": dict(self.by_intended_grade),
            "by_expected_grade": dict(Counter(self.expected_grades.values())),
            "by_reason_code": dict(self.by_reason_code),
            "expected_sellable": sum(self.expected_stock.values()),
        }


# --- The catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Product:
    code: str
    price: Decimal
    has_function: bool  # a zip or a sole can be faulty; a tee cannot "work" or not


PRODUCTS = (
    _Product("TEE", Decimal("19.90"), False),
    _Product("JEANS", Decimal("49.90"), True),
    _Product("DRESS", Decimal("39.90"), False),
    _Product("HOODIE", Decimal("44.90"), True),
    _Product("SNEAKER", Decimal("69.90"), True),
    _Product("JACKET", Decimal("89.00"), True),
)
PRODUCT_WEIGHTS = (30, 18, 16, 14, 12, 10)
COLOURS = (("BLK", "black"), ("WHT", "white"), ("NAV", "navy"), ("GRY", "grey"), ("RED", "red"))
SIZES = ("XS", "S", "M", "L", "XL")
SIZE_WEIGHTS = (8, 20, 32, 26, 14)

CHANNELS = ("tiktok", "shopify", "amazon", "ebay")
MAIN_CHANNEL_WEIGHTS = (70, 12, 10, 8)
WAREHOUSES = ("US-LAX-1", "US-NJ-1", "GB-LHR-1", "DE-FRA-1", "JP-TYO-1")
BUYERS = 701
"""Buyers a wave's returns come from, so that a large wave has buyers with several returns."""

# Raw reason codes as each marketplace sends them, by what the buyer meant. Shopify has no
# "damaged" code: its buyers pick DEFECTIVE for a parcel that arrived broken.
REASON_CODES: dict[str, dict[str, tuple[str, ...]]] = {
    "size": {
        "tiktok": ("buyer_refund_item_is_too_small", "buyer_refund_item_is_too_large"),
        "shopify": ("SIZE_TOO_SMALL", "SIZE_TOO_LARGE"),
        "amazon": ("APPAREL_TOO_SMALL", "APPAREL_TOO_LARGE"),
        "ebay": ("DOESNT_FIT",),
    },
    "changed_mind": {
        "tiktok": ("ecom_order_delivered_refund_and_return_reason_no_longer_needed",),
        "shopify": ("UNWANTED",),
        "amazon": ("UNWANTED_ITEM",),
        "ebay": ("NO_LONGER_NEED_ITEM",),
    },
    "quality": {
        "tiktok": ("ecom_order_delivered_refund_and_return_reason_defective",),
        "shopify": ("DEFECTIVE",),
        "amazon": ("DEFECTIVE",),
        "ebay": ("DEFECTIVE_ITEM",),
    },
    "damaged": {
        "tiktok": ("ecom_order_delivered_refund_and_return_reason_damaged",),
        "shopify": ("DEFECTIVE",),
        "amazon": ("DAMAGED_BY_CARRIER",),
        "ebay": ("ARRIVED_DAMAGED",),
    },
    "not_as_described": {
        "tiktok": ("ecom_order_delivered_refund_and_return_reason_not_as_described",),
        "shopify": ("NOT_AS_DESCRIBED",),
        "amazon": ("NOT_AS_DESCRIBED",),
        "ebay": ("NOT_AS_DESCRIBED",),
    },
    "unknown": {channel: ("weird_code_xyz", "RETURN_REASON_UNMAPPED_42") for channel in CHANNELS},
}
# The seed's apparel case: mostly size.
REASON_WEIGHTS = {"size": 60, "changed_mind": 15, "quality": 10, "damaged": 8, "not_as_described": 5, "unknown": 2}
# What QC finds, by reason: size and changed-mind returns come back as new.
GRADE_WEIGHTS: dict[str, dict[str, int]] = {
    "size": {"A": 95, "B": 4, "C": 1},
    "changed_mind": {"A": 95, "B": 4, "C": 1},
    "unknown": {"A": 95, "B": 4, "C": 1},
    "quality": {"C": 70, "B": 22, "SCRAP": 8},
    "damaged": {"B": 40, "C": 40, "SCRAP": 20},
    "not_as_described": {"A": 50, "B": 35, "C": 15},
}
REGRADE_WEIGHTS = {"A": 40, "B": 30, "C": 20, "SCRAP": 10}

CHUNK_RETURNS = 200
UNEXPECTED_UNIT_RATE = 0.01
REPACKAGE_RATE = 0.5  # of B units whose only flaw is their packaging
BOX_DAMAGED_AGAIN_RATE = 0.2  # of repackaged units: re-inspected, the new box found damaged
OVERSIZED_BYTES = 310 * 1024

BAD_KINDS = (
    "invalid_json",
    "wrong_type",
    "missing_field",
    "unknown_enum",
    "bad_quantity",
    "nul_in_string",
    "oversized",
    "conflicting_duplicate",
    "unknown_seller",
    "cross_tenant",
)
SCHEMA_INVALID_KINDS = frozenset(
    {"invalid_json", "wrong_type", "missing_field", "unknown_enum", "bad_quantity", "nul_in_string"}
)
"""Kinds that fail to parse against their topic's model; the others are valid JSON for the model
but wrong in another way (too big, a conflicting retry, a stranger's seller id or reference)."""
MALFORMABLE: dict[str, tuple[type, ...]] = {
    "invalid_json": (RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished),
    "wrong_type": (RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished),
    "missing_field": (RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished),
    "unknown_enum": (RmaIssued, UnitInspected, UnitRefurbished),  # a scan has no enum field
    "bad_quantity": (RmaIssued,),
    "nul_in_string": (RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished),
}
"""Which message types each malformed kind is made from."""

HOSTILE_KINDS = ("deep_nesting", "many_unknown_fields", "long_strings", "edge_numbers")
"""Valid messages of the wave written as a hostile or careless sender might: an unknown field
nested 300 levels deep, a thousand unknown fields, strings at their longest (in characters of
three UTF-8 bytes), numbers at the edge of their types. They are the wave's own events (same
event_id, same meaning), so each must be applied like any other: the final stock counts them."""
HOSTILE_TYPES: dict[str, tuple[type, ...]] = {
    "deep_nesting": (RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished),
    "many_unknown_fields": (RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished),
    "long_strings": (RmaIssued, ParcelScanned, UnitInspected),
    "edge_numbers": (RmaIssued,),
}
DEEP_NESTING = 300
EDGE_NUMBERS = {
    "u64_max_plus_1": 2**64,
    "i64_min_minus_1": -(2**63) - 1,
    "f64_max": 1.7976931348623157e308,
    "f64_min_subnormal": 5e-324,
    "negative_zero": -0.0,
}


# --- Grading, as docs/design.md states it ---------------------------------------------------


def default_grade(checks: InspectionChecks, refurbished: Iterable[str] = ()) -> str:
    """The design's default grading rule, written here again on purpose: the simulator
    must not take the grading service's word for what a grade should be. `refurbished`: the work
    done after the inspection of `checks`; repackaging makes packaging intact."""
    packaging = "intact" if "repackaged" in set(refurbished) else checks.packaging
    if checks.irreparable:
        return "SCRAP"
    if checks.function == "faulty" or checks.accessories == "incomplete" or checks.appearance == "major_flaw":
        return "C"
    if packaging == "intact" and checks.appearance == "as_new":
        return "A"
    return "B"


def condition_of(grade: str) -> str | None:
    """Default channel policy: A sells as new, B as open box, C and SCRAP not at all."""
    return {"A": "new", "B": "open_box"}.get(grade)


def stock_key(seller_id: str, channel: str, warehouse_id: str, sku: str, condition: str) -> str:
    return f"{seller_id}:{channel}:{warehouse_id}:{sku}:{condition}"


def _checks_for(
    rng: random.Random, grade: str, has_function: bool, *, packaging_intact: bool = False
) -> tuple[InspectionChecks, bool]:
    """QC checks that the default rule grades `grade`, and whether packaging is the only flaw.
    `packaging_intact`: the unit was repackaged already, so a re-inspection sees new packaging."""
    works = "works" if has_function else "not_applicable"
    if grade == "A":
        checks = InspectionChecks(
            packaging="intact", appearance="as_new", function=works, accessories="complete", irreparable=False
        )
        return checks, False
    if grade == "B":
        if not packaging_intact and rng.random() < 0.5:
            packaging = rng.choice(("worn", "worn", "damaged", "missing"))
            return InspectionChecks(
                packaging=packaging, appearance="as_new", function=works, accessories="complete", irreparable=False
            ), True
        packaging = "intact" if packaging_intact else rng.choice(("intact", "worn"))
        return InspectionChecks(
            packaging=packaging, appearance="minor_flaw", function=works, accessories="complete", irreparable=False
        ), False
    packaging = "intact" if packaging_intact else rng.choice(("intact", "worn", "damaged"))
    if grade == "C":
        fault = rng.choice(("accessories", "appearance", "function") if has_function else ("accessories", "appearance"))
        return InspectionChecks(
            packaging=packaging,
            appearance="major_flaw" if fault == "appearance" else rng.choice(("as_new", "minor_flaw")),
            function="faulty" if fault == "function" else works,
            accessories="incomplete" if fault == "accessories" else "complete",
            irreparable=False,
        ), False
    return InspectionChecks(
        packaging=packaging,
        appearance="major_flaw",
        function="faulty" if has_function else "not_applicable",
        accessories=rng.choice(("complete", "incomplete")),
        irreparable=True,
    ), False


# --- Generation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seller:
    seller_id: str
    shop_id: str
    channel: str


@dataclass
class _Return:
    """One return and every valid event it causes, before they are put in send order."""

    rma: RmaIssued
    scan: ParcelScanned
    inspections: list[UnitInspected] = field(default_factory=list)
    refurbishments: list[UnitRefurbished] = field(default_factory=list)
    reinspections: list[UnitInspected] = field(default_factory=list)
    out_of_order: bool = False


@dataclass
class _Tally:
    units: int = 0
    unexpected: int = 0
    intended: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    grades: dict[str, str] = field(default_factory=dict)
    stock: Counter[str] = field(default_factory=Counter)


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _sellers(rng: random.Random, config: WaveConfig) -> list[_Seller]:
    sellers = []
    for i in range(1, config.sellers + 1):
        channel = "tiktok" if i == 1 else rng.choices(CHANNELS, weights=MAIN_CHANNEL_WEIGHTS)[0]
        sellers.append(_Seller(f"sim{config.seed}-seller-{i}", f"sim{config.seed}-shop-{i}", channel))
    return sellers


def catalogue() -> list[str]:
    """Every SKU a wave's units can be: product, colour and size."""
    return [f"{p.code}-{code}-{size}" for p in PRODUCTS for code, _ in COLOURS for size in SIZES]


def _warehouses(config: WaveConfig) -> list[str]:
    return [WAREHOUSES[j] if j < len(WAREHOUSES) else f"WH-{j + 1}" for j in range(config.warehouses)]


def _random_sku(rng: random.Random) -> tuple[_Product, str, str, str]:
    product = rng.choices(PRODUCTS, weights=PRODUCT_WEIGHTS)[0]
    colour_code, colour = rng.choice(COLOURS)
    size = rng.choices(SIZES, weights=SIZE_WEIGHTS)[0]
    return product, f"{product.code}-{colour_code}-{size}", colour, size


def _make_return(
    rng: random.Random,
    new_id: Callable[[], uuid.UUID],
    config: WaveConfig,
    n: int,
    at: datetime,
    seller: _Seller,
    warehouse: str,
    units_left: int,
    lpns: Iterable[int],
    tally: _Tally,
) -> _Return:
    """One RMA, its parcel scan, inspections, refurbishments and re-inspections."""
    seed = config.seed
    channel = seller.channel if rng.random() < 0.85 else rng.choice([c for c in CHANNELS if c != seller.channel])
    reason = _weighted(rng, REASON_WEIGHTS)
    reason_code = rng.choice(REASON_CODES[reason][channel])

    lines: list[RmaLine] = []
    products: dict[str, _Product] = {}
    for _ in range(rng.choices((1, 2, 3), weights=(70, 22, 8))[0]):
        if units_left <= 0:
            break
        product, sku, colour, size = _random_sku(rng)
        if sku in products:
            continue
        quantity = min(2 if rng.random() < 0.08 else 1, units_left)
        units_left -= quantity
        products[sku] = product
        lines.append(
            RmaLine(
                line_id=f"L{len(lines) + 1}",
                sku=sku,
                quantity=quantity,
                unit_price=Money(amount=product.price, currency="USD"),
                size=size,
                colour=colour,
            )
        )
    rma = RmaIssued(
        event_id=new_id(),
        occurred_at=at,
        seller_id=seller.seller_id,
        shop_id=seller.shop_id,
        channel=channel,
        return_id=f"R{seed}-{n:07d}",
        order_id=f"O{seed}-{n:07d}",
        tracking_number=f"SIM{seed}TRK{n:08d}",
        reason_code=reason_code,
        lines=lines,
        buyer_id=f"BUYER-{seed}-{n % BUYERS:03d}",  # a buyer returns now and then
    )
    tally.reasons[reason_code] += 1

    lpn_numbers = iter(lpns)
    matched = [(f"LPN-{seed}-{next(lpn_numbers)}", line.sku) for line in lines for _ in range(line.quantity)]
    rng.shuffle(matched)
    units = list(matched)
    if rng.random() < UNEXPECTED_UNIT_RATE:
        while True:  # a unit the RMA does not list: the buyer sent back something else too
            product, sku, _, _ = _random_sku(rng)
            if sku not in products:
                break
        products[sku] = product
        units.append((f"LPN-{seed}-{next(lpn_numbers)}", sku))
        tally.unexpected += 1
    scanned_at = at + timedelta(hours=rng.randint(24, 120), minutes=rng.randint(0, 59))
    scan = ParcelScanned(
        event_id=new_id(),
        occurred_at=scanned_at,
        seller_id=seller.seller_id,
        warehouse_id=warehouse,
        station_id=f"DOCK-{rng.randint(1, 6)}",
        operator_id=f"op-{rng.randint(1, 40):03d}",
        tracking_number=rma.tracking_number,
        units=[ScannedUnit(lpn=lpn, sku=sku) for lpn, sku in units],
    )
    ret = _Return(rma=rma, scan=scan)

    matched_lpns = {lpn for lpn, _ in matched}
    for lpn, sku in units:
        product = products[sku]
        intended = _weighted(rng, GRADE_WEIGHTS[reason])
        checks, packaging_only = _checks_for(rng, intended, product.has_function)
        inspected_at = scanned_at + timedelta(minutes=rng.randint(10, 240))
        ret.inspections.append(
            UnitInspected(
                event_id=new_id(),
                occurred_at=inspected_at,
                seller_id=seller.seller_id,
                warehouse_id=warehouse,
                lpn=lpn,
                inspector_id=f"qc-{rng.randint(1, 25):02d}",
                checks=checks,
            )
        )
        if lpn not in matched_lpns:
            continue  # parked as an exception: no grade, no stock, whatever QC says
        tally.units += 1
        tally.intended[intended] += 1
        refurbished: tuple[str, ...] = ()
        last_at = inspected_at
        if intended == "B" and packaging_only and rng.random() < REPACKAGE_RATE:
            refurbished = rng.choice((("cleaned", "repackaged"), ("repackaged", "relabelled")))
        elif intended == "A" and rng.random() < 0.1:
            refurbished = ("cleaned", "disinfected")
        if refurbished:
            last_at = inspected_at + timedelta(minutes=rng.randint(30, 600))
            ret.refurbishments.append(
                UnitRefurbished(
                    event_id=new_id(),
                    occurred_at=last_at,
                    seller_id=seller.seller_id,
                    warehouse_id=warehouse,
                    lpn=lpn,
                    actions=list(refurbished),
                )
            )
        reinspection = None
        if "repackaged" in refurbished and rng.random() < BOX_DAMAGED_AGAIN_RATE:
            # The new box is found damaged: the re-inspection sees the unit as it is, so the
            # repackaging done before it lifts nothing.
            reinspection = checks.model_copy(update={"packaging": "damaged"})
        elif rng.random() < config.reinspect_rate:
            regrade = _weighted(rng, {g: w for g, w in REGRADE_WEIGHTS.items() if g != intended})
            reinspection, _ = _checks_for(
                rng, regrade, product.has_function, packaging_intact="repackaged" in refurbished
            )
        if reinspection is not None:
            checks, refurbished = reinspection, ()  # all refurbishment came before it
            ret.reinspections.append(
                UnitInspected(
                    event_id=new_id(),
                    occurred_at=last_at + timedelta(days=1, minutes=rng.randint(0, 600)),
                    seller_id=seller.seller_id,
                    warehouse_id=warehouse,
                    lpn=lpn,
                    inspector_id=f"qc-{rng.randint(1, 25):02d}",
                    checks=checks,
                )
            )
        grade = default_grade(checks, refurbished)
        tally.grades[lpn] = grade
        condition = condition_of(grade)
        if condition is not None:
            tally.stock[stock_key(seller.seller_id, channel, warehouse, sku, condition)] += 1
    return ret


def encode(topic: Topic, message: BaseModel) -> Outgoing:
    return Outgoing(topic.name, topic.key_of(message).encode(), message.model_dump_json().encode())


def _send_order(returns: Sequence[_Return]) -> list[tuple[Outgoing, BaseModel]]:
    """Chunks of returns, each: RMAs, scans, inspections, refurbishments, re-inspections. An
    out-of-order return sends its re-inspections, refurbishments, inspections and then its scan at
    the end of the chunk before (or before the first chunk): all arrive before the RMA they depend
    on, and each QC event before the ones it happened after."""
    chunks = [returns[i : i + CHUNK_RETURNS] for i in range(0, len(returns), CHUNK_RETURNS)]
    segments: list[list[tuple[Topic, BaseModel]]] = [[] for _ in range(len(chunks) + 1)]
    for c, chunk in enumerate(chunks):
        early, here = segments[c], segments[c + 1]
        for ret in chunk:
            if ret.out_of_order:
                early.extend((UNIT_INSPECTED, m) for m in ret.reinspections)
                early.extend((UNIT_REFURBISHED, m) for m in ret.refurbishments)
                early.extend((UNIT_INSPECTED, m) for m in ret.inspections)
                early.append((PARCEL_SCANNED, ret.scan))
        in_order = [ret for ret in chunk if not ret.out_of_order]
        here.extend((RMA, ret.rma) for ret in chunk)
        here.extend((PARCEL_SCANNED, ret.scan) for ret in in_order)
        here.extend((UNIT_INSPECTED, m) for ret in in_order for m in ret.inspections)
        here.extend((UNIT_REFURBISHED, m) for ret in in_order for m in ret.refurbishments)
        here.extend((UNIT_INSPECTED, m) for ret in in_order for m in ret.reinspections)
    return [(encode(topic, message), message) for segment in segments for topic, message in segment]


def _json(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class _BadMaker:
    """Crafts the malformed and wrong messages. Each is built from a valid message already in the
    stream (so it looks real) and placed after the message it refers to."""

    def __init__(
        self,
        rng: random.Random,
        new_id: Callable[[], uuid.UUID],
        config: WaveConfig,
        base: Sequence[tuple[Outgoing, BaseModel]],
        sellers: Sequence[_Seller],
    ) -> None:
        self.rng, self.new_id, self.config, self.base, self.sellers = rng, new_id, config, base, sellers
        self.by_type: dict[type, list[int]] = {}
        for i, (_, message) in enumerate(base):
            self.by_type.setdefault(type(message), []).append(i)
        self.inspections_of: dict[str, list[int]] = {}
        for i in self.by_type.get(UnitInspected, []):
            inspection = base[i][1]
            assert isinstance(inspection, UnitInspected)  # by_type[UnitInspected] holds only those
            self.inspections_of.setdefault(inspection.lpn, []).append(i)
        self.serial = 0

    def _pick(self, *types: type) -> int:
        return self.rng.choice([i for t in types for i in self.by_type.get(t, [])])

    def _after(self, index: int) -> int:
        return min(len(self.base), index + 1 + self.rng.randint(0, 300))

    def _fresh(self, index: int) -> dict[str, Any]:
        """The document of a base message under a new event_id: a new message, not a retry."""
        document = self.base[index][1].model_dump(mode="json")
        document["event_id"] = str(self.new_id())
        return document

    def make(self, kind: str) -> tuple[int, Outgoing]:
        """(position in the base stream to insert before, the message)."""
        rng = self.rng
        self.serial += 1
        if kind in SCHEMA_INVALID_KINDS:
            i = self._pick(*MALFORMABLE[kind])
            topic, key = self.base[i][0].topic, self.base[i][0].key
            return self._after(i), Outgoing(topic, key, self._malformed(kind, i))
        if kind == "conflicting_duplicate":
            i = self._pick(RmaIssued, ParcelScanned, UnitInspected, UnitRefurbished)
            out, message = self.base[i]
            return self._after(i), Outgoing(out.topic, out.key, self._conflict(message).model_dump_json().encode())
        if kind == "oversized":
            rma = self._new_rma(rng.choice(self.sellers).seller_id)
            document = rma.model_dump(mode="json") | {"notes": "x" * OVERSIZED_BYTES}
            return rng.randint(0, len(self.base)), Outgoing(RMA.name, RMA.key_of(rma).encode(), _json(document))
        if kind == "unknown_seller":
            stranger = f"sim{self.config.seed}-unknown-{self.serial}"
            rma = self._new_rma(stranger)
            return rng.randint(0, len(self.base)), encode(RMA, rma)
        if kind == "cross_tenant":
            return self._cross_tenant()
        raise ValueError(f"unknown bad kind {kind!r}")

    def _malformed(self, kind: str, index: int) -> bytes:
        message = self.base[index][1]
        document = self._fresh(index)
        if kind == "invalid_json":
            form = self.rng.randrange(3)
            raw = _json(document)
            return raw[: len(raw) // 2] if form == 0 else b"\xff\xfe{not json" if form == 1 else raw + b"}{"
        if kind == "nul_in_string":
            field = {
                RmaIssued: "reason_code",
                ParcelScanned: "station_id",
                UnitInspected: "inspector_id",
                UnitRefurbished: "warehouse_id",
            }[type(message)]
            document[field] = document[field][:2] + "\u0000" + document[field][2:]
            return _json(document)
        if isinstance(message, RmaIssued):
            if kind == "wrong_type":
                document["lines"][0]["quantity"] = "two"
            elif kind == "missing_field":
                del document["tracking_number"]
            elif kind == "unknown_enum":
                document["channel"] = "myspace"
            else:
                document["lines"][0]["quantity"] = self.rng.choice((0, -1))
        elif isinstance(message, ParcelScanned):
            if kind == "wrong_type":
                document["units"] = document["units"][0]["lpn"]
            else:
                del document["warehouse_id"]
        elif isinstance(message, UnitInspected):
            if kind == "wrong_type":
                document["checks"]["irreparable"] = "maybe"
            elif kind == "missing_field":
                del document["checks"]
            else:
                document["checks"]["packaging"] = "crumpled"
        else:
            if kind == "wrong_type":
                document["actions"] = "repackaged"
            elif kind == "missing_field":
                del document["lpn"]
            else:
                document["actions"] = ["ironed"]
        return _json(document)

    def _conflict(self, message: BaseModel) -> BaseModel:
        """The same event_id with different content: a retry that is not one."""
        if isinstance(message, RmaIssued):
            return message.model_copy(update={"order_id": _other_identifier(message.order_id)})
        if isinstance(message, ParcelScanned):
            return message.model_copy(update={"station_id": _other_identifier(message.station_id)})
        if isinstance(message, UnitInspected):
            checks = message.checks.model_copy(update={"irreparable": not message.checks.irreparable})
            return message.model_copy(update={"checks": checks})
        assert isinstance(message, UnitRefurbished)
        actions = [a for a in ("cleaned", "repaired") if a not in message.actions] or ["relabelled"]
        return message.model_copy(update={"actions": list(message.actions) + actions[:1]})

    def _new_rma(self, seller_id: str) -> RmaIssued:
        """An RMA for a return no parcel will ever come for: harmless if it were applied."""
        seed, n = self.config.seed, self.serial
        at = self.config.start + timedelta(seconds=self.rng.randint(0, 86_400))
        product, sku, colour, size = _random_sku(self.rng)
        return RmaIssued(
            event_id=self.new_id(),
            occurred_at=at,
            seller_id=seller_id,
            shop_id=f"sim{seed}-shop-stray",
            channel="tiktok",
            return_id=f"R{seed}-Z{n:06d}",
            order_id=f"O{seed}-Z{n:06d}",
            tracking_number=f"SIM{seed}TRKZ{n:07d}",
            reason_code="buyer_refund_item_is_too_small",
            lines=[
                RmaLine(
                    line_id="L1",
                    sku=sku,
                    quantity=1,
                    unit_price=Money(amount=product.price, currency="USD"),
                    size=size,
                    colour=colour,
                )
            ],
        )

    def _cross_tenant(self) -> tuple[int, Outgoing]:
        """Another of the wave's sellers refers to a parcel or a unit it does not own."""
        rng = self.rng
        if len(self.sellers) < 2:
            return self.make("unknown_seller")
        i = self._pick(ParcelScanned)
        scan = self.base[i][1]
        assert isinstance(scan, ParcelScanned)
        thief = rng.choice([s.seller_id for s in self.sellers if s.seller_id != scan.seller_id])
        # Its inspection may come before or after its scan (out of order): go after both.
        after = max([i, *(j for u in scan.units for j in self.inspections_of.get(u.lpn, []))])
        if rng.random() < 0.5:
            forged = scan.model_copy(
                update={
                    "event_id": self.new_id(),
                    "seller_id": thief,
                    "occurred_at": scan.occurred_at + timedelta(minutes=5),
                    "units": [ScannedUnit(lpn=f"LPN-{self.config.seed}-X{self.serial}", sku=scan.units[0].sku)],
                }
            )
            return self._after(after), encode(PARCEL_SCANNED, forged)
        unit = rng.choice(scan.units)
        forged_inspection = UnitInspected(
            event_id=self.new_id(),
            occurred_at=scan.occurred_at + timedelta(hours=6),
            seller_id=thief,
            warehouse_id=scan.warehouse_id,
            lpn=unit.lpn,
            inspector_id="qc-99",
            checks=InspectionChecks(
                packaging="damaged",
                appearance="major_flaw",
                function="faulty",
                accessories="incomplete",
                irreparable=True,
            ),
        )
        return self._after(after), encode(UNIT_INSPECTED, forged_inspection)


def _longest(prefix: str, length: int) -> str:
    return prefix + "字" * (length - len(prefix))


def _hostile(kind: str, message: BaseModel) -> bytes:
    """`message` as a hostile sender writes it, still valid and with the same meaning."""
    if kind == "long_strings":
        if isinstance(message, RmaIssued):
            lines = [
                line.model_dump(mode="json")
                | {"size": _longest(line.size or "", 32), "colour": _longest(line.colour or "", 32)}
                for line in message.lines
            ]
            changes: dict[str, Any] = {"order_id": _longest(message.order_id, IDENTIFIER_MAX_LENGTH), "lines": lines}
        elif isinstance(message, ParcelScanned):
            changes = {
                "station_id": _longest(message.station_id, IDENTIFIER_MAX_LENGTH),
                "operator_id": _longest(message.operator_id, IDENTIFIER_MAX_LENGTH),
            }
        else:
            changes = {"inspector_id": _longest(getattr(message, "inspector_id"), IDENTIFIER_MAX_LENGTH)}
        document = message.model_dump(mode="json") | changes
    elif kind == "edge_numbers":
        document = message.model_dump(mode="json") | {"marketplace_numbers": EDGE_NUMBERS}
        for line in document["lines"]:
            line["unit_price"]["amount"] = str(MAX_AMOUNT)
    elif kind == "deep_nesting":
        document = message.model_dump(mode="json")
        extra: list[Any] = []
        for _ in range(DEEP_NESTING - 1):
            extra = [extra]
        document["extra"] = extra
    else:
        document = message.model_dump(mode="json") | {f"x_{n:04d}": n for n in range(1000)}
    return _json(document)


def generate(config: WaveConfig) -> Wave:
    """Build a wave. Pure: every random choice comes from `random.Random(config.seed)`."""
    rng = random.Random(config.seed)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    sellers = _sellers(rng, config)
    warehouses = _warehouses(config)
    tally = _Tally()
    returns: list[_Return] = []
    at = config.start
    next_lpn = 1
    while tally.units < config.units:
        n = len(returns) + 1
        ret = _make_return(
            rng,
            new_id,
            config,
            n,
            at,
            rng.choice(sellers),
            rng.choice(warehouses),
            config.units - tally.units,
            range(next_lpn, next_lpn + 1000),
            tally,
        )
        next_lpn += len(ret.scan.units)
        ret.out_of_order = rng.random() < config.out_of_order_rate
        returns.append(ret)
        at += timedelta(seconds=rng.randint(2, 30))

    base = _send_order(returns)
    hostile_by_kind: Counter[str] = Counter()
    taken: set[int] = set()
    if config.hostile_rate > 0:  # before any copy is made: a duplicate repeats the hostile bytes
        each = max(1, round(config.hostile_rate * len(base) / len(HOSTILE_KINDS)))
        for kind in HOSTILE_KINDS:
            fits = [i for i, (_, m) in enumerate(base) if isinstance(m, HOSTILE_TYPES[kind]) and i not in taken]
            for i in rng.sample(fits, min(each, len(fits))):
                out, message = base[i]
                value = _hostile(kind, message)
                base[i] = (
                    Outgoing(out.topic, out.key, value),
                    BY_NAME[out.topic].model.model_validate(json.loads(value)),
                )
                taken.add(i)
                hostile_by_kind[kind] += 1

    shared_event_ids = 0
    if config.hostile_rate > 0 and len(sellers) > 1:  # before any copy is made, as above
        by_topic: dict[str, list[int]] = {}
        for i, (out, _) in enumerate(base):
            by_topic.setdefault(out.topic, []).append(i)
        for _ in range(max(1, round(config.hostile_rate * len(base) / len(HOSTILE_KINDS)))):
            i = rng.randrange(len(base))
            j = rng.choice(by_topic[base[i][0].topic])
            out, message = base[i]
            donor = base[j][1]
            if i in taken or j in taken or i == j or getattr(donor, "seller_id") == getattr(message, "seller_id"):
                continue  # a hostile form stays as made; the donor keeps its own id
            shared = message.model_copy(update={"event_id": getattr(donor, "event_id")})
            base[i] = (Outgoing(out.topic, out.key, shared.model_dump_json().encode()), shared)
            taken.update((i, j))
            shared_event_ids += 1

    # Positions are (index in base, rank, serial): a copy or a bad message goes before base[index].
    placed: list[tuple[int, int, int, Outgoing, str | None]] = [(i, 1, 0, out, None) for i, (out, _) in enumerate(base)]
    duplicates = 0
    for i, (out, _) in enumerate(base):
        if config.duplicate_rate and rng.random() < config.duplicate_rate:
            duplicates += 1
            placed.append((min(len(base), i + 1 + rng.randint(0, 400)), 0, duplicates, out, None))

    n_bad = round(config.bad_rate * len(base))
    sent = config.bad_kinds or BAD_KINDS
    if config.bad_rate > 0:
        n_bad = max(n_bad, len(sent))
    kinds = [sent[j % len(sent)] for j in range(n_bad)]
    rng.shuffle(kinds)
    maker = _BadMaker(rng, new_id, config, base, sellers)
    bad_by_kind: Counter[str] = Counter()
    for serial, kind in enumerate(kinds):
        position, out = maker.make(kind)
        if kind == "cross_tenant" and len(sellers) < 2:
            kind = "unknown_seller"
        bad_by_kind[kind] += 1
        placed.append((position, 0, len(base) + serial, out, kind))

    placed.sort(key=lambda p: (p[0], p[1], p[2]))
    messages = [p[3] for p in placed]
    bad_kinds = {index: p[4] for index, p in enumerate(placed) if p[4] is not None}

    return Wave(
        config=config,
        messages=messages,
        expected_grades=dict(tally.grades),
        expected_stock={key: count for key, count in sorted(tally.stock.items()) if count > 0},
        sellers=[s.seller_id for s in sellers],
        shops={s.seller_id: s.shop_id for s in sellers},
        warehouses=warehouses,
        parcels=len(returns),
        units=tally.units,
        unexpected_units=tally.unexpected,
        out_of_order=sum(r.out_of_order for r in returns),
        duplicates=duplicates,
        by_intended_grade=dict(sorted(tally.intended.items())),
        by_reason_code=dict(tally.reasons.most_common()),
        bad_by_kind=dict(sorted(bad_by_kind.items())),
        bad_kinds=bad_kinds,
        hostile_by_kind=dict(sorted(hostile_by_kind.items())),
        shared_event_ids=shared_event_ids,
    )


def _other_identifier(value: str) -> str:
    """Another valid identifier: `-X` appended, or in place of the last two characters of one at
    the contract's longest (a hostile sender's longest identifiers are conflicted too)."""
    longest = IDENTIFIER_MAX_LENGTH
    other = value + "-X" if len(value) + 2 <= longest else value[: longest - 2] + "-X"
    return other if other != value else value[: longest - 2] + "-Y"
