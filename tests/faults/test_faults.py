"""Guarantees 1-6 under kill -9, rebalances, broker and database restarts, outages, a relay killed
in its in-doubt window, and inbox pruning. Every scenario starts breaking things while the wave is
still being sent."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError

from rebound.messaging.relay import FAULT_KILL_AFTER_COMMIT, FAULT_KILL_BEFORE_COMMIT, leader_lock_id
from rebound.simulation.demo import INBOUND
from rebound.simulation.wave import BAD_KINDS
from rebound.simulation.fleet import SERVICES, ServiceProcess

from tests.accounting import configured_secrets

from .harness import REPO, Chaos, Outcome, run
from .network import local_port_owner

pytestmark = pytest.mark.faults

# Inbox pruning every second of everything older than 10 s that Kafka will not deliver again.
# An upstream retry of an event_id more than 10 s after the first is applied again by design (the
# retention setting is the dedup window), so a wave with pruning sends no upstream copies (neither
# duplicates nor conflicting copies), whose outcome would hang on how long a killed service stays
# down; every other kind of bad input, and hostile input, it sends.
PRUNED_WAVE_BAD_KINDS = tuple(kind for kind in BAD_KINDS if kind != "conflicting_duplicate")
PRUNING = {"REBOUND_INBOX_RETENTION_S": "10", "REBOUND_INBOX_PRUNE_EVERY_S": "1"}
# Each process's relay kills it after its 5th committed Kafka transaction, before deleting the rows.
RELAY_KILL = {FAULT_KILL_AFTER_COMMIT: "5"}
# ... or inside its 5th Kafka transaction, once the batch is recorded in doubt and before the commit.
RELAY_KILL_BEFORE_COMMIT = {FAULT_KILL_BEFORE_COMMIT: "5"}


async def kill_services_repeatedly(chaos: Chaos) -> None:
    for _ in range(chaos.profile.kills):
        await chaos.pause(0.2, 1.5)
        await chaos.kill_and_restart(chaos.pick(), down_for=(0.1, 1.5))
    chaos.assert_every_service_hit("kill -9")


def while_retention_deletes_records(scenario: Callable[[Chaos], Awaitable[None]]) -> Callable[[Chaos], Awaitable[None]]:
    """`scenario` while the inbound records every service has committed past are deleted, as
    retention would (pruning takes a row only once Kafka cannot deliver its record), then 12 s
    more of it, so that rows outlive the 10 s window and are pruned."""

    async def expiring(chaos: Chaos) -> None:
        task = asyncio.create_task(_expire_consumed_records(chaos))
        try:
            await scenario(chaos)
            await asyncio.sleep(12)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return expiring


async def _expire_consumed_records(chaos: Chaos) -> None:
    inbound = {topic.name for topic in INBOUND}
    failing = False
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=chaos.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            committed: dict[TopicPartition, int] = {}
            for service in SERVICES:
                for tp, meta in (await admin.list_consumer_group_offsets(f"rebound-{service}")).items():
                    if tp.topic in inbound and meta.offset > 0:
                        committed[tp] = min(committed.get(tp, meta.offset), meta.offset)
            if committed:
                await admin.delete_records({tp: RecordsToDelete(before_offset=o) for tp, o in committed.items()})
            failing = False
        except (KafkaError, OSError) as error:  # a broker away, a coordinator moving: the next round
            if not failing:
                chaos.note(f"records not expired while Kafka does not answer ({type(error).__name__})")
            failing = True
        finally:
            await admin.close()
        await asyncio.sleep(1.0)


async def stop_services_with_sigterm(chaos: Chaos) -> None:
    for _ in range(chaos.profile.kills):
        await chaos.pause(0.2, 1.5)
        member = chaos.pick()
        code = await chaos.stop_and_restart(member, down_for=(0.1, 1.0))
        assert code == 0, f"{member.name} did not shut down cleanly on SIGTERM (exit {code})"
    chaos.assert_every_service_hit("SIGTERM")


async def kill_one_replica_mid_batch(chaos: Chaos) -> None:
    for service in chaos.rng.sample(SERVICES, len(SERVICES)):
        await chaos.pause(0.2, 1.0)
        # the survivor takes the partitions over (rebalance) before the victim comes back
        await chaos.kill_and_restart(chaos.pick(service), down_for=(3.0, 5.0))
    chaos.assert_every_service_hit("kill -9")


async def restart_kafka(chaos: Chaos) -> None:
    # Between two slices of the wave (the sending waits for the broker: see Chaos.sending), so
    # that part of the wave is in Kafka and being worked on, and the rest comes after each restart.
    await chaos.pause(0.5, 2.0)
    await chaos.fault("kafka killed (SIGKILL)")
    async with chaos.sending:
        await chaos.infra.kafka("kill")
        await chaos.pause(0.5, 2.0)
        await chaos.infra.kafka("up")
        chaos.note("kafka back")
    await chaos.pause(1.0, 3.0)
    await chaos.fault("kafka stopped cleanly")
    async with chaos.sending:
        await chaos.infra.kafka("down")
        await chaos.infra.kafka("up")
        chaos.note("kafka back")


async def restart_postgres(chaos: Chaos) -> None:
    await chaos.pause(0.5, 2.0)
    await chaos.fault("postgres killed (immediate shutdown)")
    await chaos.infra.postgres("kill")
    await chaos.infra.postgres("up")
    chaos.note("postgres back")


async def postgres_unreachable(chaos: Chaos) -> None:
    await chaos.pause(0.5, 2.0)
    await chaos.fault(f"postgres down for {chaos.profile.outage_s:.0f} s")
    await chaos.infra.postgres("down")
    await asyncio.sleep(chaos.profile.outage_s)
    # SIGKILLs are the other faults of a combined scenario; anything else is a service giving up.
    exited = [(m.name, m.exit_code) for m in chaos.fleet.dead() if m.exit_code != -signal.SIGKILL]
    assert not exited, f"services exited while the database was away: {exited}"
    await chaos.infra.postgres("up")
    chaos.note("postgres back; no service had exited")


CUT_S = 25.0
"""How long a partition lasts: over twice the ~11 s in which PostgreSQL ends the session of a
client that stopped answering (DEAD_PEER_SETTINGS), so the leadership moves during the cut."""

LEADER_LOCK_HOLDER = (
    "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.classid::bigint = $1 AND l.objid::bigint = $2"
)


async def relay_leader(chaos: Chaos, service: str) -> ServiceProcess | None:
    """The member whose session holds `service`'s relay leadership lock, as the server sees it."""
    key = leader_lock_id(f"rebound-{service}")
    port = await chaos.pool.fetchval(LEADER_LOCK_HOLDER, key >> 32, key & 0xFFFF_FFFF)
    alive = {m.process.pid: m for m in chaos.fleet.members if m.alive() and m.process is not None}
    postgres = chaos.infra.postgres_port
    owner = None if port is None else await asyncio.to_thread(local_port_owner, port, postgres, list(alive))
    return None if owner is None else alive[owner]


