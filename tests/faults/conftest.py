from __future__ import annotations

import asyncpg
import pytest

from rebound.db import create_pool
from rebound.settings import Settings


@pytest.fixture
async def pool(settings: Settings) -> asyncpg.Pool:
    """A pool of the scenario's own: the session's would hold connections a restart has cut."""
    pool = await create_pool(settings.database_url, max_size=4, wait_seconds=60)
    yield pool
    await pool.close()
