"""Sending a wave (or any list of messages) to Kafka, in order, and registering its sellers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..sellers import add_sellers
from .wave import Outgoing, Wave


async def publish(
    wave: Wave | Sequence[Outgoing],
    bootstrap_servers: str,
    *,
    progress: bool = True,
    chunk_size: int = 2000,
    kafka_options: Mapping[str, Any] | None = None,
) -> None:
    """Send every message (of a wave, or a list) in order and wait until Kafka has them all.

    One idempotent producer keeps per-partition order (what the out-of-order and duplicate
    scenarios rely on). Sends are pipelined: a chunk's deliveries are awaited only after the next
    chunk is queued, so the producer never waits for a round trip per message. `kafka_options`:
    the client's security arguments (see `rebound.connections.kafka_options`)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=10,
        compression_type=None,
        max_batch_size=256 * 1024,
        max_request_size=1024 * 1024,
        request_timeout_ms=30_000,
        **(kafka_options or {}),
    )
    columns = (
        TextColumn("[bold]publishing[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("messages"),
        TimeElapsedColumn(),
    )
    await producer.start()
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            messages = wave.messages if isinstance(wave, Wave) else wave
            task = bar.add_task("publish", total=len(messages))
            in_flight: list[asyncio.Future[Any]] = []
            for start in range(0, len(messages), chunk_size):
                queued = [
                    await producer.send(m.topic, m.value, key=m.key) for m in messages[start : start + chunk_size]
                ]
                if in_flight:
                    await asyncio.gather(*in_flight)
                    bar.advance(task, len(in_flight))
                in_flight = queued
            if in_flight:
                await asyncio.gather(*in_flight)
                bar.advance(task, len(in_flight))
    finally:
        await producer.stop()


async def register_sellers(
    database_url: str, sellers: Iterable[str], *, connect_kwargs: Mapping[str, Any] | None = None
) -> None:
    """Register a wave's sellers as tenants (events of unknown sellers become exceptions)."""
    await add_sellers(
        database_url,
        {seller_id: f"Simulated seller {seller_id}" for seller_id in sellers},
        connect_kwargs=connect_kwargs,
    )
