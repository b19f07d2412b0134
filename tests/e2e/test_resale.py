"""Resale end to end, the services as processes: a seller's policy sends returned units to the
size-exchange pool, eBay and a lucky-bag lot; exchange requests and picks come back from the
WMS and the shop; the outbound topics are read back with read_committed."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from rebound import checker
from rebound.processes import Fleet, wait_until_caught_up
from rebound.relisting.adapters import set_policy
from rebound.relisting.policy_file import parse_policy
from rebound_contracts import TOPICS_BY_NAME
from rebound_contracts.topics import (
    ALLOCATIONS,
    DISPOSITIONS,
    EXCHANGE_ALLOCATED,
    EXCHANGE_REQUESTED,
    LISTINGS,
    PARCEL_SCANNED,
    RMA,
    STOCK_ADJUSTMENTS,
    UNIT_GRADED,
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


async def _send(bootstrap: str, messages: list[tuple[str, BaseModel]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for topic, message in messages:
            await producer.send(topic, key=TOPICS_BY_NAME[topic].key_of(message).encode(),
                                value=message.model_dump_json().encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_exchanges_lots_and_picks_flow_through_the_services(settings, pool, tmp_path: Path) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    seller = f"resale-{tag}"
    await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", seller)
    async with pool.acquire() as conn:
        await set_policy(conn, seller, parse_policy(POLICY))
    units = {f"D1-{tag}": ("DRESS-RED-S", "B"), f"D2-{tag}": ("DRESS-RED-S", "B"), f"HAT-{tag}": ("HAT-1", "A")}
    units |= {f"T{i}-{tag}": (f"TEE-{i}", "A") for i in range(3)}
    order = f.rma(seller, lines=[(sku, 1) for sku in sorted({sku for sku, _ in units.values()} - {"DRESS-RED-S"})]
                  + [("DRESS-RED-S", 2)])
    parcel = f.scan(seller, order.tracking_number, [(lpn, sku) for lpn, (sku, _) in units.items()])
    inspections = [(UNIT_INSPECTED.name, f.inspection(seller, lpn, grade)) for lpn, (_, grade) in units.items()]
    bootstrap = settings.kafka_bootstrap_servers

    with Fleet(log_dir=tmp_path / "logs", replicas=1) as fleet:
        await _send(bootstrap, [(RMA.name, order), (PARCEL_SCANNED.name, parcel), *inspections])
        await wait_until_caught_up(bootstrap, pool, timeout=120, fleet=fleet)
        await _send(bootstrap, [
            (EXCHANGE_REQUESTED.name, f.exchange(seller, "DRESS-RED-S")),   # from the pool
            (EXCHANGE_REQUESTED.name, f.exchange(seller, "DRESS-RED-S")),   # off eBay: -1
            (EXCHANGE_REQUESTED.name, f.exchange(seller, "DRESS-RED-S")),   # none left
            (UNIT_PICKED.name, f.picked(seller, f"HAT-{tag}")),             # sold on TikTok: no -1
            (UNIT_PICKED.name, f.picked(seller, f"T1-{tag}")),              # sells the whole lot
        ])
        await wait_until_caught_up(bootstrap, pool, timeout=120, fleet=fleet)
        assert fleet.dead() == []

    mine = {seller}
    placed = {a.lpn: a for _, _, a in await checker.read_topic(bootstrap, ALLOCATIONS.name, sellers=mine)}
    assert {lpn: a.destination.kind for lpn, a in placed.items()} == {
        f"D1-{tag}": "exchange_pool", f"D2-{tag}": "listing", f"HAT-{tag}": "listing",
        f"T0-{tag}": "lucky_bag", f"T1-{tag}": "lucky_bag", f"T2-{tag}": "lucky_bag"}
    answers = [(a.status, a.lpn, a.source)
               for _, _, a in await checker.read_topic(bootstrap, EXCHANGE_ALLOCATED.name, sellers=mine)]
    assert sorted(answers, key=str) == sorted([("allocated", f"D1-{tag}", "exchange_pool"),
                                               ("allocated", f"D2-{tag}", "stock"),
                                               ("unavailable", None, None)], key=str)
    [lot] = [m for _, _, m in await checker.read_topic(bootstrap, LISTINGS.name, sellers=mine) if m.lot]
    assert (sorted(lot.lot.lpns), lot.quantity_limit) == ([f"T0-{tag}", f"T1-{tag}", f"T2-{tag}"], 1)

    records = (await checker.read_records(bootstrap, STOCK_ADJUSTMENTS.name, sellers=mine)).records
    moves = sorted((r.model.channel, r.model.sku.split("-")[0], r.model.delta, r.model.cause.kind) for r in records)
    assert moves == sorted([("ebay", "DRESS", 1, "unit_graded"), ("ebay", "DRESS", -1, "exchange_allocated"),
                            ("tiktok", "HAT", 1, "unit_graded"), ("tiktok", "LOT", 1, "lot_formed")])
    graded = await checker.read_topic(bootstrap, UNIT_GRADED.name, sellers=mine)
    decided = await checker.read_topic(bootstrap, DISPOSITIONS.name, sellers=mine)
    report = checker.check(records, graded, None, dispositions=decided)
    assert report.ok, report.as_dict()
    stock = dict(await pool.fetch("SELECT sku, available FROM ledger.stock WHERE seller_id = $1", seller))
    assert stock["HAT-1"] == 0 and stock["DRESS-RED-S"] == 0 and [v for k, v in stock.items() if k.startswith("LOT-")] == [0]
