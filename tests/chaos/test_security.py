"""Security basics: every feature-gates function pins its search_path and runs as
its caller, nothing runs with its owner's rights for PUBLIC, and no SQL in the
package or the example is built by formatting values into a string."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import psycopg
import pytest
from chaos_support import SENTINEL_SETTINGS

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import MigrationSettings

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]

FUNCTIONS = """
SELECT p.oid::regprocedure::text, p.prosecdef,
       EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\\_path=%%'),
       has_function_privilege('public', p.oid, 'EXECUTE')
FROM pg_proc p
WHERE p.pronamespace = %s::regnamespace
"""


def functions(url: str, schema: str) -> dict[str, tuple[bool, bool, bool]]:
    """(definer, pins search_path, PUBLIC may execute) of each function of ``schema``."""
    with psycopg.connect(url) as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(FUNCTIONS, (schema,))}


def test_functions_in_a_schema_of_their_own_pin_search_path_and_run_as_the_caller(
    feature_gates_databases,
):
    url = feature_gates_databases.create(MigrationSettings(schema="feature_gates"))
    found = functions(url, "feature_gates")
    assert len(found) >= 12
    assert {name for name, (definer, _, _) in found.items() if definer} == set()
    assert {name for name, (_, pinned, _) in found.items() if not pinned} == set()


def test_every_function_the_migrations_add_pins_search_path_and_none_is_definer(
    feature_gates_databases,
):
    base = feature_gates_databases.create(
        MigrationSettings(sets=("sentinel",), folders={"sentinel": MIGRATION_FOLDER})
    )
    full = feature_gates_databases.create(SENTINEL_SETTINGS)
    # The application's own functions (waypoint_count) are its business.
    ours = {
        k: v for k, v in functions(full, "public").items() if k not in functions(base, "public")
    }
    assert any("consume_feature_usage" in name for name in ours)
    assert any("feature_gates_count_destinations" in name for name in ours)  # counters
    assert {name for name, (_, pinned, _) in ours.items() if not pinned} == set()
    # No function runs with its owner's rights, so none is open to PUBLIC as one.
    definers = {name for name, (definer, _, _) in functions(full, "public").items() if definer}
    assert definers == set()
    assert {name for name, (d, _, public) in ours.items() if d and public} == set()


# -- SQL built from values ---------------------------------------------------------------

SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE|GRANT|REVOKE|VALUES|WHERE)\b"
)


def _sql_text(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and bool(SQL_WORDS.search(node.value))
    )


def module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level NAME = value assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                found[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found[node.target.id] = node.value
    return found


def formatted_sql(source: str, constants: dict[str, ast.expr] | None = None) -> list[int]:
    """Lines where SQL text is built by formatting values into a string: an
    f-string, ``%``, ``.format()`` or ``+`` on text with SQL in it. psycopg.sql
    composition (``sql.SQL("...").format(sql.Identifier(...))``) is fine."""
    tree = ast.parse(source)
    constants = {**(constants or {}), **module_constants(tree)}

    def sql_string(node: ast.AST) -> bool:
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = node.id if isinstance(node, ast.Name) else node.attr
            node = constants.get(name, node)
        return _sql_text(node)

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            if SQL_WORDS.search(text) and any(
                isinstance(v, ast.FormattedValue) for v in node.values
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            if sql_string(node.left):
                lines.append(node.lineno)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            sides = (node.left, node.right)
            if any(sql_string(s) for s in sides) and not all(
                isinstance(s, ast.Constant) for s in sides
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "format" and sql_string(node.func.value):
                lines.append(node.lineno)
    return sorted(set(lines))


def test_the_checker_finds_each_way_of_formatting_sql():
    bad = """
Q = "SELECT * FROM t WHERE id = %s"
conn.execute(f"SELECT * FROM t WHERE id = {user_id}")
conn.execute("DELETE FROM t WHERE id = %s" % user_id)
conn.execute("UPDATE t SET a = {}".format(a))
conn.execute(Q % (user_id,))
conn.execute("SELECT * FROM t WHERE name = '" + name + "'")
"""
    assert formatted_sql(bad) == [3, 4, 5, 6, 7]
    good = """
Q = sql.SQL("DROP DATABASE {}")
conn.execute("SELECT * FROM t WHERE id = %s", (user_id,))
conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
conn.execute(Q.format(sql.Identifier(name)))
message = f"the table {name} is missing"
log.info("%s rows", n)
"""
    assert formatted_sql(good) == []


def test_no_sql_is_built_by_formatting_values_in_the_package_or_the_example():
    files = sorted([*ROOT.joinpath("feature_gates").rglob("*.py"),
                    *ROOT.joinpath("examples").rglob("*.py")])  # fmt: skip
    trees = {path: ast.parse(path.read_text()) for path in files}
    # Queries are module constants, used from other modules (store.QUERY).
    constants: dict[str, ast.expr] = {}
    for tree in trees.values():
        constants.update(module_constants(tree))
    found = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if (lines := formatted_sql(path.read_text(), constants))
    }
    assert len(files) > 30
    assert found == {}
