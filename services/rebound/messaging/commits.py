"""Kafka offset commits off the hot path.

A batch's effects and its inbox rows are already committed in PostgreSQL when its offsets are
noted here, so an offset commit only saves re-reading: a record re-delivered because its offset
was not committed yet is a duplicate the inbox skips. The consumer therefore goes on to its
next batch at once, and one background task commits the newest noted offset of each partition.
Each batch's offsets are taken from its own records, never from the consumer's position (which
may already be past a batch that is still being applied).

After a commit the task pauses `interval_s`, and what was noted meanwhile goes in one commit: at
low load every batch is a record or two, and a commit per batch would cost the broker a write to
its offsets log each time. A crash re-reads at most that much more, which the inbox skips.

While the service shuts down, `note` commits before it returns, as a plain synchronous commit
would: a graceful stop leaves nothing for the next owner of the partitions to re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Protocol

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

log = structlog.get_logger(__name__)


class Committing(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...


class Positioned(Protocol):
    topic: str
    partition: int
    offset: int


def next_offsets(records: Iterable[Positioned]) -> dict[TopicPartition, int]:
    """For each partition of `records`, the offset to commit: one past its last record."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


class OffsetCommitter:
    def __init__(self, interval_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Committing | None = None
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="offset-committer")

    async def note(self, consumer: Committing, records: Iterable[Positioned]) -> None:
        """Commit these records' offsets soon (now, when the service is closing)."""
        self._consumer = consumer
        for tp, offset in next_offsets(records).items():
            if offset > self._pending.get(tp, -1):
                self._pending[tp] = offset
        if self.closing:
            await self.flush()
        else:
            self._wake.set()

    async def flush(self) -> None:
        """Commit what was noted and not committed yet, for the partitions this member still owns.
        Those a rebalance moved away are dropped (their new owner starts from the last commit and
        the inbox skips what this member already applied); the others' offsets never are: a record
        re-read after the rebalance and applied again is not read a third time, and an offset lost
        here would stay behind until the partition's next record, however long that takes."""
        if not self._pending or self._consumer is None:
            return
        owned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in self._pending.items() if tp in owned}
        if moved := len(self._pending) - len(offsets):
            log.info("offset_commit_skipped", reason="partitions moved to another member", partitions=moved)
        self._pending = {}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved to another member (a rebalance): it starts from the last commit
            # and the inbox skips what this member already applied.
            log.info("offset_commit_skipped", reason=f"{type(error).__name__}: {error}", partitions=len(offsets))
        except KafkaError as error:
            for tp, offset in offsets.items():  # try again with the next batch, newest offset first
                self._pending[tp] = max(offset, self._pending.get(tp, -1))
            log.warning("offset_commit_failed", error=f"{type(error).__name__}: {error}", partitions=len(offsets))

    async def _run(self) -> None:
        while not self.closing:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()
            if self.interval_s > 0:
                with contextlib.suppress(asyncio.TimeoutError):  # a stop ends the pause
                    await asyncio.wait_for(self._closed.wait(), self.interval_s)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """From now on `note` commits at once; the background commit in flight ends first."""
        self.closing = True
        self._closed.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout_s)
        await self.flush()
