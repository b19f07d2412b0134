"""A service's consumer polls again at once after an empty poll: a record that arrives then is
taken as soon as it is fetched, not after a sleep (FastStream's own batch poll sleeps
`batch_timeout_ms` after every empty poll, which a quiet topic adds to every hop). A poll that
raises is retried after a pause, and the second in a row makes the consumer rejoin its group."""

from __future__ import annotations

import asyncio
import functools
from types import SimpleNamespace

import anyio
import pytest
from aiokafka.errors import KafkaError
from faststream.kafka.subscriber.usecase import BatchSubscriber

from rebound.grading.app import spec
from rebound.service import FETCHER_IDLE_WAKE_MS, POLL_RETRY_S, FetchHold, PollErrors, _poll, build_app
from rebound.settings import Settings


class Fetcher:
    """aiokafka's fetcher as FetchHold sees it: the hold of the next request, the records
    fetched and not yet taken, and a fetch that answers from a script (brought records or not)."""

    def __init__(self, hold_ms: int) -> None:
        self._fetch_max_wait_ms = hold_ms
        self._records: dict[str, list[str]] = {}
        self.brings: list[bool] = []

    async def _proc_fetch_request(self, assignment: object, node_id: int, request: object) -> bool:
        return self.brings.pop(0)


class Consumer:
    """Answers polls from a script: empty, then one record."""

    def __init__(self) -> None:
        self.polls: list[tuple[int, int]] = []
        self.answers = [{}, {"tp": ["record"]}]
        self._fetcher = Fetcher(hold_ms=500)

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
    # aiokafka's fetcher task sleeps this long when nothing wakes it, not its default 200 ms
    assert subscriber._connection_args["consumer_timeout_ms"] == FETCHER_IDLE_WAKE_MS > 200


class FailingConsumer:
    """Raises from its polls what its background tasks met, as aiokafka does, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rejoins = 0
        self._coordinator = self

    def request_rejoin(self) -> None:
        self.rejoins += 1

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict:
        if self.failures:
            self.failures -= 1
            raise KafkaError("Unexpected error during coordination")
        return {"tp": ["record"]}


async def test_a_poll_that_raises_is_retried_and_the_second_in_a_row_rejoins_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    subscriber = SimpleNamespace(batch_timeout_ms=10, max_records=5)
    told: list[bool] = []  # what the service's metrics are told: each failure, and whether it rejoined
    errors = PollErrors(on_failed=told.append)
    consumer = FailingConsumer(failures=1)
    poll = functools.partial(_poll, subscriber, errors, FetchHold(busy_ms=500, idle_ms=500))  # holds left alone
    assert await poll(consumer) == ()
    assert await poll(consumer) == ("record",)
    assert (consumer.rejoins, slept) == (0, [POLL_RETRY_S])  # one error, then a poll that answers

    consumer.failures = 3
    for _ in range(3):
        assert await poll(consumer) == ()
    assert consumer.rejoins == 1 and errors.in_a_row == 1  # the count starts again after a rejoin
    assert await poll(consumer) == ("record",)
    assert errors.in_a_row == 0
    assert told == [False, False, True, False]


async def test_a_fetch_is_held_long_only_after_one_that_brought_nothing_with_nothing_waiting() -> None:
    FetchHold.check()  # aiokafka's fetcher still has what is patched
    consumer = Consumer()
    fetcher = consumer._fetcher
    hold = FetchHold(busy_ms=500, idle_ms=2000)
    hold.apply(consumer)
    fetch = fetcher._proc_fetch_request
    fetcher.brings = [False, True, False, False]
    assert await fetch(None, 1, None) is False
    assert fetcher._fetch_max_wait_ms == 2000  # nothing came, nothing waits: every partition is asked
    assert await fetch(None, 1, None) is True
    assert fetcher._fetch_max_wait_ms == 500
    fetcher._records["tp-0"] = ["record"]  # taken by no poll yet: left out of the next fetch
    assert await fetch(None, 1, None) is False
    assert fetcher._fetch_max_wait_ms == 500
    fetcher._records.clear()
    assert await fetch(None, 1, None) is False
    assert fetcher._fetch_max_wait_ms == 2000
    hold.apply(consumer)  # once per fetcher: not wrapped again
    assert fetcher._proc_fetch_request is fetch
    consumer._fetcher = Fetcher(hold_ms=500)  # a consumer started again has a new fetcher
    hold.apply(consumer)
    assert consumer._fetcher._proc_fetch_request is not fetch
