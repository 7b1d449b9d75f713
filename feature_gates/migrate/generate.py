"""``counter add``: a migration set that adds a counter column to an application's tables.

A counter is an integer column of a parent table that holds, for each of its
rows, either how many rows of a child table point at it (``--rows``, optionally
only those a predicate accepts: ``--where``), or the length of a JSON array in
one of its own jsonb columns (``--jsonb-length``). :func:`add_counter` reads the
tables it names in the database, refuses, before it writes anything, a table or
column that is not there, and writes plain ``.up.sql`` / ``.down.sql`` files
into the application's migration folder, numbered after the versions the folder
holds: the column and the triggers that keep it exact, the backfill and its
audit, and the index if one is asked for. They run through the functions of
``core/0009`` (the counter registry), so ``verify`` and ``repair-counters`` know
the counter as soon as its set is applied.

The files are rendered from the templates in ``counter_sql/``; every name in
them is quoted by PostgreSQL (``quote_ident``), every value is a literal.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from . import store
from .session import Connection
from .session import Session
from .settings import MigrationSettings
from .sources import MigrationError

__all__ = ["CounterDefinition", "CounterSet", "add_counter"]

#: PostgreSQL's longest identifier.
MAX_NAME = 63
#: The prefix of the functions and triggers a counter set installs.
PREFIX = "feature_gates_count_"
#: The rows read to tell whether any holds an array at a JSON path.
JSON_SAMPLE_ROWS = 10_000
_FILE = re.compile(r"^(?P<version>\d+)_[a-z0-9_]+\.(?:up|down|check|verify)\.sql$")
_INDEX_COLUMNS = re.compile(r"^\(\s*(?P<columns>[^()]+?)\s*\)$")
#: What a predicate may not hold: it is written into function bodies and
#: parentheses, where a comment, a second statement or a dollar quote would
#: end them early.
_UNSAFE_PREDICATE = re.compile(r"--|/\*|;|\$")
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")
_ARRAY = sql.SQL("ARRAY[{}]")
_SHORT = sql.SQL(", ")
_LONG = sql.SQL(",\n        ")


@dataclass(frozen=True)
class CounterDefinition:
    """What ``feature-gates counter add`` is told.

    :param target: ``TABLE.COLUMN`` (``TABLE`` may be ``schema.table``): the
        counter column, added if the table does not have it.
    :param rows: ``CHILD_TABLE.FK_COLUMN``: count the child's rows whose
        column holds the parent row's key.
    :param where: a predicate on the child's row (``deleted_at IS NULL``): count
        only the rows it accepts.
    :param jsonb_length: ``JSONB_COLUMN.KEY[.KEY...]``: the length of the JSON
        array at that path in the parent's own jsonb column (0 for anything
        that is not an array).
    :param index: ``(user_id, COLUMN)``: the columns of an index built
        concurrently for the counter; None: no index.
    :param index_name: the index's name; ``idx_<table>_<column>`` by default.
    """

    target: str
    rows: str | None = None
    where: str | None = None
    jsonb_length: str | None = None
    index: str | None = None
    index_name: str | None = None


@dataclass(frozen=True)
class CounterSet:
    """What :func:`add_counter` wrote: the counter's name, the files, and what
    the user should know (a missing index on the child, a JSON key no row has)."""

    counter: str
    files: list[Path]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Table:
    """A table as the database has it, and as the definition named it."""

    oid: int
    #: The schema the definition named, or None (found on the search path).
    schema: str | None
    name: str
    columns: Mapping[str, tuple[str, bool]]  # name -> (type, allows NULL)
    primary_key: tuple[str, ...]

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def add_counter(
    conninfo: str,
    definition: CounterDefinition,
    out: str | Path,
    settings: MigrationSettings | None = None,
) -> CounterSet:
    """Write the migration set of the counter ``definition`` into the folder ``out``.

    The database at ``conninfo`` is read, never changed: its tables must be
    those the set will run on. Raises :class:`MigrationError` naming what is
    wrong (a table or column that does not exist, a column of the wrong type, a
    predicate that reads more than the child's row) before any file is written.
    """
    settings = settings or MigrationSettings()
    folder = Path(out)
    kind = _kind(definition)
    with Session(conninfo, settings) as session:
        plan = _Plan.read(session, definition, kind)
        rendered = plan.render(session.conn, _command(definition, out))
    version = _next_version(folder)
    slug = plan.slug[: MAX_NAME - 20]
    existing = [p.name for p in folder.glob(f"*_{slug}_counter.up.sql")] if folder.is_dir() else []
    if existing:
        raise MigrationError(
            f"{folder} already has the counter {plan.counter} ({existing[0]}); remove its files "
            "to write it again, or roll it back first if it was applied"
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for offset, (name, up, down) in enumerate(rendered):
        stem = f"{version + offset:0{_width(folder)}d}_{slug}_{name}"
        for direction, text in (("up", up), ("down", down)):
            path = folder / f"{stem}.{direction}.sql"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return CounterSet(plan.counter, written, plan.warnings)


def _kind(definition: CounterDefinition) -> Literal["rows", "jsonb_length"]:
    if (definition.rows is None) == (definition.jsonb_length is None):
        raise MigrationError(
            "a counter counts either rows (--rows CHILD_TABLE.FK_COLUMN) or the length of a "
            "JSON array (--jsonb-length JSONB_COLUMN.KEY): give one of them"
        )
    if definition.where is not None and definition.rows is None:
        raise MigrationError("--where filters the rows of --rows; a JSON array has none to filter")
    return "rows" if definition.rows is not None else "jsonb_length"


def _command(definition: CounterDefinition, out: str | Path) -> str:
    words = ["feature-gates", "counter", "add", definition.target]
    for option, value in (
        ("--rows", definition.rows),
        ("--where", definition.where),
        ("--jsonb-length", definition.jsonb_length),
        ("--index", definition.index),
        ("--index-name", definition.index_name),
        ("--out", str(out)),
    ):
        if value is not None:
            words += [option, value]
    return " ".join(shlex.quote(word) for word in words)


def _versions(folder: Path) -> list[str]:
    """The versions of the migration files in ``folder``, as written."""
    if not folder.is_dir():
        return []
    return [m["version"] for m in (_FILE.match(p.name) for p in folder.iterdir()) if m]


def _next_version(folder: Path) -> int:
    return max((int(v) for v in _versions(folder)), default=0) + 1


def _width(folder: Path) -> int:
    """Digits of the folder's versions (4 unless it already writes more)."""
    return max([4, *(len(v) for v in _versions(folder))])


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", "_".join(parts).lower()).strip("_") or "counter"


def _fit(base: str, room: int) -> str:
    """``base`` cut to ``room`` characters, with a digest of the whole where cut."""
    if len(base) <= room:
        return base
    digest = hashlib.sha1(base.encode()).hexdigest()[:8]
    return f"{base[: room - 9]}_{digest}"


# -- reading the database ------------------------------------------------------------------


def _names(session: Session, text: str, what: str) -> list[str]:
    try:
        rows = session.query(store.NAME_PARTS, (text,))
    except psycopg.errors.InvalidParameterValue as exc:
        raise MigrationError(
            f"{what} {text!r} is not a valid name ({exc.diag.message_primary})"
        ) from None
    parts = rows[0][0]
    assert isinstance(parts, list)
    return [str(p) for p in parts]


def _split(session: Session, text: str, what: str, example: str) -> tuple[list[str], str]:
    """``[schema.]table.column`` -> (table's name parts, column)."""
    parts = _names(session, text, what)
    if not 2 <= len(parts) <= 3:
        raise MigrationError(f"{what} {text!r} is not {example}")
    return parts[:-1], parts[-1]


def _table(session: Session, parts: list[str], what: str) -> _Table:
    shown = ".".join(parts)
    rows = session.query(store.RELATION, (parts,))
    if not rows:
        raise MigrationError(
            f"{what}: the table {shown} does not exist in this database (the runner's search "
            f"path: the schema {session.settings.schema!r}, then public); create it first, or "
            "name it as schema.table"
        )
    oid, _schema, name, relkind = rows[0]
    if relkind != "r":
        kind = {"v": "a view", "m": "a materialized view", "p": "a partitioned table"}
        raise MigrationError(
            f"{what}: {shown} is {kind.get(str(relkind), 'not a table')}; a counter lives on a "
            "plain table and counts the rows of a plain table"
        )
    assert isinstance(oid, int)
    columns = {str(n): (str(t), bool(null)) for n, t, null in session.query(store.COLUMNS, (oid,))}
    key = tuple(str(r[0]) for r in session.query(store.PRIMARY_KEY, (oid,)))
    return _Table(oid, parts[0] if len(parts) == 2 else None, str(name), columns, key)


def _column(table: _Table, column: str, what: str) -> tuple[str, bool]:
    if column not in table.columns:
        raise MigrationError(f"{what}: {table.shown} has no column {column}")
    return table.columns[column]


def _key(table: _Table, what: str) -> str:
    if len(table.primary_key) != 1:
        has = "a composite primary key" if table.primary_key else "no primary key"
        raise MigrationError(
            f"{what}: {table.shown} has {has}; the backfill walks a table by a one-column "
            "primary key"
        )
    return table.primary_key[0]


def _index_columns(text: str, table: _Table, column: str) -> list[str]:
    match = _INDEX_COLUMNS.match(text.strip())
    if match is None:
        raise MigrationError(
            f"--index {text!r}: write the columns in parentheses, like (user_id, {column})"
        )
    columns = [c.strip().strip('"') for c in match["columns"].split(",")]
    for name in columns:
        if name != column and name not in table.columns:
            raise MigrationError(f"--index {text!r}: {table.shown} has no column {name}")
    if column not in columns:
        raise MigrationError(f"--index {text!r} does not hold the counter column {column}")
    return columns


@dataclass
class _Plan:
    """Everything the templates need, read from the database and checked."""

    definition: CounterDefinition
    kind: Literal["rows", "jsonb_length"]
    table: _Table
    column: str
    key: str
    child: _Table | None = None
    child_column: str | None = None
    parent_column: str | None = None
    path: list[str] | None = None
    jsonb_column: str | None = None
    index_columns: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def counter(self) -> str:
        return f"{self.table.shown}.{self.column}"

    @property
    def slug(self) -> str:
        return _slug(*(self.table.schema or "",), self.table.name, self.column)

    @classmethod
    def read(
        cls, session: Session, definition: CounterDefinition, kind: Literal["rows", "jsonb_length"]
    ) -> _Plan:
        example = "TABLE.COLUMN (or SCHEMA.TABLE.COLUMN)"
        table_parts, column = _split(session, definition.target, "the counter", example)
        table = _table(session, table_parts, definition.target)
        key = _key(table, definition.target)
        if column in table.columns:
            found_type = table.columns[column][0]
            if found_type != "integer":
                raise MigrationError(
                    f"{table.shown}.{column} exists as {found_type}, not integer; a counter "
                    "adopts an existing column only as an integer: rename it or drop it, or "
                    "choose another column name"
                )
        plan = cls(definition, kind, table, column, key)
        if kind == "rows":
            plan._read_rows(session)
        else:
            plan._read_jsonb(session)
        if definition.index is not None:
            plan.index_columns = _index_columns(definition.index, table, column)
        return plan

    def _read_rows(self, session: Session) -> None:
        assert self.definition.rows is not None
        example = "CHILD_TABLE.FK_COLUMN (or SCHEMA.TABLE.COLUMN)"
        child_parts, child_column = _split(session, self.definition.rows, "--rows", example)
        child = _table(session, child_parts, f"--rows {self.definition.rows}")
        _column(child, child_column, f"--rows {self.definition.rows}")
        if child_column == self.column and child.oid == self.table.oid:
            raise MigrationError("--rows: a counter cannot count its own column")
        referenced = [
            row[0]
            for row in session.query(
                store.REFERENCED_COLUMNS,
                {"column": child_column, "child": child.oid, "parent": self.table.oid},
            )
        ]
        single = [r for r in referenced if isinstance(r, list) and len(r) == 1]
        self.parent_column = str(single[0][0]) if single else self.key
        parent_type = self.table.columns[self.parent_column][0]
        child_type = child.columns[child_column][0]
        if _type_family(parent_type) != _type_family(child_type):
            raise MigrationError(
                f"--rows {self.definition.rows}: {child.shown}.{child_column} is {child_type}, "
                f"but {self.table.shown}.{self.parent_column} is {parent_type}; the child's "
                "column must hold the parent's key"
            )
        self.child, self.child_column = child, child_column
        if self.definition.where is not None:
            self._check_predicate(session, self.definition.where)
        ((indexed,),) = session.query(
            store.LEADING_INDEX, {"column": child_column, "table": child.oid}
        )
        if not indexed:
            self.warnings.append(
                f"no index of {child.shown} leads with {child_column}: the triggers and the "
                f"backfill count by it; build one first (concurrently, on {child.shown} "
                f"({child_column})), or each count reads the whole table"
            )

    def _check_predicate(self, session: Session, predicate: str) -> None:
        assert self.child is not None
        what = f"--where {predicate!r}"
        if _UNSAFE_PREDICATE.search(predicate):
            raise MigrationError(
                f"{what}: write the predicate without comments, semicolons or dollar quotes"
            )
        child = self.child
        names = {
            "child": _relation(child.schema, child.name),
            "alias": sql.Identifier(child.name),
            "predicate": sql.SQL(predicate),  # the application's own SQL, checked here
        }
        try:
            session.query(store.PLAN_PREDICATE.format(**names).as_bytes(session.conn))
            with session.transaction() as conn:
                conn.execute(store.COPY_CHILD.format(**names))
                conn.execute(store.INDEX_PREDICATE.format(**names))
                raise psycopg.Rollback()
        except psycopg.errors.FeatureNotSupported as exc:
            raise MigrationError(
                f"{what} reads more than the row of {child.shown} "
                f"({exc.diag.message_primary}); the triggers count a row from its own "
                "columns only: no subquery, no other table, no now()"
            ) from exc
        except psycopg.errors.InvalidObjectDefinition as exc:
            raise MigrationError(
                f"{what} depends on more than the row of {child.shown} "
                f"({exc.diag.message_primary}); the triggers count a row from its own columns "
                "only: no now(), no random(), no function that is not IMMUTABLE"
            ) from exc
        except psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc)
            raise MigrationError(
                f"{what} is not a predicate on the rows of {child.shown}: {message}"
            ) from exc

    def _read_jsonb(self, session: Session) -> None:
        assert self.definition.jsonb_length is not None
        text = self.definition.jsonb_length
        head, _, rest = text.partition(".")
        keys = rest.split(".") if rest else []
        if not keys or not all(keys):
            raise MigrationError(
                f"--jsonb-length {text!r} is not JSONB_COLUMN.KEY[.KEY...]: name the column, "
                "then the keys down to the array (data.waypoints, body.meta.tags)"
            )
        (jsonb_column,) = _names(session, head, "--jsonb-length")[-1:]
        column_type, _ = _column(self.table, jsonb_column, f"--jsonb-length {text}")
        if column_type != "jsonb":
            raise MigrationError(
                f"--jsonb-length {text}: {self.table.shown}.{jsonb_column} is {column_type}, "
                "not jsonb"
            )
        if jsonb_column == self.column:
            raise MigrationError("--jsonb-length: a counter cannot count its own column")
        self.jsonb_column, self.path = jsonb_column, keys
        query = store.JSON_SAMPLE.format(
            column=sql.Identifier(jsonb_column),
            table=_relation(self.table.schema, self.table.name),
        )
        ((read, arrays),) = session.query(query, (keys, JSON_SAMPLE_ROWS))
        if not arrays:
            where = f"of the first {read} rows" if read else "(the table is empty)"
            self.warnings.append(
                f"no row {where} of {self.table.shown} has an array at "
                f"{jsonb_column}.{'.'.join(keys)}: is the key spelt as the data spells it? "
                "(keys are case-sensitive; every row without an array there counts 0)"
            )

    # -- rendering ---------------------------------------------------------------------

    def render(self, conn: Connection, command: str) -> list[tuple[str, str, str]]:
        """(name, up, down) of each migration of the set, in order."""
        names = self._names(_Quoter(conn))
        parts = [("counter", *self._pair(conn, names, self.kind, command))]
        parts.append(("backfill", *self._pair(conn, names, "backfill", command)))
        if self.index_columns is not None:
            parts.append(("index", *self._pair(conn, names, "index", command)))
        return parts

    def _pair(
        self, conn: Connection, names: dict[str, sql.Composable], template: str, command: str
    ) -> tuple[str, str]:
        header = _comment(self._describe() + f"\nWritten by: {command}")
        values = {**names, "header": header}
        up = _template(f"{template}.up.sql")
        down = _template(f"{template}.down.sql")
        if template in ("rows", "jsonb_length"):
            up = _template("column.up.sql") + "\n" + up
            down = down + _template("column.down.sql")
        return (
            sql.SQL(up).format(**values).as_string(conn),
            sql.SQL(down).format(**values).as_string(conn),
        )

    def _describe(self) -> str:
        if self.kind == "jsonb_length":
            assert self.path is not None
            return (
                f"The counter {self.counter}: the length of the JSON array at "
                f"{self.jsonb_column} -> {' -> '.join(self.path)} of each row (0 when there "
                "is none there)."
            )
        assert self.child is not None
        described = (
            f"The counter {self.counter}: how many rows of {self.child.shown} point at each "
            f"row of {self.table.shown} ({self.child.shown}.{self.child_column} = "
            f"{self.table.shown}.{self.parent_column})"
        )
        if self.definition.where is not None:
            described += f", counting those where {' '.join(self.definition.where.split())}"
        return described + "."

    def _names(self, quote: _Quoter) -> dict[str, sql.Composable]:
        """Every value the templates use, quoted."""
        room = MAX_NAME - len(PREFIX) - (len("_truncate") if self.kind == "rows" else 0)
        base = PREFIX + _fit(self.slug, room)
        function = base
        table = quote.relation(self.table.schema, self.table.name)
        index_name = self.definition.index_name or _fit(f"idx_{self.slug}", MAX_NAME)
        drop_name = "fg_drop_" + index_name[: MAX_NAME - len("fg_drop_")]
        register: dict[str, sql.Composable | None] = {
            "counter": sql.Literal(self.counter),
            "table_schema": _literal(self.table.schema),
            "table_name": sql.Literal(self.table.name),
            "column_name": sql.Literal(self.column),
            "key_column": sql.Literal(self.key),
        }
        values: dict[str, sql.Composable] = {
            "counter": sql.Literal(self.counter),
            "counter_text": _inline(self.counter),
            "table": table,
            "column": quote(self.column),
            "function": quote(function),
            "not_null_check": quote(f"feature_gates_{self.column}_not_null"[:MAX_NAME]),
        }
        if self.kind == "rows":
            assert self.child is not None and self.child_column and self.parent_column
            triggers = {
                f"{event}_trigger": f"{base}_{event}"
                for event in ("insert", "delete", "update", "truncate")
            }
            recount = f"{base}_recount"
            predicate = self.definition.where
            register |= {
                "child_schema": _literal(self.child.schema),
                "child_table": sql.Literal(self.child.name),
                "child_column": sql.Literal(self.child_column),
                "parent_column": sql.Literal(self.parent_column),
                "predicate": _literal(predicate),
                "table_triggers": _array([recount]),
                "child_triggers": _array(list(triggers.values())),
            }
            values |= {name: quote(value) for name, value in triggers.items()}
            values |= {
                "move_function": quote(f"{base}_move"),
                "recount_function": quote(recount),
                "recount_trigger": quote(recount),
                "child": quote.relation(self.child.schema, self.child.name),
                # The child under its own name, which a predicate may use.
                "child_from": sql.SQL(" AS ").join(
                    [quote.relation(self.child.schema, self.child.name), quote(self.child.name)]
                )
                if self.child.schema
                else quote(self.child.name),
                "child_alias": quote(self.child.name),
                "child_column": quote(self.child_column),
                "parent_column": quote(self.parent_column),
                "predicate_and": sql.SQL(f" AND ({predicate})" if predicate else ""),
            }
        else:
            assert self.jsonb_column is not None and self.path is not None
            register |= {
                "jsonb_column": sql.Literal(self.jsonb_column),
                "jsonb_path": _array(self.path),
                "table_triggers": _array([function]),
            }
            values |= {
                "trigger": quote(function),
                "jsonb_column": quote(self.jsonb_column),
                "path": _array(self.path),
            }
        if self.index_columns is not None:
            register |= {
                "index_name": sql.Literal(index_name),
                "index_columns": _array(self.index_columns),
            }
            schema = [self.table.schema] if self.table.schema else []
            values |= {
                "index": quote(index_name),
                "index_text": _inline(index_name),
                "index_columns": sql.SQL(", ").join(quote(c) for c in self.index_columns),
                "drop_name": sql.Literal(drop_name),
                "drop_index": sql.SQL(".").join(quote(n) for n in [*schema, drop_name]),
            }
        values["register_args"] = sql.SQL(",\n").join(
            sql.SQL("    {} => {}").format(sql.SQL(name), value)
            for name, value in register.items()
            if value is not None
        )
        return values


