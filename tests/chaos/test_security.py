"""Security basics: every feature-gates function pins its search_path and runs as
its caller, nothing runs with its owner's rights for PUBLIC, and no SQL in the
package or the example is built by formatting values into a string."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import psycopg
import pytest
from chaos_support import SENTINEL_SETTINGS

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
    url = feature_gates_databases.create(SENTINEL_SETTINGS)
    found = functions(url, "public")
    assert any("waypoint_count" in name for name in found)  # sentinel, the example's own
    assert any("consume_feature_usage" in name for name in found)  # core
    assert any("feature_gates_count_destinations" in name for name in found)  # counters
    assert {name for name, (_, pinned, _) in found.items() if not pinned} == set()
    # No function runs with its owner's rights, so none is open to PUBLIC as one.
    assert {name for name, (definer, _, _) in found.items() if definer} == set()
    assert {name for name, (d, _, public) in found.items() if d and public} == set()


# -- SQL built from values ---------------------------------------------------------------
#
# The check reads the source. Wherever text that looks like SQL is combined with
# something that is not a constant (``%``, ``%=``, ``.format``, ``.format_map``,
# ``.replace``, an f-string, ``+``, ``+=``, ``str.join``), or a value is handed to
# ``sql.SQL`` (which uses its text as is), it reports the line. Values go to the
# database as parameters (``%s``); names go in as ``sql.Identifier``, and
# ``sql.SQL(...).format()`` quotes whatever it is given.

_NAME = r"[\w.\"]+"
_VALUE = r"[^\s,;]+"

#: What SQL looks like, whatever its case. A keyword alone is not enough, since
#: messages say "select", "set", "update" and "from" too: each shape is a keyword
#: with the structure SQL gives it.
SQL_SHAPES = re.compile(
    "|".join(
        [
            rf"\bselect\s+(?:distinct\s+)?(?:\*|\d+\b|{_NAME}\s*(?:\(|,|\bfrom\b|\bas\b))",
            r"\binsert\s+into\b",
            rf"\bupdate\s+(?:only\s+)?{_NAME}\s+(?:\w+\s+)?set\b",
            r"\bdelete\s+from\b",
            r"\bmerge\s+into\b",
            # A SET command (or an UPDATE's SET clause) as a line of its own, so
            # that "set X to one of a, b" or "(or set X = 'off')" in a message is not one.
            rf"^\s*set\s+(?:local\s+|session\s+)?{_NAME}\s*(?:=|\bto\b)\s*"
            rf"{_VALUE}(?:\s*,\s*{_VALUE})*\s*(?:;|$)",
            r"\b(?:create|alter|drop)\s+(?:or\s+replace\s+|unique\s+|temp(?:orary)?\s+)*"
            r"(?:table|index|schema|database|function|procedure|view|materialized\s+view"
            r"|trigger|role|user|sequence|type|domain|extension|policy)\b",
            rf"\btruncate\s+table\b|^\s*truncate\s+{_NAME}\s*(?:;|$)",
            r"\b(?:grant|revoke)\s+(?:all|select|insert|update|delete|truncate|references"
            r"|trigger|execute|usage|create|connect|temporary)\b",
            rf"\bwhere\s+{_NAME}\s*(?:=|<>|!=|<|>|\bin\s*\(|\blike\b|\bilike\b|\bbetween\b"
            r"|\bis\s+(?:not\s+)?(?:null|true|false|distinct)\b)",
            r"\bvalues\s*\(",
            rf"\b(?:order|group)\s+by\s+{_NAME}",
            rf"\bjoin\s+{_NAME}\s+(?:\w+\s+)?(?:on|using)\b",
            r"\bon\s+conflict\b",
            r"^\s*with\s+(?:recursive\s+)?\w+\s*(?:\([^)]*\)\s*)?as\s*(?:not\s+)?"
            r"(?:materialized\s+)?\(",
            rf"^\s*(?:do\s+\$|call\s+{_NAME}\s*\(|lock\s+table\b"
            rf"|lock\s+{_NAME}\s+in\s+[\w\s]+\smode\b)",
            rf"\bcopy\s+{_NAME}(?:\s*\([^)]*\))?\s+(?:from|to)\s+(?:stdin|stdout|')",
        ]
    ),
    re.IGNORECASE | re.MULTILINE,
)

#: What stands for a value in the text of an expression.
_HOLE = "value"

#: str methods whose result is text of their receiver's kind.
_STR_METHODS = {
    "strip", "lstrip", "rstrip", "lower", "upper", "casefold", "replace",
    "removeprefix", "removesuffix", "format", "format_map", "expandtabs",
}  # fmt: skip


def looks_like_sql(text: str | None) -> bool:
    return text is not None and bool(SQL_SHAPES.search(text))


@dataclass
class Assigned:
    """What a module assigns to names. Scopes are not told apart (a local ``q``
    and another function's ``q`` are one name): a name is SQL if any of its
    assignments is, and constant only if all of them are, so the merge can
    report more than is there but never less."""

    #: ``NAME = ...`` and ``NAME += ...`` in any scope.
    names: dict[str, list[ast.expr]] = field(default_factory=dict)
    #: ``obj.NAME = ...``, class bodies, and module constants (read as ``module.NAME``).
    attrs: dict[str, list[ast.expr]] = field(default_factory=dict)
    #: The items a list name was given: ``NAME = [...]``, ``.append``, ``.extend``.
    items: dict[str, list[ast.expr]] = field(default_factory=dict)


def assignments(tree: ast.Module) -> Assigned:
    found = Assigned()
    # Statements whose names are also read as attributes: the module's own
    # (``store.QUERY``) and class bodies' (``self.QUERY``).
    top = {id(node) for node in tree.body}
    top |= {
        id(stmt) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for stmt in node.body
    }

    def add(target: ast.expr, value: ast.expr, where: ast.stmt) -> None:
        if isinstance(target, ast.Name):
            found.names.setdefault(target.id, []).append(value)
            if id(where) in top:
                found.attrs.setdefault(target.id, []).append(value)
            if isinstance(value, (ast.List, ast.Tuple)):
                found.items.setdefault(target.id, []).extend(value.elts)
        elif isinstance(target, ast.Attribute):
            found.attrs.setdefault(target.attr, []).append(value)
        elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            if len(target.elts) == len(value.elts):
                for t, v in zip(target.elts, value.elts, strict=True):
                    add(t, v, where)

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add(target, node.value, node)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            add(node.target, node.value, node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.args
        ):
            name, method = node.func.value.id, node.func.attr
            if method in ("append", "insert"):
                found.items.setdefault(name, []).append(node.args[-1])
            elif method == "extend" and isinstance(node.args[0], (ast.List, ast.Tuple)):
                found.items.setdefault(name, []).extend(node.args[0].elts)
    return found


def shared_assignments(trees: Iterable[ast.Module]) -> Assigned:
    """What other modules can hand a module: their constants and class attributes."""
    shared = Assigned()
    for tree in trees:
        for name, values in assignments(tree).attrs.items():
            shared.names.setdefault(name, []).extend(values)
            shared.attrs.setdefault(name, []).extend(values)
    return shared


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _arguments(call: ast.Call) -> list[ast.expr]:
    return [*call.args, *(k.value for k in call.keywords)]


class Reader:
    """The text an expression evaluates to, with :data:`_HOLE` for each value,
    and whether it is a constant, as far as the source tells."""

    def __init__(self, local: Assigned, shared: Assigned) -> None:
        self.local = local
        self.shared = shared

    def assigned(self, node: ast.expr) -> list[ast.expr] | None:
        if isinstance(node, ast.Name):
            tables, name = (self.local.names, self.shared.names), node.id
        elif isinstance(node, ast.Attribute):
            tables, name = (self.local.attrs, self.shared.attrs), node.attr
        else:
            return None
        return next((table[name] for table in tables if name in table), None)

    def text(self, node: ast.expr, seen: frozenset[int] = frozenset()) -> str | None:
        if id(node) in seen:
            return None
        seen |= {id(node)}
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bytes):  # psycopg takes bytes queries too
                return node.value.decode("latin-1")
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else _HOLE for v in node.values)
        if isinstance(node, (ast.Name, ast.Attribute, ast.IfExp)):
            values = (
                [node.body, node.orelse] if isinstance(node, ast.IfExp) else self.assigned(node)
            )
            texts = [t for v in values or () if (t := self.text(v, seen)) is not None]
            return next((t for t in texts if looks_like_sql(t)), texts[0] if texts else None)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.text(node.left, seen), self.text(node.right, seen)
            if left is None and right is None:
                return None
            return (left or _HOLE) + (right or _HOLE)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return self.text(node.left, seen)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS:
                return self.text(func.value, seen)
            if isinstance(func, ast.Attribute) and func.attr == "join" and node.args:
                separator = self.text(func.value, seen)
                pieces = self.pieces(node.args[0])
                if separator is None or pieces is None:
                    return None
                return separator.join(self.text(p, seen) or _HOLE for p in pieces)
            if _called(func) == "dedent" and node.args:
                return self.text(node.args[0], seen)
        return None

    def constant(self, node: ast.expr, seen: frozenset[int] = frozenset()) -> bool:
        if id(node) in seen:
            return False
        seen |= {id(node)}
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.JoinedStr):
            return all(self.constant(v, seen) for v in node.values)
        if isinstance(node, ast.FormattedValue):
            return self.constant(node.value, seen)
        if isinstance(node, (ast.Name, ast.Attribute)):
            values = self.assigned(node)
            return values is not None and all(self.constant(v, seen) for v in values)
        if isinstance(node, ast.BinOp):
            return self.constant(node.left, seen) and self.constant(node.right, seen)
        if isinstance(node, ast.UnaryOp):
            return self.constant(node.operand, seen)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return all(self.constant(e, seen) for e in node.elts)
        if isinstance(node, ast.Dict):
            return all(self.constant(e, seen) for e in [*node.keys, *node.values] if e)
        if isinstance(node, ast.Call):
            # A str method of a constant with constant arguments, or dedent of one.
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in (*_STR_METHODS, "join"):
                parts = [func.value, *_arguments(node)]
            elif _called(func) == "dedent":
                parts = _arguments(node)
            else:
                return False
            return all(self.constant(p, seen) for p in parts)
        return False

    def pieces(self, node: ast.expr) -> list[ast.expr] | None:
        """What ``str.join`` joins: a literal's items, a comprehension's item, or
        the items a list name was given."""
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return list(node.elts)
        if isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp)):
            return [node.elt]
        if isinstance(node, ast.Name):
            return self.local.items.get(node.id)
        return None

    def formats_sql(self, node: ast.AST) -> bool:
        """Whether ``node`` puts a value into text that looks like SQL."""

        def sql(expr: ast.expr) -> bool:
            return looks_like_sql(self.text(expr))

        def values(*exprs: ast.expr) -> bool:
            return not all(self.constant(e) for e in exprs)

        if isinstance(node, ast.JoinedStr):
            return sql(node) and values(node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return sql(node.left) and values(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return sql(node) and values(node)
        if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Mod)):
            return (sql(node.target) or sql(node.value)) and values(node.value)
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        if _called(func) == "SQL":
            # sql.SQL takes its text as is: it must be a constant.
            return values(*_arguments(node))
        if not isinstance(func, ast.Attribute):
            return False
        if func.attr in ("format", "format_map", "replace"):
            return sql(func.value) and values(*_arguments(node))
        if func.attr == "join" and node.args and self.text(func.value) is not None:
            pieces = self.pieces(node.args[0])
            return pieces is not None and sql(node) and values(*pieces)
        return False


def formatted_sql(source: str, shared: Assigned | None = None) -> list[int]:
    """Lines of ``source`` where a value is put into text that looks like SQL.

    ``shared`` is what other modules assign (``store.QUERY``, imported names).
    """
    tree = ast.parse(source)
    read = Reader(assignments(tree), shared or Assigned())
    return sorted(
        {
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, (ast.expr, ast.stmt)) and read.formats_sql(node)
        }
    )


#: Each line ends with "# formatted" where the checker must report it.
FORMATTED = {
    "f-string": 'conn.execute(f"SELECT * FROM t WHERE id = {user_id}")  # formatted',
    "lower-case f-string": 'conn.execute(f"select * from t where id = {uid}")  # formatted',
    "f-string SET": 'conn.execute(f"SET statement_timeout = {ms}")  # formatted',
    "f-string set to": 'conn.execute(f"set lock_timeout to {ms}")  # formatted',
    "f-string name": 'conn.execute(f"CREATE DATABASE {name}")  # formatted',
    "f-string GRANT": 'conn.execute(f"GRANT EXECUTE ON FUNCTION f() TO {role}")  # formatted',
    "f-string LOCK": 'conn.execute(f"LOCK {table} IN SHARE MODE")  # formatted',
    "f-string over lines": """
conn.execute(
    f"UPDATE t SET a = {a} "  # formatted
    "WHERE id = 1"
)""",
    "% on text": 'conn.execute("DELETE FROM t WHERE id = %s" % uid)  # formatted',
    "% on lower-case text": 'conn.execute("insert into t (a) values (%s)" % a)  # formatted',
    "% on bytes": 'conn.execute(b"SELECT * FROM t WHERE id = %d" % uid)  # formatted',
    "% on a module constant": """
Q = "SELECT * FROM t WHERE id = %s"
conn.execute(Q % (user_id,))  # formatted""",
    "% on a local": """
def delete(conn, uid):
    q = "DELETE FROM t WHERE id = %s"
    conn.execute(q % uid)  # formatted""",
    "% on a dedented local": """
def delete(conn, uid):
    q = textwrap.dedent('''
        DELETE FROM t
        WHERE id = %s
    ''')
    conn.execute(q % uid)  # formatted""",
    "%=": """
def delete(conn, uid):
    q = "DELETE FROM t WHERE id = %s"
    q %= uid  # formatted
    conn.execute(q)""",
    "% on a class attribute": """
class Store:
    Q = "SELECT * FROM t WHERE id = %s"

    def get(self, uid):
        return self.conn.execute(self.Q % uid)  # formatted""",
    "% on an instance attribute": """
class Store:
    def __init__(self, table):
        self.q = "SELECT * FROM t WHERE id = %s"

    def get(self, uid):
        return self.conn.execute(self.q % uid)  # formatted""",
    ".format": 'conn.execute("UPDATE t SET a = {}".format(a))  # formatted',
    ".format of a constant": """
Q = "select * from t where id = {}"
conn.execute(Q.format(uid))  # formatted""",
    ".format_map": 'conn.execute("UPDATE t SET a = {a}".format_map(d))  # formatted',
    ".replace": """
Q = "SELECT * FROM :table WHERE id = 1"
conn.execute(Q.replace(":table", table))  # formatted""",
    "+": """conn.execute("SELECT * FROM t WHERE name = '" + name + "'")  # formatted""",
    "+ of a fragment": 'where = " WHERE id = " + str(uid)  # formatted',
    "+ on a constant": """
Q = "SELECT * FROM t WHERE id = "
conn.execute(Q + str(uid))  # formatted""",
    "+= on a local": """
def get(conn, uid):
    q = "SELECT * FROM t WHERE id = "
    q += str(uid)  # formatted
    return conn.execute(q)""",
    "+= built up": """
def get(conn, uid):
    q = ""
    q += "DELETE FROM t WHERE id = "
    q += uid  # formatted
    return conn.execute(q)""",
    "join of a literal": """
conn.execute(" ".join(["SELECT * FROM t WHERE id =", str(uid)]))  # formatted""",
    "join of a list": """
parts = ["DELETE FROM t", "WHERE id ="]
parts.append(str(uid))
conn.execute(" ".join(parts))  # formatted""",
    "join of a comprehension": """
conn.execute("; ".join("DROP TABLE " + t for t in tables))  # formatted""",
    "sql.SQL of a value": "conn.execute(sql.SQL(query))  # formatted",
    "sql.SQL of an f-string": 'conn.execute(sql.SQL(f"DROP TABLE {name}"))  # formatted',
    "SQL of a value": "conn.execute(SQL(text).format(Identifier(name)))  # formatted",
}

