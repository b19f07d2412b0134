"""Offset commits in the background: the batch's own offsets, newest per partition, never lost."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError

from rebound.messaging.commits import OffsetCommitter, next_offsets


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int


class Consumer:
    """Records each commit; blocks while `gate` is closed; fails with the queued errors first.
    Owns the partitions in `owned` (None: every one), and refuses a commit naming another, as
    aiokafka's consumer does."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.errors: list[Exception] = []
        self.owned: set[TopicPartition] | None = None

    def assignment(self) -> set[TopicPartition]:
        everything = {TopicPartition(t, p) for t in "ab" for p in range(8)}
        return set(everything if self.owned is None else self.owned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if moved := set(offsets) - self.assignment():
            raise IllegalStateError(f"Partition {moved.pop()} is not assigned")
        await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        self.commits.append(dict(offsets))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_offset_to_commit_is_one_past_each_partitions_last_record():
    records = [Rec("a", 0, 5), Rec("a", 1, 7), Rec("a", 0, 9), Rec("b", 0, 0)]
    assert next_offsets(records) == {TopicPartition("a", 0): 10, TopicPartition("a", 1): 8, TopicPartition("b", 0): 1}


async def test_note_returns_before_the_commit_and_the_newest_offsets_win():
    consumer, committer = Consumer(), OffsetCommitter()
    committer.start()
    consumer.gate.clear()  # the broker is slow
    # Returns although the commit cannot finish (wait_for fails the test instead of hanging it).
    await asyncio.wait_for(committer.note(consumer, [Rec("a", 0, 1)]), 1.0)
    await settle()
    await committer.note(consumer, [Rec("a", 0, 2), Rec("a", 1, 4)])
    await committer.note(consumer, [Rec("a", 0, 3)])
    assert consumer.commits == []
    consumer.gate.set()
    await settle()
    assert consumer.commits == [{TopicPartition("a", 0): 2}, {TopicPartition("a", 0): 4, TopicPartition("a", 1): 5}]
    await committer.stop()


async def test_a_failed_commit_is_retried_and_a_rebalanced_one_is_dropped():
    consumer, committer = Consumer(), OffsetCommitter()
    consumer.errors = [KafkaConnectionError("broker gone")]
    await committer.note(consumer, [Rec("a", 0, 1)])
    await committer.flush()
    assert consumer.commits == []
    await committer.note(consumer, [Rec("a", 1, 0)])
    await committer.flush()
    assert consumer.commits == [{TopicPartition("a", 0): 2, TopicPartition("a", 1): 1}]
    consumer.errors = [CommitFailedError("rebalanced")]
    await committer.note(consumer, [Rec("a", 0, 5)])
    await committer.flush()
    await committer.flush()
    assert consumer.commits == [{TopicPartition("a", 0): 2, TopicPartition("a", 1): 1}]


async def test_after_a_rebalance_the_partitions_still_owned_are_committed_and_the_moved_ones_dropped():
    consumer, committer = Consumer(), OffsetCommitter()
    await committer.note(consumer, [Rec("a", 0, 9), Rec("a", 1, 9)])  # applied before the rebalance
    consumer.owned = {TopicPartition("a", 1)}  # a-0 moved to another member
    await committer.note(consumer, [Rec("a", 1, 3)])  # a-1 re-read from its last commit
    await committer.flush()
    assert consumer.commits == [{TopicPartition("a", 1): 10}]
    await committer.flush()
    assert consumer.commits == [{TopicPartition("a", 1): 10}], "a-0 is its new owner's to commit"


async def test_once_closing_each_batch_commits_before_note_returns():
    consumer, committer = Consumer(), OffsetCommitter()
    committer.start()
    await committer.note(consumer, [Rec("a", 0, 1)])
    await committer.stop()  # the pending commit is flushed
    assert consumer.commits == [{TopicPartition("a", 0): 2}]
    await committer.note(consumer, [Rec("a", 0, 2)])  # an in-flight batch finishing during shutdown
    assert consumer.commits == [{TopicPartition("a", 0): 2}, {TopicPartition("a", 0): 3}]


async def test_what_is_noted_during_the_pause_after_a_commit_goes_in_one_commit_and_a_stop_ends_the_pause():
    consumer, committer = Consumer(), OffsetCommitter(interval_s=60.0)
    committer.start()
    await committer.note(consumer, [Rec("a", 0, 1)])
    await settle()
    await committer.note(consumer, [Rec("a", 0, 2)])
    await committer.note(consumer, [Rec("a", 1, 0)])
    await settle()
    assert consumer.commits == [{TopicPartition("a", 0): 2}]
    # Returns at once although the pause has a minute to go (wait_for fails the test otherwise).
    await asyncio.wait_for(committer.stop(), 1.0)
    assert consumer.commits == [{TopicPartition("a", 0): 2}, {TopicPartition("a", 0): 3, TopicPartition("a", 1): 1}]
