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
from .trace import trace_units

if TYPE_CHECKING:
    from ..db import Connection

T = TypeVar("T")

MIN_SECRET = 32
"""Characters of REBOUND_CONSOLE_SECRET at least: it signs every session."""

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
    sys.stdout.buffer.write(case.message())


@cases_app.command("waiting")
def cases_waiting(
    seller: Annotated[str | None, typer.Option(help="Only this seller's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, the oldest first.")] = 500,
    output: FormatOption = ListFormat.table,
) -> None:
    """List what waits in the pipeline, the oldest first: parcels without their return order,
    inspections without their unit's receipt (an inspection that waits too long becomes a case)."""
    from .waiting import WAITS_FOR, waiting

    found = _run(lambda c: waiting(c, None if seller is None else [seller], limit=limit))
    if output is ListFormat.json:
        typer.echo(json.dumps([w.as_json() for w in found], indent=2))
        return
    if not found:
        typer.echo("nothing waits")
        return
    table = _table("since", "what", "waits for", "seller", "warehouse", "case")
    for w in found:
        table.add_row(
            w.since.isoformat(timespec="seconds"),
            f"{w.kind} {w.key}",
            WAITS_FOR[w.kind],
            w.seller_id,
            w.warehouse_id,
            w.case_id or "",
        )
    _print(table)


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


@cases_app.command("match")
def cases_match(
    case_id: Annotated[str, typer.Argument(help="An unmatched_parcel case.")],
    reference: Annotated[
        str, typer.Argument(help="Its return order: the return id, order id, tracking number or buyer id.")
    ],
    actor: ActorOption = None,
) -> None:
    """Match a parcel that waits without its return order to the seller's return, and resolve
    the case: intake receives the parcel's units against that return (returns.parcel-matched.v1)."""
    done = _run(lambda c: work.match(c, case_id, reference, _actor(actor)))
    typer.echo(
        f"case {case_id}: resolved; parcel {done.tracking_number} matched to return {done.return_id}"
        f" (event {done.event_id})"
    )


@cases_app.command("receive-unexpected")
def cases_receive_unexpected(
    case_id: Annotated[str, typer.Argument(help="An unmatched_parcel case.")],
    actor: ActorOption = None,
) -> None:
    """Receive a parcel that waits without its return order as unexpected stock, and resolve the
    case: intake registers its units, and each becomes an unexpected_unit case, to add to a return
    or quarantine (returns.parcel-received-unexpected.v1)."""
    done = _run(lambda c: work.receive_unexpected(c, case_id, _actor(actor)))
    typer.echo(
        f"case {case_id}: resolved; parcel {done.tracking_number} received as unexpected stock (event {done.event_id})"
    )


@cases_app.command("add-to-return")
def cases_add_to_return(
    case_id: Annotated[str, typer.Argument(help="An unexpected_unit case.")],
    reference: Annotated[str, typer.Argument(help="The return: its return id, order id, tracking number or buyer id.")],
    line: Annotated[
        str | None, typer.Option(help="The return's line (default: the line of the unit's SKU, or its only line).")
    ] = None,
    actor: ActorOption = None,
) -> None:
    """Add an unexpected unit to one of the seller's returns, and resolve the case: intake receives
    it against that line, and it is graded and offered like any unit (returns.unit-added-to-return.v1)."""
    done = _run(lambda c: work.add_to_return(c, case_id, reference, line, _actor(actor)))
    typer.echo(
        f"case {case_id}: resolved; unit {done.lpn} added to return {done.return_id} line {done.line_id}"
        f" (event {done.event_id})"
    )


@cases_app.command("quarantine")
def cases_quarantine(
    case_id: Annotated[str, typer.Argument(help="An unexpected_unit case.")],
    reason: Annotated[str, typer.Option(help="Why the unit is set aside.")],
    actor: ActorOption = None,
) -> None:
    """Quarantine an unexpected unit for good, and resolve the case: it is never received, graded or
    offered (returns.unit-quarantined.v1)."""
    done = _run(lambda c: work.quarantine(c, case_id, reason, _actor(actor)))
    typer.echo(f"case {case_id}: resolved; unit {done.lpn} quarantined (event {done.event_id})")


@cases_app.command("register-seller")
def cases_register_seller(
    case_id: Annotated[str, typer.Argument(help="An unknown_seller case.")],
    name: Annotated[str, typer.Option(help="The seller's name.")],
    actor: ActorOption = None,
) -> None:
    """Register the seller an unknown_seller case names, and replay every event of it waiting as
    an open case, the oldest first."""
    done = _run(lambda c: work.register_seller(c, case_id, name, _actor(actor)))
    typer.echo(f"seller {done.seller_id} registered; {len(done.replayed)} events sent again, their cases resolved")


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
    query: Annotated[str, typer.Argument(help="An LPN, return id, tracking number, order id, SKU or buyer id.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Trace at most this many units.")] = 20,
    output: FormatOption = ListFormat.table,
) -> None:
    """Trace units end to end: for each unit the query names, every step of its path in time order
    (its return order, the scan, lane, inspections, refurbishment, each grade and why, where it may
    go and the rule that decided, where it went, each stock adjustment and the shop's answer,
    exceptions), as the console's read models hold them."""

    traced = _run(lambda c: trace_units(c, query, limit=limit))
    if not traced:
        fail(
            f"no unit the console has seen is named by {query!r}"
            " (an LPN, return id, tracking number, order id, SKU or buyer id)"
        )
    if output is ListFormat.json:
        typer.echo(json.dumps({"query": query, "units": [unit.as_json() for unit in traced]}, indent=2))
        return
    for unit in traced:
        table = _table("when", "topic", "what happened, and why")
        table.title = f"unit {unit.lpn} of seller {unit.seller_id}: {len(unit.steps)} steps"
        for step in unit.steps:
            table.add_row(step.occurred_at.isoformat(timespec="milliseconds"), step.topic, step.summary)
        _print(table)


