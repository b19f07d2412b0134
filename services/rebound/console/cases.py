"""Cases: exceptions and dead letters as work with an owner and a status, and what an operator
does to them. Every action is one transaction that changes the case, writes its audit row, and,
for a replay, writes the event it sends to the console's outbox: the console's relay publishes it
like any service's event, and the pipeline does the rest."""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import ValidationError

from rebound_contracts import ParcelReceivedUnexpected, Topic, UnitAddedToReturn, UnitQuarantined
from rebound_contracts.common import Envelope, TenantEvent
from rebound_contracts.topics import (
    BY_NAME,
    PARCEL_MATCHED,
    PARCEL_RECEIVED_UNEXPECTED,
    RMA,
    UNIT_ADDED_TO_RETURN,
    UNIT_QUARANTINED,
)

from ..db import Connection
from ..messaging.ids import derived_id
from ..messaging.outbox import OutboxBuffer
from ..sellers import insert_sellers
from . import domain

PRODUCER = "rebound-console"
"""The console's consumer group, and the producer of the events its actions send."""

Status = Literal["open", "resolved", "dismissed"]
STATUSES: tuple[Status, ...] = ("open", "resolved", "dismissed")

REPLAYABLE_EXCEPTIONS = frozenset({"unknown_seller"})
"""Exceptions whose event was never applied, so sending it again (under a new event_id: its own
is spent) applies it once the cause is fixed, e.g. the seller registered."""


class CaseError(Exception):
    """An action that cannot be done, with the reason to show the operator."""


@dataclass(frozen=True)
class Case(domain.Case):
    """A case as the work queue has it: what was reported, and what people did about it."""

    status: str
    owner: str | None
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in self.__dataclass_fields__},
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def raw(self) -> bytes | None:
        """A dead letter's bytes as its consumer read them (None for an exception)."""
        encoded = self.event.get("raw_base64")
        return base64.b64decode(encoded) if isinstance(encoded, str) else None

    def message(self) -> bytes:
        """The message behind the case, as an operator reads and corrects it: a dead letter's
        bytes, or the event an exception (or a waiting inspection) carries, as JSON."""
        raw = self.raw()
        if raw is not None:
            return raw
        return orjson.dumps(self.event.get("original"), option=orjson.OPT_INDENT_2) + b"\n"


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "actor": self.actor, "action": self.action, "detail": self.detail}


_SELECT_CASES = (
    'SELECT case_id, source, kind, seller_id, status, owner, opened_at, updated_at, detail, topic, partition, "offset",'
    " consumer, key, event FROM console.cases"
)
_CASE_BY_ID = {
    False: _SELECT_CASES + " WHERE case_id = $1::uuid AND ($2::text[] IS NULL OR seller_id = ANY($2::text[]))",
    True: _SELECT_CASES
    + " WHERE case_id = $1::uuid AND ($2::text[] IS NULL OR seller_id = ANY($2::text[])) FOR UPDATE",
}
"""The case by id, visible to the caller, by whether it is locked for update."""


def _case(row: Any) -> Case:
    values = dict(row)
    values["case_id"] = str(values["case_id"])
    values["event"] = orjson.loads(values["event"])
    return Case(**values)


def _sellers(sellers: Collection[str] | None) -> list[str] | None:
    return None if sellers is None else list(sellers)


async def list_cases(
    conn: Connection,
    *,
    status: Status | None = "open",
    kind: str | None = None,
    seller_id: str | None = None,
    sellers: Collection[str] | None = None,
    limit: int = 100,
) -> list[Case]:
    """Cases, the oldest first; `sellers` is what the caller may see (None: everything). A case
    of no known seller (a dead letter whose seller could not be read) is visible only to those
    who see everything."""
    rows = await conn.fetch(
        _SELECT_CASES + " WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)"
        " AND ($3::text IS NULL OR seller_id = $3) AND ($4::text[] IS NULL OR seller_id = ANY($4::text[]))"
        " ORDER BY opened_at, case_id LIMIT $5",
        status,
        kind,
        seller_id,
        _sellers(sellers),
        limit,
    )
    return [_case(r) for r in rows]


