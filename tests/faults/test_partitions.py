"""A client cut off from PostgreSQL without its socket closing (a partition, a half-open
connection) loses its session, and the locks its session holds, while the cut lasts: the relay
leader's leadership lock, and a pooled connection's locks alike."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import asyncpg
import pytest

from rebound.messaging.relay import leader_lock_id
from rebound.settings import Settings

from .network import Network

pytestmark = pytest.mark.faults

CUT_S = 25.0
"""Over twice the ~11 s after which the server ends a silent client's session (DEAD_PEER_SETTINGS)."""

HOLD_LOCK = """
import asyncio, sys
from rebound.db import create_pool
from rebound.messaging.relay import connect_leader

async def main(how, url, key):
    if how == "leader":
        conn = await connect_leader(url)
    else:
        conn = await (await create_pool(url, min_size=1, max_size=1)).acquire()
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", int(key))
    print("locked", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("how", ["leader", "pool"])
async def test_a_client_cut_off_from_the_database_loses_its_locks_while_the_cut_lasts(
    how: str, settings: Settings
) -> None:
    key = leader_lock_id(f"cut-{uuid.uuid4().hex}")
    network = Network("locks")
    holder = subprocess.Popen(
        [*network.launcher(how), sys.executable, "-c", HOLD_LOCK, how, settings.database_url, str(key)],
        stdout=subprocess.PIPE,
    )
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == b"locked\n"
        assert not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key), "the lock is not held"
        network.cut_off(how, (urlsplit(settings.database_url).port or 5432,))
        cut_at = time.monotonic()
        taken = False
        while not taken and time.monotonic() - cut_at < CUT_S:
            await asyncio.sleep(0.5)
            taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        assert taken, f"the cut-off {how} connection kept its session lock for all {CUT_S:.0f} s of the cut"
        assert holder.poll() is None, "the holder exited: it was not cut off, it died"
    finally:
        holder.kill()
        holder.wait()
        network.close()
        await conn.close()
