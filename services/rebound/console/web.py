"""The warehouse console: the work queue, unit trace and stock as server-rendered pages.

Starlette serves it; sessions are Starlette's signed cookies, holding only the user name; every
form carries a CSRF token (asgi-csrf, double-submit cookie, signed with the same secret). Every
page reads the console's read models through `sellers`, what the signed-in account may see, so a
seller's user asking for another seller's case, unit or stock by URL gets nothing. Actions are
for admins and operators; each one is the same call the CLI makes, written to the audit trail
under the account's name."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import asyncpg
import structlog
from asgi_csrf import asgi_csrf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from ..db import Connection
from . import accounts, cases as work
from .stock import elsewhere, levels
from .trace import trace_units
from .waiting import waiting

log = structlog.get_logger("rebound.console.web")

SESSION_COOKIE = "rebound_console"
SESSION_SECONDS = 12 * 3600
"""A session lasts a shift from its sign-in; then the user signs in again."""

SIGN_IN_ATTEMPTS = 5
SIGN_IN_WINDOW_S = 900.0
"""Failed sign-ins of one user name a replica takes in the window; past them it refuses that name
until the oldest failure leaves the window."""

_failed: dict[str, list[float]] = {}

HEADERS = [
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
"""On every response: no framing (a one-click action in a frame), nothing loaded or posted
elsewhere, no page kept in a shared cache."""

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _age(then: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


templates.env.filters["age"] = _age
templates.env.filters["when"] = lambda at: at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class Visit:
    """A signed-in request: who, what they may see, and a connection for the page."""

    request: Request
    account: accounts.Account
    sellers: list[str] | None
    conn: Connection

    def render(self, template: str, status_code: int = 200, **context: Any) -> Response:
        session = self.request.session
        return templates.TemplateResponse(
            self.request,
            template,
            {"account": self.account, "flash": session.pop("flash", None), **context},
            status_code=status_code,
        )

    def back(self, url: str, message: str, *, error: bool = False) -> Response:
        """Post/redirect/get: the next page shows `message`."""
        self.request.session["flash"] = {"message": message, "error": error}
        return RedirectResponse(url, status_code=303)


Handler = Callable[[Visit], Awaitable[Response]]


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def signed_in(handler: Handler, *, acts: bool = False, admin: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for `handler`: a visitor who is not signed in goes to the sign-in page; with
    `acts`, one whose account only looks (a seller's user) is refused; with `admin`, anyone but
    an admin."""

    async def endpoint(request: Request) -> Response:
        session = request.session
        username, since = session.get("user"), session.get("since")
        current = isinstance(since, int) and 0 <= time.time() - since < SESSION_SECONDS
        async with _pool(request).acquire() as conn:
            account = await accounts.find(conn, username) if isinstance(username, str) and current else None
            if account is None or session.get("stamp") != account.stamp:
                request.session.clear()
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            if acts and not account.acts:
                return PlainTextResponse("Your account can look but not act.", status_code=403)
            if admin and account.role != "admin":
                return PlainTextResponse("Only an admin manages accounts.", status_code=403)
            visit = Visit(request, account, await accounts.visible_sellers(conn, account), conn)
            return await handler(visit)

    return endpoint


def _next(url: str | None) -> str:
    """Where to go after signing in: a path of this site only."""
    if url and url.startswith("/") and not url.startswith("//") and not any(c == "\\" or c < " " for c in url):
        return url
    return "/cases"


async def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": _next(request.query_params.get("next"))})


async def login(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = _next(str(form.get("next", "")))
    now, name = time.monotonic(), username.strip().lower()[:64]
    recent = [t for t in _failed.pop(name, []) if now - t < SIGN_IN_WINDOW_S]
    if recent:
        _failed[name] = recent
    if len(recent) >= SIGN_IN_ATTEMPTS:
        wait = int(SIGN_IN_WINDOW_S - (now - recent[0])) + 1
        log.warning("console_sign_in_throttled", failures=len(recent))
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": target, "error": f"Too many failed sign-ins for this name: try again in {wait} s."},
            status_code=429,
        )
    account = await accounts.authenticate(_pool(request), username, password)
    if account is None:
        recent.append(now)
        while len(_failed) >= 10_000:  # bounded: the name whose last failure is oldest goes first
            del _failed[next(iter(_failed))]
        _failed[name] = recent
        log.warning("console_sign_in_refused", failures=len(recent))
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": target, "error": "Wrong user name or password.", "username": username},
            status_code=401,
        )
    _failed.pop(name, None)
    request.session.clear()
    request.session["user"] = account.username
    request.session["since"] = int(time.time())
    request.session["stamp"] = account.stamp
    log.info("console_signed_in", username=account.username, role=account.role)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def home(request: Request) -> Response:
    return RedirectResponse("/cases", status_code=303)


