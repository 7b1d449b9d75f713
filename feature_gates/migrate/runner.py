"""Applying migrations: history, locking, one transaction per migration.

Every command of the CLI is a thin wrapper over a function here, so applications
and tests can migrate from Python too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.abc import Traversable
from pathlib import Path

import psycopg
from psycopg import sql

from . import store
from .sources import Migration
from .sources import MigrationError
from .sources import load_sets
from .sqltext import split_statements

__all__ = ["AppliedMigration", "MigrationSettings", "applied_migrations", "migrate", "status"]

logger = logging.getLogger("feature_gates.migrate")

Connection = psycopg.Connection[tuple[object, ...]]

USER_ID_TYPES = ("bigint", "uuid")


@dataclass(frozen=True)
class MigrationSettings:
    """What the runner needs to know besides the database.

    :param sets: the sets to work on, in order (an application's own base tables
        first, then ``core``, then ``counters``).
    :param folders: folders of application-registered sets, by set name.
    :param schema: the schema the objects live in.
    :param user_id_type: ``bigint`` or ``uuid``; fixed by the first install.
    :param lock_timeout: how long one migration step waits for a table lock
        before it gives up (PostgreSQL interval syntax), so a migration never
        queues behind a long transaction and blocks the application.
    :param lock_wait: seconds to wait for another runner's migration lock.
    """

    sets: tuple[str, ...] = ("core",)
    folders: Mapping[str, Traversable | Path] | None = None
    schema: str = "public"
    user_id_type: str = "bigint"
    lock_timeout: str = "2s"
    lock_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.user_id_type not in USER_ID_TYPES:
            raise MigrationError(
                f"FEATURE_GATES_USER_ID_TYPE must be one of {', '.join(USER_ID_TYPES)}, "
                f"not {self.user_id_type!r}"
            )

    def load(self) -> list[Migration]:
        return load_sets(self.sets, self.folders)


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``feature_gates_schema_history``."""

    set_name: str
    version: str
    name: str
    checksum: str
    applied_at: datetime
    execution_ms: int
    installed_by: str


def _connect(conninfo: str) -> Connection:
    return psycopg.connect(conninfo, autocommit=True, application_name="feature-gates migrate")


def _prepare_session(conn: Connection, settings: MigrationSettings) -> None:
    exists = conn.execute(store.SCHEMA_EXISTS, (settings.schema,)).fetchone()
    if not (exists and exists[0]):
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.schema))
        )
    conn.execute(store.SET_SEARCH_PATH, (settings.schema,))
    conn.execute(store.SET_USER_ID_TYPE, (settings.user_id_type,))


