"""Fixtures shared by the integration and end-to-end tests: the real Kafka and PostgreSQL.

They come from KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, or the local ones `make up` starts; with
REBOUND_TESTCONTAINERS=1 (`make test-docker`) from containers, on a machine with a Docker engine.
A missing broker or database fails the run with a clear message; nothing is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from rebound.db import create_pool, migrate
from rebound.settings import Settings


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    if os.environ.get("REBOUND_TESTCONTAINERS") != "1":
        yield Settings.from_env()
        return
    if not _docker_answers():
        pytest.fail("REBOUND_TESTCONTAINERS=1 but no Docker engine answers; use `make test`", pytrace=False)
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    with KafkaContainer().with_kraft() as kafka, PostgresContainer("postgres:15") as postgres:
        # The services the end-to-end tests start as processes read these too.
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.get_bootstrap_server()
        os.environ["DATABASE_URL"] = postgres.get_connection_url(driver=None)
        yield Settings.from_env()


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    try:
        pool = await create_pool(settings.database_url, max_size=8, wait_seconds=10)
    except Exception as error:  # noqa: BLE001 - any failure to reach PostgreSQL fails the run with one line
        pytest.fail(
            f"PostgreSQL at {settings.redacted_database_url()} is not reachable ({error}); run `make up`", pytrace=False
        )
    await migrate(pool)
    yield pool
    await pool.close()
