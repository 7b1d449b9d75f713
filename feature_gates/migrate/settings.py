"""What the runner needs to know besides the database, and how it is configured.

The keys are read and checked by the same parsers as every other setting
(:mod:`feature_gates.core`), so a wrong value raises the same
:class:`~feature_gates.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from typing import Any

from ..core import USER_ID_TYPES
from ..core import Folder
from ..core import Settings
from ..core import parse_setting
from ..core import read_settings
from .sources import Migration
from .sources import load_sets

__all__ = ["MIGRATION_KEYS", "USER_ID_TYPES", "MigrationSettings"]

#: Each field of MigrationSettings, and the setting (a field of Settings) it is read from.
_SETTINGS = {
    "sets": "migration_sets",
    "folders": "migration_folders",
    "schema": "schema",
    "user_id_type": "user_id_type",
    "lock_timeout": "migration_lock_timeout",
    "lock_retries": "migration_lock_retries",
    "lock_wait": "migration_lock_wait",
    "batch_size": "migration_batch_size",
    "statement_timeout": "migration_statement_timeout",
}

#: The FEATURE_GATES_* keys :meth:`MigrationSettings.from_config` reads.
MIGRATION_KEYS = tuple("FEATURE_GATES_" + name.upper() for name in _SETTINGS.values())


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
    folders: Mapping[str, Folder] | None = None
    schema: str = "public"
    user_id_type: str = "bigint"
    lock_timeout: float = 0.2
    lock_retries: int = 12
    lock_wait: float = 300.0
    batch_size: int = 1000
    statement_timeout: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = parse_setting(_SETTINGS[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], base: MigrationSettings | None = None
    ) -> MigrationSettings:
        """Settings from ``FEATURE_GATES_*`` keys (a Flask app's config, or the
        console script's options); the keys that are absent keep their value in
        ``base``, else their default. Other keys are left alone."""
        values = read_settings(config, only=_SETTINGS.values())
        found = {ours: values[theirs] for ours, theirs in _SETTINGS.items() if theirs in values}
        return replace(base or cls(), **found)

    @classmethod
    def from_settings(cls, settings: Settings) -> MigrationSettings:
        """The runner's part of an application's :class:`~feature_gates.core.Settings`."""
        return cls(**{ours: getattr(settings, theirs) for ours, theirs in _SETTINGS.items()})

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
