"""The console's accounts against the real PostgreSQL: passwords kept as argon2id hashes and
checked, a disabled account and an unknown name refused alike, each role's visible sellers."""

from __future__ import annotations

import uuid

import pytest

from rebound.console import accounts


def _name(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:10]}"


async def test_a_password_is_kept_hashed_and_checked(pool) -> None:
    name = _name("op")
    async with pool.acquire() as conn:
        made = await accounts.add(conn, name, "a long enough secret", "operator", warehouse_id="WH-1")
        stored = await conn.fetchval("SELECT password_hash FROM console.accounts WHERE username = $1", name)
        assert stored.startswith("$argon2id$") and "a long enough secret" not in stored
        assert await accounts.authenticate(conn, name, "a long enough secret") == made
        assert await accounts.authenticate(conn, name, "a long enough secreT") is None
        assert await accounts.authenticate(conn, _name("nobody"), "a long enough secret") is None

        await accounts.set_password(conn, name, "another secret, longer")
        assert await accounts.authenticate(conn, name, "a long enough secret") is None
        assert await accounts.authenticate(conn, name, "another secret, longer") == made

        await accounts.set_disabled(conn, name, True)
        assert await accounts.authenticate(conn, name, "another secret, longer") is None
        assert await accounts.find(conn, name) is None, "a disabled account's session ends"


@pytest.mark.parametrize(
    ("role", "scope", "message"),
    [
        ("operator", {}, "an operator, and only an operator, has a warehouse"),
        ("seller", {"warehouse_id": "WH-1"}, "an operator, and only an operator, has a warehouse"),
        ("seller", {}, "a seller's user, and only a seller's user, has a seller"),
        ("admin", {"seller_id": "s1"}, "a seller's user, and only a seller's user, has a seller"),
    ],
)
async def test_an_account_has_the_scope_of_its_role(pool, role, scope, message) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(accounts.AccountError, match=message):
            await accounts.add(conn, _name(role), "a long enough secret", role, **scope)


async def test_bad_names_short_passwords_and_duplicates_are_refused(pool) -> None:
    name = _name("admin")
    async with pool.acquire() as conn:
        with pytest.raises(accounts.AccountError, match="at least 10 characters"):
            await accounts.add(conn, name, "short", "admin")
        with pytest.raises(accounts.AccountError, match="a user name is"):
            await accounts.add(conn, "has space", "a long enough secret", "admin")
        await accounts.add(conn, name, "a long enough secret", "admin")
        with pytest.raises(accounts.AccountError, match="already an account"):
            await accounts.add(conn, name, "a long enough secret", "admin")


async def test_each_role_sees_its_sellers(pool) -> None:
    warehouse, a, b = _name("WH"), _name("seller"), _name("seller")
    async with pool.acquire() as conn:
        await accounts.serve(conn, warehouse, [a, b])
        await accounts.serve(conn, warehouse, [b], stop=True)
        operator = await accounts.add(conn, _name("op"), "a long enough secret", "operator", warehouse_id=warehouse)
        seller = await accounts.add(conn, _name("s"), "a long enough secret", "seller", seller_id=b)
        admin = await accounts.add(conn, _name("admin"), "a long enough secret", "admin")
        assert await accounts.visible_sellers(conn, operator) == [a]
        assert await accounts.visible_sellers(conn, seller) == [b]
        assert await accounts.visible_sellers(conn, admin) is None
        assert not seller.acts and operator.acts and admin.acts
