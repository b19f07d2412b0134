"""Grading's PostgreSQL repository. Merges are upserts that only touch a row of the same seller,
so an event can never change another seller's unit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from rebound_contracts import UnitInspected, UnitReceived, UnitRefurbished

from ..db import Connection
from .domain import DEFAULT_RULES, GradingRules, Refurbishment, UnitState, counted_refurbishment, parse_rules

_COLUMNS = (
    "lpn, seller_id, received, inspection, inspection_event_id, inspected_at, refurbishments, refurbished,"
    " grade, reasons, revision"
)


_UNITS = "SELECT " + _COLUMNS + " FROM grading.units WHERE lpn = ANY($1::text[])"

_RULES = "SELECT seller_id, grading_rules FROM rebound.sellers WHERE seller_id = ANY($1::text[])"

_UNITS_AND_RULES = (
    "SELECT " + _COLUMNS + ", NULL AS grading_rules FROM grading.units WHERE lpn = ANY($1::text[])"
    " UNION ALL SELECT NULL, seller_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, grading_rules"
    " FROM rebound.sellers WHERE seller_id = ANY($2::text[])"
)
"""The units $1 that exist (rows with an `lpn`), and the rules of the sellers $2 (rows without):
one round trip for what a batch's prefetch needs."""


@dataclass
class _Row:
    """A unit's row as the batch has it; written back by `flush` when `dirty`."""

    lpn: str
    seller_id: str
    received: UnitReceived | None = None
    checks: dict[str, Any] | None = None
    inspection_event_id: Any = None
    inspected_at: datetime | None = None
    refurbishments: tuple[Refurbishment, ...] = ()
    grade: str | None = None
    reasons: tuple[str, ...] = ()
    revision: int = 0
    dirty: bool = False
    received_changed: bool = False
    """Whether `received` was set in this batch; if not, `flush` leaves the stored one as it is."""

    @classmethod
    def of(cls, record: asyncpg.Record) -> _Row:
        return cls(
            lpn=record["lpn"],
            seller_id=record["seller_id"],
            received=UnitReceived.model_validate_json(record["received"]) if record["received"] else None,
            checks=orjson.loads(record["inspection"]) if record["inspection"] else None,
            inspection_event_id=record["inspection_event_id"],
            inspected_at=record["inspected_at"],
            refurbishments=tuple(
                Refurbishment(datetime.fromisoformat(work["at"]), tuple(work["actions"]))
                for work in orjson.loads(record["refurbishments"])
            ),
            grade=record["grade"],
            reasons=tuple(record["reasons"] or ()),
            revision=record["revision"],
        )

    def state(self) -> UnitState:
        self.dirty = True  # every merge that returns a state changed the row
        return UnitState(
            lpn=self.lpn,
            seller_id=self.seller_id,
            received=self.received,
            checks=self.checks,
            inspected_at=self.inspected_at,
            refurbishments=self.refurbishments,
            grade=self.grade,
            reasons=self.reasons,
            revision=self.revision,
        )

    def values(self) -> tuple:
        # An unchanged receipt is not written again (NULL keeps the stored one): a receipt is
        # never removed, only replaced.
        received = self.received.model_dump_json() if self.received_changed and self.received else None
        history = orjson.dumps([{"at": work.at.isoformat(), "actions": work.actions} for work in self.refurbishments])
        return (
            self.lpn,
            self.seller_id,
            received,
            orjson.dumps(self.checks).decode() if self.checks is not None else None,
            self.inspection_event_id,
            self.inspected_at,
            history.decode(),
            list(counted_refurbishment(self.refurbishments, self.inspected_at)),
            self.grade,
            list(self.reasons) if self.grade is not None else None,
            self.revision,
        )


