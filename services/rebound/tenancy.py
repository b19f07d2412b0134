"""The seller registry: who the tenants are and their grading rules."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from .db import create_pool, migrate
from .grading.domain import DEFAULT_RULES_DOCUMENT


async def _pool(database_url: str) -> asyncpg.Pool:
    pool = await create_pool(database_url, max_size=2, wait_seconds=30)
    await migrate(pool)
    return pool


async def add_sellers(database_url: str, sellers: dict[str, str]) -> None:
    pool = await _pool(database_url)
    try:
        await pool.executemany(
            "INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            list(sellers.items()),
        )
    finally:
        await pool.close()


async def set_rules(database_url: str, seller_id: str, document: dict[str, Any] | None) -> bool:
    pool = await _pool(database_url)
    try:
        status = await pool.execute(
            "UPDATE rebound.sellers SET grading_rules = $2 WHERE seller_id = $1",
            seller_id, orjson.dumps(document).decode() if document is not None else None,
        )
        return status.endswith(" 1")
    finally:
        await pool.close()


async def get_rules(database_url: str, seller_id: str) -> tuple[bool, dict[str, Any]]:
    pool = await _pool(database_url)
    try:
        row = await pool.fetchrow("SELECT grading_rules FROM rebound.sellers WHERE seller_id = $1", seller_id)
    finally:
        await pool.close()
    if row is None:
        return False, {}
    return True, orjson.loads(row["grading_rules"]) if row["grading_rules"] else DEFAULT_RULES_DOCUMENT
