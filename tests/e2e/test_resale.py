"""Resale end to end, the services as processes: a seller's policy sends returned units to the
size-exchange pool, eBay and a lucky-bag lot; exchange requests and picks come back from the
WMS and the shop; the outbound topics are read back with read_committed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from rebound import tracing
from rebound.simulation import checker, reading
from rebound.simulation.fleet import Fleet, wait_until_caught_up
from rebound.relisting.adapters import set_policy
from rebound.relisting.policy_file import parse_policy
from rebound_contracts import TOPICS_BY_NAME
from rebound_contracts.topics import (
    ALLOCATIONS,
    EXCHANGE_ALLOCATED,
    EXCHANGE_REQUESTED,
    LISTINGS,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
    UNIT_INSPECTED,
    UNIT_PICKED,
)
from tests import factories as f

pytestmark = pytest.mark.e2e

POLICY = """
rules:
  - name: dresses
    when: {grade: B, sku_prefix: DRESS-}
    destinations:
      - {kind: exchange_pool, quota: 1}
      - {kind: listing, channel: ebay, condition: open_box, discount_pct: 25}
  - name: tees-for-live-streams
    when: {grade: A, sku_prefix: TEE-}
    destinations:
      - {kind: lucky_bag, lot_size: 3, price: "25.00"}
"""


TRACE = "00-{}-00f067aa0ba902b7-01"


async def _send(bootstrap: str, messages: list[tuple[str, BaseModel]], traceparent: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for topic, message in messages:
            await producer.send(
                topic,
                key=TOPICS_BY_NAME[topic].key_of(message).encode(),
                value=message.model_dump_json().encode(),
                headers=[("traceparent", traceparent.encode())] if traceparent else None,
            )
        await producer.flush()
    finally:
        await producer.stop()


async def _trace_ids(bootstrap: str, topic: str, seller: str) -> list[str | None]:
    """The trace id in the `traceparent` header of each of `seller`'s records on `topic`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(TOPICS_BY_NAME[topic].partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[str | None] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if json.loads(record.value).get("seller_id") == seller:
                        found.append(tracing.trace_id(tracing.of_record(record.headers)))
        return found
    finally:
        await consumer.stop()


async def test_exchanges_lots_and_picks_flow_through_the_services(settings, pool, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    seller = f"resale-{tag}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    async with pool.acquire() as conn:
        await set_policy(conn, seller, parse_policy(POLICY))
    units = {f"D1-{tag}": ("DRESS-RED-S", "B"), f"D2-{tag}": ("DRESS-RED-S", "B"), f"HAT-{tag}": ("HAT-1", "A")}
    units |= {f"T{i}-{tag}": (f"TEE-{i}", "A") for i in range(3)}
    order = f.rma(
        seller,
        lines=[(sku, 1) for sku in sorted({sku for sku, _ in units.values()} - {"DRESS-RED-S"})] + [("DRESS-RED-S", 2)],
    )
    parcel = f.scan(seller, order.tracking_number, [(lpn, sku) for lpn, (sku, _) in units.items()])
    inspections = [(UNIT_INSPECTED.name, f.inspection(seller, lpn, grade)) for lpn, (_, grade) in units.items()]
    bootstrap = settings.kafka_bootstrap_servers

    with Fleet(log_dir=tmp_path / "logs", replicas=1) as fleet:
        # The WMS and the shop tag this return with one trace: it must reach the storefront.
        trace = uuid.uuid4().hex
        await _send(
            bootstrap, [(RMA.name, order), (PARCEL_SCANNED.name, parcel), *inspections], traceparent=TRACE.format(trace)
        )
        await wait_until_caught_up(bootstrap, pool, timeout=120, fleet=fleet)
        await _send(
            bootstrap,
            [
                (EXCHANGE_REQUESTED.name, f.exchange(seller, "DRESS-RED-S")),  # from the pool
                (EXCHANGE_REQUESTED.name, f.exchange(seller, "DRESS-RED-S")),  # off eBay: -1
                (EXCHANGE_REQUESTED.name, f.exchange(seller, "DRESS-RED-S")),  # none left
                (UNIT_PICKED.name, f.picked(seller, f"HAT-{tag}")),  # sold on TikTok: no -1
                (UNIT_PICKED.name, f.picked(seller, f"T1-{tag}")),  # sells the whole lot
            ],
        )
        await wait_until_caught_up(bootstrap, pool, timeout=120, fleet=fleet)
        assert fleet.dead() == []

    mine = {seller}
    placed = {}
    for _, _, a in await reading.read_topic(bootstrap, ALLOCATIONS, sellers=mine):
        assert a.destination is not None
        placed[a.lpn] = a.destination.kind
    # The two B dresses come on different partitions: whichever came first fills the pool's one slot.
    pooled, listed = sorted((f"D1-{tag}", f"D2-{tag}"), key=lambda lpn: placed[lpn] != "exchange_pool")
    assert placed == {
        pooled: "exchange_pool",
        listed: "listing",
        f"HAT-{tag}": "listing",
        f"T0-{tag}": "lucky_bag",
        f"T1-{tag}": "lucky_bag",
        f"T2-{tag}": "lucky_bag",
    }
    answers = [
        (a.status, a.lpn, a.source) for _, _, a in await reading.read_topic(bootstrap, EXCHANGE_ALLOCATED, sellers=mine)
    ]
    assert sorted(answers, key=str) == sorted(
        [("allocated", pooled, "exchange_pool"), ("allocated", listed, "stock"), ("unavailable", None, None)], key=str
    )
    [lot] = [m for _, _, m in await reading.read_topic(bootstrap, LISTINGS, sellers=mine) if m.lot]
    assert lot.lot is not None
    assert (sorted(lot.lot.lpns), lot.quantity_limit) == ([f"T0-{tag}", f"T1-{tag}", f"T2-{tag}"], 1)

    records = (await reading.read_records(bootstrap, STOCK_ADJUSTMENTS, sellers=mine)).records
    moves = sorted((r.model.channel, r.model.sku.split("-")[0], r.model.delta, r.model.cause.kind) for r in records)
    assert moves == sorted(
        [
            ("ebay", "DRESS", 1, "unit_graded"),
            ("ebay", "DRESS", -1, "exchange_allocated"),
            ("tiktok", "HAT", 1, "unit_graded"),
            ("tiktok", "LOT", 1, "lot_formed"),
        ]
    )
    # exchanges answered once, the lot's listing, the picks behind `picked`: all held by the checker
    report = await checker.check_topics(bootstrap, mine, None)
    assert report.ok, report.as_dict()
    first_placements = [r for r in records if r.model.cause.kind in ("unit_graded", "lot_formed")]
    traced = await _trace_ids(bootstrap, STOCK_ADJUSTMENTS.name, seller)
    assert traced.count(trace) == len(first_placements) == 3  # the returned units' +1s, across 4 services
    stock = dict(await pool.fetch("SELECT sku, available FROM ledger.stock WHERE seller_id = $1", seller))
    assert stock["HAT-1"] == 0 and stock["DRESS-RED-S"] == 0
    assert [v for k, v in stock.items() if k.startswith("LOT-")] == [0]
