"""The progress watch: a consumer standing still with records waiting is stalled; one with nothing
to do is not, however long it idles."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from structlog.testing import capture_logs

from rebound import service
from rebound.messaging.progress import PartitionView, ProgressWatch, Stall
from rebound.observability import Probes, ServiceMetrics

TP = TopicPartition("returns.unit-graded.v1", 3)
STALL_AFTER_S = 60.0


class Clocks:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> float:
        return self.now * 1000


class Group:
    """A consumer group with no lag, active on the broker."""

    async def lag(self) -> dict:
        return {}

    async def known(self) -> bool:
        return True


def watch(clocks: Clocks) -> ProgressWatch:
    return ProgressWatch(STALL_AFTER_S, clock=clocks.monotonic, wall_ms=clocks.wall_ms)


def view(clocks: Clocks, position: int | None, last_stable: int | None, fetched_s_ago: float | None = 1.0):
    fetched = None if fetched_s_ago is None else (clocks.now - fetched_s_ago) * 1000
    return {TP: PartitionView(position, last_stable, fetched)}


def test_a_caught_up_partition_is_never_stalled() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    for _ in range(10):
        assert progress.check(view(clocks, 52, 52)) == []
        clocks.now += 30


def test_records_waiting_behind_a_still_position_stall_it_after_the_limit_and_not_before() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    assert progress.check(view(clocks, 40, 52)) == []
    clocks.now += STALL_AFTER_S - 1
    assert progress.check(view(clocks, 40, 60)) == [], "not yet: the limit is not reached"
    clocks.now += 1
    [stall] = progress.check(view(clocks, 40, 61))
    assert (stall.tp, stall.for_s) == (TP, STALL_AFTER_S)
    assert stall.describe() == "returns.unit-graded.v1-3 at 40, records to 61, still for 60 s"


def test_a_moving_position_is_not_stalled_even_behind() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    for position in range(40, 50):
        assert progress.check(view(clocks, position, 5000)) == []
        clocks.now += STALL_AFTER_S / 2


def test_a_partition_without_a_position_or_without_fetches_stalls() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    progress.check(view(clocks, None, None, fetched_s_ago=None))
    clocks.now += STALL_AFTER_S
    [stall] = progress.check(view(clocks, None, None, fetched_s_ago=None))
    assert stall.describe() == "returns.unit-graded.v1-3 no position, never fetched, still for 60 s"

    clocks = Clocks()
    progress = watch(clocks)
    progress.check(view(clocks, 52, 52, fetched_s_ago=1))
    clocks.now += STALL_AFTER_S
    [stall] = progress.check(view(clocks, 52, 52, fetched_s_ago=STALL_AFTER_S + 1))
    assert "no fetch answered lately" in stall.describe()


def test_a_stall_ends_when_the_position_moves_and_a_revoked_partition_starts_afresh() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    progress.check(view(clocks, 40, 52))
    clocks.now += STALL_AFTER_S
    assert progress.check(view(clocks, 40, 52))
    assert progress.check(view(clocks, 41, 52)) == []
    clocks.now += STALL_AFTER_S
    assert progress.check({}) == []  # revoked
    assert progress.check(view(clocks, 41, 52)) == [], "assigned again: its time starts now"


async def test_the_service_watch_fails_ready_counts_and_logs_a_stall_then_its_end(monkeypatch) -> None:
    clocks = Clocks()
    positions = [40, 40, 40, 41]
    seen: list[int] = []

    def next_view(_consumer: object) -> dict:
        """A check every half limit: still, still (stalled), then moved; after that, no time passes."""
        if len(seen) < len(positions):
            clocks.now += STALL_AFTER_S / 2
        seen.append(len(seen))
        return view(clocks, positions[min(len(seen), len(positions)) - 1], 52)

    monkeypatch.setattr(service, "PROGRESS_CHECK_S", 0.0)
    monkeypatch.setattr(service, "partition_views", next_view)
    monkeypatch.setattr(service, "assignment_of", lambda _consumer: None)
    metrics = ServiceMetrics()
    probes = Probes("rebound-test", Group(), metrics, max_lag=100)
    states = []
    with capture_logs() as logs:
        task = asyncio.create_task(service.watch_progress(watch(clocks), lambda: object(), probes, metrics))
        while len(seen) < len(positions):
            await asyncio.sleep(0)
            states.append((len(seen), len(probes.stalls), metrics.stalled_partitions._value.get()))
        await asyncio.sleep(0)
        task.cancel()
    stalled_at = [n for n, stalls, gauge in states if stalls == 1 and gauge == 1]
    assert stalled_at, f"never reported stalled: {states}"
    assert probes.stalls == [] and metrics.stalled_partitions._value.get() == 0, "moving again, cleared"
    assert [e["event"] for e in logs if e["event"].startswith("consumer_")] == ["consumer_stalled", "consumer_moving"]


def test_a_seek_back_is_not_progress_so_a_batch_failing_again_and_again_stalls() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    found = []
    for n in range(8):  # read to 45, failed, sought back to 40, read again...
        found.append(progress.check(view(clocks, 45 if n % 2 else 40, 52)))
        clocks.now += STALL_AFTER_S / 4
    assert not any(found[:5]) and all(found[5:]), found


def test_a_partition_whose_fetches_stop_answering_stalls_at_the_limit_not_twice_it() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    fetched_at = clocks.now
    for _ in range(4):
        assert progress.check(view(clocks, 52, 52, fetched_s_ago=clocks.now - fetched_at)) == []
        clocks.now += STALL_AFTER_S / 4
    [stall] = progress.check(view(clocks, 52, 52, fetched_s_ago=clocks.now - fetched_at))
    assert stall.for_s == STALL_AFTER_S


def test_a_new_assignment_starts_every_partition_afresh() -> None:
    clocks = Clocks()
    progress = watch(clocks)
    first, second = object(), object()
    progress.check(view(clocks, 40, 52), first)
    clocks.now += STALL_AFTER_S
    assert progress.check(view(clocks, 40, 52), first), "the same assignment: stalled"
    assert progress.check(view(clocks, 30, 52), second) == [], "a rebalance: its time starts now"
    clocks.now += STALL_AFTER_S / 2
    assert progress.check(view(clocks, 35, 52), second) == []


async def test_a_watch_that_cannot_read_the_consumer_says_so_once_and_holds_nothing(monkeypatch) -> None:
    calls: list[int] = []

    def broken(_consumer: object) -> dict:
        calls.append(1)
        raise AttributeError("'SubscriptionState' object has no attribute 'subscription'")

    monkeypatch.setattr(service, "PROGRESS_CHECK_S", 0.0)
    monkeypatch.setattr(service, "partition_views", broken)
    metrics = ServiceMetrics()
    probes = Probes("rebound-test", Group(), metrics, max_lag=100)
    probes.stalls = [Stall(TP, PartitionView(40, 52, 0.0), 130.0)]  # what an earlier check found
    with capture_logs() as logs:
        task = asyncio.create_task(service.watch_progress(watch(Clocks()), lambda: object(), probes, metrics))
        while len(calls) < 5:
            await asyncio.sleep(0)
        task.cancel()
    assert probes.stalls == [] and (await probes.ready())["progress"] == "ok"
    assert [e["event"] for e in logs] == ["progress_watch_failed"]
