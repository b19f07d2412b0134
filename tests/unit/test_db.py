"""Migrations survive the database going away in the middle of them."""

from __future__ import annotations

from typing import cast

import asyncpg
import pytest

from rebound import db

# Never used: every test replaces `_migrate_once`, the only code that touches the pool.
UNUSED_POOL = cast(asyncpg.Pool, object())


async def test_migrate_waits_for_the_database_and_carries_on(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    async def flaky(_pool) -> list[str]:
        attempts.append(1)
        if len(attempts) < 3:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("terminating connection due to administrator command")
        return ["0001_core.sql"]

    monkeypatch.setattr(db, "_migrate_once", flaky)
    assert await db.migrate(UNUSED_POOL) == ["0001_core.sql"]
    assert len(attempts) == 3


async def test_migrate_gives_up_after_its_wait_and_other_errors_are_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def down(_pool) -> list[str]:
        raise ConnectionRefusedError("database down")

    monkeypatch.setattr(db, "_migrate_once", down)
    with pytest.raises(ConnectionRefusedError):
        await db.migrate(UNUSED_POOL, wait_seconds=0.5)

    async def broken(_pool) -> list[str]:
        raise asyncpg.exceptions.UndefinedTableError("relation does not exist")

    monkeypatch.setattr(db, "_migrate_once", broken)
    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await db.migrate(UNUSED_POOL)
