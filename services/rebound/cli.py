"""`rebound`: run a service, onboard sellers, simulate a return wave, check the guarantees."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import uvloop

from . import logs
from .clitools import ListFormat
from .clitools import fail as _fail
from .clitools import with_conn as _with_conn
from .console.cli import accounts_app, cases_app, console, trace
from .connections import database_connect_kwargs, kafka_options
from .dump import install_thread_dump
from .settings import Settings

if TYPE_CHECKING:
    from .db import Connection
    from .relisting.domain import Policy

T = TypeVar("T")

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
OUT_OF_ORDER_HELP = "Share of returns whose scan comes before the RMA."
HOSTILE_HELP = (
    "Share of valid events written as a hostile sender would (deep nesting, many unknown fields, "
    "longest strings, edge numbers)."
)

connect_app = typer.Typer(
    help="Storefront connectors: connect a seller's shop, map listing keys to its listings, unblock a key.",
    no_args_is_help=True,
)
app.add_typer(connect_app, name="connect")
relay_app = typer.Typer(
    help="The outbox relays: the batches in doubt, and settling one a relay cannot settle itself.",
    no_args_is_help=True,
)
app.add_typer(relay_app, name="relay")
parked_app = typer.Typer(
    help="Records set aside after failing alone for want of resources: list them, apply them again.",
    no_args_is_help=True,
)
app.add_typer(parked_app, name="parked")
app.add_typer(cases_app, name="cases")
app.command("trace")(trace)
app.add_typer(accounts_app, name="accounts")
app.command("console")(console)


class Settled(str, Enum):
    committed = "committed"
    aborted = "aborted"


CONSOLE_PORT = 8700
"""Where `rebound run-all` and `rebound demo --keep-running` serve the console."""


STOP_CHECK_S = 1.0
"""How often a running service looks whether it was asked to stop (FastStream checks every 0.1 s
by default): a graceful stop begins at most this long after SIGTERM, and an idle service wakes
once a second for it instead of ten times."""


class Service(str, Enum):
    intake = "intake"
    grading = "grading"
    relisting = "relisting"
    ledger = "ledger"
    connectors = "connectors"
    console = "console"


@app.command()
def run(service: Annotated[Service, typer.Argument(help="The service to run.")]) -> None:
    """Run one service (a consumer-group member; start several for replicas) until SIGTERM."""
    # Until the app installs its graceful handler, a SIGTERM means: stop now, cleanly (nothing
    # has been consumed yet).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format, service=service.value)
    install_thread_dump()
    module = importlib.import_module(f"rebound.{service.value}.app")
    # uvloop: the event loop, its sockets and its timers in C. A service's work is mostly round
    # trips to Kafka and PostgreSQL, which the standard loop drives in Python.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(module.create_app(settings).run(sleep_time=STOP_CHECK_S))


@app.command("run-all")
def run_all(
    replicas: Annotated[int, typer.Option(min=1, max=8, help="Processes per service (one consumer group each).")] = 1,
    log_format: Annotated[
        str, typer.Option("--log-format", help="How the services write their lines: console or json.")
    ] = "console",
    console_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the console's web app on 127.0.0.1 (0: none).")
    ] = CONSOLE_PORT,
) -> None:
    """Run every service, the connectors and the console (its consumer and its web app) in the
    foreground until Ctrl-C: each process's log lines behind its name, a process that exits
    reported and started again.

    Kafka and PostgreSQL must be up (`make up`); each service waits for them, saying so."""
    from .supervisor import run_all as supervise

    if log_format not in ("console", "json"):
        _fail(f"--log-format {log_format}: console or json")
    env = {**os.environ, "REBOUND_LOG_FORMAT": log_format}
    settings = Settings.from_env(env)  # a setting that is wrong stops here, once, not in every process
    typer.echo(
        f"rebound run-all: {', '.join(s.value for s in Service)} ({replicas} each), Kafka "
        f"{settings.kafka_bootstrap_servers}, PostgreSQL {settings.redacted_database_url()}; Ctrl-C stops them"
    )
    if console_port:
        typer.echo(f"rebound run-all: the console at http://127.0.0.1:{console_port}/ (accounts: rebound accounts add)")
    asyncio.run(supervise([s.value for s in Service], replicas=replicas, env=env, console_port=console_port or None))


@app.command()
def migrate() -> None:
    """Apply the database migrations (services also do this at start)."""
    from .db import create_pool
    from .db import migrate as apply

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)

    async def go() -> list[str]:
        pool = await create_pool(
            settings.database_url, wait_seconds=30, connect_kwargs=database_connect_kwargs(settings)
        )
        try:
            return await apply(pool, wait_seconds=30)
        finally:
            await pool.close()

    applied = asyncio.run(go())
    typer.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@app.command()
def topics() -> None:
    """Create the registry's topics with their partition counts (idempotent)."""
    from .messaging.topic_admin import ensure_topics

    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    created = asyncio.run(
        ensure_topics(settings.kafka_bootstrap_servers, wait_seconds=30, kafka_options=kafka_options(settings))
    )
    typer.echo(f"topics created: {', '.join(created) if created else 'none (all exist)'}")


