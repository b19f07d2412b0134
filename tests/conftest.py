"""Fixtures shared by the integration and end-to-end tests: the real Kafka and PostgreSQL.

They come from KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, or the local ones `make up` starts.
A missing broker or database fails the run with a clear message; nothing is skipped."""

from __future__ import annotations

import asyncpg
import pytest

from rebound.db import create_pool, migrate
from rebound.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> asyncpg.Pool:
    try:
        pool = await create_pool(settings.database_url, max_size=8, wait_seconds=10)
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {settings.redacted_database_url()} is not reachable ({error}); run `make up`",
                    pytrace=False)
    await migrate(pool)
    yield pool
    await pool.close()
