"""A service's Kafka broker waits for Kafka at start instead of exiting (the broker can go away
between the start-up's own wait and the broker's connect)."""

from __future__ import annotations

import asyncio
import socket

from structlog.testing import capture_logs

from rebound.service import PatientKafkaBroker


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_the_broker_start_waits_for_an_unreachable_kafka() -> None:
    broker = PatientKafkaBroker(f"127.0.0.1:{_closed_port()}", logger=None)

    @broker.subscriber("returns.rma.v1", group_id="unit-patient-broker", batch=True)
    async def handle(_message) -> None:
        return None

    with capture_logs() as logs:
        start = asyncio.create_task(broker.start())
        await asyncio.sleep(2.0)
        assert not start.done(), f"the start gave up: {start.exception() if start.done() else ''}"
        start.cancel()
    waits = [entry for entry in logs if entry["event"] == "kafka_unavailable"]
    assert len(waits) >= 2 and waits[1]["retry_in_s"] > waits[0]["retry_in_s"]
