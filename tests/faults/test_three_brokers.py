"""The production topology: three Kafka nodes (KRaft, each a broker and a controller), every topic
on three replicas with min.insync.replicas=2 and unclean leader election off. The node leading
most stock-adjustment partitions, then the transaction coordinator of the ledger's relay, are
killed with -9 mid-wave and restarted; the checker must find nothing.

The cluster is one of its own (deploy/scripts/kafka.sh with KAFKA_BROKERS=3, in
.state/kafka-three, on ports 29092-29295), with a database of its own (rebound_three, in the local
PostgreSQL), both made afresh for each run and the cluster stopped after it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from rebound.db import create_pool, migrate
from rebound.messaging.relay import OutboxRelay
from rebound.messaging.topic_admin import BrokersMissing, ensure_topics
from rebound.settings import Settings
from rebound_contracts import TOPICS_BY_NAME

from .harness import REPO, Chaos, Infra, run

pytestmark = pytest.mark.faults

STOCK_ADJUSTMENTS = "storefront.stock-adjustments.v1"
THREE_BROKERS = {
    "KAFKA_STATE": str(Path(os.environ.get("REBOUND_STATE") or REPO / ".state") / "kafka-three"),
    "KAFKA_BROKERS": "3",
    "KAFKA_PORT": "29092",
    "KAFKA_CONTROLLER_PORT": "29093",
    "KAFKA_SASL_PORT": "29094",
    "KAFKA_SSL_PORT": "29095",
    "PGDATABASE_REBOUND": "rebound_three",
}


@pytest.fixture
async def three_brokers(settings: Settings) -> AsyncIterator[tuple[Settings, dict[str, str], asyncpg.Pool]]:
    """A fresh three-node cluster and database: their settings, the scripts' env and a pool."""
    infra = Infra(settings)  # the local PostgreSQL: refuses an external one
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {THREE_BROKERS['PGDATABASE_REBOUND']} WITH (FORCE)")
    finally:
        await admin.close()
    env = {**THREE_BROKERS, "KAFKA_BOOTSTRAP_SERVERS": "", "DATABASE_URL": ""}
    script_env = {**os.environ, **env}
    infra.env = script_env
    await asyncio.to_thread(infra.script, "kafka.sh", "wipe")
    try:
        await asyncio.to_thread(infra.script, "kafka.sh", "up")
        await asyncio.to_thread(infra.script, "postgres.sh", "up")
        bootstrap = (await asyncio.to_thread(infra.script, "kafka.sh", "bootstrap")).strip()
        database = settings.database_url.rsplit("/", 1)[0] + "/" + THREE_BROKERS["PGDATABASE_REBOUND"]
        three = Settings.from_env({**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database})
        await ensure_topics(three.kafka_bootstrap_servers, wait_seconds=60)
        pool = await create_pool(three.database_url, max_size=4, wait_seconds=60)
        try:
            await migrate(pool)
            yield three, {**THREE_BROKERS, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database}, pool
        finally:
            await pool.close()
    finally:
        await asyncio.to_thread(infra.script, "kafka.sh", "down")


async def _admin(chaos: Chaos) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=chaos.bootstrap, request_timeout_ms=10000)
    await admin.start()
    return admin


async def _kill_and_restart_node(chaos: Chaos, node: int, why: str) -> None:
    await chaos.fault(f"kafka node {node} killed (SIGKILL): {why}")
    await chaos.infra.kafka_node("kill", node)
    await chaos.pause(3.0, 6.0)
    await chaos.infra.kafka_node("up", node)
    chaos.note(f"kafka node {node} back")


async def kill_the_leader_and_the_coordinator(chaos: Chaos) -> None:
    ledger_relay = OutboxRelay("", "", "rebound-ledger").transactional_id
    await chaos.pause(0.5, 2.0)
    admin = await _admin(chaos)
    try:
        [described] = await admin.describe_topics([STOCK_ADJUSTMENTS])
        leaders = Counter(partition["leader"] for partition in described["partitions"])
    finally:
        await admin.close()
    node, led = leaders.most_common(1)[0]
    total = TOPICS_BY_NAME[STOCK_ADJUSTMENTS].partitions
    await _kill_and_restart_node(chaos, node, f"it leads {led} of the {total} stock-adjustment partitions")
    await chaos.pause(1.0, 3.0)
    admin = await _admin(chaos)
    try:
        coordinator = await admin.find_coordinator(ledger_relay, coordinator_type=1)
    finally:
        await admin.close()
    await _kill_and_restart_node(chaos, coordinator, f"the transaction coordinator of {ledger_relay}")


async def test_three_brokers_lose_the_stock_adjustment_leader_and_the_transaction_coordinator(
    three_brokers: tuple[Settings, dict[str, str], asyncpg.Pool], tmp_path: Path
) -> None:
    settings, env, pool = three_brokers
    topics = await _describe_configs(settings.kafka_bootstrap_servers)
    assert topics == {"replicas": {3}, "min.insync.replicas": {"2"}, "unclean.leader.election.enable": {"false"}}
    outcome = await run(
        "three_brokers",
        kill_the_leader_and_the_coordinator,
        settings,
        pool,
        tmp_path / "logs",
        replicas=2,
        env=env,
        infra_env=env,
    )
    assert len(outcome.chaos.faults) == 2, outcome.chaos.done  # both nodes were killed, mid-wave (run() checks)


async def test_a_topic_is_not_created_on_fewer_replicas_while_a_broker_is_down(
    three_brokers: tuple[Settings, dict[str, str], asyncpg.Pool],
) -> None:
    """Node 1 and node 2 killed, node 2 started alone again (`up 2` waits for node 2 only), so two
    of three brokers run: a missing topic waits for the third rather than being made on two
    replicas, or on one, for good; once node 1 is back it is made on three."""
    settings, env, _ = three_brokers
    infra = Infra(settings, env)
    late = dataclasses.replace(TOPICS_BY_NAME[STOCK_ADJUSTMENTS], name="rebound.created-late.v1")
    await infra.kafka_node("kill", 1)
    await infra.kafka_node("kill", 2)
    await infra.kafka_node("up", 2)
    with pytest.raises(BrokersMissing, match="2 of the cluster's 3 brokers are up"):
        await ensure_topics(settings.kafka_bootstrap_servers, wait_seconds=0, topics=[late])
    await infra.kafka_node("up", 1)
    assert await ensure_topics(settings.kafka_bootstrap_servers, wait_seconds=60, topics=[late]) == [late.name]
    topics = await _describe_configs(settings.kafka_bootstrap_servers, [late.name])
    assert topics == {"replicas": {3}, "min.insync.replicas": {"2"}, "unclean.leader.election.enable": {"false"}}


async def _describe_configs(bootstrap: str, names: list[str] | None = None) -> dict[str, set]:
    """Replica counts and the settings that make a write durable, over `names` (every topic of the
    registry by default)."""
    names = names or list(TOPICS_BY_NAME)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        replicas = {len(p["replicas"]) for d in described for p in d["partitions"]}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
        found: dict[str, set] = {
            "replicas": replicas,
            "min.insync.replicas": set(),
            "unclean.leader.election.enable": set(),
        }
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    if entry[0] in found:
                        found[entry[0]].add(entry[1])
        return found
    finally:
        await admin.close()
