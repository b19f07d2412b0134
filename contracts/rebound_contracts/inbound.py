"""Events produced by upstream systems: the shop connector and the warehouse's WMS."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, PositiveInt

from .common import FROZEN, NO_NUL, Channel, Condition, Identifier, Money, TenantEvent


class RmaLine(BaseModel):
    model_config = FROZEN

    line_id: Identifier
    sku: Identifier
    quantity: PositiveInt = Field(le=10_000)
    unit_price: Money
    size: str | None = Field(default=None, max_length=32, pattern=NO_NUL)
    colour: str | None = Field(default=None, max_length=32, pattern=NO_NUL)


class RmaIssued(TenantEvent):
    """`returns.rma.v1`: the shop accepted a return; the parcel is on its way."""

    shop_id: Identifier
    channel: Channel
    return_id: Identifier
    order_id: Identifier
    tracking_number: Identifier
    reason_code: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)]
    lines: Annotated[list[RmaLine], Field(min_length=1, max_length=500)]
    buyer_id: Identifier | None = None
    """The marketplace's identifier of the buyer (a user id or login, never a name or an address),
    when the shop gives one: operators find a buyer's returns by it."""


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


class ParcelMatched(TenantEvent):
    """`returns.parcel-matched.v1`: an operator matched a parcel waiting without its return order
    (scanned under `tracking_number`, which no return of the seller carries) to the seller's
    return `return_id`; its units are received against that return."""

    tracking_number: Identifier
    return_id: Identifier
    operator_id: Identifier


class ParcelReceivedUnexpected(TenantEvent):
    """`returns.parcel-received-unexpected.v1`: an operator received a parcel that waits without
    its return order (scanned under `tracking_number`) as unexpected stock: its units are
    registered to the seller, each one an unexpected unit that waits for an operator to add it to
    a return (`returns.unit-added-to-return.v1`) or quarantine it (`returns.unit-quarantined.v1`)."""

    tracking_number: Identifier
    operator_id: Identifier


class UnitAddedToReturn(TenantEvent):
    """`returns.unit-added-to-return.v1`: an operator added an unexpected unit (one its parcel's
    return did not list, or one received as unexpected stock) to the seller's return `return_id`,
    on its line `line_id`: the unit is received against that return like any other."""

    lpn: Identifier
    return_id: Identifier
    line_id: Identifier
    operator_id: Identifier


class UnitQuarantined(TenantEvent):
    """`returns.unit-quarantined.v1`: an operator set an unexpected unit aside, for `reason`: it is
    never received against a return, graded or offered."""

    lpn: Identifier
    reason: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL)]
    operator_id: Identifier


class UnitPicked(TenantEvent):
    """`wms.unit-picked.v1`: the warehouse picked a unit for a customer order on `channel`. The
    storefront already counted its own sale, so Rebound's ledger goes down without sending a -1."""

    warehouse_id: Identifier
    lpn: Identifier
    channel: Channel
    order_id: Identifier


class ExchangeRequested(TenantEvent):
    """`returns.exchange-requested.v1`: a buyer wants the same product in another size (`sku`),
    shipped from `warehouse_id`."""

    exchange_id: Identifier
    return_id: Identifier
    shop_id: Identifier
    channel: Channel
    warehouse_id: Identifier
    sku: Identifier


AckStatus = Literal["applied", "rejected", "paused"]


class StorefrontAck(TenantEvent):
    """`storefront.acks.v1`: a connector's answer to a stock adjustment or a listing request
    (`ref_event_id`). `rejected` (the marketplace refused it) and `paused` (the listing was paused)
    take the listing's units back to be placed elsewhere."""

    ref_event_id: UUID
    status: AckStatus
    reason: Annotated[str, Field(max_length=1000, pattern=NO_NUL)] = ""
    shop_id: Identifier
    channel: Channel
    warehouse_id: Identifier
    sku: Identifier
    condition: Condition
