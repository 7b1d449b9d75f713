"""Finding migrations: the bundled sets and folders registered by applications.

A migration set is a folder of files named ``<version>_<name>.up.sql`` with a
matching ``<version>_<name>.down.sql``. Versions are digits and order the set.
A file whose first lines hold ``-- feature-gates: no-transaction`` runs outside a
transaction, one statement at a time (for ``CREATE INDEX CONCURRENTLY``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.abc import Traversable
from pathlib import Path

__all__ = [
    "BUNDLED_SETS",
    "Migration",
    "MigrationError",
    "checksum",
    "load_set",
    "load_sets",
]

#: The sets shipped inside the package, in the order they build on each other.
BUNDLED_SETS = ("core", "counters")

_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")
_NO_TRANSACTION = re.compile(r"^--\s*feature-gates:\s*no-transaction\s*$", re.MULTILINE)


class MigrationError(Exception):
    """A migration cannot be found, read or applied; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    """One migration of a set: its SQL up and down, and what the runner needs."""

    set_name: str
    version: str
    name: str
    up_sql: str
    down_sql: str

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
        return not _NO_TRANSACTION.search(_header(self.up_sql))

    @property
    def down_transactional(self) -> bool:
        return not _NO_TRANSACTION.search(_header(self.down_sql))


def _header(sql: str) -> str:
    """The leading comment lines of a file, where directives live."""
    lines = []
    for line in sql.splitlines():
        if line.strip() and not line.lstrip().startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def checksum(sql: str) -> str:
    """sha256 of a file's text, independent of line endings and a byte-order mark."""
    text = sql.lstrip("\ufeff").replace("\r\n", "\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bundled_folder(set_name: str) -> Traversable:
    return importlib.resources.files("feature_gates.migrations").joinpath(set_name)


def load_set(set_name: str, folder: Traversable | Path | None = None) -> list[Migration]:
    """Read one set's migrations, ordered by version.

    :param folder: where the set's files are; the bundled folder of that name
        when not given.
    """
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
    ups: dict[str, tuple[str, str]] = {}
    downs: dict[str, str] = {}
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
        else:
            downs[f"{version}_{name}"] = text
    migrations = []
    for version in sorted(ups, key=int):
        name, up_sql = ups[version]
        down_sql = downs.pop(f"{version}_{name}", None)
        if down_sql is None:
            raise MigrationError(
                f"{set_name}/{version}_{name}.up.sql has no matching "
                f"{version}_{name}.down.sql; every migration needs a rollback file"
            )
        migrations.append(Migration(set_name, version, name, up_sql, down_sql))
    if downs:
        raise MigrationError(
            f"set {set_name!r} has rollback files without a migration: "
            + ", ".join(f"{stem}.down.sql" for stem in sorted(downs))
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
