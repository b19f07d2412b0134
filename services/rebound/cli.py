"""`rebound`: run a service, onboard sellers, simulate a return wave, check the guarantees."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import logs
from .connections import database_connect_kwargs, kafka_options
from .settings import Settings

app = typer.Typer(
    help="Rebound: returned units back to sellable stock, synced to the shop exactly once.",
    no_args_is_help=True,
    add_completion=False,
)
sellers_app = typer.Typer(help="Onboard sellers and manage their grading rules.", no_args_is_help=True)
app.add_typer(sellers_app, name="sellers")
policy_app = typer.Typer(
    help="Disposition policies: where each seller's graded units go (listings, pools, lots...).",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")


class Service(str, Enum):
    intake = "intake"
    grading = "grading"
    relisting = "relisting"
    ledger = "ledger"


def _fail(message: str) -> None:
    typer.secho(f"rebound: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


@app.command()
def run(service: Annotated[Service, typer.Argument(help="The service to run.")]) -> None:
    """Run one service (a consumer-group member; start several for replicas) until SIGTERM."""
    # Until the app installs its graceful handler, a SIGTERM means: stop now, cleanly (nothing
    # has been consumed yet).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format, service=service.value)
    module = importlib.import_module(f"rebound.{service.value}.app")
    asyncio.run(module.create_app(settings).run())


@app.command()
def migrate() -> None:
    """Apply the database migrations (services also do this at start)."""
    from .db import create_pool
    from .db import migrate as apply

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)

    async def go() -> list[str]:
        pool = await create_pool(settings.database_url, wait_seconds=30,
                                 connect_kwargs=database_connect_kwargs(settings))
        try:
            return await apply(pool, wait_seconds=30)
        finally:
            await pool.close()

    applied = asyncio.run(go())
    typer.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@app.command()
def topics() -> None:
    """Create the registry's topics with their partition counts (idempotent)."""
    from .messaging.topics import ensure_topics

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    created = asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, wait_seconds=30,
                                        kafka_options=kafka_options(settings)))
    typer.echo(f"topics created: {', '.join(created) if created else 'none (all exist)'}")


@app.command()
def simulate(
    units: Annotated[int, typer.Option(min=1, help="Units in the return wave.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Same seed (and --start) gives the same wave, byte for byte.")] = 1,
    sellers: Annotated[int, typer.Option(min=1, help="Sellers (tenants) in the wave.")] = 4,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share of events sent twice.")] = 0.0,
    out_of_order: Annotated[float, typer.Option(min=0, max=1, help="Share of returns whose scan comes before the RMA.")] = 0.0,
    bad: Annotated[float, typer.Option(min=0, max=1, help="Share of extra malformed or wrong messages.")] = 0.0,
    hostile: Annotated[float, typer.Option(min=0, max=1, help="Share of valid events written as a hostile sender would (deep nesting, many unknown fields, longest strings, edge numbers).")] = 0.0,
    start: Annotated[str | None, typer.Option(help="occurred_at of the first event, RFC 3339 (default: now).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print what would be sent; send nothing.")] = False,
) -> None:
    """Send a realistic return wave to the inbound topics (and register its sellers)."""
    from datetime import UTC, datetime

    from . import simulator

    settings = Settings.from_env()
    logs.configure("warning", settings.log_format)
    try:
        when = datetime.fromisoformat(start) if start else datetime.now(UTC)
        config = simulator.WaveConfig(units=units, seed=seed, sellers=sellers, duplicate_rate=duplicates,
                                      out_of_order_rate=out_of_order, bad_rate=bad, hostile_rate=hostile, start=when)
    except ValueError as error:
        _fail(f"--start/--units: {error}")
    wave = simulator.generate(config)
    summary = wave.summary()
    if not dry_run:
        asyncio.run(simulator.register_sellers(settings.database_url, wave.sellers,
                                               connect_kwargs=database_connect_kwargs(settings)))
        asyncio.run(simulator.publish(wave, settings.kafka_bootstrap_servers, kafka_options=kafka_options(settings)))
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command()
def demo(
    units: Annotated[int, typer.Option(min=1, help="Units in the simulated return wave.")] = 10_000,
    seed: Annotated[int | None, typer.Option(help="Seed of the wave (default: the clock); printed for replay.")] = None,
    replicas: Annotated[int, typer.Option(min=1, max=8, help="Processes per service (one consumer group each).")] = 1,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share of events sent twice.")] = 0.02,
    out_of_order: Annotated[float, typer.Option(min=0, max=1, help="Share of returns whose scan comes before the RMA.")] = 0.05,
    bad: Annotated[float, typer.Option(min=0, max=1, help="Share of extra malformed or wrong messages.")] = 0.005,
    hostile: Annotated[float, typer.Option(min=0, max=1, help="Share of valid events written as a hostile sender would (deep nesting, many unknown fields, longest strings, edge numbers).")] = 0.005,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the pipeline to catch up.")] = 900.0,
    sell: Annotated[float, typer.Option(min=0, max=1, help="Share of the units on offer after the wave that are then sold (picked for orders).")] = 0.6,
) -> None:
    """Run every service, simulate a return wave, print a summary and check the guarantees.

    Exits 1 when a guarantee was broken, 2 when the pipeline did not catch up."""
    from .demo import DemoOptions
    from .demo import main as run_demo

    settings = Settings.from_env()
    logs.configure("warning", settings.log_format)
    code = run_demo(DemoOptions(units=units, seed=seed, replicas=replicas, duplicate_rate=duplicates,
                                out_of_order_rate=out_of_order, bad_rate=bad, hostile_rate=hostile, timeout=timeout,
                                sell=sell), settings)
    raise typer.Exit(code)


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    html = "html"


