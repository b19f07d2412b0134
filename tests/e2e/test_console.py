"""The console's read models and its work queue, through the services and the console's own
consumer as processes on the real Kafka and PostgreSQL: a unit is traced end to end; bad input
becomes cases; a corrected dead letter and an unknown seller's events are replayed through the
pipeline once fixed; a seller sees nothing of another seller's."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from rebound.console import cases as work
from rebound.console.trace import trace, units_named
from rebound.console.waiting import waiting
from rebound.simulation.fleet import SERVICES, Fleet, wait_until_caught_up
from rebound_contracts import TOPICS_BY_NAME
from rebound_contracts.topics import PARCEL_SCANNED, RMA, UNIT_INSPECTED
from tests import factories as f
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.e2e

WITH_CONSOLE = (*SERVICES, "console")


async def _send(settings, records: list[tuple[str, BaseModel | bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_idempotence=True)
    await producer.start()
    try:
        for topic, message in records:
            if isinstance(message, BaseModel):
                key, value = TOPICS_BY_NAME[topic].key_of(message).encode(), message.model_dump_json().encode()
            else:
                key, value = b"garbage", message
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def _unit(seller: str, lpn: str, sku: str = "TEE-BLK-M") -> list[tuple[str, BaseModel]]:
    rma = f.rma(seller, lines=[(sku, 1)])
    return [
        (RMA.name, rma),
        (PARCEL_SCANNED.name, f.scan(seller, rma.tracking_number, [(lpn, sku)])),
        (UNIT_INSPECTED.name, f.inspection(seller, lpn, "A")),
    ]


async def test_a_unit_is_traced_and_bad_input_becomes_cases_that_are_worked(settings, pool, tmp_path: Path) -> None:
    pipe = Pipeline(pool)
    seller, other = await pipe.add_sellers("console-a", "console-b")
    late = pipe.id("console-late")  # registered only once its events wait as cases
    traced, lettered, others, lates = pipe.id("L1"), pipe.id("L2"), pipe.id("L3"), pipe.id("L4")

    broken = orjson.loads(f.inspection(seller, lettered).model_dump_json())
    del broken["checks"]  # a schema violation: dead-lettered by grading
    garbage = b'{"event_id": "not json'  # unreadable, and names no seller
    await _send(
        settings,
        [
            *_unit(seller, traced),
            *_unit(seller, lettered)[:2],
            (UNIT_INSPECTED.name, orjson.dumps(broken)),
            *_unit(other, others),
            *_unit(late, lates),
            (PARCEL_SCANNED.name, garbage),
        ],
    )

    with Fleet(log_dir=tmp_path / "logs", services=WITH_CONSOLE) as fleet:
        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=180, services=WITH_CONSOLE)

        async with pool.acquire() as conn:
            steps = await trace(conn, traced)
            topics = [step.topic for step in steps]
            for expected in (
                "returns.rma.v1",
                "wms.parcel-scanned.v1",
                "returns.unit-received.v1",
                "wms.unit-inspected.v1",
                "returns.unit-graded.v1",
                "returns.disposition-decided.v1",
                "returns.unit-allocated.v1",
                "storefront.stock-adjustments.v1",
            ):
                assert topics.count(expected) == 1, (expected, topics)
            graded = next(step for step in steps if step.topic == "returns.unit-graded.v1")
            assert graded.summary.startswith("graded A (revision 1): ") and graded.event["lpn"] == traced
            assert [s.occurred_at for s in steps] == sorted(s.occurred_at for s in steps)
            assert all(step.seller_id == seller for step in steps)
            assert await units_named(conn, traced) == [(seller, traced)], "an LPN names its unit alone"

            # Tenant isolation: another seller's view of this unit and its cases is empty.
            assert await trace(conn, traced, sellers=[other]) == []
            assert await units_named(conn, traced, sellers=[other]) == []
            mine = await work.list_cases(conn, sellers=[seller])
            assert {case.seller_id for case in mine} == {seller}
            assert all(case.seller_id == other for case in await work.list_cases(conn, sellers=[other]))

            # The broken inspection is a dead letter, kept byte for byte.
            [letter] = [case for case in mine if case.source == "dead_letter"]
            assert (letter.kind, letter.topic, letter.consumer) == (
                "schema_violation",
                UNIT_INSPECTED.name,
                "rebound-grading",
            )
            assert letter.raw() == orjson.dumps(broken)
            with pytest.raises(work.CaseError, match="checks"):  # as it was, it is still invalid
                await work.replay(conn, letter.case_id, "op-anna")
            # Corrected under its own event_id (it was never applied), it goes through the pipeline.
            done = await work.replay(conn, letter.case_id, "op-anna", orjson.dumps({**broken, "checks": f.CHECKS["A"]}))
            assert (done.topic, done.event_id, done.corrected) == (UNIT_INSPECTED.name, broken["event_id"], True)
            with pytest.raises(work.CaseError, match="already resolved"):
                await work.replay(conn, letter.case_id, "op-anna")

            # The late seller's three events wait as unknown_seller cases; registered, they are replayed.
            waiting = await work.list_cases(conn, kind="unknown_seller", seller_id=late)
            assert sorted(case.topic for case in waiting) == sorted(
                [RMA.name, PARCEL_SCANNED.name, UNIT_INSPECTED.name]
            )
            await pool.execute("INSERT INTO rebound.sellers (seller_id, name) VALUES ($1, $1)", late)
            for case in waiting:
                await work.replay(conn, case.case_id, "op-ben")

            # The unreadable scan names no seller: only who sees everything sees it; it is dismissed.
            [unreadable] = [
                c
                for c in await work.list_cases(conn, kind="invalid_json", limit=10_000)
                if c.raw() == garbage and c.seller_id is None
            ]
            await work.assign(conn, unreadable.case_id, "op-anna", "op-ben")
            with pytest.raises(work.CaseError, match="reason"):
                await work.close(conn, unreadable.case_id, "dismissed", " ", "op-anna")
            await work.close(conn, unreadable.case_id, "dismissed", "the scanner's firmware was fixed", "op-anna")
            trail = await work.audit_trail(conn, unreadable.case_id)
            assert [(e.actor, e.action) for e in trail] == [("op-ben", "assign"), ("op-anna", "dismiss")]
            assert trail[1].detail == {"reason": "the scanner's firmware was fixed"}
            closed = await work.get_case(conn, unreadable.case_id)
            assert (closed.status, closed.owner) == ("dismissed", "op-anna")

        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=180, services=WITH_CONSOLE)
        assert fleet.dead() == [], "a service died"

    async with pool.acquire() as conn:
        for lpn in (lettered, lates):
            topics = [step.topic for step in await trace(conn, lpn)]
            assert "returns.unit-graded.v1" in topics and "storefront.stock-adjustments.v1" in topics, (lpn, topics)
        assert (await work.get_case(conn, letter.case_id)).status == "resolved"
        replays = [e for e in await work.audit_trail(conn, letter.case_id) if e.action == "replay"]
        assert [(e.actor, e.detail["event_id"], e.detail["corrected"]) for e in replays] == [
            ("op-anna", broken["event_id"], True)
        ]


async def _cases(pool, kind: str, seller: str, count: int, timeout: float = 120.0) -> list[work.Case]:
    """The seller's open cases of `kind`, once there are `count` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with pool.acquire() as conn:
            found = await work.list_cases(conn, kind=kind, seller_id=seller)
        if len(found) >= count:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"{len(found)} open {kind} cases of {seller}, not {count}"
        await asyncio.sleep(0.5)


