"""The size-fit rule: a size of a product that buyers send back as too small (or too large) far
more often than the product's sizes on average. Pure: no I/O, no clock.

"Far more often", on the returned units of one product in one period:
- the product has at least `MIN_PRODUCT_RETURNS` returned units and the size `MIN_SIZE_RETURNS`;
- the size's share of units returned as too small is at least `MIN_RATIO` times the product's;
- and it is at least `MIN_Z` standard errors above it (a binomial z-score), so a handful of
  returns of a rare size does not make a signal.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .model import SizeSignal

MIN_PRODUCT_RETURNS = 30
MIN_SIZE_RETURNS = 10
MIN_RATIO = 1.5
MIN_Z = 3.0

KINDS = {"too_small": "size_runs_small", "too_large": "size_runs_large"}


def fit_direction(reason_category: str, reason_code: str) -> str | None:
    """'too_small' or 'too_large' for a SIZE_FIT return whose raw code says which, else None
    (eBay's DOESNT_FIT does not say)."""
    if reason_category != "SIZE_FIT":
        return None
    code = reason_code.lower()
    if "small" in code or "tight" in code:
        return "too_small"
    if "large" in code or "big" in code or "loose" in code:
        return "too_large"
    return None


def product_of(sku: str, size: str | None) -> str:
    """The product a SKU is a size of: the SKU without a trailing size segment (TEE-BLK-M in
    size M is TEE-BLK); a SKU that does not end in its size is the product itself."""
    if size:
        for separator in ("-", "_", "/", "."):
            suffix = f"{separator}{size}".lower()
            if sku.lower().endswith(suffix) and len(sku) > len(suffix):
                return sku[: -len(suffix)]
    return sku


@dataclass(frozen=True)
class FitCount:
    """Returned units of one SKU and size, for one raw reason."""

    sku: str
    size: str | None
    reason_category: str
    reason_code: str
    units: int


def size_signals(counts: Iterable[FitCount]) -> list[SizeSignal]:
    """Every size that runs small or large by the rule above, strongest first."""
    units: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    matching: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    skus: dict[tuple[str, str], set[str]] = defaultdict(set)
    for count in counts:
        if not count.size:
            continue
        product = product_of(count.sku, count.size)
        units[product][count.size] += count.units
        skus[(product, count.size)].add(count.sku)
        direction = fit_direction(count.reason_category, count.reason_code)
        if direction is not None:
            matching[(product, direction)][count.size] += count.units
    signals = []
    for product, by_size in units.items():
        total = sum(by_size.values())
        if total < MIN_PRODUCT_RETURNS:
            continue
        for direction, kind in KINDS.items():
            hits = matching.get((product, direction), {})
            product_hits = sum(hits.values())
            base = product_hits / total
            if not 0 < base < 1:
                continue
            for size, n in by_size.items():
                k = hits.get(size, 0)
                share = k / n
                z = (share - base) / math.sqrt(base * (1 - base) / n)
                if n >= MIN_SIZE_RETURNS and share >= MIN_RATIO * base and z >= MIN_Z:
                    words = direction.replace("_", " ")
                    signals.append(
                        SizeSignal(
                            kind=kind,
                            sku=product,
                            size=size,
                            skus=sorted(skus[(product, size)]),
                            size_returns=n,
                            size_matching=k,
                            size_share=round(share, 4),
                            sku_returns=total,
                            sku_matching=product_hits,
                            sku_share=round(base, 4),
                            z_score=round(z, 2),
                            summary=(
                                f"{product} in size {size}: {k} of {n} returned units ({share:.0%}) came back "
                                f"{words}, against {base:.0%} across its sizes ({product_hits} of {total})"
                            ),
                        )
                    )
    return sorted(signals, key=lambda s: (-s.z_score, s.sku, s.size, s.kind))
