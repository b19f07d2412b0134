"""Reading a topic's committed records as contract models, for the demo's summary and the tests.

The guarantee checker reads the same records without the contracts (`checker.read_raw`); this
module adds the models on top of its reading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from rebound_contracts.topics import Topic

from .checker import read_raw

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Record(Generic[M]):
    """A parsed message with where it was read and its Kafka key."""

    partition: int
    offset: int
    key: str | None
    model: M


@dataclass
class TopicRead(Generic[M]):
    records: list[Record[M]] = field(default_factory=list)
    unreadable: list[tuple[int, int, str]] = field(default_factory=list)
    """(partition, offset, error) of messages that do not parse against the topic's model."""


async def read_records(
    bootstrap: str, topic: Topic[M], *, sellers: set[str] | None, kafka_options: Mapping[str, Any] | None = None
) -> TopicRead[M]:
    """Every committed message of a topic of these sellers (None: all), in partition and offset
    order, parsed against the topic's model."""
    raw = await read_raw(
        bootstrap,
        topic.name,
        keep=None if sellers is None else lambda _key, document: document.get("seller_id") in sellers,
        kafka_options=kafka_options,
    )
    read: TopicRead[M] = TopicRead(unreadable=list(raw.unreadable))
    for record in raw.records:
        try:
            model = topic.model.model_validate(record.document)
        except ValidationError as error:
            read.unreadable.append((record.partition, record.offset, str(error).splitlines()[0]))
            continue
        read.records.append(Record(record.partition, record.offset, record.key, model))
    return read


async def read_topic(
    bootstrap: str, topic: Topic[M], *, sellers: set[str] | None, kafka_options: Mapping[str, Any] | None = None
) -> list[tuple[int, int, M]]:
    """(partition, offset, model) of every committed message of `topic` of these sellers, in
    partition and offset order. Messages that do not parse are left out (see `read_records`)."""
    read = await read_records(bootstrap, topic, sellers=sellers, kafka_options=kafka_options)
    return [(r.partition, r.offset, r.model) for r in read.records]
