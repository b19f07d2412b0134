from __future__ import annotations

from collections.abc import AsyncIterator, Generator

import asyncpg
import pytest

from rebound.db import create_pool
from rebound.settings import Settings

from .harness import service_log_tails


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool of the scenario's own: the session's would hold connections a restart has cut."""
    pool = await create_pool(settings.database_url, max_size=4, wait_seconds=60)
    yield pool
    await pool.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The report of a failed scenario shows the end of each service's log (a scenario's services
    log to `tmp_path / "logs"`), so that a failure in CI explains itself."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when == "call" and report.failed and tmp_path is not None and (tmp_path / "logs").is_dir():
        report.sections.append(("service logs", service_log_tails(tmp_path / "logs")))
    return report
