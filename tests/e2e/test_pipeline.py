"""The services as processes on the real Kafka and PostgreSQL: a return wave with duplicates,
out-of-order arrivals and bad input goes in; the independent checker reads the output."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from rebound import checker, simulator
from rebound.demo import INBOUND, inbound_end_offsets
from rebound.processes import Fleet, wait_until_caught_up
from rebound_contracts.topics import DLQ, EXCEPTIONS, STOCK_ADJUSTMENTS, UNIT_GRADED

pytestmark = pytest.mark.e2e


async def _run_wave(settings, pool, tmp_path: Path, *, units: int, replicas: int):  # noqa: ANN001, ANN202
    wave = simulator.generate(simulator.WaveConfig(
        units=units, seed=random.randrange(1 << 30), duplicate_rate=0.05, out_of_order_rate=0.1, bad_rate=0.02,
    ))
    await simulator.register_sellers(settings.database_url, wave.sellers)
    before = await inbound_end_offsets(settings.kafka_bootstrap_servers)
    with Fleet(log_dir=tmp_path / "logs", replicas=replicas) as fleet:
        await simulator.publish(wave, settings.kafka_bootstrap_servers, progress=False)
        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=300, fleet=fleet)
        assert fleet.dead() == [], "a service died"
    return wave, before


def _ours(before, source) -> bool:  # noqa: ANN001
    return source.topic in {t.name for t in INBOUND} and source.offset >= before.get((source.topic, source.partition), 0)


@pytest.mark.parametrize("replicas", [1, 2])
async def test_a_wave_becomes_stock_exactly_once_and_bad_input_is_accounted_for(
    settings, pool, tmp_path: Path, replicas: int  # noqa: ANN001
) -> None:
    wave, before = await _run_wave(settings, pool, tmp_path, units=600, replicas=replicas)
    bootstrap = settings.kafka_bootstrap_servers
    sellers = set(wave.sellers)

    adjustments = (await checker.read_records(bootstrap, STOCK_ADJUSTMENTS.name, sellers=sellers)).records
    graded = await checker.read_topic(bootstrap, UNIT_GRADED.name, sellers=sellers)
    report = checker.check(adjustments, graded, wave.expected_stock)
    assert report.ok, report.as_dict()
    assert report.adjustments >= sum(wave.expected_stock.values()) > 0

    letters = [d for _, _, d in await checker.read_topic(bootstrap, DLQ.name, sellers=None) if _ours(before, d.source)]
    exceptions = [e for _, _, e in await checker.read_topic(bootstrap, EXCEPTIONS.name, sellers=None)
                  if _ours(before, e.source)]
    sent = wave.bad_by_kind
    unreadable = sum(n for kind, n in sent.items() if kind in simulator.SCHEMA_INVALID_KINDS)
    dead = Counter(d.kind for d in letters)
    assert dead["invalid_json"] + dead["schema_violation"] == unreadable
    assert dead["oversized"] == sent.get("oversized", 0)
    assert dead["conflicting_duplicate"] == sent.get("conflicting_duplicate", 0)
    raised = Counter(e.kind for e in exceptions)
    assert raised["unknown_seller"] == sent.get("unknown_seller", 0)
    assert raised["unexpected_unit"] == wave.unexpected_units
    assert raised["cross_tenant_reference"] == sent.get("cross_tenant", 0)
    # every out-of-order parcel was parked, then matched when its RMA came
    assert await pool.fetchval(
        "SELECT count(*) FROM intake.parked_scans WHERE seller_id = ANY($1::text[])", list(sellers)) == 0
