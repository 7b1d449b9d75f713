"""Finding migrations: the bundled sets and folders registered by applications.

A migration set is a folder of files named ``<version>_<name>.up.sql`` with a
matching ``<version>_<name>.down.sql``. Versions are digits and order the set.
An optional ``verify.sql`` in the folder is the set's audit query (one row per
problem found), run by ``feature-gates verify``.

An optional ``<version>_<name>.verify.sql`` replaces the set's audit query from
that migration on: ``verify`` runs the one of the newest migration that has one,
else ``verify.sql``. A landed ``verify.sql`` is frozen with the migrations it
audits, so a migration that changes what the audit must check brings its own.

An optional ``<version>_<name>.check.sql`` runs before its migration, only on a
database that has not applied it yet, and stops it by raising an error: a guard
added after the migration landed (its up file, checksummed, never changes). For
a transactional migration it runs in the migration's transaction; otherwise as
a statement of its own before the first one, again when an interrupted run
resumes, so it must accept what the migration's own statements leave.

Directives are SQL comments:

``-- feature-gates: no-transaction`` (in a file's first comment lines)
    The file runs one statement at a time, each in a transaction of its own,
    instead of in one transaction. Needed for ``CREATE INDEX CONCURRENTLY``,
    and for long work that must not hold its locks until the end.
``-- feature-gates: batched`` (in the comments just before a statement of such a file)
    The statement does one batch of work and returns one row whose first column
    is how many rows it looked at (and an optional second column: how many it
    changed). It is run again, each time in its own short transaction, until it
    returns 0 or no row.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import sys
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover
    from importlib.abc import Traversable
from typing import Literal

from .sqltext import leading_comments
from .sqltext import split_statements

__all__ = [
    "BUNDLED_SETS",
    "Migration",
    "MigrationError",
    "Step",
    "checksum",
    "load_set",
    "load_sets",
    "load_verify",
]

#: The sets shipped inside the package, in the order they build on each other.
BUNDLED_SETS = ("core", "counters")

_FILE_NAME = re.compile(
    r"^(?P<version>\d+)_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down|check|verify)\.sql$"
)
_DIRECTIVE = re.compile(r"^\s*--\s*feature-gates:\s*(?P<name>[a-z-]+)\s*$", re.MULTILINE)
_CONCURRENTLY = re.compile(
    r"^\s*(CREATE\s+(UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s+\w+)\s+CONCURRENTLY\b",
    re.IGNORECASE,
)
_CREATE_CONCURRENT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>[a-z_][a-z0-9_]*)\s",
    re.IGNORECASE,
)

StepKind = Literal["transaction", "statement", "concurrent", "batched"]


class MigrationError(Exception):
    """A migration cannot be found, read or applied; the message says what to do."""


@dataclass(frozen=True)
class Step:
    """One unit of work the runner sends.

    ``transaction``: a whole file in one transaction. ``statement``: one
    statement in a transaction of its own. ``concurrent``: a ``CONCURRENTLY``
    statement, outside any transaction. ``batched``: a statement repeated until
    it reports no more rows.
    """

    kind: StepKind
    sql: str

    @property
    def index_name(self) -> str | None:
        """The index a ``CREATE INDEX CONCURRENTLY`` builds, else None."""
        match = _CREATE_CONCURRENT_INDEX.match(_code(self.sql))
        return match["name"].lower() if match else None


def _code(statement: str) -> str:
    """A statement without its leading comments."""
    return statement[len(leading_comments(statement)) :]


def directives(sql: str) -> set[str]:
    """The directives in the leading comment lines of ``sql``."""
    return {m["name"] for m in _DIRECTIVE.finditer(leading_comments(sql))}


def steps(sql: str) -> list[Step]:
    """How the runner sends a file: one transaction, or statement by statement."""
    if "no-transaction" not in directives(sql):
        return [Step("transaction", sql)]
    result = []
    for statement in split_statements(sql):
        if "batched" in directives(statement):
            result.append(Step("batched", statement))
        elif _CONCURRENTLY.match(_code(statement)):
            result.append(Step("concurrent", statement))
        else:
            result.append(Step("statement", statement))
    return result


def description(sql: str) -> str:
    """The prose of a file's leading comments (directives left out)."""
    lines = []
    for line in leading_comments(sql).splitlines():
        text = line.strip()
        if not text.startswith("--") or _DIRECTIVE.match(line):
            continue
        lines.append(text[2:].strip())
    return " ".join(line for line in lines if line).strip()


