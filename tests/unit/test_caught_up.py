"""Waiting for the fleet to catch up: a member that is down and stays down is reported; one that
dies while the poll's callback runs is left to the next poll, when the callback (the fault
harness reviving members that killed themselves on purpose) has seen it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from rebound.simulation import fleet as processes
from rebound.simulation.fleet import Backlog, wait_until_caught_up


class Member:
    def __init__(self, name: str) -> None:
        self.name = name
        self.exit_code: int | None = None

    def alive(self) -> bool:
        return self.exit_code is None


class Fleet:
    log_dir = Path("logs")

    def __init__(self, *members: Member) -> None:
        self.members = list(members)

    def dead(self) -> list[Member]:
        return [m for m in self.members if not m.alive()]


@pytest.fixture
def backlogs(monkeypatch: pytest.MonkeyPatch) -> list[Backlog]:
    """What each poll finds, in order; the last one again once they run out."""
    found: list[Backlog] = []

    async def backlog(*_: object, **__: object) -> Backlog:
        return found.pop(0) if len(found) > 1 else found[0]

    monkeypatch.setattr(processes, "backlog", backlog)
    return found


async def test_a_member_that_dies_while_the_callback_runs_is_revived_not_reported(backlogs: list[Backlog]) -> None:
    backlogs += [Backlog(lag=10, outbox=0), Backlog(lag=5, outbox=0), Backlog(lag=0, outbox=0)]
    member = Member("grading-1")
    fleet = Fleet(member)
    revived = []

    def on_poll(_: Backlog) -> None:
        if not member.alive():  # the harness: restart what killed itself
            member.exit_code = None
            revived.append(member.name)
        elif not revived:
            member.exit_code = -9  # dies just after the callback looked

    # a stand-in fleet and no pool: `backlog`, the one user of the pool, is replaced
    state = await wait_until_caught_up("kafka", None, fleet=fleet, on_poll=on_poll, timeout=5)  # type: ignore[arg-type]
    assert state.empty and revived == ["grading-1"]


async def test_a_member_that_stays_down_is_reported(backlogs: list[Backlog]) -> None:
    backlogs += [Backlog(lag=10, outbox=0)]
    member = Member("ledger-0")
    member.exit_code = 1
    with pytest.raises(RuntimeError, match=r"service process exited: ledger-0 \(exit 1\)"):
        # a stand-in fleet and no pool: `backlog`, the one user of the pool, is replaced
        await wait_until_caught_up("kafka", None, fleet=Fleet(member), on_poll=lambda _: None, timeout=5)  # type: ignore[arg-type]


async def test_a_timeout_names_the_services_and_partitions_that_lag(backlogs: list[Backlog]) -> None:
    behind = {
        "grading": {
            TopicPartition("wms.unit-inspected.v1", 3): (40, 52),
            TopicPartition("wms.unit-inspected.v1", 1): (7, 8),
        },
        "relisting": {TopicPartition("returns.unit-graded.v1", 0): (0, 2)},
    }
    backlogs += [Backlog(lag=15, outbox=1, behind=behind)]
    expected = (
        "lag 15 (grading 13: wms.unit-inspected.v1-3 at 40 of 52, wms.unit-inspected.v1-1 at 7 of 8;"
        " relisting 2: returns.unit-graded.v1-0 at 0 of 2), outbox 1"
    )
    with pytest.raises(TimeoutError, match=re.escape(f"not caught up after 0 s: {expected}")):
        # no pool: `backlog`, the one user of the pool, is replaced
        await wait_until_caught_up("kafka", None, timeout=0)  # type: ignore[arg-type]


class Admin:
    """Committed offsets per group: grading and the console both behind on one partition."""

    def __init__(self, **_: object) -> None:
        pass

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def list_consumer_group_offsets(self, group: str) -> dict:
        inspected = TopicPartition("wms.unit-inspected.v1", 0)
        return {inspected: OffsetAndMetadata({"rebound-grading": 7, "rebound-console": 4}[group], "")}


class Ends:
    """Every partition ends at 10."""

    def __init__(self, **_: object) -> None:
        pass

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict:
        return dict.fromkeys(partitions, 10)


class Outbox:
    async def fetchval(self, *_: object) -> int:
        return 0


async def test_two_groups_behind_on_one_partition_both_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "AIOKafkaAdminClient", Admin)
    monkeypatch.setattr(processes, "AIOKafkaConsumer", Ends)
    state = await processes.backlog("kafka", Outbox(), ["grading", "console"])  # type: ignore[arg-type]
    inspected = TopicPartition("wms.unit-inspected.v1", 0)
    assert state.behind["grading"][inspected] == (7, 10) and state.behind["console"][inspected] == (4, 10)
    # grading's 3 and the console's 6 on it, and every other partition each reads from 0 to 10
    others = sum(len(spans) - 1 for spans in state.behind.values())
    assert state.lag == 3 + 6 + 10 * others
