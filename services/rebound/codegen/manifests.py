"""The deployment manifests that derive from code: one Strimzi `KafkaTopic` per registry topic.

    python -m rebound.codegen.manifests            (make manifests) rewrites deploy/k8s/topics/
    python -m rebound.codegen.manifests --check    exits 1 when those files are out of date

The topics are sized for a 3-broker cluster: every partition on 3 brokers, a write acknowledged
by 2 of them, so one broker can be down without stopping any producer."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from rebound_contracts import ALL_TOPICS, Topic

from ..messaging.topic_admin import REPLICAS, TOPIC_CONFIG, replication_for

TOPICS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "topics"
_, MIN_INSYNC_REPLICAS = replication_for(REPLICAS)
# The Strimzi `Kafka` resource the topics belong to, and its namespace (topics/kustomization.yaml).
STRIMZI_CLUSTER = "rebound"
KAFKA_NAMESPACE = "kafka"
HEADER = "# Generated from rebound_contracts.topics by `make manifests`; do not edit.\n"


def resource_name(topic_name: str) -> str:
    """A Kubernetes object name for a topic: lowercase letters, digits, '-' and '.'."""
    return re.sub(r"[^a-z0-9.-]+", "-", topic_name.lower()).strip("-.")


def _config_value(value: str) -> int | bool | str:
    if value in ("true", "false"):
        return value == "true"
    return int(value) if value.isdigit() else value


def kafka_topic(topic: Topic) -> dict:
    config = {key: _config_value(value) for key, value in TOPIC_CONFIG.items()}
    config["min.insync.replicas"] = MIN_INSYNC_REPLICAS
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": resource_name(topic.name)},
        "spec": {
            "topicName": topic.name,
            "partitions": topic.partitions,
            "replicas": REPLICAS,
            "config": dict(sorted(config.items())),
        },
    }


def _dump(document: dict) -> str:
    return HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def render(topics: Iterable[Topic] = ALL_TOPICS) -> dict[str, str]:
    """File name -> content of every file in deploy/k8s/topics/."""
    files = {f"{resource_name(t.name)}.yaml": _dump(kafka_topic(t)) for t in topics}
    files["kustomization.yaml"] = _dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": KAFKA_NAMESPACE,
            "labels": [{"pairs": {"strimzi.io/cluster": STRIMZI_CLUSTER}}],
            "resources": sorted(name for name in files),
        }
    )
    return files


def stale(directory: Path = TOPICS_DIR) -> list[str]:
    """The files in `directory` that differ from `render()`, are missing, or should not be there."""
    expected = render()
    present = {path.name for path in directory.glob("*.yaml")}
    return sorted(
        name
        for name in expected.keys() | present
        if name not in present or name not in expected or (directory / name).read_text() != expected[name]
    )


def write(directory: Path = TOPICS_DIR) -> list[str]:
    """Rewrite `directory` to match `render()`; return the names of the files changed or removed."""
    changed = stale(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = render()
    for name in changed:
        if name in expected:
            (directory / name).write_text(expected[name])
        else:
            (directory / name).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebound.codegen.manifests", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=TOPICS_DIR, help="directory of the KafkaTopic files")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.out)
        for name in outdated:
            print(f"stale: {args.out / name} (run `make manifests`)", file=sys.stderr)
        return 1 if outdated else 0
    changed = write(args.out)
    print(f"{args.out}: {', '.join(changed) if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
