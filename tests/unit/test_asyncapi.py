"""contracts/asyncapi.yaml: fresh, valid AsyncAPI 3.0, and true to the topic registry and the apps."""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from rebound.codegen import asyncapi
from rebound.service import CONSUMERS
from rebound_contracts import ALL_TOPICS
from rebound_contracts.topics import Topic

# schemas/3.0.0.json of @asyncapi/specs 6.11.1, vendored: see data/asyncapi-3.0.0.schema.NOTICE
ASYNCAPI_SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"
BY_NAME = pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda topic: topic.name)


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(asyncapi.render())


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    # Only the vendored schema and the JSON Schema metaschemas: nothing is fetched.
    registry = Registry().with_resource(schema["$id"], DRAFT7.create_resource(schema))
    return Draft7Validator(schema, registry=registry)


def resolve(document: dict, pointer: str) -> Any:
    assert pointer.startswith("#/"), f"not a local reference: {pointer}"
    node: Any = document  # a JSON value: an object, an array or a scalar
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations_on(document: dict, topic: Topic) -> dict[str, dict]:
    return {
        name: op for name, op in document["operations"].items() if op["channel"]["$ref"] == f"#/channels/{topic.name}"
    }


def test_committed_document_is_what_the_registry_generates_now() -> None:
    assert not asyncapi.is_stale(asyncapi.DOCUMENT), f"{asyncapi.DOCUMENT} is stale: run `make asyncapi`"


def test_document_is_valid_asyncapi_3(document: dict, validator: Draft7Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert not errors, "\n".join(errors)


def test_the_vendored_schema_really_checks_kafka_bindings(document: dict, validator: Draft7Validator) -> None:
    """Guards the test above: a validator that could not resolve the binding schemas would pass anything."""
    channel = next(iter(document["channels"]))
    no_partitions = copy.deepcopy(document)
    no_partitions["channels"][channel]["bindings"]["kafka"]["partitions"] = 0
    unknown_field = copy.deepcopy(document)
    message = next(iter(unknown_field["channels"][channel]["messages"].values()))
    message["bindings"]["kafka"]["partition_key"] = "seller_id"
    assert not validator.is_valid(no_partitions)
    assert not validator.is_valid(unknown_field)


def test_every_reference_resolves_inside_the_document(document: dict) -> None:
    def refs(node: object):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(document))
    assert found
    for pointer in found:
        resolve(document, pointer)


@BY_NAME
def test_topic_is_a_channel_with_its_partitions(document: dict, topic: Topic) -> None:
    channel = document["channels"][topic.name]
    assert channel["address"] == topic.name
    assert channel["bindings"]["kafka"]["partitions"] == topic.partitions


@BY_NAME
def test_message_has_the_model_schema_key_and_docstring(document: dict, topic: Topic) -> None:
    [message] = document["channels"][topic.name]["messages"].values()
    assert message["bindings"]["kafka"]["key"]["x-key-fields"] == list(topic.key_fields)
    assert message["description"] == inspect.cleandoc(topic.model.__doc__ or "")

    expected = topic.model.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
    definitions = expected.pop("$defs", {})
    payload = resolve(document, message["payload"]["$ref"])
    assert payload == expected
    for name, schema in definitions.items():
        assert document["components"]["schemas"][name] == schema
    assert set(topic.key_fields) <= set(payload["required"]), "every key field is a required field"


@BY_NAME
def test_producers_send_and_consumers_receive(document: dict, topic: Topic) -> None:
    operations = operations_on(document, topic)
    done = {(op["tags"][0]["name"], op["action"]) for op in operations.values()}
    assert done == {(p, "send") for p in topic.producers} | {(c, "receive") for c in topic.consumers}
    assert len(operations) == len(done)
    for op in operations.values():
        [message] = op["messages"]
        assert message["$ref"].startswith(f"#/channels/{topic.name}/messages/")


@pytest.mark.parametrize("service", CONSUMERS)
def test_a_service_receives_what_its_app_subscribes_to_in_its_group(document: dict, service: str) -> None:
    spec = importlib.import_module(f"rebound.{service}.app").spec()
    received = {
        name: op
        for name, op in document["operations"].items()
        if op["action"] == "receive" and op["tags"][0]["name"] == service
    }
    assert {resolve(document, op["channel"]["$ref"])["address"] for op in received.values()} == {
        topic.name for topic in spec.topics
    }
    for op in received.values():
        assert op["bindings"]["kafka"]["groupId"]["enum"] == [spec.group_id]


def test_check_fails_on_a_stale_file_in_one_line_and_write_fixes_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "asyncapi.yaml"
    monkeypatch.setattr(asyncapi, "DOCUMENT", target)
    assert asyncapi.main(["--check"]) == 1  # missing
    assert asyncapi.main([]) == 0
    assert asyncapi.main(["--check"]) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("partitions: ", "partitions: 1", 1))
    capsys.readouterr()
    assert asyncapi.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make asyncapi" in err
