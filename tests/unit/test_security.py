"""Security properties checked on the code itself: every SQL statement is fixed text, parameterised."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services" / "rebound"
QUERY_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval"}


def _queries(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in QUERY_METHODS:
            if node.args:
                yield node.args[0]


def _constants(tree: ast.Module) -> dict[str, ast.AST]:
    """The module's top-level names bound once to a value."""
    return {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }


def _static(expression: ast.AST, constants: dict[str, ast.AST], seen: frozenset[str] = frozenset()) -> bool:
    """Whether the SQL is fixed text: string literals, joined with + or an f-string, or picked from
    a dict of them, directly or through module constants that are. Anything else (an f-string, .format(), %,
    a value concatenated in, a string built in the function) builds SQL at run time."""
    if isinstance(expression, ast.Constant):
        return isinstance(expression.value, str)
    if isinstance(expression, ast.JoinedStr):  # an f-string of fixed text only
        return all(
            isinstance(part, ast.Constant)
            or (
                isinstance(part, ast.FormattedValue)
                and part.conversion == -1
                and part.format_spec is None
                and isinstance(part.value, ast.Name)
                and _static(part.value, constants, seen)
            )
            for part in expression.values
        )
    if isinstance(expression, ast.BinOp) and isinstance(expression.op, ast.Add):
        return _static(expression.left, constants, seen) and _static(expression.right, constants, seen)
    if isinstance(expression, ast.Name):
        value = constants.get(expression.id)
        return value is not None and expression.id not in seen and _static(value, constants, seen | {expression.id})
    if isinstance(expression, ast.Subscript) and isinstance(expression.value, ast.Name):
        table = constants.get(expression.value.id)
        return isinstance(table, ast.Dict) and all(v is not None and _static(v, constants, seen) for v in table.values)
    return False


def _built_at_run_time(expression: ast.AST, constants: dict[str, ast.AST] | None = None) -> bool:
    return not _static(expression, constants or {})


SOURCES = sorted(SERVICES.rglob("*.py"))
FROM_FILES = {("db.py", "sql"): "the migrations: SQL files shipped in the package, run as they are"}
"""SQL that is not in the code, by (module, expression), with why it is safe."""


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(SERVICES)))
def test_sql_is_never_built_from_values(source: Path) -> None:
    tree = ast.parse(source.read_text(), filename=str(source))
    constants = _constants(tree)
    text, module = source.read_text(), str(source.relative_to(SERVICES))
    offenders = []
    for query in _queries(tree):
        segment = ast.get_source_segment(text, query)
        if _built_at_run_time(query, constants) and (module, segment) not in FROM_FILES:
            offenders.append(segment)
    assert offenders == [], f"SQL built at run time in {source}: {offenders}"


@pytest.mark.parametrize(
    "built",
    [
        'f"DELETE FROM t WHERE id = {x}"',
        '"DELETE FROM t WHERE id = {}".format(x)',
        '"DELETE FROM t WHERE id = %s" % x',
        '"DELETE FROM t WHERE " + x + " = 1"',
        '"SELECT 1 FROM t WHERE " + COLUMN',  # COLUMN is bound to a value, not to text
        "query",  # built in the function
        "QUERIES[x]",  # a dict of built text
    ],
)
def test_the_check_finds_sql_built_at_run_time(built: str) -> None:
    module = (
        'COLUMN = choose()\nQUERIES = {"a": "SELECT " + COLUMN}\n'
        f'async def f(conn, x):\n    query = "SELECT " + x\n    await conn.execute({built})\n'
    )
    tree = ast.parse(module)
    [query] = list(_queries(tree))
    assert _built_at_run_time(query, _constants(tree))


def test_fixed_text_passes_however_it_is_put_together() -> None:
    module = (
        'PART = "SELECT a, b"\nQUERIES = {"a": PART + " FROM t WHERE a = $1", "b": "SELECT 1"}\n'
        'async def f(conn, x):\n    await conn.execute(PART + " FROM t" " WHERE b = $1", x)\n'
        '    await conn.fetch(QUERIES["a"], x)\n'
    )
    tree = ast.parse(module)
    assert [_built_at_run_time(q, _constants(tree)) for q in _queries(tree)] == [False, False]


def test_the_check_reads_the_services() -> None:
    assert len(SOURCES) > 10 and sum(len(list(_queries(ast.parse(p.read_text())))) for p in SOURCES) > 20
