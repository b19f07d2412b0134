"""A service's consumer polls again at once after an empty poll: a record that arrives then is
taken as soon as it is fetched, not after a sleep (FastStream's own batch poll sleeps
`batch_timeout_ms` after every empty poll, which a quiet topic adds to every hop)."""

from __future__ import annotations

import anyio
import pytest
from faststream.kafka.subscriber.usecase import BatchSubscriber

from rebound.grading.app import spec
from rebound.service import build_app
from rebound.settings import Settings


class Consumer:
    """Answers polls from a script: empty, then one record."""

    def __init__(self) -> None:
        self.polls: list[tuple[int, int]] = []
        self.answers = [{}, {"tp": ["record"]}]

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict:
        self.polls.append((timeout_ms, max_records))
        return self.answers.pop(0)


async def test_an_empty_poll_is_followed_by_the_next_poll_without_a_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(_seconds: float) -> None:
        raise AssertionError("the consumer slept after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)
    settings = Settings(batch_wait_ms=123, batch_max_records=45)
    broker = build_app(spec(), settings).broker
    assert broker is not None
    [subscriber] = broker.subscribers
    assert isinstance(subscriber, BatchSubscriber)
    # The service replaces the method FastStream's consume loop calls; gone, the override is dead.
    assert callable(getattr(type(subscriber), "get_msg", None))
    assert "get_msg" in vars(subscriber)
    consumer = Consumer()
    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == ("record",)
    assert consumer.polls == [(123, 45), (123, 45)]