async def case_list(visit: Visit) -> Response:
    status = visit.request.query_params.get("status", "open")
    wanted = None if status == "all" else status
    if wanted is not None and wanted not in work.STATUSES:
        wanted, status = "open", "open"
    kind = visit.request.query_params.get("kind") or None
    found = await work.list_cases(visit.conn, status=wanted, kind=kind, sellers=visit.sellers, limit=500)  # type: ignore[arg-type]
    return visit.render("cases.html", cases=found, status=status, kind=kind or "", statuses=(*work.STATUSES, "all"))


def _message_text(case: work.Case) -> str:
    """The message as an operator edits it before a replay."""
    return case.message().decode("utf-8", "backslashreplace")


async def case_page(visit: Visit) -> Response:
    case_id = visit.request.path_params["case_id"]
    try:
        case = await work.get_case(visit.conn, case_id, visit.sellers)
    except work.CaseError:
        return visit.render("missing.html", status_code=404, what=f"case {case_id}")
    trail = await work.audit_trail(visit.conn, case.case_id)
    return visit.render(
        "case.html",
        case=case,
        trail=trail,
        message=_message_text(case),
        matchable=work.MATCHABLE,
        unit_decisions=work.UNIT_DECISIONS,
        replayable=work.REPLAYABLE_EXCEPTIONS,
    )


async def case_action(visit: Visit) -> Response:
    case_id, action = visit.request.path_params["case_id"], visit.request.path_params["action"]
    form = await visit.request.form()
    actor, sellers, url = visit.account.username, visit.sellers, f"/cases/{quote(case_id)}"
    try:
        if action == "assign":
            owner = str(form.get("owner") or actor).strip()
            await work.assign(visit.conn, case_id, owner, actor, sellers)
            done = f"Assigned to {owner}."
        elif action in ("resolve", "dismiss"):
            status: Literal["resolved", "dismissed"] = "resolved" if action == "resolve" else "dismissed"
            await work.close(visit.conn, case_id, status, str(form.get("reason", "")).strip(), actor, sellers)
            done = f"Case {status}."
        elif action == "match":
            matched = await work.match(visit.conn, case_id, str(form.get("reference", "")), actor, sellers)
            done = (
                f"Parcel {matched.tracking_number} matched to return {matched.return_id}: its units are received"
                " against it; the case is resolved."
            )
        elif action == "receive-unexpected":
            received = await work.receive_unexpected(visit.conn, case_id, actor, sellers)
            done = (
                f"Parcel {received.tracking_number} received as unexpected stock: each of its units is a case of"
                " its own, to add to a return or quarantine; this case is resolved."
            )
        elif action == "add-to-return":
            reference, line = str(form.get("reference", "")), str(form.get("line_id", "")).strip() or None
            added = await work.add_to_return(visit.conn, case_id, reference, line, actor, sellers)
            done = f"Unit {added.lpn} added to return {added.return_id}, line {added.line_id}; the case is resolved."
        elif action == "quarantine":
            quarantined = await work.quarantine(visit.conn, case_id, str(form.get("reason", "")), actor, sellers)
            done = f"Unit {quarantined.lpn} quarantined; the case is resolved."
        elif action == "register":
            if visit.account.role != "admin":
                return PlainTextResponse("Only an admin registers sellers.", status_code=403)
            registered = await work.register_seller(visit.conn, case_id, str(form.get("name", "")), actor)
            done = (
                f"Seller {registered.seller_id} registered; {len(registered.replayed)} of its events sent again,"
                " their cases resolved."
            )
        elif action == "replay":
            case = await work.get_case(visit.conn, case_id, sellers)
            text = str(form.get("message", "")).replace("\r\n", "\n")
            corrected = None if text.strip() == _message_text(case).strip() else text.encode()
            replayed = await work.replay(visit.conn, case_id, actor, corrected, sellers)
            done = f"Sent again to {replayed.topic} as event {replayed.event_id}; the case is resolved."
        else:
            return visit.render("missing.html", status_code=404, what=f"action {action}")
    except work.CaseError as error:
        return visit.back(url, str(error), error=True)
    log.info("console_case_action", case_id=case_id, action=action, actor=actor)
    return visit.back(url, done)


async def accounts_page(visit: Visit) -> Response:
    return visit.render(
        "accounts.html",
        accounts=await accounts.listed(visit.conn),
        served=await accounts.served(visit.conn),
        roles=accounts.ROLES,
        min_password=accounts.MIN_PASSWORD,
    )


def _field(form: Any, name: str) -> str | None:
    value = str(form.get(name, "")).strip()
    return value or None