@app.command()
def report(
    seller: Annotated[str, typer.Option(help="The seller (tenant) to report on.")],
    from_: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: 90 days before --to).")] = None,
    to: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD, inclusive (default: today, UTC).")] = None,
    format_: Annotated[ReportFormat, typer.Option("--format", help="table for a terminal, json, or a self-contained html page.")] = ReportFormat.table,
    output: Annotated[Path | None, typer.Option(help="Write json or html to this file instead of standard output.")] = None,
) -> None:
    """Return analytics of one seller: reasons, sizes and colours, grades, resale, recovery, loss
    and dock-to-stock time of the units scanned at the dock in a period."""
    from datetime import UTC, date, datetime

    from rich.console import Console

    from .reports.render import as_html, as_json, as_table
    from .reports.report import UnknownSeller, default_period, period_bounds, seller_report

    if output is not None and format_ is ReportFormat.table:
        _fail("--output is for --format json or html")
    settings = Settings.from_env()
    logs.configure("warning", settings.log_format)
    now = datetime.now(UTC)
    try:
        first = date.fromisoformat(from_) if from_ else None
        last = date.fromisoformat(to) if to else None
        period = default_period(now.date(), first, last)
        period_bounds(*period)
    except ValueError as error:
        _fail(f"bad date: {error} (dates are YYYY-MM-DD)")
    try:
        built = asyncio.run(_with_conn(settings,
                                       lambda conn: seller_report(conn, seller, period[0], period[1], now)))
    except UnknownSeller as error:
        _fail(f"{error} (rebound sellers add {seller})")
    if format_ is ReportFormat.table:
        Console().print(as_table(built))
        return
    text = as_json(built) if format_ is ReportFormat.json else as_html(built)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"{format_.value} report of {seller} written to {output}")


