"""Grading's PostgreSQL repository. Merges are upserts that only touch a row of the same seller,
so an event can never change another seller's unit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from rebound_contracts import UnitInspected, UnitReceived, UnitRefurbished

from .domain import DEFAULT_RULES, GradingRules, parse_rules


@dataclass(frozen=True)
class UnitState:
    lpn: str
    seller_id: str
    received: UnitReceived | None
    checks: dict[str, Any] | None
    inspected_at: datetime | None
    refurbished: tuple[str, ...]
    grade: str | None
    reasons: tuple[str, ...]
    revision: int


def _state(row: asyncpg.Record | None) -> UnitState | None:
    if row is None:
        return None
    return UnitState(
        lpn=row["lpn"],
        seller_id=row["seller_id"],
        received=UnitReceived.model_validate_json(row["received"]) if row["received"] else None,
        checks=orjson.loads(row["inspection"]) if row["inspection"] else None,
        inspected_at=row["inspected_at"],
        refurbished=tuple(row["refurbished"]),
        grade=row["grade"],
        reasons=tuple(row["reasons"] or ()),
        revision=row["revision"],
    )


_RETURNING = " RETURNING lpn, seller_id, received, inspection, inspected_at, refurbished, grade, reasons, revision"


class GradingRepository:
    """Built per batch: the rules it reads are cached for the batch's length, and the grades it
    records are written in one statement by `flush` (the batch's later reads see them already)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._rules: dict[str, GradingRules] = {}
        self._grades: dict[str, tuple[str, tuple[str, ...], int]] = {}

    def _latest(self, state: UnitState | None) -> UnitState | None:
        if state is None or state.lpn not in self._grades:
            return state
        grade, reasons, revision = self._grades[state.lpn]
        return replace(state, grade=grade, reasons=reasons, revision=revision)

    async def owner(self, lpn: str) -> str | None:
        return await self.conn.fetchval("SELECT seller_id FROM grading.units WHERE lpn = $1", lpn)

    async def merge_receipt(self, unit: UnitReceived) -> UnitState | None:
        return self._latest(_state(await self.conn.fetchrow(
            "INSERT INTO grading.units AS u (lpn, seller_id, received) VALUES ($1, $2, $3)"
            " ON CONFLICT (lpn) DO UPDATE SET received = EXCLUDED.received, updated_at = now()"
            " WHERE u.seller_id = EXCLUDED.seller_id" + _RETURNING,
            unit.lpn, unit.seller_id, unit.model_dump_json(),
        )))

    async def take_over(self, unit: UnitReceived) -> UnitState | None:
        """The receipt is authoritative: drop what another seller's events left on this LPN."""
        return self._latest(_state(await self.conn.fetchrow(
            "UPDATE grading.units SET seller_id = $2, received = $3, inspection = NULL,"
            " inspection_event_id = NULL, inspected_at = NULL, refurbished = '{}', updated_at = now()"
            " WHERE lpn = $1 AND received IS NULL" + _RETURNING,
            unit.lpn, unit.seller_id, unit.model_dump_json(),
        )))

    async def merge_inspection(self, inspection: UnitInspected) -> UnitState | None:
        """Store the inspection unless a later one of the same seller is already stored."""
        return self._latest(_state(await self.conn.fetchrow(
            "INSERT INTO grading.units AS u (lpn, seller_id, inspection, inspection_event_id, inspected_at)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (lpn) DO UPDATE SET inspection = EXCLUDED.inspection,"
            " inspection_event_id = EXCLUDED.inspection_event_id, inspected_at = EXCLUDED.inspected_at,"
            " updated_at = now()"
            " WHERE u.seller_id = EXCLUDED.seller_id"
            " AND (u.inspected_at IS NULL OR u.inspected_at <= EXCLUDED.inspected_at)" + _RETURNING,
            inspection.lpn, inspection.seller_id, inspection.checks.model_dump_json(),
            inspection.event_id, inspection.occurred_at,
        )))

    async def merge_refurbishment(self, work: UnitRefurbished) -> UnitState | None:
        return self._latest(_state(await self.conn.fetchrow(
            "INSERT INTO grading.units AS u (lpn, seller_id, refurbished) VALUES ($1, $2, $3)"
            " ON CONFLICT (lpn) DO UPDATE SET refurbished ="
            " ARRAY(SELECT DISTINCT a FROM unnest(u.refurbished || EXCLUDED.refurbished) AS a ORDER BY a),"
            " updated_at = now()"
            " WHERE u.seller_id = EXCLUDED.seller_id" + _RETURNING,
            work.lpn, work.seller_id, sorted(set(work.actions)),
        )))

    async def record_grade(self, lpn: str, grade: str, reasons: tuple[str, ...], revision: int) -> None:
        self._grades[lpn] = (grade, tuple(reasons), revision)

    async def flush(self) -> None:
        if self._grades:
            await self.conn.executemany(
                "UPDATE grading.units SET grade = $2, reasons = $3, revision = $4, updated_at = now()"
                " WHERE lpn = $1",
                [(lpn, grade, list(reasons), revision) for lpn, (grade, reasons, revision) in self._grades.items()],
            )
            self._grades.clear()

    async def rules_for(self, seller_id: str) -> GradingRules:
        if seller_id not in self._rules:
            raw = await self.conn.fetchval(
                "SELECT grading_rules FROM rebound.sellers WHERE seller_id = $1", seller_id
            )
            self._rules[seller_id] = parse_rules(orjson.loads(raw)) if raw else DEFAULT_RULES
        return self._rules[seller_id]
