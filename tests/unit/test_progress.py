"""The progress watch: a consumer standing still with records waiting is stalled; one with nothing
to do is not, however long it idles."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from structlog.testing import capture_logs

from rebound import service
from rebound.messaging.progress import PartitionView, ProgressWatch
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
    class Group:
        async def lag(self) -> dict:
            return {}

        async def known(self) -> bool:
            return True

    clocks = Clocks()
    views = [view(clocks, 40, 52)] * 3 + [view(clocks, 41, 52)]
    seen: list[int] = []

    def next_view(_consumer: object) -> dict:
        """A check every half limit: still, still (stalled), then moved; after that, no time passes."""
        if len(seen) < len(views):
            clocks.now += STALL_AFTER_S / 2
        seen.append(len(seen))
        return views[min(len(seen), len(views)) - 1]

    monkeypatch.setattr(service, "PROGRESS_CHECK_S", 0.0)
    monkeypatch.setattr(service, "partition_views", next_view)
    metrics = ServiceMetrics()
    probes = Probes("rebound-test", Group(), metrics, max_lag=100)
    states = []
    with capture_logs() as logs:
        task = asyncio.create_task(service.watch_progress(watch(clocks), lambda: object(), probes, metrics))
        while len(seen) < len(views):
            await asyncio.sleep(0)
            states.append((len(seen), len(probes.stalls), metrics.stalled_partitions._value.get()))
        await asyncio.sleep(0)
        task.cancel()
    stalled_at = [n for n, stalls, gauge in states if stalls == 1 and gauge == 1]
    assert stalled_at, f"never reported stalled: {states}"
    assert probes.stalls == [] and metrics.stalled_partitions._value.get() == 0, "moving again, cleared"
    assert [e["event"] for e in logs if e["event"].startswith("consumer_")] == ["consumer_stalled", "consumer_moving"]