@sellers_app.command("add")
def sellers_add(
    seller_id: Annotated[str, typer.Argument(help="The seller (tenant) id used in every event.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Register a seller; events of unregistered sellers go to returns.exceptions.v1."""
    from . import tenancy

    settings = Settings.from_env()
    asyncio.run(tenancy.add_sellers(settings.database_url, {seller_id: name or seller_id},
                                    connect_kwargs=database_connect_kwargs(settings)))
    typer.echo(f"seller {seller_id} registered")


@sellers_app.command("rules")
def sellers_rules(
    seller_id: Annotated[str, typer.Argument(help="The seller whose grading rules to show or set.")],
    file: Annotated[Path | None, typer.Option("--file", "-f", help="JSON rules to validate and set.")] = None,
    check: Annotated[bool, typer.Option(help="Only validate --file; change nothing.")] = False,
    reset: Annotated[bool, typer.Option(help="Go back to the default rule.")] = False,
) -> None:
    """Show, validate or set a seller's grading rules (rules are data, per seller and SKU prefix)."""
    from . import tenancy
    from .grading.domain import InvalidGradingRules, parse_rules

    settings = Settings.from_env()
    if file is not None:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
            parse_rules(document)
        except (OSError, json.JSONDecodeError, InvalidGradingRules) as error:
            _fail(f"{file}: {error}")
        if check:
            typer.echo(f"{file}: valid")
            return
        if not asyncio.run(tenancy.set_rules(settings.database_url, seller_id, document,
                                                 connect_kwargs=database_connect_kwargs(settings))):
            _fail(f"seller {seller_id} is not registered")
        typer.echo(f"grading rules of {seller_id} set from {file}")
        return
    if reset:
        if not asyncio.run(tenancy.set_rules(settings.database_url, seller_id, None,
                                                 connect_kwargs=database_connect_kwargs(settings))):
            _fail(f"seller {seller_id} is not registered")
        typer.echo(f"grading rules of {seller_id} reset to the default")
        return
    found, rules = asyncio.run(tenancy.get_rules(settings.database_url, seller_id,
                                                  connect_kwargs=database_connect_kwargs(settings)))
    if not found:
        _fail(f"seller {seller_id} is not registered")
    typer.echo(json.dumps(rules, indent=2))


def _read_policy(file: Path):  # noqa: ANN202 - a Policy, imported lazily
    from .relisting.domain import PolicyError
    from .relisting.policy_file import parse_policy

    try:
        return parse_policy(file.read_text(encoding="utf-8"), str(file))
    except OSError as error:
        _fail(f"{file}: cannot read it: {error.strerror or error}")
    except PolicyError as error:
        _fail(f"{error}; nothing changed")


async def _with_conn(settings: Settings, work):  # noqa: ANN001, ANN202
    from .db import create_pool

    pool = await create_pool(settings.database_url, wait_seconds=30, connect_kwargs=database_connect_kwargs(settings))
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()


@policy_app.command("validate")
def policy_validate(
    file: Annotated[Path, typer.Argument(help="A policy in YAML or JSON.")],
) -> None:
    """Check a policy file; a problem is reported with its line, and nothing is stored."""
    policy = _read_policy(file)
    typer.echo(f"{file}: valid ({len(policy.rules)} rules)")


@policy_app.command("set")
def policy_set(
    seller_id: Annotated[str, typer.Argument(help="The seller whose policy to set.")],
    file: Annotated[Path, typer.Argument(help="A policy in YAML or JSON (see `rebound policy show`).")],
) -> None:
    """Validate a policy file and make it the seller's policy; units on offer move to follow it."""
    from .relisting.adapters import set_policy

    policy = _read_policy(file)
    settings = Settings.from_env()
    version = asyncio.run(_with_conn(settings, lambda conn: set_policy(conn, seller_id, policy)))
    if version is None:
        _fail(f"seller {seller_id} is not registered (rebound sellers add {seller_id})")
    typer.echo(f"policy of {seller_id} set from {file} (version {version}, {len(policy.rules)} rules)")


@policy_app.command("reset")
def policy_reset(seller_id: Annotated[str, typer.Argument(help="The seller.")]) -> None:
    """Go back to the default policy (A new, B open box at 80 %, C repair, SCRAP disposal)."""
    from .relisting.adapters import set_policy

    settings = Settings.from_env()
    if asyncio.run(_with_conn(settings, lambda conn: set_policy(conn, seller_id, None))) is None:
        _fail(f"seller {seller_id} is not registered")
    typer.echo(f"policy of {seller_id} reset to the default")


@policy_app.command("show")
def policy_show(seller_id: Annotated[str, typer.Argument(help="The seller.")]) -> None:
    """Print the seller's policy as YAML (the default one when none is set)."""
    from .relisting.adapters import RelistingRepository
    from .relisting.policy_file import dump_policy

    settings = Settings.from_env()

    async def read(conn):  # noqa: ANN001, ANN202
        if not await conn.fetchval("SELECT 1 FROM rebound.sellers WHERE seller_id = $1", seller_id):
            return None
        return await RelistingRepository(conn).policy_for(seller_id)

    found = asyncio.run(_with_conn(settings, read))
    if found is None:
        _fail(f"seller {seller_id} is not registered")
    policy, version = found
    typer.echo(f"# policy of {seller_id}: " + (f"version {version}" if version else "the default (none set)"))
    typer.echo(dump_policy(policy), nl=False)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