async def _leader_of(chaos: Chaos, service: str) -> ServiceProcess:
    deadline = time.monotonic() + 60
    while (leader := await relay_leader(chaos, service)) is None:
        assert time.monotonic() < deadline, f"no replica leads {service}'s relay"
        await asyncio.sleep(0.5)
    return leader


async def cut_off(chaos: Chaos, service: str, what: str, ports: tuple[int, ...], *, moves: bool) -> None:
    """Cut the leader of `service`'s relay off from `ports` for CUT_S, no socket closed; with
    `moves`, another replica must take the leadership before the cut heals."""
    assert chaos.network is not None, "run the scenario with partitions=True"
    leader = await _leader_of(chaos, service)
    await chaos.fault(f"cut off from {what} for {CUT_S:.0f} s, no socket closed (leads {service}'s relay)", leader)
    # Read again: the fault may have waited for the next slice of the wave, and the leadership
    # may have moved meanwhile (a member cut off that does not lead would prove nothing).
    if (now := await _leader_of(chaos, service)) is not leader:
        chaos.note(f"{now.name} leads {service}'s relay by now: it is cut off instead")
        leader = now
    chaos.network.cut_off(leader.name, ports)
    cut_at = time.monotonic()
    successor = None
    try:
        while time.monotonic() - cut_at < CUT_S:
            await asyncio.sleep(0.5)
            holder = await relay_leader(chaos, service)
            if successor is None and holder is not None and holder is not leader:
                successor = holder
                chaos.note(f"{holder.name} leads {service}'s relay, {time.monotonic() - cut_at:.1f} s into the cut")
        dropped = chaos.network.dropped(leader.name)
    finally:
        chaos.network.heal(leader.name)
    chaos.note(f"{leader.name} reconnected to {what} ({dropped} packets dropped during the cut)")
    assert dropped > 0, f"not one packet between {leader.name} and {what} was dropped: the cut did not take effect"
    if moves:
        assert successor is not None, (
            f"{service}'s relay stayed with {leader.name}, cut off from {what}, for {CUT_S:.0f} s"
        )


