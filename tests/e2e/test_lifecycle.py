"""A service process at its edges: it waits for missing infrastructure, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from rebound_contracts.topics import UNIT_INSPECTED

from rebound.settings import LOCAL_DATABASE_PASSWORD
from tests.accounting import assert_no_secret_in_logs, configured_secrets
from rebound.simulation.fleet import ServiceProcess

pytestmark = pytest.mark.e2e


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _wait_for(log: Path, event: str, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [e for e in _events(log) if e.get("event") == event] if log.exists() else []
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {event!r} in {log}:\n{log.read_text() if log.exists() else '(no log)'}")


@pytest.mark.parametrize(
    ("variable", "unreachable", "event"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1", "kafka_unavailable"),
        ("DATABASE_URL", f"postgresql://rebound:{LOCAL_DATABASE_PASSWORD}@127.0.0.1:1/rebound", "database_unavailable"),
    ],
)
def test_a_service_waits_for_missing_infrastructure_instead_of_crashing(
    variable: str,
    unreachable: str,
    event: str,
    tmp_path: Path,
    settings,
) -> None:
    member = ServiceProcess("grading", 0, tmp_path / "grading.log")
    member.start({**os.environ, variable: unreachable, "REBOUND_LOG_FORMAT": "json"})
    try:
        first = _wait_for(member.log_path, event)
        assert first["level"] == "warning" and "retry_in_s" in first
        time.sleep(2.0)
        assert member.alive(), member.log_path.read_text()
        retries = [e for e in _events(member.log_path) if e.get("event") == event]
        assert len(retries) >= 2 and retries[1]["retry_in_s"] >= retries[0]["retry_in_s"]  # backing off
    finally:
        member.kill()


def test_a_service_stops_cleanly_on_sigterm(tmp_path: Path, settings) -> None:
    member = ServiceProcess("ledger", 0, tmp_path / "ledger.log")
    member.start({**os.environ, "REBOUND_LOG_FORMAT": "json"})
    try:
        _wait_for(member.log_path, "service_started")
        assert member.stop(timeout=40) == 0
        _wait_for(member.log_path, "service_stopped", seconds=1)
    finally:
        member.kill()


def test_console_logs_hold_no_secret_either(tmp_path: Path, settings) -> None:
    """The secret search of the fault scenarios reads JSON logs; a person runs a service with its
    console renderer. Started with every kind of secret, and a database and a broker it cannot
    reach, so it logs where it tries again and again, its console log holds none of them."""
    env = {
        **os.environ,
        "REBOUND_LOG_FORMAT": "console",
        "DATABASE_URL": f"postgresql://rebound:{LOCAL_DATABASE_PASSWORD}@127.0.0.1:1/rebound"
        "?sslpassword=key-passphrase-5e1d&password=query-password-c41a",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "rebound",
        "KAFKA_SASL_PASSWORD": "kafka-password-9b72",
    }
    member = ServiceProcess("grading", 0, tmp_path / "grading.log")
    member.start(env)
    try:
        deadline = time.monotonic() + 30
        while sum(member.log_path.read_text().count(e) for e in ("database_unavailable", "kafka_unavailable")) < 2:
            assert time.monotonic() < deadline, member.log_path.read_text()
            time.sleep(0.2)
    finally:
        member.kill()
    text = member.log_path.read_text()
    assert not text.lstrip().startswith("{"), "not the console renderer"
    assert "127.0.0.1:1" in text  # the URL is there, its secrets are not
    searched = configured_secrets(env)
    assert set(searched) == {
        "the password in DATABASE_URL",
        "the sslpassword parameter of DATABASE_URL",
        "the password parameter of DATABASE_URL",
        "KAFKA_SASL_PASSWORD",
    }, searched
    assert assert_no_secret_in_logs(tmp_path, env) > 0


async def test_a_service_whose_batch_hangs_reports_its_partition_stalled_then_moving(
    tmp_path: Path, settings, pool: asyncpg.Pool
) -> None:
    """Grading's batch waits on a lock held here while another record arrives behind it: the
    service logs `consumer_stalled` for that partition, and `consumer_moving` once the lock goes."""
    member = ServiceProcess("grading", 0, tmp_path / "grading.log")
    member.start({**os.environ, "REBOUND_LOG_FORMAT": "json", "REBOUND_STALL_AFTER_S": "2"})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=0)
    await producer.start()
    try:
        await asyncio.to_thread(_wait_for, member.log_path, "service_started")
        async with pool.acquire() as holder:
            locked = holder.transaction()
            await locked.start()
            await holder.execute("LOCK TABLE rebound.inbox IN ACCESS EXCLUSIVE MODE")
            # Not a return event: dead-lettered once it goes on, after its claim in the inbox.
            await producer.send_and_wait(UNIT_INSPECTED.name, b"held", partition=0)
            deadline = time.monotonic() + 60
            while not await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> $1",
                holder.get_server_pid(),
            ):
                assert time.monotonic() < deadline, "grading's batch never waited on the lock"
                await asyncio.sleep(0.2)
            await producer.send_and_wait(UNIT_INSPECTED.name, b"behind it", partition=0)
            stalled = await asyncio.to_thread(_wait_for, member.log_path, "consumer_stalled", 30.0)
            await locked.rollback()
        assert any(p.startswith(f"{UNIT_INSPECTED.name}-0 at ") for p in stalled["partitions"]), stalled
        await asyncio.to_thread(_wait_for, member.log_path, "consumer_moving", 30.0)
        assert member.alive(), member.log_path.read_text()
    finally:
        await producer.stop()
        member.kill()
