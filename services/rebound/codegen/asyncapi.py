"""AsyncAPI 3.0 document of every topic, generated from the topic registry and committed.

    python -m rebound.codegen.asyncapi           # regenerate contracts/asyncapi.yaml
    python -m rebound.codegen.asyncapi --check   # exit 1 when the committed file is stale

Built from the registry rather than from the services' brokers: they subscribe with raw-record
hooks (FastStream would infer empty payloads), and FastStream's generator has no message key,
leaves partitions out and keeps one operation per channel, not one per producer and consumer.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from importlib.metadata import version
from pathlib import Path

import yaml
from faststream.specification.asyncapi.utils import ref
from faststream.specification.asyncapi.v3_0_0.schema import (
    ApplicationInfo,
    ApplicationSchema,
    Channel,
    Components,
    Message,
    Operation,
    Reference,
    Tag,
)
from faststream.specification.asyncapi.v3_0_0.schema.bindings import ChannelBinding, OperationBinding
from faststream.specification.asyncapi.v3_0_0.schema.bindings.kafka import (
    ChannelBinding as KafkaChannelBinding,
    OperationBinding as KafkaOperationBinding,
)
from faststream.specification.asyncapi.v3_0_0.schema.operations import Action
from pydantic.json_schema import models_json_schema

from rebound_contracts import ALL_TOPICS
from rebound_contracts.topics import Topic

from ..service import CONSUMERS, ServiceSpec

DOCUMENT = Path(__file__).resolve().parents[3] / "contracts" / "asyncapi.yaml"
KAFKA_BINDING_VERSION = "0.5.0"
HEADER = (
    "# Generated from rebound_contracts.topics by `make asyncapi` (python -m rebound.codegen.asyncapi). Do not edit.\n"
)


def operation_id(party: str, action: Action, topic: Topic) -> str:
    return f"{slug(party)}.{action.value}.{topic.name}"


def slug(party: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", party.lower()).strip("-")


def _description(model: type) -> str:
    return inspect.cleandoc(model.__doc__ or "")


def _group_ids(services: tuple[str, ...]) -> dict[str, str]:
    """The consumer group each Rebound service joins (its app's routes are not needed for that)."""
    return {name: ServiceSpec(name, routes=()).group_id for name in services}


def _key_schema(topic: Topic) -> dict:
    fields = ", ".join(f"`{field}`" for field in topic.key_fields)
    joined = " joined by ':'" if len(topic.key_fields) > 1 else ""
    return {
        "type": "string",
        "description": f"`{':'.join(topic.key_fields)}`: the message's {fields}{joined}.",
        "x-key-fields": list(topic.key_fields),
    }


def _parties(topics: tuple[Topic, ...]) -> list[str]:
    return list(dict.fromkeys(party for t in topics for party in (*t.producers, *t.consumers)))


def build(topics: tuple[Topic, ...] = ALL_TOPICS, services: tuple[str, ...] = CONSUMERS) -> dict:
    """The AsyncAPI 3.0 document of `topics`, as plain JSON-compatible data."""
    models = list(dict.fromkeys(t.model for t in topics))
    refs, definitions = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    group_ids = _group_ids(services)

    channels: dict[str, Channel] = {}
    operations: dict[str, Operation] = {}
    for topic in topics:
        message_name = topic.model.__name__
        channels[topic.name] = Channel(
            address=topic.name,
            description=topic.description or _description(topic.model),
            messages={
                message_name: Message(
                    name=message_name,
                    description=_description(topic.model),
                    contentType="application/json",
                    payload=refs[(topic.model, "serialization")],
                    bindings={"kafka": {"key": _key_schema(topic), "bindingVersion": KAFKA_BINDING_VERSION}},
                )
            },
            bindings=ChannelBinding(
                kafka=KafkaChannelBinding(
                    partitions=topic.partitions,
                    bindingVersion=KAFKA_BINDING_VERSION,
                )
            ),
            tags=[
                {"name": topic.direction},
                *(
                    []
                    if topic.direction == "inbound"
                    else [{"name": "at-least-once" if topic.at_least_once else "exactly-once"}]
                ),
            ],
        )
        for action, parties in ((Action.SEND, topic.producers), (Action.RECEIVE, topic.consumers)):
            for party in parties:
                group_id = group_ids.get(party) if action is Action.RECEIVE else None
                operations[operation_id(party, action, topic)] = Operation(
                    action=action,
                    channel=Reference(**ref("channels", topic.name)),
                    messages=[Reference(**ref("channels", topic.name, "messages", message_name))],
                    summary=f"{party} {'sends' if action is Action.SEND else 'receives'} {message_name}",
                    bindings=OperationBinding(
                        kafka=KafkaOperationBinding(
                            groupId={"type": "string", "enum": [group_id]},
                            bindingVersion=KAFKA_BINDING_VERSION,
                        )
                    )
                    if group_id
                    else None,
                    tags=[Tag(name=party)],
                )

    schema = ApplicationSchema(
        asyncapi="3.0.0",
        info=ApplicationInfo(
            title="Rebound",
            version=version("rebound-contracts"),
            description="Rebound's public wire contract: every Kafka topic, its message, key and "
            "partitions, and who sends and receives it. Keys are UTF-8 strings; values "
            "are JSON.",
            tags=[
                Tag(
                    name=party,
                    description=f"Rebound service, consumer group `{group_ids[party]}`"
                    if party in group_ids
                    else "Outside Rebound",
                )
                for party in _parties(topics)
            ],
        ),
        defaultContentType="application/json",
        channels=channels,
        operations=operations,
        components=Components(schemas=definitions["$defs"]),
    )
    document = schema.to_jsonable()
    return {"asyncapi": document.pop("asyncapi"), **document}


def render(topics: tuple[Topic, ...] = ALL_TOPICS) -> str:
    return HEADER + yaml.safe_dump(build(topics), sort_keys=False, allow_unicode=True, width=100)


def is_stale(path: Path) -> bool:
    return not path.exists() or path.read_text(encoding="utf-8") != render()


def write(path: Path) -> None:
    path.write_text(render(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed document is stale")
    args = parser.parse_args(argv)
    if not args.check:
        write(DOCUMENT)
        print(f"wrote {len(ALL_TOPICS)} topics to {DOCUMENT}")
        return 0
    if is_stale(DOCUMENT):
        print(f"stale: {DOCUMENT} (run: make asyncapi)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
