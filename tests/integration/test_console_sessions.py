"""The console's sign-in and sessions over HTTP, against the real PostgreSQL: a password change
ends the sessions signed in with the old one, a name is refused for a while after a few failed
sign-ins, every response forbids framing, and a guessable signing secret stops the console."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
import structlog
from typer.testing import CliRunner

from rebound.cli import app as cli
from rebound.console import accounts, web

SECRET = "a signing secret for these tests alone, long enough"


def _token(page: str) -> str:
    found = re.search(r'name="csrftoken" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login", data={"username": name, "password": password, "next": "/cases", "csrftoken": _token(page.text)}
    )


@pytest.fixture
async def client(pool):
    transport = httpx.ASGITransport(app=web.create_web(SECRET, pool=pool))
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield client


async def test_a_password_change_ends_the_sessions_signed_in_with_the_old_one(pool, client) -> None:
    name = f"op-{uuid.uuid4().hex[:10]}"
    async with pool.acquire() as conn:
        await accounts.add(conn, name, "the first password", "admin")
    signed_in = await _sign_in(client, name, "the first password")
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/cases")
    assert (await client.get("/cases")).status_code == 200
    async with pool.acquire() as conn:
        await accounts.set_password(conn, name, "the second password")
    ended = await client.get("/cases")
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")


async def test_a_name_is_refused_for_a_while_after_a_few_failed_sign_ins(pool, client) -> None:
    name = f"op-{uuid.uuid4().hex[:10]}"
    async with pool.acquire() as conn:
        await accounts.add(conn, name, "the right password", "admin")
    for _ in range(web.SIGN_IN_ATTEMPTS):
        assert (await _sign_in(client, name, "a wrong password")).status_code == 401
    refused = await _sign_in(client, name, "the right password")  # right, but too late
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert (await client.get("/cases")).status_code == 303, "no session was opened"


async def test_every_response_forbids_framing_and_shared_caching(client) -> None:
    page = await client.get("/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("secret", ["REPLACE-ME", "short"])
def test_a_guessable_signing_secret_stops_the_console_with_the_reason(secret: str, monkeypatch) -> None:
    monkeypatch.setenv("REBOUND_CONSOLE_SECRET", secret)
    logging_before = structlog.get_config()["logger_factory"]
    done = CliRunner().invoke(cli, ["console", "--port", "1"])
    assert done.exit_code == 1
    assert "REBOUND_CONSOLE_SECRET must be at least 32 random characters" in done.output
    # Refused before it configures logging (which would write to the runner's closed stream).
    assert structlog.get_config()["logger_factory"] is logging_before


async def test_an_admin_manages_accounts_in_the_console_and_no_one_else_can(pool, client) -> None:
    admin, operator = f"admin-{uuid.uuid4().hex[:10]}", f"op-{uuid.uuid4().hex[:10]}"
    warehouse = f"WH-{uuid.uuid4().hex[:6]}"
    async with pool.acquire() as conn:
        await accounts.add(conn, admin, "the admin's password", "admin")
    await _sign_in(client, admin, "the admin's password")
    page = await client.get("/accounts")
    assert page.status_code == 200 and admin in page.text
    form = {"csrftoken": _token(page.text)}
    added = await client.post(
        "/accounts/add",
        data={**form, "username": operator, "role": "operator", "warehouse_id": warehouse, "password": "op password 1"},
    )
    assert added.status_code == 303
    await client.post("/accounts/serve", data={**form, "warehouse_id": warehouse, "sellers": "seller-x, seller-y"})
    refused = await client.post("/accounts/disable", data={**form, "username": admin})
    assert refused.status_code == 303
    listed = await client.get("/accounts")
    assert "an admin does not disable its own account" in listed.text
    assert f"warehouse {warehouse}: seller-x, seller-y" in listed.text
    async with pool.acquire() as conn:
        made = await accounts.find(conn, operator)
        assert made is not None and (made.role, made.warehouse_id) == ("operator", warehouse)
        assert await accounts.visible_sellers(conn, made) == ["seller-x", "seller-y"]

    transport = httpx.ASGITransport(app=web.create_web(SECRET, pool=pool))
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as theirs:
        assert (await _sign_in(theirs, operator, "op password 1")).status_code == 303
        assert (await theirs.get("/accounts")).status_code == 403
        cases = await theirs.get("/cases")
        assert cases.status_code == 200 and 'href="/accounts"' not in cases.text
        forged = await theirs.post(
            "/accounts/add",
            data={"csrftoken": _token(cases.text), "username": "mine", "role": "admin", "password": "a password 1"},
        )
        assert forged.status_code == 403
        await client.post("/accounts/disable", data={**form, "username": operator})
        ended = await theirs.get("/cases")
        assert ended.status_code == 303, "a disabled account's session has ended"
    async with pool.acquire() as conn:
        assert await accounts.find(conn, "mine") is None