@contextmanager
def _migration_lock(conn: Connection, wait: float) -> Iterator[None]:
    """Hold the session-level migration lock.

    Polled with pg_try_advisory_lock: a runner blocked inside pg_advisory_lock holds
    a snapshot, and CREATE INDEX CONCURRENTLY run by the lock holder waits for every
    older snapshot, so two runners would deadlock.
    """
    keys = (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)
    deadline = time.monotonic() + wait
    reported = False
    while True:
        row = conn.execute(store.TRY_LOCK, keys).fetchone()
        if row and row[0]:
            break
        if not reported:
            holder = conn.execute(store.LOCK_HOLDER, keys).fetchone()
            who = (
                f"pid {holder[0]} ({holder[1]}, {holder[2] or 'no application name'}, "
                f"since {holder[4]:%Y-%m-%d %H:%M:%S})"
                if holder
                else "another session"
            )
            logger.warning("waiting for the migration lock held by %s", who)
            reported = True
        if time.monotonic() > deadline:
            raise MigrationError(
                f"another migration has held the lock for more than {wait:.0f} s; "
                "try again when it has finished"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(store.UNLOCK, keys)


def _history(conn: Connection) -> dict[tuple[str, str], AppliedMigration]:
    exists = conn.execute(store.HISTORY_EXISTS).fetchone()
    if not (exists and exists[0]):
        return {}
    rows = conn.execute(store.SELECT_HISTORY).fetchall()
    applied = [AppliedMigration(*row) for row in rows]  # type: ignore[arg-type]
    return {(a.set_name, a.version): a for a in applied}


def _check_checksums(
    migrations: Iterable[Migration], history: Mapping[tuple[str, str], AppliedMigration]
) -> None:
    for migration in migrations:
        applied = history.get(migration.key)
        if applied is not None and applied.checksum != migration.checksum:
            raise MigrationError(
                f"{migration.label}.up.sql was changed after it was applied "
                f"(recorded sha256 {applied.checksum[:12]}, file {migration.checksum[:12]}); "
                "restore the file as it was and add a new migration for the change"
            )


def _check_user_id_type(conn: Connection, settings: MigrationSettings) -> None:
    row = conn.execute(store.RECORDED_USER_ID_TYPE, (settings.schema,)).fetchone()
    recorded = str(row[0]) if row and row[0] else None
    compatible = {"bigint": {"bigint", "integer"}, "uuid": {"uuid"}}[settings.user_id_type]
    if recorded is not None and recorded not in compatible:
        raise MigrationError(
            f"feature_usage user ids are {recorded} in this database (fixed at the first "
            f"migrate); FEATURE_GATES_USER_ID_TYPE={settings.user_id_type!r} cannot change "
            f"that: set it to {'uuid' if recorded == 'uuid' else 'bigint'!r}"
        )


def _apply(conn: Connection, migration: Migration, settings: MigrationSettings) -> None:
    started = time.monotonic()
    if migration.transactional:
        with conn.transaction():
            conn.execute(store.SET_LOCK_TIMEOUT, (settings.lock_timeout,))
            conn.execute(migration.up_sql.encode())
            conn.execute(store.INSERT_HISTORY, _history_row(migration, started))
    else:
        for statement in split_statements(migration.up_sql):
            conn.execute(statement.encode())
        conn.execute(store.INSERT_HISTORY, _history_row(migration, started))


def _history_row(migration: Migration, started: float) -> tuple[str, str, str, str, int]:
    elapsed_ms = int((time.monotonic() - started) * 1000)
    return (migration.set_name, migration.version, migration.name, migration.checksum, elapsed_ms)


def migrate(conninfo: str, settings: MigrationSettings | None = None) -> list[Migration]:
    """Apply every pending migration of ``settings.sets``; return those applied.

    Safe to run from several processes at once: each migration is applied once.
    """
    settings = settings or MigrationSettings()
    migrations = settings.load()
    with _connect(conninfo) as conn:
        _prepare_session(conn, settings)
        with _migration_lock(conn, settings.lock_wait):
            conn.execute(store.CREATE_HISTORY)
            history = _history(conn)
            _check_checksums(migrations, history)
            _check_user_id_type(conn, settings)
            applied = []
            for migration in migrations:
                if migration.key in history:
                    continue
                logger.info("applying %s", migration.label)
                try:
                    _apply(conn, migration, settings)
                except psycopg.Error as exc:
                    raise MigrationError(f"{migration.label} failed: {exc}") from exc
                applied.append(migration)
    return applied


def applied_migrations(
    conninfo: str, settings: MigrationSettings | None = None
) -> list[AppliedMigration]:
    """The history rows of the database, oldest first."""
    settings = settings or MigrationSettings()
    with _connect(conninfo) as conn:
        conn.execute(store.SET_SEARCH_PATH, (settings.schema,))
        return list(_history(conn).values())


def status(
    conninfo: str, settings: MigrationSettings | None = None
) -> list[tuple[Migration, AppliedMigration | None]]:
    """Each migration of ``settings.sets`` with its history row (None when pending).

    Raises :class:`MigrationError` when an applied file has changed.
    """
    settings = settings or MigrationSettings()
    migrations = settings.load()
    with _connect(conninfo) as conn:
        conn.execute(store.SET_SEARCH_PATH, (settings.schema,))
        history = _history(conn)
    _check_checksums(migrations, history)
    return [(m, history.get(m.key)) for m in migrations]