async def accounts_action(visit: Visit) -> Response:
    """An admin adds an account, sets its password, disables or enables it, or says which sellers
    a warehouse serves: what `rebound accounts ...` does from a terminal."""
    action, form = visit.request.path_params["action"], await visit.request.form()
    name, actor = _field(form, "username") or "", visit.account.username
    try:
        if action == "add":
            role = _field(form, "role") or ""
            made = await accounts.add(
                visit.conn,
                name,
                str(form.get("password", "")),
                role,  # type: ignore[arg-type]  # checked by add
                warehouse_id=_field(form, "warehouse_id") if role == "operator" else None,
                seller_id=_field(form, "seller_id") if role == "seller" else None,
            )
            done = f"Account {made.describe()} added."
        elif action == "password":
            await accounts.set_password(visit.conn, name, str(form.get("password", "")))
            done = f"{name}'s password is set; its sessions have ended."
        elif action in ("disable", "enable"):
            if action == "disable" and name == actor:
                raise accounts.AccountError("an admin does not disable its own account")
            await accounts.set_disabled(visit.conn, name, action == "disable")
            done = f"{name} {action}d."
        elif action in ("serve", "unserve"):
            warehouse = _field(form, "warehouse_id") or ""
            sellers = [s for s in str(form.get("sellers", "")).replace(",", " ").split() if s]
            if not warehouse or not sellers:
                raise accounts.AccountError("name the warehouse and at least one seller")
            await accounts.serve(visit.conn, warehouse, sellers, stop=action == "unserve")
            done = f"{warehouse} {'no longer serves' if action == 'unserve' else 'serves'} {', '.join(sellers)}."
        else:
            return visit.render("missing.html", status_code=404, what=f"action {action}")
    except accounts.AccountError as error:
        return visit.back("/accounts", str(error), error=True)
    log.info("console_account_changed", action=action, username=name or None, actor=actor)
    return visit.back("/accounts", done)


async def trace_page(visit: Visit) -> Response:
    query = visit.request.query_params.get("q", "").strip()
    units = await trace_units(visit.conn, query, visit.sellers) if query else []
    return visit.render("trace.html", query=query, units=units)


async def waiting_page(visit: Visit) -> Response:
    found = await waiting(visit.conn, visit.sellers)
    return visit.render(
        "waiting.html",
        scans=[w for w in found if w.kind == "scan"],
        inspections=[w for w in found if w.kind == "inspection"],
    )


async def stock_page(visit: Visit) -> Response:
    found = await levels(visit.conn, visit.sellers)
    return visit.render("stock.html", levels=found, elsewhere=await elsewhere(visit.conn, visit.sellers))


async def health(request: Request) -> Response:
    async with _pool(request).acquire() as conn:
        await conn.fetchval("SELECT 1")
    return PlainTextResponse("ok")


def create_web(
    secret: str,
    *,
    pool: asyncpg.Pool | None = None,
    open_pool: Callable[[], Awaitable[asyncpg.Pool]] | None = None,
    secure_cookies: bool = False,
) -> ASGIApp:
    """The console as an ASGI app, on `pool` or on one `open_pool` opens at start and closed at
    stop. `secret` signs sessions and CSRF tokens: the same on every replica, and kept secret."""
    if (pool is None) == (open_pool is None):
        raise ValueError("give pool or open_pool")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = pool if pool is not None else await open_pool()  # type: ignore[misc]
        try:
            yield
        finally:
            if pool is None:
                await app.state.pool.close()

    routes = [
        Route("/", home),
        Route("/health", health),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/cases", signed_in(case_list)),
        Route("/cases/{case_id}", signed_in(case_page)),
        Route("/cases/{case_id}/{action}", signed_in(case_action, acts=True), methods=["POST"]),
        Route("/accounts", signed_in(accounts_page, admin=True)),
        Route("/accounts/{action}", signed_in(accounts_action, admin=True), methods=["POST"]),
        Route("/trace", signed_in(trace_page)),
        Route("/waiting", signed_in(waiting_page)),
        Route("/stock", signed_in(stock_page)),
    ]
    # Over HTTPS the cookies are __Host- ones: no other host (a sibling subdomain) can set them.
    prefix = "__Host-" if secure_cookies else ""
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=secret,
            session_cookie=prefix + SESSION_COOKIE,
            max_age=SESSION_SECONDS,
            same_site="strict",
            https_only=secure_cookies,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    if pool is not None:  # usable before (or without) a lifespan's start
        app.state.pool = pool
    protected: ASGIApp = asgi_csrf(
        app,
        cookie_name=prefix + "csrftoken",
        signing_secret=secret,
        always_protect={"/login"},
        cookie_secure=secure_cookies,
    )
    return _with_headers(protected)


def _with_headers(app: ASGIApp) -> ASGIApp:
    """`app`, every response of which carries HEADERS."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await app(scope, receive, sending)

    return wrapped
