"""JSON Schema export: one file per topic, generated from the models and committed.

python -m rebound_contracts.schema --write   # regenerate contracts/rebound_contracts/schemas/
python -m rebound_contracts.schema --check   # exit 1 when a committed file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .topics import ALL, Topic

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"  # shipped with the package
DRAFT = "https://json-schema.org/draft/2020-12/schema"
"""The dialect pydantic writes. Besides it, each schema carries the vendor keyword `x-topic` (the
topic's name, key, partitions and direction): a strict validator must be told of it, e.g. ajv's
`addKeyword("x-topic")`."""


def schema_of(topic: Topic) -> dict:
    schema = topic.model.model_json_schema(mode="serialization")
    schema["$schema"] = DRAFT
    schema["$id"] = f"https://rebound.dev/schemas/{topic.name}.json"
    schema["x-topic"] = {
        "name": topic.name,
        "key": ":".join(topic.key_fields),
        "partitions": topic.partitions,
        "direction": topic.direction,
    }
    if topic.direction != "inbound":  # published by Rebound: how
        schema["x-topic"]["delivery"] = "at least once" if topic.at_least_once else "exactly once"
    return schema


def render(topic: Topic) -> str:
    return json.dumps(schema_of(topic), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Files under `directory` that differ from what the models generate now."""
    stale = []
    for topic in ALL:
        path = directory / f"{topic.name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(topic):
            stale.append(path)
    return stale


def write(directory: Path = SCHEMA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for topic in ALL:
        (directory / f"{topic.name}.json").write_text(render(topic), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the schema files")
    group.add_argument("--check", action="store_true", help="fail when a schema file is stale")
    args = parser.parse_args(argv)
    if args.write:
        write()
        print(f"wrote {len(ALL)} schemas to {SCHEMA_DIR}")
        return 0
    stale = stale_files()
    for path in stale:
        print(f"stale: {path} (run: python -m rebound_contracts.schema --write)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