async def get_case(
    conn: Connection, case_id: str, sellers: Collection[str] | None = None, *, lock: bool = False
) -> Case:
    """The case, if the caller (`sellers`, None: everything) may see it; `lock`: for update, until
    the transaction ends."""
    try:
        UUID(case_id)
    except ValueError:
        raise CaseError(f"{case_id!r} is not a case id (a UUID)") from None
    row = await conn.fetchrow(
        _CASE_BY_ID[lock],
        case_id,
        _sellers(sellers),
    )
    if row is None:
        raise CaseError(f"no case {case_id}")
    return _case(row)


async def audit_trail(conn: Connection, case_id: str) -> list[AuditEntry]:
    rows = await conn.fetch(
        "SELECT at, actor, action, detail FROM console.audit WHERE case_id = $1::uuid ORDER BY id", case_id
    )
    return [AuditEntry(r["at"], r["actor"], r["action"], orjson.loads(r["detail"])) for r in rows]


async def _locked_open(conn: Connection, case_id: str, sellers: Collection[str] | None) -> Case:
    case = await get_case(conn, case_id, sellers, lock=True)
    if case.status != "open":
        raise CaseError(f"case {case_id} is already {case.status}")
    return case


async def _record(
    conn: Connection,
    case_id: str,
    actor: str,
    action: str,
    detail: dict[str, Any],
    *,
    status: Status | None = None,
    owner: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE console.cases SET status = coalesce($2, status), owner = coalesce($3, owner), updated_at = now()"
        " WHERE case_id = $1::uuid",
        case_id,
        status,
        owner,
    )
    await conn.execute(
        "INSERT INTO console.audit (case_id, actor, action, detail) VALUES ($1::uuid, $2, $3, $4::jsonb)",
        case_id,
        actor,
        action,
        orjson.dumps(detail).decode(),
    )


async def assign(
    conn: Connection, case_id: str, owner: str, actor: str, sellers: Collection[str] | None = None
) -> None:
    async with conn.transaction():
        await _locked_open(conn, case_id, sellers)
        await _record(conn, case_id, actor, "assign", {"owner": owner}, owner=owner)


async def close(
    conn: Connection,
    case_id: str,
    status: Literal["resolved", "dismissed"],
    reason: str,
    actor: str,
    sellers: Collection[str] | None = None,
) -> None:
    """Resolve (the cause was fixed elsewhere) or dismiss (nothing is to be done) a case, with why."""
    if not reason.strip():
        raise CaseError("say why: a case is closed with a reason")
    async with conn.transaction():
        await _locked_open(conn, case_id, sellers)
        await _record(
            conn, case_id, actor, "resolve" if status == "resolved" else "dismiss", {"reason": reason}, status=status
        )


async def _send_and_resolve(
    conn: Connection,
    case_id: str,
    actor: str,
    action: str,
    message: tuple[str, str, bytes],
    detail: dict[str, Any],
) -> None:
    """Write `message` (topic, key, payload) to the console's outbox, for its relay to publish,
    and resolve the case with `action` in its audit trail: in the caller's transaction."""
    outbox = OutboxBuffer(PRODUCER)
    outbox.add_raw(*message)
    await outbox.flush(conn)
    await _record(conn, case_id, actor, action, detail, status="resolved")


@dataclass(frozen=True)
class Replayed:
    topic: str
    key: str
    event_id: str
    corrected: bool


def _summary(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in error.errors()[:5]]
    return "; ".join(parts)