def _type_family(type_name: str) -> str:
    """Types whose values compare with each other (an integer key and a bigint
    column, a varchar and a text)."""
    if type_name in ("smallint", "integer", "bigint"):
        return "integer"
    if type_name == "text" or type_name.startswith("character"):
        return "text"
    return type_name


class _Quoter:
    """Writes a name as PostgreSQL's ``quote_ident()`` does, for files people
    read: bare when it is a plain lower-case name that is no keyword the server
    reserves in any way, quoted (by psycopg) otherwise."""

    def __init__(self, conn: Connection) -> None:
        self.keywords = {str(row[0]) for row in conn.execute(store.KEYWORDS)}

    def __call__(self, name: str) -> sql.Composable:
        if _PLAIN_NAME.fullmatch(name) and name not in self.keywords:
            return sql.SQL(name)
        return sql.Identifier(name)

    def relation(self, schema: str | None, name: str) -> sql.Composable:
        return sql.SQL(".").join(self(p) for p in (schema, name) if p is not None)


def _relation(schema: str | None, name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in (schema, name) if p is not None)


def _literal(value: str | None) -> sql.Composable | None:
    return None if value is None else sql.Literal(value)


def _array(values: list[str]) -> sql.Composable:
    """An array of text literals, one a line when they are long."""
    separator = _SHORT if sum(len(v) + 4 for v in values) < 60 else _LONG
    return _ARRAY.format(separator.join(sql.Literal(v) for v in values))


def _inline(text: str) -> sql.Composable:
    """A name for a comment line: on one line (nothing in it can end the comment)."""
    return sql.SQL(" ".join(text.split()))


def _comment(text: str) -> sql.Composable:
    """``text`` as SQL comment lines of at most 80 characters (its own line
    breaks start new ones, so nothing in it can end a comment)."""
    lines = []
    for paragraph in text.split("\n"):
        line = "--"
        for word in paragraph.split():
            if len(line) + 1 + len(word) > 80 and line != "--":
                lines.append(line)
                line = "--"
            line += " " + word
        lines.append(line)
    return sql.SQL("\n".join(lines))


def _template(name: str) -> str:
    folder = importlib.resources.files("feature_gates.migrate").joinpath("counter_sql")
    return folder.joinpath(name).read_text(encoding="utf-8")
