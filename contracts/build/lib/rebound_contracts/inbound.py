"""Events produced by upstream systems: the shop connector and the warehouse's WMS."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, PositiveInt

from .common import FROZEN, Channel, Identifier, Money, TenantEvent


class RmaLine(BaseModel):
    model_config = FROZEN

    line_id: Identifier
    sku: Identifier
    quantity: PositiveInt = Field(le=10_000)
    unit_price: Money
    size: str | None = Field(default=None, max_length=32)
    colour: str | None = Field(default=None, max_length=32)


class RmaIssued(TenantEvent):
    """`returns.rma.v1`: the shop accepted a return; the parcel is on its way."""

    shop_id: Identifier
    channel: Channel
    return_id: Identifier
    order_id: Identifier
    tracking_number: Identifier
    reason_code: Annotated[str, Field(min_length=1, max_length=256)]
    lines: Annotated[list[RmaLine], Field(min_length=1, max_length=500)]


class ScannedUnit(BaseModel):
    model_config = FROZEN

    lpn: Identifier
    sku: Identifier


class ParcelScanned(TenantEvent):
    """`wms.parcel-scanned.v1`: a parcel was opened at the dock and each unit got an LPN."""

    warehouse_id: Identifier
    station_id: Identifier
    operator_id: Identifier
    tracking_number: Identifier
    units: Annotated[list[ScannedUnit], Field(min_length=1, max_length=500)]


class InspectionChecks(BaseModel):
    model_config = FROZEN

    packaging: Literal["intact", "worn", "damaged", "missing"]
    appearance: Literal["as_new", "minor_flaw", "major_flaw"]
    function: Literal["works", "faulty", "not_applicable"]
    accessories: Literal["complete", "incomplete"]
    irreparable: bool


class UnitInspected(TenantEvent):
    """`wms.unit-inspected.v1`: QC looked at a unit. A later inspection of the LPN supersedes it."""

    warehouse_id: Identifier
    lpn: Identifier
    inspector_id: Identifier
    checks: InspectionChecks


RefurbishAction = Literal["cleaned", "disinfected", "repackaged", "relabelled", "repaired"]


class UnitRefurbished(TenantEvent):
    """`wms.unit-refurbished.v1`: work was done on a unit (e.g. repackaged)."""

    warehouse_id: Identifier
    lpn: Identifier
    actions: Annotated[list[RefurbishAction], Field(min_length=1, max_length=10)]
