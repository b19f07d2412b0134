"""Whether a service's consumer moves: a consumer that stands still with records waiting, without
raising anything, is told from one that has nothing to do.

A partition is *stalled* when, for `stall_after_s`, its position has not moved while it was not
caught up: it had no valid position (the fetcher waits for one), or its last fetch said records
wait past it (the last stable offset beyond the position), or no fetch answered for it at all.
A partition whose position equals the last stable offset of a recent fetch has nothing to do,
however long it stays there. The consumer's view is read from aiokafka's assignment state, with no
request to the broker (docs/decisions/0002-patched-library-internals.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition


@dataclass(frozen=True)
class PartitionView:
    """One assigned partition as the consumer sees it."""

    position: int | None  # the next offset handed to the application; None while it has no valid one
    last_stable: int | None  # from the partition's last fetch; None before its first
    fetched_at_ms: float | None  # wall clock of that fetch, in ms


@dataclass(frozen=True)
class Stall:
    tp: TopicPartition
    view: PartitionView
    for_s: float

    def describe(self) -> str:
        """e.g. `returns.unit-graded.v1-3 at 40, records to 52, still for 130 s`."""
        where = "no position" if self.view.position is None else f"at {self.view.position}"
        if self.view.last_stable is None:
            waiting = "never fetched"
        elif self.view.position is not None and self.view.last_stable <= self.view.position:
            waiting = "no fetch answered lately"
        else:
            waiting = f"records to {self.view.last_stable}"
        return f"{self.tp.topic}-{self.tp.partition} {where}, {waiting}, still for {self.for_s:.0f} s"


def partition_views(consumer: Any) -> dict[TopicPartition, PartitionView]:
    """The consumer's assigned partitions as it sees them now (no request to the broker)."""
    subscription = consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None:
        return {}
    views = {}
    for tp in assignment.tps:
        state = assignment.state_value(tp)
        views[tp] = PartitionView(
            position=state.position if state.has_valid_position else None,
            last_stable=state.lso,
            fetched_at_ms=state.timestamp,
        )
    return views


class ProgressWatch:
    """Remembers, per partition, where it was and since when; `check` says which are stalled."""

    def __init__(
        self,
        stall_after_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.wall_ms = wall_ms
        self._seen: dict[TopicPartition, tuple[int | None, float]] = {}  # position, and since when

    def check(self, views: Mapping[TopicPartition, PartitionView]) -> list[Stall]:
        now, wall = self.clock(), self.wall_ms()
        stalls = []
        for tp, view in views.items():
            fresh = view.fetched_at_ms is not None and wall - view.fetched_at_ms <= self.stall_after_s * 1000
            caught_up = (
                view.position is not None
                and view.last_stable is not None
                and view.position >= view.last_stable
                and fresh
            )
            seen = self._seen.get(tp)
            if seen is None or caught_up or view.position != seen[0]:
                self._seen[tp] = (view.position, now)
                continue
            if (still := now - seen[1]) >= self.stall_after_s:
                stalls.append(Stall(tp, view, still))
        for tp in set(self._seen) - set(views):  # revoked: a new assignment starts afresh
            del self._seen[tp]
        return stalls
