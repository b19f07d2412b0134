"""The seller registry: who the tenants are and their grading rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from .db import Connection, create_pool, migrate
from .grading.domain import DEFAULT_RULES_DOCUMENT


async def _pool(database_url: str, connect_kwargs: Mapping[str, Any] | None) -> asyncpg.Pool:
    pool = await create_pool(database_url, max_size=2, wait_seconds=30, connect_kwargs=connect_kwargs)
    await migrate(pool)
    return pool


async def insert_sellers(conn: Connection, sellers: Mapping[str, str]) -> None:
    """Register `sellers` (id -> name); one already registered keeps its name."""
    await conn.executemany(
        "INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", list(sellers.items())
    )


async def add_sellers(
    database_url: str, sellers: dict[str, str], *, connect_kwargs: Mapping[str, Any] | None = None
) -> None:
    pool = await _pool(database_url, connect_kwargs)
    try:
        async with pool.acquire() as conn:
            await insert_sellers(conn, sellers)
    finally:
        await pool.close()


async def set_rules(
    database_url: str,
    seller_id: str,
    document: dict[str, Any] | None,
    *,
    connect_kwargs: Mapping[str, Any] | None = None,
) -> bool:
    pool = await _pool(database_url, connect_kwargs)
    try:
        status = await pool.execute(
            "UPDATE rebound.sellers SET grading_rules = $2 WHERE seller_id = $1",
            seller_id,
            orjson.dumps(document).decode() if document is not None else None,
        )
        return status.endswith(" 1")
    finally:
        await pool.close()


async def get_rules(
    database_url: str, seller_id: str, *, connect_kwargs: Mapping[str, Any] | None = None
) -> tuple[bool, dict[str, Any]]:
    pool = await _pool(database_url, connect_kwargs)
    try:
        row = await pool.fetchrow("SELECT grading_rules FROM rebound.sellers WHERE seller_id = $1", seller_id)
    finally:
        await pool.close()
    if row is None:
        return False, {}
    return True, orjson.loads(row["grading_rules"]) if row["grading_rules"] else DEFAULT_RULES_DOCUMENT
