"""PostgreSQL: a pool that waits for the server, and versioned migrations run at start."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger(__name__)

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one taken from a pool: the repositories take either."""

MIGRATIONS_LOCK = 0x5EB0_0001  # advisory lock id: one migrator at a time across replicas
MIGRATION_TIMEOUT_S = 6 * 3600.0
"""How long one migration may run (a key rebuilt on a large table takes minutes): not the pool's
60 s per statement, after which it would be rolled back and tried again, forever."""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # What asyncpg raises when a pooled connection is used after the server ended its session
    # while it sat idle (a shutdown's "terminating connection due to administrator command"):
    # "cannot switch to state 15; another operation (2) is in progress" (MagicStack/asyncpg#1069).
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncio.TimeoutError,
)
"""Errors after which the same work may succeed if tried again."""

RESOURCE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout, or cancelled by an operator
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
    asyncpg.exceptions.OutOfMemoryError,  # "out of shared memory": the server's lock table is full
    asyncpg.exceptions.DiskFullError,
    asyncio.TimeoutError,  # the pool's command_timeout, raised on a statement that took too long
)
"""Errors of work that may succeed later or in smaller pieces, or fail the same way every time
(a batch too slow for the statement limit): raised inside a transaction, they are retried a few
times, then the work is split, and a record that still fails alone is parked."""


DEAD_PEER_SETTINGS = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
"""What every connection asks of its server session: to probe a silent client after 5 s and end
the session after three unanswered probes 2 s apart, or once data it sent has gone unacknowledged
for 10 s. A client cut off without its socket closing (a network partition, a host gone, a
half-open connection) then loses its session, with its locks and the relay leadership it held,
within about 11 s, not the operating system's two hours. A live client's kernel answers the
probes however busy the client is; over a Unix socket PostgreSQL ignores them."""


def with_dead_peer_settings(connect_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """`connect_kwargs` with DEAD_PEER_SETTINGS under the server settings it names itself."""
    kwargs = dict(connect_kwargs or {})
    kwargs["server_settings"] = {**DEAD_PEER_SETTINGS, **kwargs.get("server_settings", {})}
    return kwargs


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """What a pool does to a connection given back, after rolling back a transaction left open:
    nothing. asyncpg's default resets the session (advisory locks, LISTEN, settings), one more
    round trip after every batch; no code here leaves session state on a pooled connection (the
    one session lock, the migrations', is released where it is taken)."""


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    wait_seconds: float = 120.0,
    connect_kwargs: Mapping[str, Any] | None = None,
) -> asyncpg.Pool:
    """Connect, waiting with back-off while the server is not up yet. `connect_kwargs`: see
    `connections.database_connect_kwargs`."""
    delay, waited = 0.2, 0.0
    while True:
        try:
            return await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                reset=_keep_session,
                **with_dead_peer_settings(connect_kwargs),
            )
        except TRANSIENT_ERRORS as error:
            if waited >= wait_seconds:
                raise
            log.warning("database_unavailable", error=str(error), retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("rebound") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def advisory_xact_locks(conn: Connection, keys: Iterable[str]) -> None:
    """Take the transaction-scoped advisory locks of `keys`, in one fixed order, so two
    transactions wanting some of the same keys never wait on each other in a cycle."""
    wanted = sorted(set(keys))
    if wanted:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h"
            " FROM unnest($1::text[]) AS k ORDER BY h) AS ordered",
            wanted,
        )


async def migrate(pool: asyncpg.Pool, *, wait_seconds: float = float("inf")) -> list[str]:
    """Apply the migrations not applied yet, in order; safe to run from every replica at once.
    If the database goes away meanwhile, wait for it with back-off and carry on (each migration
    is one transaction, so it is applied whole or not at all)."""
    delay, waited = 0.2, 0.0
    while True:
        try:
            return await _migrate_once(pool)
        except TRANSIENT_ERRORS as error:
            if waited >= wait_seconds:
                raise
            log.warning("database_unavailable", error=str(error), during="migrate", retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)


async def _migrate_once(pool: asyncpg.Pool) -> list[str]:
    applied_now = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK)
        try:
            await conn.execute(
                "CREATE SCHEMA IF NOT EXISTS rebound;"
                " CREATE TABLE IF NOT EXISTS rebound.schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM rebound.schema_migrations")}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql, timeout=MIGRATION_TIMEOUT_S)
                    await conn.execute(
                        "INSERT INTO rebound.schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                applied_now.append(name)
                log.info("migration_applied", migration=name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK)
    return applied_now
