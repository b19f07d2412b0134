"""The seller report as data: what the table, JSON and HTML renderers show."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

Amount = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]
Share = Annotated[float, Field(ge=0, le=1)]

_FROZEN = ConfigDict(frozen=True)


class Tally(BaseModel):
    """Returned units of one value of a dimension (a reason category, a size, a grade...)."""

    model_config = _FROZEN
    key: str
    units: int
    share: Share


class SkuReturns(BaseModel):
    model_config = _FROZEN
    sku: str
    units: int
    share: Share
    size_fit: int
    top_reason: str
    resold: int


class HeatCell(BaseModel):
    model_config = _FROZEN
    size: str
    colour: str
    units: int


class CurrencyValues(BaseModel):
    """Value figures in one currency; a seller selling in several gets one of these each."""

    model_config = _FROZEN
    currency: str
    returned_value: Amount
    """Original price of every returned unit."""
    resold_original_value: Amount
    recovered_value: Amount
    """What the resold units sold for."""
    recovery_rate: Share | None
    """recovered / the resold units' original price."""
    lost_value: Amount
    """Original price of the units graded C or SCRAP."""
    loss_value_rate: Share | None


class DockToStock(BaseModel):
    """From the parcel's scan at the dock to the unit's first offer on a storefront."""

    model_config = _FROZEN
    offered: int
    not_offered: int
    median_hours: float | None
    p90_hours: float | None
    buckets: list[Tally]


class WeekRecovery(BaseModel):
    """The units returned in one ISO week (by dock scan) and what the resold ones earned."""

    model_config = _FROZEN
    week: date
    returned: int
    resold: int
    currency: str
    returned_value: Amount
    recovered_value: Amount


class SizeSignal(BaseModel):
    """A size of a product returned for fit far more often than the product's sizes on average."""

    model_config = _FROZEN
    kind: str
    sku: str
    size: str
    skus: list[str]
    size_returns: int
    size_matching: int
    size_share: Share
    sku_returns: int
    sku_matching: int
    sku_share: Share
    z_score: float
    summary: str


class SellerReport(BaseModel):
    model_config = _FROZEN
    seller_id: str
    period_from: date
    period_to: date
    """Inclusive: units scanned at the dock on these days (UTC)."""
    generated_at: datetime
    units_returned: int
    returns: int
    by_reason: list[Tally]
    by_reason_code: list[Tally]
    by_sku: list[SkuReturns]
    by_size: list[Tally]
    by_colour: list[Tally]
    sizes: list[str]
    colours: list[str]
    size_colour: list[HeatCell]
    grade_mix: list[Tally]
    units_offered: int
    units_resold: int
    resale_rate: Share | None
    """Units resold / units returned."""
    units_lost: int
    loss_rate: Share | None
    """Units graded C or SCRAP / units graded."""
    money: list[CurrencyValues]
    dock_to_stock: DockToStock
    recovery_by_week: list[WeekRecovery]
    size_signals: list[SizeSignal]