accounts_app = typer.Typer(
    help="The console's accounts: admins see every seller, operators their warehouse's sellers, a seller's users"
    " their own.",
    no_args_is_help=True,
)


def _password(from_stdin: bool) -> str:
    """A new password: the first line of standard input, or typed twice at a prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _accounts(work_on: Callable[[Connection], Awaitable[T]]) -> T:
    from .accounts import AccountError

    try:
        return asyncio.run(with_conn(Settings.from_env(), work_on))
    except AccountError as error:
        fail(str(error))


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input instead of a prompt.")
]


@accounts_app.command("add")
def accounts_add(
    username: Annotated[str, typer.Argument(help="The name to sign in with.")],
    role: Annotated[str, typer.Option(help="admin, operator or seller.")],
    warehouse: Annotated[str | None, typer.Option(help="An operator's warehouse.")] = None,
    seller: Annotated[str | None, typer.Option(help="A seller's user: the seller.")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add an account. Its password is kept as an argon2id hash."""
    from . import accounts

    if role not in accounts.ROLES:
        fail(f"--role {role}: one of {', '.join(accounts.ROLES)}")
    password = _password(password_stdin)
    made = _accounts(lambda c: accounts.add(c, username, password, role, warehouse_id=warehouse, seller_id=seller))
    typer.echo(f"account {made.describe()} added")


@accounts_app.command("list")
def accounts_list(output: FormatOption = ListFormat.table) -> None:
    """List the accounts."""
    from . import accounts

    found = _accounts(accounts.listed)
    if output is ListFormat.json:
        document = [
            {"username": a.username, "role": a.role, "warehouse_id": a.warehouse_id, "seller_id": a.seller_id,
             "disabled": disabled}
            for a, disabled in found
        ]  # fmt: skip
        typer.echo(json.dumps(document, indent=2))
        return
    for account, disabled in found:
        typer.echo(account.describe() + (" — disabled" if disabled else ""))


@accounts_app.command("password")
def accounts_password(
    username: Annotated[str, typer.Argument(help="The account.")], password_stdin: PasswordStdin = False
) -> None:
    """Set an account's password."""
    from . import accounts

    password = _password(password_stdin)
    _accounts(lambda c: accounts.set_password(c, username, password))
    typer.echo(f"account {username}: password set")


@accounts_app.command("disable")
def accounts_disable(
    username: Annotated[str, typer.Argument(help="The account.")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead.")] = False,
) -> None:
    """Disable an account: its sessions end at their next request, and it cannot sign in."""
    from . import accounts

    _accounts(lambda c: accounts.set_disabled(c, username, not enable))
    typer.echo(f"account {username}: {'enabled' if enable else 'disabled'}")


@accounts_app.command("serve")
def accounts_serve(
    warehouse: Annotated[str, typer.Argument(help="The warehouse.")],
    sellers: Annotated[list[str], typer.Argument(help="The sellers whose returns it handles.")],
    stop: Annotated[bool, typer.Option("--stop", help="It no longer handles them.")] = False,
) -> None:
    """Say which sellers a warehouse handles: its operators see their units, cases and stock."""
    from . import accounts

    _accounts(lambda c: accounts.serve(c, warehouse, sellers, stop=stop))
    typer.echo(f"warehouse {warehouse}: {'no longer ' if stop else ''}serves {', '.join(sellers)}")


def console(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8700,
    secure_cookies: Annotated[
        bool, typer.Option("--secure-cookies", help="Send cookies over HTTPS only (behind a TLS proxy).")
    ] = False,
) -> None:
    """Serve the warehouse console (work queue, unit trace, stock) until Ctrl-C.

    Sign-in needs an account (`rebound accounts add`). Sessions and CSRF tokens are signed with
    REBOUND_CONSOLE_SECRET (or the file REBOUND_CONSOLE_SECRET_FILE names): set it the same on
    every replica; without it a random one is made and sessions end when the console stops. The
    pages read what `rebound run console` projects from the topics."""
    import secrets

    import uvicorn

    from .. import logs
    from ..connections import database_connect_kwargs
    from ..db import create_pool, migrate
    from .web import create_web

    settings = Settings.from_env()
    secret = settings.console_secret
    if secret is not None and (len(secret) < MIN_SECRET or secret == "REPLACE-ME"):
        fail(
            f"REBOUND_CONSOLE_SECRET must be at least {MIN_SECRET} random characters"
            " (e.g. `openssl rand -base64 48`): whoever knows it can sign in as anyone"
        )
    logs.configure(settings.log_level, settings.log_format, service="console-web")
    if secret is None:
        typer.echo("rebound console: REBOUND_CONSOLE_SECRET is not set: sessions end when the console stops", err=True)
        secret = secrets.token_urlsafe(32)

    async def open_pool() -> Any:
        pool = await create_pool(
            settings.database_url, max_size=settings.pool_size, connect_kwargs=database_connect_kwargs(settings)
        )
        await migrate(pool)
        return pool

    typer.echo(f"rebound console: http://{host}:{port}/ (Ctrl-C stops it)")
    app = create_web(secret, open_pool=open_pool, secure_cookies=secure_cookies)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=secure_cookies)