@app.command()
def simulate(
    units: Annotated[int, typer.Option(min=1, help="Units in the return wave.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Same seed (and --start) gives the same wave, byte for byte.")] = 1,
    sellers: Annotated[int, typer.Option(min=1, help="Sellers (tenants) in the wave.")] = 4,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share of events sent twice.")] = 0.0,
    out_of_order: Annotated[float, typer.Option(min=0, max=1, help=OUT_OF_ORDER_HELP)] = 0.0,
    bad: Annotated[float, typer.Option(min=0, max=1, help="Share of extra malformed or wrong messages.")] = 0.0,
    hostile: Annotated[float, typer.Option(min=0, max=1, help=HOSTILE_HELP)] = 0.0,
    start: Annotated[str | None, typer.Option(help="occurred_at of the first event, RFC 3339 (default: now).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print what would be sent; send nothing.")] = False,
) -> None:
    """Send a realistic return wave to the inbound topics (and register its sellers)."""
    from datetime import UTC, datetime

    from . import simulation

    settings = Settings.from_env()
    logs.configure("warning", settings.log_format)
    try:
        when = datetime.fromisoformat(start) if start else datetime.now(UTC)
        config = simulation.WaveConfig(
            units=units,
            seed=seed,
            sellers=sellers,
            duplicate_rate=duplicates,
            out_of_order_rate=out_of_order,
            bad_rate=bad,
            hostile_rate=hostile,
            start=when,
        )
    except ValueError as error:
        _fail(f"--start/--units: {error}")
    wave = simulation.generate(config)
    summary = wave.summary()
    if not dry_run:
        asyncio.run(
            simulation.register_sellers(
                settings.database_url, wave.sellers, connect_kwargs=database_connect_kwargs(settings)
            )
        )
        asyncio.run(simulation.publish(wave, settings.kafka_bootstrap_servers, kafka_options=kafka_options(settings)))
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command()
def demo(
    units: Annotated[int, typer.Option(min=1, help="Units in the simulated return wave.")] = 2_000,
    seed: Annotated[int | None, typer.Option(help="Seed of the wave (default: the clock); printed for replay.")] = None,
    replicas: Annotated[int, typer.Option(min=1, max=8, help="Processes per service (one consumer group each).")] = 1,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share of events sent twice.")] = 0.02,
    out_of_order: Annotated[float, typer.Option(min=0, max=1, help=OUT_OF_ORDER_HELP)] = 0.05,
    bad: Annotated[float, typer.Option(min=0, max=1, help="Share of extra malformed or wrong messages.")] = 0.005,
    hostile: Annotated[float, typer.Option(min=0, max=1, help=HOSTILE_HELP)] = 0.005,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the pipeline to catch up.")] = 900.0,
    sell: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Share of the units on offer after the wave that are then sold (picked for orders)."
        ),
    ] = 0.6,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running", help="After the summary, keep every service running on the wave's data until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Run every service, simulate a return wave, print a summary and check the guarantees.

    Exits 1 when a guarantee was broken, 2 when the pipeline did not catch up (after Ctrl-C, with
    --keep-running)."""
    from .simulation.demo import DemoOptions
    from .simulation.demo import main as run_demo

    settings = Settings.from_env()
    logs.configure("warning", settings.log_format)
    code = run_demo(
        DemoOptions(
            units=units,
            seed=seed,
            replicas=replicas,
            duplicate_rate=duplicates,
            out_of_order_rate=out_of_order,
            bad_rate=bad,
            hostile_rate=hostile,
            timeout=timeout,
            sell=sell,
        ),
        settings,
    )
    if keep_running:
        from .console.accounts import reset_demo_admin
        from .supervisor import run_all as supervise

        username, password = asyncio.run(_with_conn(settings, reset_demo_admin))
        typer.echo("rebound demo: the services keep running on the wave's data (rebound run-all); Ctrl-C stops them")
        typer.echo(
            f"rebound demo: the console at http://127.0.0.1:{CONSOLE_PORT}/ — sign in as {username}, "
            f"password {password} (a new one each demo)"
        )
        env = {**os.environ, "REBOUND_LOG_FORMAT": "console"}
        asyncio.run(supervise([s.value for s in Service], replicas=replicas, env=env, console_port=CONSOLE_PORT))
    raise typer.Exit(code)


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    html = "html"


@app.command()
def report(
    seller: Annotated[str, typer.Option(help="The seller (tenant) to report on.")],
    from_: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: 90 days before --to).")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD, inclusive (default: today, UTC).")] = None,
    format_: Annotated[
        ReportFormat, typer.Option("--format", help="table for a terminal, json, or a self-contained html page.")
    ] = ReportFormat.table,
    output: Annotated[
        Path | None, typer.Option(help="Write json or html to this file instead of standard output.")
    ] = None,
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
        built = asyncio.run(_with_conn(settings, lambda conn: seller_report(conn, seller, period[0], period[1], now)))
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
    from . import sellers

    settings = Settings.from_env()
    asyncio.run(
        sellers.add_sellers(
            settings.database_url, {seller_id: name or seller_id}, connect_kwargs=database_connect_kwargs(settings)
        )
    )
    typer.echo(f"seller {seller_id} registered")


@sellers_app.command("rules")
def sellers_rules(
    seller_id: Annotated[str, typer.Argument(help="The seller whose grading rules to show or set.")],
    file: Annotated[Path | None, typer.Option("--file", "-f", help="JSON rules to validate and set.")] = None,
    check: Annotated[bool, typer.Option(help="Only validate --file; change nothing.")] = False,
    reset: Annotated[bool, typer.Option(help="Go back to the default rule.")] = False,
) -> None:
    """Show, validate or set a seller's grading rules (rules are data, per seller and SKU prefix)."""
    from . import sellers
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
        if not asyncio.run(
            sellers.set_rules(
                settings.database_url, seller_id, document, connect_kwargs=database_connect_kwargs(settings)
            )
        ):
            _fail(f"seller {seller_id} is not registered")
        typer.echo(f"grading rules of {seller_id} set from {file}")
        return
    if reset:
        if not asyncio.run(
            sellers.set_rules(settings.database_url, seller_id, None, connect_kwargs=database_connect_kwargs(settings))
        ):
            _fail(f"seller {seller_id} is not registered")
        typer.echo(f"grading rules of {seller_id} reset to the default")
        return
    found, rules = asyncio.run(
        sellers.get_rules(settings.database_url, seller_id, connect_kwargs=database_connect_kwargs(settings))
    )
    if not found:
        _fail(f"seller {seller_id} is not registered")
    typer.echo(json.dumps(rules, indent=2))


