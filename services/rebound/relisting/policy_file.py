"""Reading a disposition policy from YAML or JSON text, with errors that name the line."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from .domain import Policy, PolicyError


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate; a `PolicyError` names `source`, the line and what is wrong."""
    try:
        document = yaml.safe_load(text)  # JSON is YAML too
        tree = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(error, "problem", None) or str(error)
        raise PolicyError(f"{where}: not valid YAML or JSON: {problem}") from None
    if not isinstance(document, dict):
        raise PolicyError(f"{source}:1: a policy is a mapping with a `rules` list")
    try:
        return Policy.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(first["loc"])
        path = ".".join(str(p) for p in location) or "(policy)"
        message = first["msg"].removeprefix("Value error, ")
        more = error.error_count() - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise PolicyError(f"{source}:{_line_of(tree, location)}: {path}: {message}{suffix}") from None


def _line_of(node: Any, location: tuple[Any, ...]) -> int:
    """The line of the deepest node of `location` that exists in the YAML tree (1-based)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in location:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break  # e.g. a union's branch name, or a missing field: the parent's line is the best
        node, line = child, child.start_mark.line + 1
    return line


def dump_policy(policy: Policy) -> str:
    """YAML a seller can edit and set again."""
    document = policy.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
