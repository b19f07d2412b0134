"""What the `rebound` commands share: a failure in one line, a database connection, list formats."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from .connections import database_connect_kwargs
from .settings import Settings

if TYPE_CHECKING:
    from .db import Connection

T = TypeVar("T")


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def fail(message: str) -> NoReturn:
    """Exit with 1 after one red line on stderr: `rebound: <message>`."""
    typer.secho(f"rebound: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


async def with_conn(settings: Settings, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run `work` on one connection to the configured database (waiting up to 30 s for it)."""
    from .db import create_pool

    pool = await create_pool(settings.database_url, wait_seconds=30, connect_kwargs=database_connect_kwargs(settings))
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()