def replayable(case: Case, corrected: bytes | None) -> tuple[bytes, Envelope]:
    """What a replay of `case` sends to the case's topic (the corrected bytes, or the original
    ones) and the event they hold; CaseError when it must not be sent, and why."""
    topic = BY_NAME.get(case.topic)
    if topic is None:
        raise CaseError(f"case {case.case_id} came from {case.topic!r}, which is not a topic of contract v1")
    if case.source == "exception":
        if case.kind not in REPLAYABLE_EXCEPTIONS:
            raise CaseError(
                f"a {case.kind} exception's event was applied: sending it again changes nothing; "
                "fix what it reports, then resolve the case"
            )
        original = dict(case.event["original"])
        # Its own event_id is spent (the consumer took it), so it goes under one derived from it.
        original["event_id"] = str(
            derived_id(UUID(original["event_id"]), datetime.fromisoformat(original["occurred_at"]), "replay")
        )
        payload = corrected if corrected is not None else orjson.dumps(original)
    else:
        raw = case.raw()
        if corrected is None and case.event.get("truncated"):
            raise CaseError("this dead letter kept only the first bytes of its message: replay it with --file")
        payload = corrected if corrected is not None else (raw or b"")
    try:
        event = topic.model.model_validate_json(payload)
    except ValidationError as error:
        raise CaseError(f"not a valid {topic.model.__name__} for {topic.name}: {_summary(error)}") from None
    if case.source == "dead_letter" and case.kind == "conflicting_duplicate":
        spent = _event_id_in(case.raw())
        if spent is not None and str(event.event_id) == spent:
            raise CaseError(
                f"event_id {spent} was applied with other content: a corrected message needs an event_id of its own"
            )
    assert isinstance(event, Envelope), "every topic of contract v1 carries an envelope"
    return payload, event


def _event_id_in(raw: bytes | None) -> str | None:
    try:
        document = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    value = document.get("event_id") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


async def replay(
    conn: Connection,
    case_id: str,
    actor: str,
    corrected: bytes | None = None,
    sellers: Collection[str] | None = None,
) -> Replayed:
    """Send a case's message again to the topic it came from (corrected, or as it was) and resolve
    the case. Refused, with the reason, when the message would not be applied: it is not valid for
    its topic, its event_id is spent, or its case is closed."""
    async with conn.transaction():
        case = await _locked_open(conn, case_id, sellers)
        payload, event = replayable(case, corrected)
        seller = getattr(event, "seller_id", None)
        if sellers is not None and seller not in sellers:
            raise CaseError(f"the message names seller {seller!r}, whose data you may not change")
        topic = BY_NAME[case.topic]
        key = topic.key_of(event)
        done = Replayed(topic.name, key, str(event.event_id), corrected is not None)
        await _send_and_resolve(
            conn,
            case_id,
            actor,
            "replay",
            (topic.name, key, payload),
            {"topic": done.topic, "key": done.key, "event_id": done.event_id, "corrected": done.corrected},
        )
    return done


MATCHABLE = frozenset({"unmatched_parcel"})
"""Exceptions whose parcel waits, parked, for a return order an operator can name."""


@dataclass(frozen=True)
class Matched:
    tracking_number: str
    return_id: str
    event_id: str


async def returns_named(conn: Connection, seller_id: str, reference: str) -> list[str]:
    """The seller's return ids that `reference` names: a return id, an order id, a tracking
    number or a buyer, as the console read them from the return orders."""
    rows = await conn.fetch(
        "SELECT DISTINCT e.body->>'return_id' AS return_id FROM console.event_keys k"
        " JOIN console.events e USING (event_id)"
        " WHERE k.kind = ANY($1::text[]) AND k.value = $2 AND e.topic = $3 AND e.seller_id = $4"
        " ORDER BY 1",
        ["return", "order", "tracking", "buyer"],
        reference,
        RMA.name,
        seller_id,
    )
    return [r["return_id"] for r in rows]


