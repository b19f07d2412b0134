"""A service process at its edges: it waits for missing infrastructure, and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from rebound.settings import LOCAL_DATABASE_PASSWORD
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
