"""In-memory stand-ins for the repositories, for handler unit tests only. The same handler
flows run against the real PostgreSQL repositories in tests/integration. mypy holds each fake to
the protocol of the repository it stands in for (the `_CHECKED` line at the end)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

import orjson

from rebound.db import Connection
from rebound.grading.domain import DEFAULT_RULES, GradingRepository, GradingRules, Refurbishment, UnitState
from rebound.intake.domain import IntakeRepository, LineDetail, OpenLine, RegisteredUnit, ReturnOrder
from rebound.messaging.outbox import OutboxBuffer
from rebound.messaging.processor import Context
from rebound_contracts import (
    TOPICS_BY_NAME,
    MessageSource,
    ParcelScanned,
    RmaIssued,
    UnitInspected,
    UnitReceived,
    UnitRefurbished,
)

NOW = datetime.fromisoformat("2026-11-05T10:00:00+00:00")


def context(event: Any, topic: str = "test.topic") -> Context:
    return Context(
        conn=cast(Connection, None),  # handlers reach storage through their repository only
        outbox=OutboxBuffer("test"),
        source=MessageSource(topic=topic, partition=0, offset=7),
        now=NOW,
        event=event,
    )


def emitted(ctx: Context, topic_name: str) -> list[Any]:
    """The events a handler put in the outbox for `topic_name`, parsed back from their bytes."""
    model = TOPICS_BY_NAME[topic_name].model
    return [model.model_validate_json(payload) for _, topic, _, payload, _ in ctx.outbox.rows if topic == topic_name]


@dataclass
class FakeIntakeRepository:
    rmas: dict[tuple[str, str], ReturnOrder] = field(default_factory=dict)
    lines: dict[tuple[str, str], list[LineDetail]] = field(default_factory=dict)
    units: dict[str, dict[str, Any]] = field(default_factory=dict)
    parked: list[tuple[ParcelScanned, MessageSource]] = field(default_factory=list)
    reported: set[tuple[str, UUID]] = field(default_factory=set)  # parked scans an operator was told of

    async def add_rma(self, rma: RmaIssued, reason_category: str, lane: str) -> bool:
        key = (rma.seller_id, rma.return_id)
        if key in self.rmas:
            return False
        self.rmas[key] = ReturnOrder.of(rma, reason_category, lane)
        self.lines[key] = [
            LineDetail(
                OpenLine(line.line_id, line.sku, line.quantity, 0),
                Decimal(line.unit_price.amount),
                line.unit_price.currency,
                line.size,
                line.colour,
            )
            for line in rma.lines
        ]
        return True

    async def sellers_with_tracking(self, tracking_number: str) -> set[str]:
        return {r.seller_id for r in self.rmas.values() if r.tracking_number == tracking_number}

    async def rma_for_tracking(self, seller_id: str, tracking_number: str) -> ReturnOrder | None:
        return next(
            (r for r in self.rmas.values() if r.seller_id == seller_id and r.tracking_number == tracking_number), None
        )

    async def rma_by_id(self, seller_id: str, return_id: str) -> ReturnOrder | None:
        return self.rmas.get((seller_id, return_id))

    async def lines_for_update(self, seller_id: str, return_id: str) -> list[LineDetail]:
        return list(self.lines[(seller_id, return_id)])

    async def owners_of(self, lpns: list[str]) -> dict[str, str]:
        return {lpn: self.units[lpn]["seller_id"] for lpn in lpns if lpn in self.units}

    async def add_units(
        self, scan: ParcelScanned, rows: list[tuple[str, str, str | None, str | None, str | None]]
    ) -> None:
        for lpn, sku, return_id, line_id, lane in rows:
            self.units[lpn] = dict(
                seller_id=scan.seller_id,
                sku=sku,
                return_id=return_id,
                line_id=line_id,
                lane=lane,
                warehouse_id=scan.warehouse_id,
                tracking_number=scan.tracking_number,
                quarantine_reason=None,
            )
            if line_id and return_id:
                self._count(scan.seller_id, return_id, line_id)

    def _count(self, seller_id: str, return_id: str, line_id: str) -> None:
        key = (seller_id, return_id)
        self.lines[key] = [
            replace(d, line=replace(d.line, received=d.line.received + 1)) if d.line.line_id == line_id else d
            for d in self.lines[key]
        ]

    async def unit_for_update(self, lpn: str) -> RegisteredUnit | None:
        unit = self.units.get(lpn)
        if unit is None:
            return None
        fields = ("seller_id", "sku", "warehouse_id", "tracking_number", "return_id", "quarantine_reason")
        return RegisteredUnit(lpn, *(unit[name] for name in fields))

    async def receive_unit(self, unit: RegisteredUnit, rma: ReturnOrder, line_id: str) -> None:
        self.units[unit.lpn].update(return_id=rma.return_id, line_id=line_id, lane=rma.lane)
        self._count(rma.seller_id, rma.return_id, line_id)

    async def quarantine_unit(self, unit: RegisteredUnit, reason: str, at: datetime) -> None:
        self.units[unit.lpn]["quarantine_reason"] = reason

    async def park_scan(self, scan: ParcelScanned, source: MessageSource, *, reported: bool = False) -> None:
        self.parked.append((scan, source))
        if reported:
            self.reported.add((scan.seller_id, scan.event_id))

    async def take_parked_scans(
        self, seller_id: str, tracking_number: str
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        taken = [(s, src) for s, src in self.parked if (s.seller_id, s.tracking_number) == (seller_id, tracking_number)]
        self.parked = [p for p in self.parked if p not in taken]
        return taken

    async def others_parked(self, seller_id: str, tracking_number: str) -> list[tuple[ParcelScanned, MessageSource]]:
        told = [
            (s, src)
            for s, src in self.parked
            if s.tracking_number == tracking_number
            and s.seller_id != seller_id
            and (s.seller_id, s.event_id) not in self.reported
        ]
        self.reported.update((s.seller_id, s.event_id) for s, _ in told)
        return told

    async def unreported_parked_scans(
        self, parked_before: datetime, limit: int = 500
    ) -> list[tuple[ParcelScanned, MessageSource]]:
        return [(s, src) for s, src in self.parked if (s.seller_id, s.event_id) not in self.reported][:limit]

    async def mark_reported(self, scans: list[tuple[str, UUID]], at: datetime) -> None:
        self.reported.update(scans)


@dataclass
class FakeGradingRepository:
    units: dict[str, UnitState] = field(default_factory=dict)
    rules: dict[str, GradingRules] = field(default_factory=dict)

    async def owner(self, lpn: str) -> str | None:
        return self.units[lpn].seller_id if lpn in self.units else None

    def _merge(self, lpn: str, seller_id: str, **changes: Any) -> UnitState | None:
        state = self.units.get(lpn)
        if state is None:
            state = UnitState(lpn, seller_id, None, None, None, (), None, (), 0)
        elif state.seller_id != seller_id:
            return None
        self.units[lpn] = replace(state, **changes)
        return self.units[lpn]

    async def merge_receipt(self, unit: UnitReceived) -> UnitState | None:
        return self._merge(unit.lpn, unit.seller_id, received=unit)

    async def take_over(self, unit: UnitReceived) -> UnitState | None:
        state = self.units[unit.lpn]
        if state.received is not None:
            return None
        self.units[unit.lpn] = UnitState(
            unit.lpn, unit.seller_id, unit, None, None, (), state.grade, state.reasons, state.revision
        )
        return self.units[unit.lpn]

    async def merge_inspection(self, inspection: UnitInspected) -> UnitState | None:
        state = self.units.get(inspection.lpn)
        if state is not None and state.inspected_at is not None and state.inspected_at > inspection.occurred_at:
            return None
        return self._merge(
            inspection.lpn,
            inspection.seller_id,
            checks=orjson.loads(inspection.checks.model_dump_json()),
            inspected_at=inspection.occurred_at,
        )

    async def merge_refurbishment(self, work: UnitRefurbished) -> UnitState | None:
        state = self.units.get(work.lpn)
        before = state.refurbishments if state and state.seller_id == work.seller_id else ()
        done = Refurbishment(work.occurred_at, tuple(work.actions))
        return self._merge(work.lpn, work.seller_id, refurbishments=(*before, done))

    async def record_grade(self, lpn: str, grade: str, reasons: tuple[str, ...], revision: int) -> None:
        self.units[lpn] = replace(self.units[lpn], grade=grade, reasons=tuple(reasons), revision=revision)

    async def rules_for(self, seller_id: str) -> GradingRules:
        return self.rules.get(seller_id, DEFAULT_RULES)


_CHECKED: tuple[type[IntakeRepository], type[GradingRepository]] = (FakeIntakeRepository, FakeGradingRepository)