async def match(
    conn: Connection, case_id: str, reference: str, actor: str, sellers: Collection[str] | None = None
) -> Matched:
    """Match the parked parcel of an `unmatched_parcel` case to the seller's return that
    `reference` names (its return id, order id or tracking number) and resolve the case: the
    console sends `returns.parcel-matched.v1`, and intake receives the parcel's units against that
    return. Refused, with the reason, when the reference names no return of the seller, or several."""
    async with conn.transaction():
        case = await _locked_open(conn, case_id, sellers)
        if case.source != "exception" or case.kind not in MATCHABLE:
            raise CaseError(f"a {case.kind} case has no parcel waiting for its return order")
        tracking = case.event["original"]["tracking_number"]
        return_id = await _one_return(conn, case.event["seller_id"], reference)
        event = await _decide(
            conn,
            case,
            actor,
            "match",
            PARCEL_MATCHED,
            {"tracking_number": tracking, "return_id": return_id},
        )
    return Matched(tracking, return_id, str(event.event_id))


async def _one_return(conn: Connection, seller_id: str, reference: str) -> str:
    """The one return of the seller that `reference` names; CaseError when it names none or several."""
    found = await returns_named(conn, seller_id, reference.strip())
    if not found:
        raise CaseError(
            f"no return of seller {seller_id} has the return id, order id, tracking number or buyer {reference!r}"
        )
    if len(found) > 1:
        raise CaseError(f"{reference!r} names {len(found)} returns ({', '.join(found)}): give the return id")
    return found[0]


async def _decide(
    conn: Connection, case: Case, actor: str, action: str, topic: Topic, fields: dict[str, Any]
) -> TenantEvent:
    """Send the operator's decision on `case` (an event of `topic` made of `fields`, for the
    case's seller), audit it as `action` and resolve the case, in the caller's transaction. Its
    event_id derives from the case and the decision: the same decision twice is one event."""
    decided = ",".join(f"{name}={value}" for name, value in sorted(fields.items()))
    try:
        event = topic.model(
            event_id=derived_id(UUID(case.case_id), case.opened_at, f"{action}:{decided}"),
            occurred_at=datetime.now(UTC),
            seller_id=case.seller_id,
            operator_id=actor,
            **fields,
        )
    except ValidationError as error:
        raise CaseError(f"not a valid {topic.model.__name__}: {_summary(error)}") from None
    assert isinstance(event, TenantEvent)
    await _send_and_resolve(
        conn,
        case.case_id,
        actor,
        action,
        (topic.name, topic.key_of(event), event.model_dump_json().encode()),
        {**fields, "event_id": str(event.event_id)},
    )
    return event


async def receive_unexpected(
    conn: Connection, case_id: str, actor: str, sellers: Collection[str] | None = None
) -> ParcelReceivedUnexpected:
    """Receive the parked parcel of an `unmatched_parcel` case as unexpected stock and resolve the
    case: the console sends `returns.parcel-received-unexpected.v1`; intake registers the parcel's
    units to the seller, and each becomes an `unexpected_unit` case (add it to a return, or
    quarantine it)."""
    async with conn.transaction():
        case = await _locked_open(conn, case_id, sellers)
        if case.source != "exception" or case.kind not in MATCHABLE:
            raise CaseError(f"a {case.kind} case has no parcel waiting for its return order")
        tracking = case.event["original"]["tracking_number"]
        event = await _decide(
            conn, case, actor, "receive_unexpected", PARCEL_RECEIVED_UNEXPECTED, {"tracking_number": tracking}
        )
    assert isinstance(event, ParcelReceivedUnexpected)
    return event


UNIT_DECISIONS = frozenset({"unexpected_unit"})
"""Exceptions about one unit that waits, registered but unexpected, for an operator to add it to
a return or quarantine it."""


def _unexpected_unit(case: Case) -> tuple[str, str]:
    """The LPN and SKU of an `unexpected_unit` case's unit."""
    lpn = case.event.get("lpn") if case.source == "exception" and case.kind in UNIT_DECISIONS else None
    if not isinstance(lpn, str):
        raise CaseError(f"a {case.kind} case names no unexpected unit")
    units = case.event["original"].get("units") or []
    sku = next((u.get("sku") for u in units if isinstance(u, dict) and u.get("lpn") == lpn), None)
    return lpn, str(sku or "")