#: Not one line here may be reported.
NOT_FORMATTED = {
    "parameters": 'conn.execute("SELECT * FROM t WHERE id = %s", (user_id,))',
    "named parameters": """
conn.execute("UPDATE t SET a = %(a)s WHERE id = %(id)s", {"a": a, "id": uid})""",
    "constants": """
BASE = "SELECT * FROM t"
LIMIT = 10
Q = BASE + " WHERE id = %s"
R = Q.strip() + ";\\n"
S = f"{BASE} LIMIT {LIMIT}"
T = "\\n".join([BASE, Q])
conn.execute(Q, (uid,))""",
    "psycopg.sql": """
Q = sql.SQL("DROP DATABASE {}")
conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
conn.execute(Q.format(sql.Identifier(name)))
conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(ms)))
conn.execute(sql.SQL(", ").join(sql.Identifier(c) for c in columns))
Q_TEXT = "SELECT * FROM t WHERE a = {}"
conn.execute(sql.SQL(Q_TEXT).format(value))""",
    "psycopg.sql imported": """
from psycopg.sql import SQL, Identifier
conn.execute(SQL("SELECT * FROM {} WHERE id = %s").format(Identifier(table)), (uid,))""",
    "messages": """
raise ValueError(f"select a plan from {plans}")
raise ValueError(f"cannot update {name}: the set of plans is fixed")
raise ValueError(f"FEATURE_GATES_DATABASE_URL is not set: set it to {hint}")
raise ValueError(f"set FEATURE_GATES_USER_ID_TYPE to one of {', '.join(types)}")
raise ValueError(f"{name} is not set (or set FEATURE_GATES_TRACKING = {off!r})")
raise ValueError("could not delete %s from the list" % name)
raise ValueError(f"{field} must be an integer from 1 to {top}")
raise ValueError("updated " + name + " in the set of " + plan)
raise ValueError(f"{name}: where {value} is missing, run migrate")
raise LookupError(f"thread {thread_id} does not exist")
raise TimeoutError(f"lock timeout after {ms} ms")""",
    "logging": """
log.info("select took %s ms", ms)
log.debug("%s: %s", QUERY, ms)
message = "%s rows" % n""",
    "bytes that are not SQL": 'out += b"%d 0 obj\\n%s\\nendobj\\n" % (number, body)',
}


