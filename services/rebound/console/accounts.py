"""The console's accounts: who may sign in, with which password, and which sellers' data they see.

Passwords are kept as argon2id hashes (argon2-cffi, its default parameters), never in the clear;
a hash made with weaker parameters than today's is replaced at the next sign-in."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..db import Connection

Role = Literal["admin", "operator", "seller"]
ROLES: tuple[Role, ...] = ("admin", "operator", "seller")
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10

_hasher = PasswordHasher()
_UNKNOWN_USER_HASH = _hasher.hash("a password no account has")
"""Verified against when the user name is unknown, so a wrong name costs what a wrong password does."""

_VERIFYING = asyncio.Semaphore(2)
"""Password checks at once: each takes 64 MiB and tens of milliseconds of CPU, off the event loop."""


class AccountError(Exception):
    """An account that cannot be made or changed, with the reason."""


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    warehouse_id: str | None = None
    seller_id: str | None = None
    stamp: str = field(default="", compare=False)
    """Changes with the password: a session signed in under another stamp has ended."""

    @property
    def acts(self) -> bool:
        """Whether the account works cases (admins and operators); a seller's users only look."""
        return self.role != "seller"

    def describe(self) -> str:
        scope = {"admin": "every seller", "operator": f"warehouse {self.warehouse_id}", "seller": f"{self.seller_id}"}
        return f"{self.username} ({self.role}, {scope[self.role]})"


async def visible_sellers(conn: Connection, account: Account) -> list[str] | None:
    """The sellers whose data `account` sees; None: every seller's (an admin)."""
    if account.role == "admin":
        return None
    if account.role == "seller":
        return [account.seller_id or ""]
    rows = await conn.fetch(
        "SELECT seller_id FROM console.warehouse_sellers WHERE warehouse_id = $1 ORDER BY seller_id",
        account.warehouse_id,
    )
    return [r["seller_id"] for r in rows]


def _account(row: asyncpg.Record, password_hash: str | None = None) -> Account:
    stamp = hashlib.sha256((password_hash or row["password_hash"]).encode()).hexdigest()[:16]
    return Account(row["username"], row["role"], row["warehouse_id"], row["seller_id"], stamp)


_SELECT_ENABLED = (
    "SELECT username, role, warehouse_id, seller_id, password_hash FROM console.accounts"
    " WHERE username = $1 AND NOT disabled"
)


async def find(conn: Connection, username: str) -> Account | None:
    """The enabled account of that name, if there is one."""
    row = await conn.fetchrow(_SELECT_ENABLED, username)
    return None if row is None else _account(row)


def _verified(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def authenticate(pool: asyncpg.Pool | Connection, username: str, password: str) -> Account | None:
    """The account, if the name is an enabled account's and the password is its own. The hash is
    checked in a worker thread, holding no database connection."""
    row = await pool.fetchrow(_SELECT_ENABLED, username)
    async with _VERIFYING:
        ok = await asyncio.to_thread(
            _verified, row["password_hash"] if row is not None else _UNKNOWN_USER_HASH, password
        )
    if row is None or not ok:
        return None
    password_hash = row["password_hash"]
    if _hasher.check_needs_rehash(password_hash):
        password_hash = _hasher.hash(password)
        await pool.execute(
            "UPDATE console.accounts SET password_hash = $2 WHERE username = $1", username, password_hash
        )
    return _account(row, password_hash)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")


async def add(
    conn: Connection,
    username: str,
    password: str,
    role: Role,
    *,
    warehouse_id: str | None = None,
    seller_id: str | None = None,
) -> Account:
    if not USERNAME.match(username):
        raise AccountError(f"{username!r}: a user name is 1 to 64 letters, digits and . _ @ -")
    if role not in ROLES:
        raise AccountError(f"{role!r} is not a role: {', '.join(ROLES)}")
    if (role == "operator") != (warehouse_id is not None):
        raise AccountError("an operator, and only an operator, has a warehouse (--warehouse)")
    if (role == "seller") != (seller_id is not None):
        raise AccountError("a seller's user, and only a seller's user, has a seller (--seller)")
    _check_password(password)
    try:
        await conn.execute(
            "INSERT INTO console.accounts (username, password_hash, role, warehouse_id, seller_id)"
            " VALUES ($1, $2, $3, $4, $5)",
            username,
            _hasher.hash(password),
            role,
            warehouse_id,
            seller_id,
        )
    except asyncpg.UniqueViolationError:
        raise AccountError(f"there is already an account {username!r}") from None
    return Account(username, role, warehouse_id, seller_id)


async def set_password(conn: Connection, username: str, password: str) -> None:
    _check_password(password)
    status = await conn.execute(
        "UPDATE console.accounts SET password_hash = $2 WHERE username = $1", username, _hasher.hash(password)
    )
    if status != "UPDATE 1":
        raise AccountError(f"no account {username!r}")


async def set_disabled(conn: Connection, username: str, disabled: bool) -> None:
    status = await conn.execute("UPDATE console.accounts SET disabled = $2 WHERE username = $1", username, disabled)
    if status != "UPDATE 1":
        raise AccountError(f"no account {username!r}")


async def listed(conn: Connection) -> list[tuple[Account, bool]]:
    """Every account, with whether it is disabled."""
    rows = await conn.fetch(
        "SELECT username, role, warehouse_id, seller_id, password_hash, disabled FROM console.accounts"
        " ORDER BY username"
    )
    return [(_account(r), r["disabled"]) for r in rows]


async def serve(conn: Connection, warehouse_id: str, sellers: list[str], *, stop: bool = False) -> None:
    """Declare that `warehouse_id` handles `sellers`' returns (or, with `stop`, no longer does)."""
    if stop:
        await conn.execute(
            "DELETE FROM console.warehouse_sellers WHERE warehouse_id = $1 AND seller_id = ANY($2::text[])",
            warehouse_id,
            sellers,
        )
    else:
        await conn.executemany(
            "INSERT INTO console.warehouse_sellers (warehouse_id, seller_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(warehouse_id, s) for s in sellers],
        )


async def served(conn: Connection) -> dict[str, list[str]]:
    """Each warehouse and the sellers it serves."""
    rows = await conn.fetch("SELECT warehouse_id, seller_id FROM console.warehouse_sellers ORDER BY 1, 2")
    found: dict[str, list[str]] = {}
    for r in rows:
        found.setdefault(r["warehouse_id"], []).append(r["seller_id"])
    return found


DEMO_ADMIN = "demo-admin"


async def reset_demo_admin(conn: Connection) -> tuple[str, str]:
    """The admin `rebound demo --keep-running` signs in with: made, or given a new random
    password, each demo; its name and password, to print for the person who ran it."""
    password = secrets.token_urlsafe(12)
    await conn.execute(
        "INSERT INTO console.accounts (username, password_hash, role) VALUES ($1, $2, 'admin')"
        " ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = 'admin',"
        " warehouse_id = NULL, seller_id = NULL, disabled = false",
        DEMO_ADMIN,
        _hasher.hash(password),
    )
    return DEMO_ADMIN, password
