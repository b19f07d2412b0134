"""`rebound cases ...` and `rebound trace`: the console's work queue and unit trace, scriptable."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..clitools import ListFormat, fail, with_conn
from ..settings import Settings
from . import cases as work
from .trace import Step, trace as unit_trace, units_named

if TYPE_CHECKING:
    from ..db import Connection

T = TypeVar("T")

cases_app = typer.Typer(
    help="The work queue: exceptions and dead letters as cases to assign, resolve, dismiss or replay.",
    no_args_is_help=True,
)

FormatOption = Annotated[ListFormat, typer.Option("--format", help="table for a terminal, or json.")]
ActorOption = Annotated[
    str | None,
    typer.Option("--as", help="Who acts, for the audit trail (default: $REBOUND_ACTOR, else the login name)."),
]


def _actor(given: str | None) -> str:
    return given or os.environ.get("REBOUND_ACTOR") or getpass.getuser()


def _run(work_on: Callable[[Connection], Awaitable[T]]) -> T:
    """Run `work_on` on a connection; a refused action exits with its reason in one line."""
    try:
        return asyncio.run(with_conn(Settings.from_env(), work_on))
    except work.CaseError as error:
        fail(str(error))


def _table(*columns: str) -> Any:
    from rich.table import Table

    return Table(*columns)


def _print(table: Any) -> None:
    from rich.console import Console

    Console(width=200).print(table)


@cases_app.command("list")
def cases_list(
    status: Annotated[str, typer.Option(help="open, resolved, dismissed, or all.")] = "open",
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. unmatched_parcel or schema_violation.")] = None,
    seller: Annotated[str | None, typer.Option(help="Only this seller's cases.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, the oldest first.")] = 100,
    output: FormatOption = ListFormat.table,
) -> None:
    """List cases, the oldest first: every exception and dead letter the console has read."""
    if status not in (*work.STATUSES, "all"):
        fail(f"--status {status}: one of open, resolved, dismissed, all")
    wanted = None if status == "all" else status
    found = _run(lambda c: work.list_cases(c, status=wanted, kind=kind, seller_id=seller, limit=limit))  # type: ignore[arg-type]
    if output is ListFormat.json:
        typer.echo(json.dumps([case.as_json() for case in found], indent=2))
        return
    if not found:
        typer.echo(f"no {'' if wanted is None else wanted + ' '}case")
        return
    table = _table("opened", "status", "kind", "seller", "owner", "from", "detail")
    table.add_column("case", no_wrap=True, min_width=36)
    for case in found:
        table.add_row(
            case.opened_at.isoformat(timespec="seconds"),
            case.status,
            f"{case.source.replace('_', ' ')}: {case.kind}",
            case.seller_id or "?",
            case.owner or "",
            f"{case.topic}[{case.partition}]@{case.offset}",
            case.detail[:120],
            case.case_id,
        )
    _print(table)


@cases_app.command("show")
def cases_show(
    case_id: Annotated[str, typer.Argument(help="The case (`rebound cases list`).")],
    output: FormatOption = ListFormat.table,
) -> None:
    """Show one case: what was reported, the message behind it, and everything done to it."""

    async def read(conn: Connection) -> tuple[work.Case, list[work.AuditEntry]]:
        case = await work.get_case(conn, case_id)
        return case, await work.audit_trail(conn, case_id)

    case, trail = _run(read)
    if output is ListFormat.json:
        typer.echo(json.dumps({**case.as_json(), "audit": [entry.as_json() for entry in trail]}, indent=2))
        return
    typer.echo(f"case {case.case_id}: {case.source.replace('_', ' ')} {case.kind}, {case.status}")
    typer.echo(f"  seller     {case.seller_id or '(unknown)'}")
    typer.echo(f"  opened     {case.opened_at.isoformat(timespec='seconds')}, owner {case.owner or 'nobody'}")
    typer.echo(
        f"  read from  {case.topic}[{case.partition}]@{case.offset}" + (f" by {case.consumer}" if case.consumer else "")
    )
    typer.echo(f"  detail     {case.detail}")
    raw = case.raw()
    if raw is not None:
        typer.echo(f"  message    {len(raw)} bytes kept{' (truncated)' if case.event.get('truncated') else ''}:")
        typer.echo("    " + raw[:2000].decode("utf-8", "backslashreplace"))
    else:
        typer.echo("  event      " + json.dumps(case.event["original"]))
    for entry in trail:
        typer.echo(
            f"  {entry.at.isoformat(timespec='seconds')}  {entry.actor}: {entry.action} {json.dumps(entry.detail)}"
        )


@cases_app.command("raw")
def cases_raw(case_id: Annotated[str, typer.Argument(help="The case.")]) -> None:
    """Write the message behind a case to standard output, byte for byte (a dead letter's as its
    consumer read it, an exception's event as JSON): edit it, then `rebound cases replay ID --file`."""
    case = _run(lambda c: work.get_case(c, case_id))
    raw = case.raw()
    sys.stdout.buffer.write(raw if raw is not None else json.dumps(case.event["original"], indent=2).encode() + b"\n")


@cases_app.command("assign")
def cases_assign(
    case_id: Annotated[str, typer.Argument(help="The case.")],
    owner: Annotated[str, typer.Argument(help="Who takes it.")],
    actor: ActorOption = None,
) -> None:
    """Give an open case an owner."""
    _run(lambda c: work.assign(c, case_id, owner, _actor(actor)))
    typer.echo(f"case {case_id}: owned by {owner}")


@cases_app.command("resolve")
def cases_resolve(
    case_id: Annotated[str, typer.Argument(help="The case.")],
    reason: Annotated[str, typer.Option(help="What was done about it.")],
    actor: ActorOption = None,
) -> None:
    """Close an open case whose cause was fixed elsewhere, saying how."""
    _run(lambda c: work.close(c, case_id, "resolved", reason, _actor(actor)))
    typer.echo(f"case {case_id}: resolved")


@cases_app.command("dismiss")
def cases_dismiss(
    case_id: Annotated[str, typer.Argument(help="The case.")],
    reason: Annotated[str, typer.Option(help="Why nothing is to be done.")],
    actor: ActorOption = None,
) -> None:
    """Close an open case about which nothing is to be done, saying why."""
    _run(lambda c: work.close(c, case_id, "dismissed", reason, _actor(actor)))
    typer.echo(f"case {case_id}: dismissed")


@cases_app.command("replay")
def cases_replay(
    case_id: Annotated[str, typer.Argument(help="The case.")],
    file: Annotated[
        Path | None,
        typer.Option(help="The corrected message (- for standard input); without it, the message as it was."),
    ] = None,
    actor: ActorOption = None,
) -> None:
    """Send a case's message again, corrected or as it was, and resolve the case.

    The message goes to the topic it came from, and the pipeline applies it like any event: a
    dead letter's corrected message keeps its event_id unless it was spent (a conflicting
    duplicate needs a new one); an unknown seller's event goes under an event_id derived from its
    own once the seller is registered.

    Refused, with the reason, when the message is not valid for its topic. The console's service
    (`rebound run console`) publishes it within moments."""
    corrected = None
    if file is not None:
        try:
            corrected = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        except OSError as error:
            fail(f"{file}: cannot read it: {error.strerror or error}")
    done = _run(lambda c: work.replay(c, case_id, _actor(actor), corrected))
    what = "corrected message" if done.corrected else "message"
    typer.echo(f"case {case_id}: resolved; its {what} (event {done.event_id}) goes to {done.topic}, key {done.key}")


def trace(
    query: Annotated[str, typer.Argument(help="An LPN, return id, tracking number, order id or SKU.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Trace at most this many units.")] = 20,
    output: FormatOption = ListFormat.table,
) -> None:
    """Trace units end to end: for each unit the query names, every step of its path in time order
    (its return order, the scan, lane, inspections, refurbishment, each grade and why, where it may
    go and the rule that decided, where it went, each stock adjustment and the shop's answer,
    exceptions), as the console's read models hold them."""

    async def read(conn: Connection) -> list[tuple[str | None, str, list[Step]]]:
        units = await units_named(conn, query, limit=limit)
        return [(seller, lpn, await unit_trace(conn, lpn, [seller] if seller else None)) for seller, lpn in units]

    traced = _run(read)
    if not traced:
        fail(
            f"no unit the console has seen is named by {query!r} (an LPN, return id, tracking number, order id or SKU)"
        )
    if output is ListFormat.json:
        document = [
            {"seller_id": s, "lpn": lpn, "steps": [step.as_json() for step in steps]} for s, lpn, steps in traced
        ]
        typer.echo(json.dumps({"query": query, "units": document}, indent=2))
        return
    for seller, lpn, steps in traced:
        table = _table("when", "topic", "what happened, and why")
        table.title = f"unit {lpn} of seller {seller}: {len(steps)} steps"
        for step in steps:
            table.add_row(step.occurred_at.isoformat(timespec="milliseconds"), step.topic, step.summary)
        _print(table)
