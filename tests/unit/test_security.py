"""Security properties checked on the code itself: every SQL statement is parameterised."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services" / "rebound"
QUERY_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval"}


def _queries(tree: ast.AST):  # noqa: ANN202
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_METHODS:
            if node.args:
                yield node.args[0]


def _built_at_run_time(expression: ast.AST) -> bool:
    """f-strings, .format() and % build SQL from values; plain literals and their + do not."""
    for node in ast.walk(expression):
        if isinstance(node, ast.JoinedStr):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            return True
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return True
    return False


SOURCES = sorted(SERVICES.rglob("*.py"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(SERVICES)))
def test_sql_is_never_built_from_values(source: Path) -> None:
    tree = ast.parse(source.read_text(), filename=str(source))
    offenders = [ast.get_source_segment(source.read_text(), q) for q in _queries(tree) if _built_at_run_time(q)]
    assert offenders == [], f"SQL built at run time in {source}: {offenders}"


def test_the_check_finds_a_formatted_query() -> None:
    tree = ast.parse('async def f(conn, x):\n    await conn.execute(f"DELETE FROM t WHERE id = {x}")\n')
    assert [q for q in _queries(tree) if _built_at_run_time(q)]
    assert len(SOURCES) > 10 and sum(len(list(_queries(ast.parse(p.read_text())))) for p in SOURCES) > 20
