"""Whether a service's consumer moves: a consumer that stands still with records waiting, without
raising anything, is told from one that has nothing to do.

A partition is *stalled* when, for `stall_after_s`, its position has not gone past the furthest
it had reached while it was not caught up: it had no valid position (the fetcher waits for one),
or its last fetch said records wait past it (the last stable offset beyond the position), or no
fetch answered for it at all. A seek back (a batch that failed is read again) is not progress, so
a batch that fails again and again stalls its partition. A partition whose position equals the
last stable offset of a recent fetch has nothing to do, however long it stays there. A handler
that hangs on the last records there are is not seen: records are handed out, and the position
moves, before they are applied. During a rebalance nothing is reported, and each assignment
starts afresh. The consumer's view is read from aiokafka's assignment state, with no request to
the broker (docs/decisions/0002-patched-library-internals.md)."""

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
    """The consumer's assigned partitions as it sees them now (no request to the broker); none
    while a rebalance is under way (the last assignment stays visible until the next is known)."""
    assignment: Any = assignment_of(consumer)
    if assignment is None or consumer._subscription.reassignment_in_progress:
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


def assignment_of(consumer: Any) -> object | None:
    """The consumer's current assignment: a new object at each rebalance."""
    subscription = consumer._subscription.subscription
    return None if subscription is None else subscription.assignment


class ProgressWatch:
    """Remembers, per partition, the furthest position it reached and since when; `check` says
    which are stalled."""

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
        self._seen: dict[TopicPartition, tuple[int, float]] = {}  # the furthest position, and since when
        self._assignment: object | None = None

    def check(self, views: Mapping[TopicPartition, PartitionView], assignment: object | None = None) -> list[Stall]:
        """The stalled partitions among `views`; `assignment` (see `assignment_of`): another one
        than at the last check starts every partition afresh."""
        if assignment is not self._assignment:
            self._seen.clear()
            self._assignment = assignment
        now, wall = self.clock(), self.wall_ms()
        stalls = []
        for tp, view in views.items():
            fetched_s_ago = None if view.fetched_at_ms is None else max(0.0, (wall - view.fetched_at_ms) / 1000)
            fresh = fetched_s_ago is not None and fetched_s_ago < self.stall_after_s
            position = -1 if view.position is None else view.position
            caught_up = fresh and view.last_stable is not None and position >= view.last_stable
            seen = self._seen.get(tp)
            if seen is None or caught_up or position > seen[0]:
                self._seen[tp] = (max(position, seen[0] if seen else -1), now)
                continue
            since = seen[1]
            if fetched_s_ago is not None and not fresh:  # no fetch answered: still since that fetch
                since = min(since, now - fetched_s_ago)
            if (still := now - since) >= self.stall_after_s:
                stalls.append(Stall(tp, view, still))
        for tp in set(self._seen) - set(views):  # revoked: a new assignment starts afresh
            del self._seen[tp]
        return stalls