async def return_lines(conn: Connection, seller_id: str, return_id: str) -> list[tuple[str, str]]:
    """The (line id, SKU) of the seller's return, as the console read its return order."""
    body = await conn.fetchval(
        "SELECT body FROM console.events e JOIN console.event_keys k USING (event_id)"
        " WHERE k.kind = 'return' AND k.value = $1 AND e.topic = $2 AND e.seller_id = $3"
        " ORDER BY e.occurred_at LIMIT 1",
        return_id,
        RMA.name,
        seller_id,
    )
    lines = orjson.loads(body).get("lines", []) if body is not None else []
    return [(str(line["line_id"]), str(line["sku"])) for line in lines]


async def add_to_return(
    conn: Connection,
    case_id: str,
    reference: str,
    line_id: str | None,
    actor: str,
    sellers: Collection[str] | None = None,
) -> UnitAddedToReturn:
    """Add the unit of an `unexpected_unit` case to the seller's return that `reference` names (its
    return id, order id or tracking number), on `line_id` (None: the line of the unit's SKU, or the
    return's only line), and resolve the case: the console sends `returns.unit-added-to-return.v1`
    and intake receives the unit against that line."""
    async with conn.transaction():
        case = await _locked_open(conn, case_id, sellers)
        lpn, sku = _unexpected_unit(case)
        assert case.seller_id is not None
        return_id = await _one_return(conn, case.seller_id, reference)
        lines = await return_lines(conn, case.seller_id, return_id)
        listed = ", ".join(f"{line} ({line_sku})" for line, line_sku in lines)
        chosen = (line_id or "").strip()
        if chosen and chosen not in {line for line, _ in lines}:
            raise CaseError(f"return {return_id} has no line {chosen!r}; its lines: {listed}")
        if not chosen:
            same = [line for line, line_sku in lines if line_sku == sku]
            if same or len(lines) == 1:
                chosen = (same or [lines[0][0]])[0]
            else:
                raise CaseError(f"say which line of return {return_id} the unit ({sku}) is for: {listed}")
        event = await _decide(
            conn,
            case,
            actor,
            "add_to_return",
            UNIT_ADDED_TO_RETURN,
            {"lpn": lpn, "return_id": return_id, "line_id": chosen},
        )
    assert isinstance(event, UnitAddedToReturn)
    return event


async def quarantine(
    conn: Connection, case_id: str, reason: str, actor: str, sellers: Collection[str] | None = None
) -> UnitQuarantined:
    """Quarantine the unit of an `unexpected_unit` case, for `reason`, and resolve the case: the
    console sends `returns.unit-quarantined.v1`; intake sets the unit aside for good."""
    if not reason.strip():
        raise CaseError("say why: a unit is quarantined with a reason")
    async with conn.transaction():
        case = await _locked_open(conn, case_id, sellers)
        lpn, _ = _unexpected_unit(case)
        event = await _decide(conn, case, actor, "quarantine", UNIT_QUARANTINED, {"lpn": lpn, "reason": reason.strip()})
    assert isinstance(event, UnitQuarantined)
    return event


@dataclass(frozen=True)
class Registered:
    seller_id: str
    replayed: list[Replayed]


async def register_seller(conn: Connection, case_id: str, name: str, actor: str) -> Registered:
    """Register the unknown seller of an `unknown_seller` case (an admin's action: a tenant is
    added to the seller registry, as `rebound sellers add` does) and replay every event of that
    seller that waits as an open `unknown_seller` case, the oldest first, each resolving its case."""
    async with conn.transaction():
        case = await _locked_open(conn, case_id, None)
        if case.source != "exception" or case.kind != "unknown_seller" or not case.seller_id:
            raise CaseError(f"a {case.kind} case names no seller to register")
        if not name.strip():
            raise CaseError("give the seller a name")
        await insert_sellers(conn, {case.seller_id: name.strip()})
        waiting = await list_cases(conn, kind="unknown_seller", seller_id=case.seller_id, limit=10_000)
        replayed = [await replay(conn, other.case_id, actor) for other in waiting]
    return Registered(case.seller_id, replayed)