async def leaders_cut_off(chaos: Chaos) -> None:
    """Half-open connections: a relay leader cut off from PostgreSQL (its Kafka still up), then one
    cut off from both (a host partitioned away), then one cut off from Kafka alone."""
    postgres, kafka = chaos.infra.postgres_port, chaos.infra.kafka_port
    await chaos.pause(0.5, 2.0)
    await cut_off(chaos, "ledger", "postgres", (postgres,), moves=True)
    await chaos.pause(0.5, 2.0)
    await cut_off(chaos, "grading", "postgres and kafka", (postgres, kafka), moves=True)
    await chaos.pause(0.5, 2.0)
    await cut_off(chaos, "intake", "kafka", (kafka,), moves=False)


async def relays_kill_themselves(chaos: Chaos) -> None:
    """Nothing: the kills come from the relays themselves (their fault switch); the harness restarts them."""


async def everything_at_once(chaos: Chaos) -> None:
    async def database() -> None:
        await restart_postgres(chaos)
        await postgres_unreachable(chaos)

    # A task group: a part that fails cancels the others and the scenario fails with it.
    async with asyncio.TaskGroup() as parts:
        parts.create_task(kill_services_repeatedly(chaos))
        parts.create_task(restart_kafka(chaos))
        parts.create_task(database())


def assert_relay_recovered_committed_batches(outcome: Outcome) -> None:
    """The relay was killed in its in-doubt window and its successor found the batch committed."""
    kills = outcome.log_events("fault_injected_relay_kill_after_commit")
    recovered = [e for e in outcome.log_events("relay_recovered_in_doubt_batch") if e.get("committed") is True]
    print(
        f"  relay killed after its Kafka commit {len(kills)} times; "
        f"{len(recovered)} in-doubt batches recovered as committed"
    )
    assert kills, "the relay was never killed after a commit"
    # Not one restart per kill: a member that kills itself while the chaos is killing it too is
    # counted as the chaos's kill.
    assert outcome.chaos.self_killed > 0, "no process died of the relay's fault switch"
    assert recovered, "no relay recovered an in-doubt batch that had committed"


async def test_relay_killed_between_kafka_commit_and_forgetting_its_rows(
    settings,
    pool,
    tmp_path: Path,
) -> None:
    outcome = await run(
        "relay_killed_after_commit", relays_kill_themselves, settings, pool, tmp_path / "logs", env=RELAY_KILL
    )
    assert_relay_recovered_committed_batches(outcome)


async def test_relay_killed_inside_its_kafka_transaction(settings, pool, tmp_path: Path) -> None:
    outcome = await run(
        "relay_killed_before_commit",
        relays_kill_themselves,
        settings,
        pool,
        tmp_path / "logs",
        env=RELAY_KILL_BEFORE_COMMIT,
    )
    kills = outcome.log_events("fault_injected_relay_kill_before_commit")
    aborted = [e for e in outcome.log_events("relay_recovered_in_doubt_batch") if e.get("committed") is False]
    print(
        f"  relay killed inside its Kafka transaction {len(kills)} times; {len(aborted)} batches recovered as aborted"
    )
    assert kills, "the relay was never killed inside a transaction"
    assert outcome.chaos.self_killed > 0, "no process died of the relay's fault switch"
    assert aborted, "no relay recovered an in-doubt batch as aborted"
    assert not outcome.log_events("relay_in_doubt_unresolved"), "a probe record could not be read back"


