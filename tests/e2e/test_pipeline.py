"""The services as processes on the real Kafka and PostgreSQL: a return wave with duplicates,
out-of-order arrivals and bad input goes in; the independent checker reads the output."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest

from rebound import simulation
from rebound.simulation.demo import inbound_end_offsets
from rebound.simulation.fleet import Fleet, wait_until_caught_up
from rebound_contracts.topics import PARCEL_SCANNED
from tests.accounting import assert_bad_input_accounted_for, assert_no_secret_in_logs, guarantees

pytestmark = pytest.mark.e2e


async def _run_wave(settings, pool, tmp_path: Path, *, units: int, replicas: int):
    wave = simulation.generate(
        simulation.WaveConfig(
            units=units,
            seed=random.randrange(1 << 30),
            duplicate_rate=0.05,
            out_of_order_rate=0.1,
            bad_rate=0.02,
            hostile_rate=0.01,
        )
    )
    await simulation.register_sellers(settings.database_url, wave.sellers)
    before = await inbound_end_offsets(settings.kafka_bootstrap_servers)
    with Fleet(log_dir=tmp_path / "logs", replicas=replicas) as fleet:
        await simulation.publish(wave, settings.kafka_bootstrap_servers, progress=False)
        await wait_until_caught_up(settings.kafka_bootstrap_servers, pool, timeout=300, fleet=fleet)
        assert fleet.dead() == [], "a service died"
    return wave, before


@pytest.mark.parametrize("replicas", [1, 2])
async def test_a_wave_becomes_stock_exactly_once_and_bad_input_is_accounted_for(
    settings,
    pool,
    tmp_path: Path,
    replicas: int,
) -> None:
    wave, before = await _run_wave(settings, pool, tmp_path, units=600, replicas=replicas)
    report = await guarantees(settings.kafka_bootstrap_servers, wave)
    assert report.ok, report.as_dict()
    assert report.adjustments >= sum(wave.expected_stock.values()) > 0
    await assert_bad_input_accounted_for(settings.kafka_bootstrap_servers, wave, before)
    # every out-of-order parcel was parked, then matched when its RMA came; the only ones still
    # parked are those forged under another seller's tracking number, each reported already
    forged = sorted(
        str(orjson.loads(wave.messages[i].value)["event_id"])
        for i, kind in wave.bad_kinds.items()
        if kind == "cross_tenant" and wave.messages[i].topic == PARCEL_SCANNED.name
    )
    left = await pool.fetch(
        "SELECT event_id, reported_at FROM intake.parked_scans WHERE seller_id = ANY($1::text[])", list(wave.sellers)
    )
    assert sorted(str(r["event_id"]) for r in left) == forged and all(r["reported_at"] for r in left)
    assert_no_secret_in_logs(tmp_path / "logs", os.environ)