async def test_a_parcel_without_return_received_as_unexpected_stock_has_each_unit_decided(
    settings, pool, tmp_path: Path
) -> None:
    pipe = Pipeline(pool)
    [seller] = await pipe.add_sellers("console-u")
    tee, hat, expected = pipe.id("L-tee"), pipe.id("L-hat"), pipe.id("L-expected")
    order = f.rma(seller, lines=[("TEE-BLK-M", 1), ("TEE-BLK-L", 1)])  # its parcel holds the M only
    relabelled = f.uid("T")  # a parcel no return carries: the L tee and a hat nobody ordered
    await _send(
        settings,
        [
            (RMA.name, order),
            (PARCEL_SCANNED.name, f.scan(seller, order.tracking_number, [(expected, "TEE-BLK-M")])),
            (PARCEL_SCANNED.name, f.scan(seller, relabelled, [(tee, "TEE-BLK-L"), (hat, "HAT-RED")])),
            (UNIT_INSPECTED.name, f.inspection(seller, tee, "A")),
            (UNIT_INSPECTED.name, f.inspection(seller, hat, "A")),
        ],
    )
    # A parked parcel is reported as unmatched after a second (by intake's sweep, every 30 s).
    env = {**os.environ, "REBOUND_UNMATCHED_PARCEL_AFTER_S": "1"}
    with Fleet(log_dir=tmp_path / "logs", services=WITH_CONSOLE, env=env) as fleet:
        [unmatched] = await _cases(pool, "unmatched_parcel", seller, 1)
        async with pool.acquire() as conn:
            received = await work.receive_unexpected(conn, unmatched.case_id, "op-anna")
        assert received.tracking_number == relabelled
        units = {case.event["lpn"]: case for case in await _cases(pool, "unexpected_unit", seller, 2)}
        assert sorted(units) == sorted([tee, hat])
        async with pool.acquire() as conn:
            with pytest.raises(work.CaseError, match="say which line"):  # a hat is on neither line
                await work.add_to_return(conn, units[hat].case_id, order.order_id, None, "op-anna")
            added = await work.add_to_return(conn, units[tee].case_id, order.order_id, None, "op-anna")
            assert (added.lpn, added.return_id, added.line_id) == (tee, order.return_id, "l1")  # by its SKU
            with pytest.raises(work.CaseError, match="reason"):
                await work.quarantine(conn, units[hat].case_id, " ", "op-anna")
            await work.quarantine(conn, units[hat].case_id, "counterfeit", "op-anna")
            assert [e.action for e in await work.audit_trail(conn, units[hat].case_id)] == ["quarantine"]
        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=180, services=WITH_CONSOLE)
        assert fleet.dead() == [], "a service died"

    async with pool.acquire() as conn:
        topics = [step.topic for step in await trace(conn, tee)]
        for expected_topic in (
            "returns.unit-added-to-return.v1",
            "returns.unit-received.v1",
            "returns.unit-graded.v1",
            "storefront.stock-adjustments.v1",
        ):
            assert topics.count(expected_topic) == 1, (expected_topic, topics)
        hat_topics = [step.topic for step in await trace(conn, hat)]
        assert "returns.unit-quarantined.v1" in hat_topics and "returns.unit-received.v1" not in hat_topics
        assert await conn.fetchval("SELECT quarantine_reason FROM intake.units WHERE lpn = $1", hat) == "counterfeit"
        assert (
            await conn.fetchval(
                "SELECT received FROM intake.rma_lines WHERE seller_id = $1 AND return_id = $2 AND line_id = 'l1'",
                seller,
                order.return_id,
            )
            == 1
        )
        # Nothing of it waits any more: the parcel was received, the hat's inspection will never be.
        assert [w.key for w in await waiting(conn, [seller])] == []
        assert await work.list_cases(conn, seller_id=seller) == []