@pytest.mark.parametrize("source", FORMATTED.values(), ids=FORMATTED.keys())
def test_the_checker_finds_each_way_of_formatting_sql(source):
    marked = [n for n, line in enumerate(source.splitlines(), 1) if line.endswith("# formatted")]
    assert formatted_sql(source) == marked


@pytest.mark.parametrize("source", NOT_FORMATTED.values(), ids=NOT_FORMATTED.keys())
def test_the_checker_leaves_parameters_composition_and_messages_alone(source):
    assert formatted_sql(source) == []


def test_the_checker_reads_queries_of_other_modules():
    shared = shared_assignments([ast.parse('Q = "DELETE FROM t WHERE id = %s"')])
    assert formatted_sql("conn.execute(store.Q % uid)", shared) == [1]
    assert formatted_sql("from .store import Q\nconn.execute(Q % uid)", shared) == [2]
    assert formatted_sql("conn.execute(store.Q, (uid,))", shared) == []


#: ``migrate --sql`` (feature_gates/migrate/script.py) writes a psql script for a
#: DBA to read and run: the text of the migration files, verbatim, between
#: statements composed with psycopg.sql (values as sql.Literal, names as
#: sql.Identifier). What it concatenates is the package's and the application's
#: .sql files, whose names are checked, not values; its other pieces are "--"
#: comments of set names and file labels, which are checked to be [a-z0-9_].
#: ``counter add`` (feature_gates/migrate/generate.py) writes migration files for
#: people to read and apply: the package's templates (counter_sql/*.sql), filled
#: with names (bare only when they match [a-z_][a-z0-9_$]* and are no keyword of
#: the server, else sql.Identifier), values as sql.Literal, named arguments of
#: the package's own function, comment lines with no line break left in them,
#: and the application's own --where predicate, which PostgreSQL has planned as a
#: condition on the child's rows before a file is written.
#: The lines are allowed by their text so that any other line there is still
#: checked, and one that changes is looked at again.
ALLOWED = {
    "feature_gates/migrate/generate.py": {
        "sql.SQL(up).format(**values).as_string(conn),",
        "sql.SQL(down).format(**values).as_string(conn),",
        '"predicate_and": sql.SQL(f" AND ({predicate})" if predicate else ""),',
        'sql.SQL("    {} => {}").format(sql.SQL(name), value)',
        "return sql.SQL(name)",
        'return sql.SQL(" ".join(text.split()))',
    },
    "feature_gates/migrate/script.py": {
        "return text(store.SCRIPT_BATCHED.format(statement=sql.SQL(step.sql)))",
        "out += text(store.SCRIPT_DROP_INVALID_INDEX.format(index=sql.Literal(step.index_name)))",
        "out += _statement(step.sql)",
        "return out + text(store.SCRIPT_SET_LOCK_TIMEOUT.format(lock_timeout=lock_timeout))",
        'return "".join(parts)',
    },
}


def test_no_sql_is_built_by_formatting_values_in_the_package_or_the_example():
    files = sorted([*ROOT.joinpath("feature_gates").rglob("*.py"),
                    *ROOT.joinpath("examples").rglob("*.py")])  # fmt: skip
    sources = {str(path.relative_to(ROOT)): path.read_text() for path in files}
    # Queries are module constants, often used from other modules (store.QUERY).
    shared = shared_assignments(ast.parse(source) for source in sources.values())
    found = {
        name: {source.splitlines()[n - 1].strip() for n in lines}
        for name, source in sources.items()
        if (lines := formatted_sql(source, shared))
    }
    assert len(files) > 30
    assert {name: lines - ALLOWED.get(name, set()) for name, lines in found.items()} == {
        name: set() for name in found
    }
    # An allowance for a line that is gone is one to take out.
    assert {name: lines - found.get(name, set()) for name, lines in ALLOWED.items()} == {
        name: set() for name in ALLOWED
    }