REQUIRED_IDS = {
    "tiktok": ("product_id", "sku_id", "warehouse_id"),
    "shopify": ("inventory_item_id", "location_id"),
    "amazon": ("seller_id", "sku", "marketplace_id", "product_type"),
    "ebay": ("sku", "offer_id"),
}


SellerArgument = Annotated[str, typer.Argument(help="The seller (registered with `rebound sellers add`).")]
ShopArgument = Annotated[str, typer.Argument(help="The shop id the seller's events carry (`shop_id`).")]


def _connect(
    settings: Settings, seller_id: str, channel: str, shop_id: str, shop: dict, tokens: dict | None, what: str
) -> None:
    """Store a shop's settings (and tokens), as every `rebound connect` command does."""
    from .connectors.adapters import connect_shop

    asyncio.run(_with_conn(settings, lambda conn: connect_shop(conn, seller_id, channel, shop_id, shop, tokens)))
    typer.echo(f"{what} {shop_id} of {seller_id} connected; map its listings with `rebound connect map`")


@connect_app.command("tiktok")
def connect_tiktok(
    seller_id: SellerArgument,
    shop_id: ShopArgument,
    app_key: Annotated[str, typer.Option(help="Your TikTok Shop app's key.")],
    app_secret_file: Annotated[Path, typer.Option(help="File holding the app secret (it stays there).")],
    shop_cipher: Annotated[str, typer.Option(help="The authorised shop's cipher (from /authorization/202309/shops).")],
    tokens_file: Annotated[
        Path,
        typer.Option(
            help="JSON file with access_token, refresh_token and "
            "access_token_expire_in (Unix seconds), as the token API answers."
        ),
    ],
    api: Annotated[
        str, typer.Option(help="API base URL (a stand-in's, for tests).")
    ] = "https://open-api.tiktokglobalshop.com",
    auth: Annotated[str, typer.Option(help="Auth base URL.")] = "https://auth.tiktok-shops.com",
) -> None:
    """Connect a seller's TikTok shop. Tokens are stored, and replaced together whenever the
    connector refreshes them; the app secret is read from its file, never stored or logged."""
    from .connectors.app import tiktok_settings, tokens_document

    settings = Settings.from_env()
    try:
        if not app_secret_file.read_text(encoding="utf-8").strip():
            _fail(f"{app_secret_file} is empty")
        given = json.loads(tokens_file.read_text(encoding="utf-8"))
        tokens = tokens_document(
            str(given["access_token"]), str(given["refresh_token"]), int(given.get("access_token_expire_in", 0))
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        _fail(f"--app-secret-file/--tokens-file: {type(error).__name__}: {error}")
    shop = tiktok_settings(app_key, shop_cipher, app_secret_file, api=api, auth=auth)
    _connect(settings, seller_id, "tiktok", shop_id, shop, tokens, "TikTok shop")


@connect_app.command("shopify")
def connect_shopify(
    seller_id: SellerArgument,
    shop_id: ShopArgument,
    shop_url: Annotated[str, typer.Option(help="The store's URL, e.g. https://your-store.myshopify.com.")],
    access_token_file: Annotated[Path, typer.Option(help="File holding the Admin API access token (it stays there).")],
    version: Annotated[
        str,
        typer.Option(
            help="Admin API version (2026-04 or later: compare-and-set and idempotency keys are mandatory from it)."
        ),
    ] = "2026-04",
) -> None:
    """Connect a seller's Shopify store. Writes use compare-and-set, so a sale is never overwritten."""
    from .connectors.app import shopify_settings

    _nonempty(access_token_file, "--access-token-file")
    settings = Settings.from_env()
    shop = shopify_settings(shop_url, access_token_file, version)
    _connect(settings, seller_id, "shopify", shop_id, shop, None, "Shopify store")


@connect_app.command("amazon")
def connect_amazon(
    seller_id: SellerArgument,
    shop_id: ShopArgument,
    client_id: Annotated[str, typer.Option(help="Your app's Login with Amazon client id.")],
    client_secret_file: Annotated[Path, typer.Option(help="File holding the LWA client secret (it stays there).")],
    refresh_token_file: Annotated[
        Path, typer.Option(help="File holding the seller's LWA refresh token (it stays there).")
    ],
    api: Annotated[str, typer.Option(help="SP-API endpoint of the seller's region.")] = (
        "https://sellingpartnerapi-na.amazon.com"
    ),
    auth: Annotated[str, typer.Option(help="Login with Amazon base URL.")] = "https://api.amazon.com",
) -> None:
    """Connect a seller's Amazon account (merchant-fulfilled listings). Access tokens are fetched
    with the refresh token and kept in memory; the sales come from the Orders API at its quota (a
    page of orders a minute), so a key's writes are checked about once a minute."""
    from .connectors.app import amazon_settings

    _nonempty(client_secret_file, "--client-secret-file")
    _nonempty(refresh_token_file, "--refresh-token-file")
    shop = amazon_settings(client_id, client_secret_file, refresh_token_file, api=api, auth=auth)
    _connect(Settings.from_env(), seller_id, "amazon", shop_id, shop, None, "Amazon account")


@connect_app.command("ebay")
def connect_ebay(
    seller_id: SellerArgument,
    shop_id: ShopArgument,
    client_id: Annotated[str, typer.Option(help="Your eBay app's client id (App ID).")],
    client_secret_file: Annotated[Path, typer.Option(help="File holding the app's client secret (it stays there).")],
    refresh_token_file: Annotated[
        Path,
        typer.Option(help="File holding the seller's user refresh token (stored; access tokens are fetched with it)."),
    ],
    api: Annotated[str, typer.Option(help="API base URL (a stand-in's, for tests).")] = "https://api.ebay.com",
) -> None:
    """Connect a seller's eBay account. Each listing's revisions are paced to stay under eBay's
    250 a day: a hot listing's adjustments wait and go in one write."""
    from .connectors.app import ebay_settings, tokens_document

    _nonempty(client_secret_file, "--client-secret-file")
    refresh = _nonempty(refresh_token_file, "--refresh-token-file")
    shop = ebay_settings(client_id, client_secret_file, api=api)
    _connect(Settings.from_env(), seller_id, "ebay", shop_id, shop, tokens_document("", refresh, 0), "eBay account")


def _nonempty(path: Path, option: str) -> str:
    """The file's content, stripped; exits with a one-line reason when it cannot be read or is empty."""
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        _fail(f"{option}: {path}: {error.strerror or error}")
    if not content:
        _fail(f"{option}: {path} is empty")
    return content


@connect_app.command("map")
def connect_map(
    key: Annotated[str, typer.Argument(help="The listing key, seller:channel:warehouse:sku:condition.")],
    shop_id: Annotated[str, typer.Option("--shop", help="The shop the key's listing is in.")],
    ids: Annotated[
        list[str],
        typer.Option(
            "--id",
            help="A marketplace id, NAME=VALUE; TikTok Shop: product_id, "
            "sku_id, warehouse_id; Shopify: inventory_item_id, "
            "location_id; Amazon: seller_id, sku, marketplace_id, "
            "product_type; eBay: sku, offer_id.",
        ),
    ],
) -> None:
    """Say which marketplace listing a key is. A key blocked for being unmapped moves again,
    with every adjustment it received meanwhile."""
    from .connectors.adapters import map_listing

    parts = key.split(":")
    if len(parts) != 5 or not all(parts):
        _fail(f"{key!r} is not seller:channel:warehouse:sku:condition")
    try:
        given = dict(item.split("=", 1) for item in ids)
    except ValueError:
        _fail("--id takes NAME=VALUE")
    missing = [name for name in REQUIRED_IDS.get(parts[1], ()) if not given.get(name)]
    if missing:
        _fail(f"a {parts[1]} listing needs --id for {', '.join(missing)}")
    asyncio.run(_with_conn(Settings.from_env(), lambda conn: map_listing(conn, key, shop_id, given)))
    typer.echo(f"{key} mapped to {given}")


@connect_app.command("unmapped")
def connect_unmapped(
    seller: Annotated[str | None, typer.Option("--seller", help="Only this seller's keys.")] = None,
) -> None:
    """The listing keys with no marketplace listing yet: what each was asked to be (from
    `storefront.listings.v1`: condition, price, the marketplace's condition and SKU, the note),
    the adjustments waiting, and whether it was rejected for want of a listing. Create each on
    its marketplace, then `rebound connect map` it."""
    from rich.console import Console
    from rich.table import Table

    from .connectors.adapters import PostgresConnectorRepository
    from .connectors.domain import Requested

    rows = asyncio.run(_with_conn(Settings.from_env(), lambda conn: PostgresConnectorRepository(conn).unmapped(seller)))
    if not rows:
        typer.echo("every listing key is mapped")
        return
    table = Table("key", "shop", "to list as", "price", "note", "waiting", "rejected")
    for row in rows:
        request = Requested.parse(row["requested"]).event if row["requested"] else None
        listed = (
            ""
            if request is None
            else " ".join(
                str(part)
                for part in (
                    request.condition,
                    request.listing_sku,
                    request.marketplace_condition,
                    request.marketplace_condition_id,
                )
                if part
            )
        )
        table.add_row(
            row["key"],
            row["shop_id"],
            listed,
            "" if request is None else f"{request.price.amount} {request.price.currency}",
            "" if request is None else request.condition_note,
            str(row["waiting"]),
            "yes" if row["blocked"] == "unmapped" else "",
        )
    Console(width=200).print(table)


@connect_app.command("unblock")
def connect_unblock(key: Annotated[str, typer.Argument(help="The listing key to move again.")]) -> None:
    """Let a blocked key move again, once what blocked it is fixed: the shop reconnected, the
    listing fixed on the marketplace, or (a key blocked `in doubt`) the marketplace's number set by
    hand to what it should be, the write in doubt included; that write is then booked applied."""
    from .connectors.adapters import PostgresConnectorRepository

    if not asyncio.run(_with_conn(Settings.from_env(), lambda conn: PostgresConnectorRepository(conn).unblock(key))):
        _fail(f"no listing key {key}")
    typer.echo(f"{key} unblocked")


@relay_app.command("status")
def relay_status() -> None:
    """List the relays' batches in doubt.

    One marked unresolved waits for `rebound relay settle`: its probe record could not be read
    back, and its relay publishes nothing until told."""
    from rich.console import Console
    from rich.table import Table

    from .messaging.relay import batches_in_doubt

    rows = asyncio.run(_with_conn(Settings.from_env(), batches_in_doubt))
    if not rows:
        typer.echo("no batch in doubt")
        return
    table = Table("producer", "rows", "probe record", "in doubt since", "unresolved", "decision")
    for row in rows:
        table.add_row(
            row["producer"],
            str(row["rows"]),
            f"{row['probe_topic']}[{row['probe_partition']}]@{row['probe_offset']}",
            row["created_at"].isoformat(timespec="seconds"),
            row["unresolved"] or "",
            row["decision"] or "",
        )
    Console(width=200).print(table)


@relay_app.command("settle")
def relay_settle(
    producer: Annotated[
        str, typer.Argument(help="The relay's producer, e.g. rebound-ledger (`rebound relay status`).")
    ],
    outcome: Annotated[
        Settled,
        typer.Argument(
            help="committed: its records are on Kafka (read them: they carry the rebound-outbox-id header), "
            "so its rows are forgotten; aborted: they are not, so its rows are sent again."
        ),
    ],
) -> None:
    """Tell a relay what became of its unresolved in-doubt batch.

    Say `committed` only if the batch's records are on the topic with read_committed, `aborted`
    only if they are not: the wrong word loses the batch or publishes it twice."""
    from .messaging.relay import Probe, settle

    settled = asyncio.run(_with_conn(Settings.from_env(), lambda conn: settle(conn, producer, Probe(outcome.value))))
    if not settled:
        _fail(f"{producer} has no in-doubt batch waiting for a decision (`rebound relay status`)")
    typer.echo(f"{producer}: its in-doubt batch is settled as {outcome.value}; the relay goes on within seconds")


@parked_app.command("list")
def parked_list(
    output: Annotated[ListFormat, typer.Option("--format", help="table for a terminal, or json.")] = ListFormat.table,
) -> None:
    """List the parked records, oldest first.

    For each: which consumer set it aside, where it was read, its seller and event, why, and how
    many times it failed.

    A record is parked when it fails alone, a few times over, for want of resources (a statement
    or lock timeout, the server out of shared memory); it is reported as a `processing_parked`
    exception too. Once the cause is fixed, `rebound parked retry CONSUMER` applies it."""
    rows = asyncio.run(_with_conn(Settings.from_env(), _parked_rows))
    if output is ListFormat.json:
        typer.echo(json.dumps([dict(row) | {"parked_at": row["parked_at"].isoformat()} for row in rows], indent=2))
        return
    if not rows:
        typer.echo("no parked record")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("consumer", "record", "seller", "event", "attempts", "parked at", "error")
    for row in rows:
        table.add_row(
            row["consumer"],
            f"{row['topic']}[{row['partition']}]@{row['offset']}",
            row["seller_id"],
            row["event_id"],
            str(row["attempts"]),
            row["parked_at"].isoformat(timespec="seconds"),
            row["error"],
        )
    Console(width=200).print(table)


async def _parked_rows(conn: Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        'SELECT consumer, topic, partition, "offset", seller_id, event_id::text, attempts, parked_at, error'
        ' FROM rebound.parked_records ORDER BY parked_at, consumer, topic, partition, "offset"'
    )
    return [dict(row) for row in rows]


@parked_app.command("retry")
def parked_retry(
    consumer: Annotated[
        str, typer.Argument(help="The consumer that parked the records, e.g. rebound-grading (`rebound parked list`).")
    ],
    positions: Annotated[
        list[str] | None,
        typer.Argument(help="Only these records, as TOPIC[PARTITION]@OFFSET; all of the consumer's when none."),
    ] = None,
) -> None:
    """Apply a consumer's parked records again, each alone, in the order they were read.

    Exactly once still holds: a record whose event was applied meanwhile is a duplicate, and one
    that fails again stays parked with its new error (the command then exits with 1)."""
    from .messaging.processor import BatchProcessor

    services = {f"rebound-{service.value}": service.value for service in Service}
    if consumer not in services:
        _fail(f"no consumer {consumer!r}: one of {', '.join(sorted(services))}")
    wanted = [_position(text) for text in positions] if positions else None
    settings = Settings.from_env()
    logs.configure("warning", settings.log_format)
    spec = importlib.import_module(f"rebound.{services[consumer]}.app").spec()

    async def retry() -> list[Any]:
        from .db import create_pool

        pool = await create_pool(
            settings.database_url, wait_seconds=30, connect_kwargs=database_connect_kwargs(settings)
        )
        try:
            processor = BatchProcessor(
                consumer,
                spec.routes,
                pool,
                max_message_bytes=settings.max_message_bytes,
                lock_keys=spec.lock_keys,
                max_locks=settings.max_locks_per_transaction,
            )
            return await processor.retry_parked(wanted)
        finally:
            await pool.close()

    outcomes = asyncio.run(retry())
    if not outcomes:
        _fail(f"{consumer} has no parked record" + (" at those positions" if wanted else ""))
    for done in outcomes:
        where = f"{done.topic}[{done.partition}]@{done.offset}"
        typer.echo(f"{where}: {done.outcome}" + (f" ({done.error})" if done.error else ""))
    if any(done.outcome == "parked" for done in outcomes):
        raise typer.Exit(code=1)


def _position(text: str) -> tuple[str, int, int]:
    """TOPIC[PARTITION]@OFFSET, as `rebound parked list` writes it."""
    match = re.fullmatch(r"(.+)\[(\d+)\]@(\d+)", text)
    if match is None:
        _fail(f"{text!r} is not a record position: TOPIC[PARTITION]@OFFSET, e.g. wms.unit-inspected.v1[3]@1042")
    return match[1], int(match[2]), int(match[3])


@app.command()
def standin(
    marketplace: Annotated[
        str, typer.Argument(help="The marketplace to stand in for: tiktok, shopify, amazon or ebay.")
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 18081,
    buyers: Annotated[float, typer.Option(min=0, help="Units its buyers buy a second.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of its buyers and injected faults.")] = 0,
) -> None:
    """Serve a local stand-in of a marketplace (tests, the demo); drive it under /_standin/."""
    from .standins import serving
    from .standins.amazon import AmazonStandIn
    from .standins.ebay import EbayStandIn
    from .standins.shopify import ShopifyStandIn
    from .standins.tiktok import TikTokStandIn

    stand_ins: dict[
        str, tuple[str, type[TikTokStandIn] | type[ShopifyStandIn] | type[AmazonStandIn] | type[EbayStandIn]]
    ] = {
        "tiktok": ("TikTok Shop", TikTokStandIn),
        "shopify": ("Shopify", ShopifyStandIn),
        "amazon": ("Amazon", AmazonStandIn),
        "ebay": ("eBay", EbayStandIn),
    }
    if marketplace not in stand_ins:
        _fail(f"no stand-in for {marketplace!r} ({', '.join(stand_ins)})")
    name, kind = stand_ins[marketplace]
    market = kind(seed=seed)
    market.buyers.per_s = buyers

    async def serve() -> None:
        async with serving(market.app, port=port) as url:
            typer.echo(f"{name} stand-in on {url}")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


def _read_policy(file: Path):  # noqa: ANN202 - a Policy, imported lazily
    from .relisting.domain import PolicyError
    from .relisting.policy_file import parse_policy

    try:
        return parse_policy(file.read_text(encoding="utf-8"), str(file))
    except OSError as error:
        _fail(f"{file}: cannot read it: {error.strerror or error}")
    except PolicyError as error:
        _fail(f"{error}; nothing changed")


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
    from .relisting.adapters import PostgresRelistingRepository
    from .relisting.policy_file import dump_policy

    settings = Settings.from_env()

    async def read(conn: Connection) -> tuple[Policy, int] | None:
        if not await conn.fetchval("SELECT 1 FROM rebound.sellers WHERE seller_id = $1", seller_id):
            return None
        return await PostgresRelistingRepository(conn).policy_for(seller_id)

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
