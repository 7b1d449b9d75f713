"""What the runner needs to know besides the database, and how it is configured."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover
    from importlib.abc import Traversable
from typing import Any

from .sources import Migration
from .sources import MigrationError
from .sources import load_sets

__all__ = ["MIGRATION_KEYS", "USER_ID_TYPES", "MigrationSettings"]

USER_ID_TYPES = ("bigint", "uuid")

_SET_NAME = re.compile(r"[a-z][a-z0-9_]*")


#: The FEATURE_GATES_* keys :meth:`MigrationSettings.from_config` reads.
MIGRATION_KEYS = (
    "FEATURE_GATES_MIGRATION_SETS",
    "FEATURE_GATES_MIGRATION_FOLDERS",
    "FEATURE_GATES_SCHEMA",
    "FEATURE_GATES_USER_ID_TYPE",
    "FEATURE_GATES_MIGRATION_LOCK_TIMEOUT",
    "FEATURE_GATES_MIGRATION_LOCK_RETRIES",
    "FEATURE_GATES_MIGRATION_LOCK_WAIT",
    "FEATURE_GATES_MIGRATION_BATCH_SIZE",
    "FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT",
)


@dataclass(frozen=True)
class MigrationSettings:
    """What the runner needs to know besides the database.

    :param sets: the sets to work on, in order (an application's own base tables
        first, then ``core``, then ``counters``).
    :param folders: folders of application-registered sets, by set name.
    :param schema: the schema the feature-gates objects live in.
    :param user_id_type: ``bigint`` or ``uuid``; fixed by the first install.
    :param lock_timeout: seconds one migration step waits for a table lock before
        it gives up and retries, so a migration never queues behind a long
        transaction and blocks the application behind it.
    :param lock_retries: how many times a step that hit ``lock_timeout`` is
        retried (with exponential backoff and jitter) before the run stops.
    :param lock_wait: seconds to wait for another runner's migration lock.
    :param batch_size: rows per transaction of a batched backfill.
    :param statement_timeout: seconds a step run in a transaction may take
        before it is cancelled and the migration stops (0: no limit): a step that
        reads a whole table holds a snapshot, and holds vacuum back, that long.
        Concurrent index builds are not bounded.
    """

    sets: tuple[str, ...] = ("core",)
    folders: Mapping[str, Traversable | Path] | None = None
    schema: str = "public"
    user_id_type: str = "bigint"
    lock_timeout: float = 0.2
    lock_retries: int = 12
    lock_wait: float = 300.0
    batch_size: int = 1000
    statement_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.user_id_type not in USER_ID_TYPES:
            raise MigrationError(
                f"FEATURE_GATES_USER_ID_TYPE must be one of {', '.join(USER_ID_TYPES)}, "
                f"not {self.user_id_type!r}"
            )
        for set_name in self.sets:
            if not isinstance(set_name, str) or not _SET_NAME.fullmatch(set_name):
                raise MigrationError(
                    f"FEATURE_GATES_MIGRATION_SETS: {set_name!r} is not a set name "
                    "(lowercase letters, digits and _)"
                )
        if not self.schema or not isinstance(self.schema, str):
            raise MigrationError("FEATURE_GATES_SCHEMA must be a schema name")
        _positive("FEATURE_GATES_MIGRATION_LOCK_TIMEOUT", self.lock_timeout)
        _positive("FEATURE_GATES_MIGRATION_LOCK_WAIT", self.lock_wait)
        _positive("FEATURE_GATES_MIGRATION_BATCH_SIZE", self.batch_size, integer=True)
        timeout = self.statement_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise MigrationError(
                "FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT must be a number of seconds, 0 or "
                f"more (0: no limit), not {timeout!r}"
            )
        if isinstance(self.lock_retries, bool) or not isinstance(self.lock_retries, int):
            raise MigrationError("FEATURE_GATES_MIGRATION_LOCK_RETRIES must be an integer")
        if self.lock_retries < 0:
            raise MigrationError("FEATURE_GATES_MIGRATION_LOCK_RETRIES must be 0 or more")

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], base: MigrationSettings | None = None
    ) -> MigrationSettings:
        """Settings from ``FEATURE_GATES_*`` keys (a Flask app's config, or the
        console script's options); the keys that are absent keep their value in
        ``base``, else their default."""
        defaults = base or cls()
        sets = config.get("FEATURE_GATES_MIGRATION_SETS", defaults.sets)
        if isinstance(sets, str) or not isinstance(sets, (list, tuple)):
            raise MigrationError(
                'FEATURE_GATES_MIGRATION_SETS must be a list of set names, like ["core"]'
            )
        folders = config.get("FEATURE_GATES_MIGRATION_FOLDERS", defaults.folders) or None
        if folders is not None and not isinstance(folders, Mapping):
            raise MigrationError(
                "FEATURE_GATES_MIGRATION_FOLDERS must map set names to folders, "
                'like {"app": "migrations/app"}'
            )
        return cls(
            sets=tuple(sets),
            folders={k: v if isinstance(v, Traversable) else Path(v) for k, v in folders.items()}
            if folders
            else None,
            schema=config.get("FEATURE_GATES_SCHEMA", defaults.schema),
            user_id_type=config.get("FEATURE_GATES_USER_ID_TYPE", defaults.user_id_type),
            lock_timeout=config.get("FEATURE_GATES_MIGRATION_LOCK_TIMEOUT", defaults.lock_timeout),
            lock_retries=config.get("FEATURE_GATES_MIGRATION_LOCK_RETRIES", defaults.lock_retries),
            lock_wait=config.get("FEATURE_GATES_MIGRATION_LOCK_WAIT", defaults.lock_wait),
            batch_size=config.get("FEATURE_GATES_MIGRATION_BATCH_SIZE", defaults.batch_size),
            statement_timeout=config.get(
                "FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT", defaults.statement_timeout
            ),
        )

    @property
    def lock_timeout_ms(self) -> str:
        """``lock_timeout`` as a PostgreSQL setting value."""
        return f"{max(1, round(self.lock_timeout * 1000))}ms"

    @property
    def statement_timeout_ms(self) -> str:
        """``statement_timeout`` as a PostgreSQL setting value (``0``: none)."""
        if not self.statement_timeout:
            return "0"
        return f"{max(1, round(self.statement_timeout * 1000))}ms"

    def load(self) -> list[Migration]:
        return load_sets(self.sets, self.folders)


def _positive(key: str, value: object, integer: bool = False) -> None:
    number = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not number or value <= 0:  # type: ignore[operator]
        what = "a positive integer" if integer else "a positive number of seconds"
        raise MigrationError(f"{key} must be {what}, not {value!r}")