async def test_pruning_the_inbox_while_services_are_killed(settings, pool, tmp_path: Path) -> None:
    # Kafka's own redelivery after kills, and retention deleting consumed records, against pruning,
    # with bad input (dead letters are claimed by position, and pruned like any row).
    outcome = await run(
        "prune_inbox_while_killing",
        while_retention_deletes_records(kill_services_repeatedly),
        settings,
        pool,
        tmp_path / "logs",
        env=PRUNING,
        duplicate_rate=0.0,
        bad_kinds=PRUNED_WAVE_BAD_KINDS,
    )
    assert outcome.log_events("inbox_pruned"), "the inbox was never pruned during the scenario"


async def test_everything_at_once(settings, pool, tmp_path: Path) -> None:
    # Kills, a broker kill and clean restart, a database crash and outage, the relay killed in its
    # in-doubt window and the inbox pruned every second while retention deletes consumed records,
    # two replicas per group; bad input but no upstream copies (see PRUNED_WAVE_BAD_KINDS).
    outcome = await run(
        "everything_at_once",
        while_retention_deletes_records(everything_at_once),
        settings,
        pool,
        tmp_path / "logs",
        replicas=2,
        env={**PRUNING, **RELAY_KILL},
        duplicate_rate=0.0,
        bad_kinds=PRUNED_WAVE_BAD_KINDS,
    )
    assert outcome.log_events("inbox_pruned"), "the inbox was never pruned during the scenario"
    assert_relay_recovered_committed_batches(outcome)


async def test_relay_leaders_cut_off_without_a_closed_socket(settings, pool, tmp_path: Path) -> None:
    await run("leaders_cut_off", leaders_cut_off, settings, pool, tmp_path / "logs", replicas=2, partitions=True)


async def test_kills_over_sasl_with_password_files_leak_no_secret(
    settings,
    pool,
    tmp_path: Path,
) -> None:
    """The services reach Kafka over SASL_PLAINTEXT (SCRAM-SHA-512) and PostgreSQL with the password
    from a file; the logs of the run are searched for both secrets (run() does it for every scenario)."""
    kafka_state = Path(os.environ.get("REBOUND_STATE") or REPO / ".state") / "kafka"
    sasl_password = kafka_state / "sasl-password"
    assert sasl_password.is_file(), f"{sasl_password} missing: `make up` (deploy/scripts/kafka.sh) writes it"
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "kafka").write_text(sasl_password.read_text().strip() + "\n")
    (secrets / "database").write_text(f"{urlsplit(settings.database_url).password}\n")
    database = urlsplit(settings.database_url)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{os.environ.get('KAFKA_SASL_PORT') or 19094}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "rebound",
        "KAFKA_SASL_PASSWORD_FILE": str(secrets / "kafka"),
        # no password in the URL: the services can only connect with the file's
        "DATABASE_URL": database._replace(netloc=f"{database.username}@{database.hostname}:{database.port}").geturl(),
        "DATABASE_PASSWORD_FILE": str(secrets / "database"),
    }
    outcome = await run("kill_services_over_sasl", kill_services_repeatedly, settings, pool, tmp_path / "logs", env=env)
    searched = configured_secrets({**os.environ, **env})
    assert set(searched) == {"DATABASE_PASSWORD_FILE", "KAFKA_SASL_PASSWORD_FILE"}, searched
    assert outcome.log_events("service_started"), "no service started over SASL"


@pytest.mark.parametrize(
    ("scenario", "replicas"),
    [
        (kill_services_repeatedly, 1),
        (stop_services_with_sigterm, 1),
        (kill_one_replica_mid_batch, 2),
        (restart_kafka, 1),
        (restart_postgres, 1),
        (postgres_unreachable, 1),
    ],
    ids=lambda value: value.__name__ if callable(value) else f"{value}x",
)
async def test_guarantees_hold(scenario, replicas: int, settings, pool, tmp_path: Path) -> None:
    await run(scenario.__name__, scenario, settings, pool, tmp_path / "logs", replicas=replicas)