class PostgresGradingRepository:
    """`domain.GradingRepository` on PostgreSQL (its methods are documented there). Built per batch,
    under the batch's per-LPN locks (`app.lock_keys`). It reads the batch's units in one statement
    (`prefetch`), merges events into them in memory (a merge only touches a unit of the same seller,
    so an event can never change another seller's unit) and writes the units it changed in one
    statement (`flush`). Its sellers' rules are read up front too."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._rules: dict[str, GradingRules] = {}
        self._rows: dict[str, _Row | None] = {}  # None: no such unit yet

    async def prefetch(self, events: Sequence[UnitReceived | UnitInspected | UnitRefurbished]) -> None:
        """Read the batch's units and its sellers' rules, in one statement."""
        lpns = sorted({e.lpn for e in events})
        sellers = {e.seller_id for e in events}
        records = await self.conn.fetch(_UNITS_AND_RULES, lpns, list(sellers))
        self._keep_units(lpns, [r for r in records if r["lpn"] is not None])
        self._keep_rules(sellers, [r for r in records if r["lpn"] is None])

    async def _read_rules(self, sellers: set[str]) -> None:
        self._keep_rules(sellers, await self.conn.fetch(_RULES, list(sellers)))

    def _keep_rules(self, sellers: set[str], rows: Sequence[asyncpg.Record]) -> None:
        self._rules.update(dict.fromkeys(sellers, DEFAULT_RULES))
        self._rules.update(
            {r["seller_id"]: parse_rules(orjson.loads(r["grading_rules"])) for r in rows if r["grading_rules"]}
        )

    async def _read(self, lpns: list[str]) -> None:
        self._keep_units(lpns, await self.conn.fetch(_UNITS, lpns))

    def _keep_units(self, lpns: list[str], records: Sequence[asyncpg.Record]) -> None:
        self._rows.update(dict.fromkeys(lpns))
        self._rows.update({r["lpn"]: _Row.of(r) for r in records})

    async def _row(self, lpn: str) -> _Row | None:
        if lpn not in self._rows:
            await self._read([lpn])
        return self._rows[lpn]

    def _new(self, lpn: str, seller_id: str) -> _Row:
        row = self._rows[lpn] = _Row(lpn=lpn, seller_id=seller_id)
        return row

    async def owner(self, lpn: str) -> str | None:
        row = await self._row(lpn)
        return row.seller_id if row is not None else None

    async def merge_receipt(self, unit: UnitReceived) -> UnitState | None:
        row = await self._row(unit.lpn) or self._new(unit.lpn, unit.seller_id)
        if row.seller_id != unit.seller_id:
            return None
        row.received, row.received_changed = unit, True
        return row.state()

    async def take_over(self, unit: UnitReceived) -> UnitState | None:
        row = await self._row(unit.lpn)
        if row is None or row.received is not None:
            return None
        row.seller_id, row.received, row.received_changed = unit.seller_id, unit, True
        row.checks, row.inspection_event_id, row.inspected_at, row.refurbishments = None, None, None, ()
        return row.state()

    async def merge_inspection(self, inspection: UnitInspected) -> UnitState | None:
        row = await self._row(inspection.lpn) or self._new(inspection.lpn, inspection.seller_id)
        if row.seller_id != inspection.seller_id or (
            row.inspected_at is not None and row.inspected_at > inspection.occurred_at
        ):
            return None
        row.checks = inspection.checks.model_dump(mode="json")
        row.inspection_event_id, row.inspected_at = inspection.event_id, inspection.occurred_at
        return row.state()

    async def merge_refurbishment(self, work: UnitRefurbished) -> UnitState | None:
        row = await self._row(work.lpn) or self._new(work.lpn, work.seller_id)
        if row.seller_id != work.seller_id:
            return None
        row.refurbishments = (*row.refurbishments, Refurbishment(work.occurred_at, tuple(work.actions)))
        return row.state()

    async def record_grade(self, lpn: str, grade: str, reasons: tuple[str, ...], revision: int) -> None:
        row = self._rows[lpn]
        assert row is not None, "a grade is recorded for a unit the batch merged"
        row.grade, row.reasons, row.revision, row.dirty = grade, tuple(reasons), revision, True

    async def flush(self) -> None:
        changed = [row for row in self._rows.values() if row is not None and row.dirty]
        if not changed:
            return
        await self.conn.executemany(
            "INSERT INTO grading.units AS u (" + _COLUMNS + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (lpn) DO UPDATE SET seller_id = EXCLUDED.seller_id,"
            " received = COALESCE(EXCLUDED.received, u.received),"
            " inspection = EXCLUDED.inspection, inspection_event_id = EXCLUDED.inspection_event_id,"
            " inspected_at = EXCLUDED.inspected_at, refurbishments = EXCLUDED.refurbishments,"
            " refurbished = EXCLUDED.refurbished, grade = EXCLUDED.grade,"
            " reasons = EXCLUDED.reasons, revision = EXCLUDED.revision, updated_at = now()",
            [row.values() for row in changed],
        )
        for row in changed:
            row.dirty = row.received_changed = False

    async def rules_for(self, seller_id: str) -> GradingRules:
        if seller_id not in self._rules:
            await self._read_rules({seller_id})
        return self._rules[seller_id]