@dataclass(frozen=True)
class Migration:
    """One migration of a set: its SQL up and down, and what the runner needs."""

    set_name: str
    version: str
    name: str
    up_sql: str
    down_sql: str
    #: What runs before the migration where it is pending (``.check.sql``).
    check_sql: str | None = None
    #: The set's audit query from this migration on (``.verify.sql``).
    verify_sql: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.set_name, self.version)

    @property
    def label(self) -> str:
        return f"{self.set_name}/{self.version}_{self.name}"

    @property
    def checksum(self) -> str:
        return checksum(self.up_sql)

    @property
    def transactional(self) -> bool:
        return "no-transaction" not in directives(self.up_sql)

    @property
    def up_steps(self) -> list[Step]:
        return steps(self.up_sql)

    @property
    def down_steps(self) -> list[Step]:
        return steps(self.down_sql)

    @property
    def rollback_effect(self) -> str:
        """What rolling this migration back does, from the down file's header."""
        return description(self.down_sql) or "no description in the rollback file"


def _check_directives(label: str, sql: str) -> None:
    """Refuse, before anything runs, a file whose statements need the
    no-transaction directive it lacks."""
    if "no-transaction" in directives(sql):
        return
    for statement in split_statements(sql):
        if _CONCURRENTLY.match(_code(statement)) or "batched" in directives(statement):
            raise MigrationError(
                f"{label} has a statement that cannot run in a transaction "
                f"({_code(statement).split(chr(10))[0][:60]}...); put "
                "'-- feature-gates: no-transaction' on the file's first line"
            )


def checksum(sql: str) -> str:
    """sha256 of a file's text, independent of line endings and a byte-order mark."""
    text = sql.lstrip("\ufeff").replace("\r\n", "\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bundled_folder(set_name: str) -> Traversable:
    return importlib.resources.files("feature_gates.migrations").joinpath(set_name)


def _folder(set_name: str, folder: Traversable | Path | None) -> Traversable | Path:
    if folder is None:
        if set_name not in BUNDLED_SETS:
            raise MigrationError(
                f"unknown migration set {set_name!r}: the bundled sets are "
                f"{', '.join(BUNDLED_SETS)}; register an application's own folder "
                "under FEATURE_GATES_MIGRATION_FOLDERS"
            )
        folder = _bundled_folder(set_name)
    if not folder.is_dir():
        raise MigrationError(f"migration folder for set {set_name!r} not found: {folder}")
    return folder


def load_set(set_name: str, folder: Traversable | Path | None = None) -> list[Migration]:
    """Read one set's migrations, ordered by version.

    :param folder: where the set's files are; the bundled folder of that name
        when not given.
    """
    folder = _folder(set_name, folder)
    ups: dict[str, tuple[str, str]] = {}
    downs: dict[str, str] = {}
    checks: dict[str, str] = {}
    audits: dict[str, str] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version, name = match["version"], match["name"]
        text = entry.read_text(encoding="utf-8")
        if match["direction"] == "up":
            if version in ups:
                raise MigrationError(
                    f"set {set_name!r} has two migrations numbered {version}: "
                    f"{ups[version][0]} and {name}"
                )
            ups[version] = (name, text)
        elif match["direction"] == "down":
            downs[f"{version}_{name}"] = text
        elif match["direction"] == "check":
            checks[f"{version}_{name}"] = text
        else:
            audits[f"{version}_{name}"] = text
    migrations = []
    for version in sorted(ups, key=int):
        name, up_sql = ups[version]
        down_sql = downs.pop(f"{version}_{name}", None)
        if down_sql is None:
            raise MigrationError(
                f"{set_name}/{version}_{name}.up.sql has no matching "
                f"{version}_{name}.down.sql; every migration needs a rollback file"
            )
        check_sql = checks.pop(f"{version}_{name}", None)
        verify_sql = audits.pop(f"{version}_{name}", None)
        migration = Migration(set_name, version, name, up_sql, down_sql, check_sql, verify_sql)
        _check_directives(migration.label + ".up.sql", up_sql)
        _check_directives(migration.label + ".down.sql", down_sql)
        migrations.append(migration)
    if downs or checks or audits:
        raise MigrationError(
            f"set {set_name!r} has files without a migration: "
            + ", ".join(
                [f"{stem}.down.sql" for stem in sorted(downs)]
                + [f"{stem}.check.sql" for stem in sorted(checks)]
                + [f"{stem}.verify.sql" for stem in sorted(audits)]
            )
        )
    return migrations


def load_sets(
    sets: Iterable[str], folders: Mapping[str, Traversable | Path] | None = None
) -> list[Migration]:
    """Read the migrations of several sets, in the order the sets are given."""
    folders = folders or {}
    migrations: list[Migration] = []
    for set_name in sets:
        migrations.extend(load_set(set_name, folders.get(set_name)))
    return migrations


def load_verify(set_name: str, folder: Traversable | Path | None = None) -> str | None:
    """The set's audit query: that of its newest migration with a
    ``.verify.sql``, else its ``verify.sql``; None when it has neither."""
    for migration in reversed(load_set(set_name, folder)):
        if migration.verify_sql is not None:
            return migration.verify_sql
    entry = _folder(set_name, folder).joinpath("verify.sql")
    return entry.read_text(encoding="utf-8") if entry.is_file() else None
