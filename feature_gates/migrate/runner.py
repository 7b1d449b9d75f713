"""Applying and rolling back migrations, and reporting where a database stands.

Every command of the CLI is a thin wrapper over a function here, so applications
and tests can migrate from Python too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg import errors

from . import store
from .lock import LockHolder
from .session import Session
from .settings import MigrationSettings
from .sources import Migration
from .sources import MigrationError
from .sources import Step

__all__ = [
    "AppliedMigration",
    "MigrationStatus",
    "applied_migrations",
    "migrate",
    "migration_lock_holder",
    "pending_migrations",
    "recorded_user_id_type",
    "rollback",
    "status",
]

logger = logging.getLogger("feature_gates.migrate")


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.set_name, self.version)

    @property
    def label(self) -> str:
        return f"{self.set_name}/{self.version}_{self.name}"


State = Literal["applied", "pending", "changed", "missing"]


@dataclass(frozen=True)
class MigrationStatus:
    """Where one migration stands: ``applied``, ``pending``, ``changed`` (applied,
    but its file was edited since) or ``missing`` (applied, but no file has it).

    ``selected`` is False for a migration the history holds of a set the command
    was not told to work on (``--set``): shown, never acted on, its file not read.
    """

    migration: Migration | None
    applied: AppliedMigration | None
    selected: bool = True

    @property
    def state(self) -> State:
        if self.applied is None:
            return "pending"
        if self.migration is None:
            return "missing" if self.selected else "applied"
        if self.migration.checksum != self.applied.checksum:
            return "changed"
        return "applied"

    @property
    def label(self) -> str:
        if self.migration is not None:
            return self.migration.label
        assert self.applied is not None
        return self.applied.label


def read_history(session: Session) -> dict[tuple[str, str], AppliedMigration]:
    with session.transaction() as conn:
        exists = conn.execute(store.HISTORY_EXISTS).fetchone()
        if not (exists and exists[0]):
            return {}
        rows = conn.execute(store.SELECT_HISTORY).fetchall()
    applied = [AppliedMigration(*row) for row in rows]  # type: ignore[arg-type]
    return {a.key: a for a in applied}


def _statuses(
    migrations: Sequence[Migration],
    history: Mapping[tuple[str, str], AppliedMigration],
    sets: Sequence[str],
) -> list[MigrationStatus]:
    known = {m.key for m in migrations}
    rows = [MigrationStatus(m, history.get(m.key)) for m in migrations]
    rows += [
        MigrationStatus(None, a)
        for key, a in history.items()
        if key not in known and a.set_name in sets
    ]
    others = sorted(a.key for a in history.values() if a.set_name not in sets)
    rows += [MigrationStatus(None, history[key], selected=False) for key in others]
    return rows


def refuse_changed(rows: Sequence[MigrationStatus]) -> None:
    """Raise when an applied migration's file was edited after it was applied."""
    for row in rows:
        if row.state == "changed":
            assert row.migration is not None and row.applied is not None
            raise MigrationError(
                f"{row.label}.up.sql was changed after it was applied "
                f"(recorded sha256 {row.applied.checksum[:12]}, file "
                f"{row.migration.checksum[:12]}); restore the file as it was and add a "
                "new migration for the change"
            )


def _recorded_user_id_type(session: Session, schema: str) -> str | None:
    rows = session.query(store.RECORDED_USER_ID_TYPE, (schema,))
    return str(rows[0][0]) if rows and rows[0][0] else None


def recorded_user_id_type(conninfo: str, settings: MigrationSettings | None = None) -> str | None:
    """The user id type the first migrate fixed in ``settings.schema`` (``bigint``
    or ``uuid``: an adopted table's integer ids are served as bigint), or None
    before it (an existing feature_usage table not yet adopted records nothing)."""
    settings = settings or MigrationSettings()
    with Session(conninfo, settings) as session:
        recorded = _recorded_user_id_type(session, settings.schema)
    return "bigint" if recorded == "integer" else recorded


def _check_user_id_type(session: Session, settings: MigrationSettings) -> None:
    recorded = _recorded_user_id_type(session, settings.schema)
    source = "fixed at the first migrate"
    if recorded is None:
        rows = session.query(store.EXISTING_USER_ID_COLUMN, (settings.schema,))
        recorded = str(rows[0][0]) if rows and rows[0][0] else None
        source = "the type of the existing feature_usage.user_id column"
    compatible = {"bigint": {"bigint", "integer"}, "uuid": {"uuid"}}[settings.user_id_type]
    # Another type is not ours to judge here: core/0001 says what is wrong with it.
    if recorded in {"bigint", "integer", "uuid"} and recorded not in compatible:
        wanted = "uuid" if recorded == "uuid" else "bigint"
        raise MigrationError(
            f"feature_usage user ids are {recorded} in this database ({source}); "
            f"the user id type {settings.user_id_type!r} (FEATURE_GATES_USER_ID_TYPE, or "
            f"--user-id-type of the feature-gates script) cannot change that: "
            f"set it to {wanted!r}"
        )


def _apply(session: Session, migration: Migration) -> None:
    started = time.monotonic()

    def record() -> None:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        session.conn.execute(
            store.INSERT_HISTORY,
            (migration.set_name, migration.version, migration.name, migration.checksum, elapsed_ms),
        )

    if migration.transactional:
        (step,) = migration.up_steps
        session.run_step(step, migration.label, before=migration.check_sql, after=record)
    else:
        if migration.check_sql is not None:
            session.run_step(Step("statement", migration.check_sql), migration.label)
        for step in migration.up_steps:
            session.run_step(step, migration.label)
        record()


def _failed(
    migration: Migration, exc: psycopg.Error, settings: MigrationSettings
) -> MigrationError:
    resume = (
        ""
        if migration.transactional
        else " (its finished statements stay; migrate again to finish it)"
    )
    if isinstance(exc, errors.QueryCanceled) and "statement timeout" in str(exc):
        return MigrationError(
            f"{migration.label} was stopped after FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT "
            f"({settings.statement_timeout:g} s){resume}: a step that reads a whole table holds "
            "a snapshot, and holds vacuum back, as long as it runs; run it when that is "
            "acceptable, with a larger FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT (0: no limit)"
        )
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    extra = "".join(f"; {part}" for part in (diag.message_detail, diag.message_hint) if part)
    return MigrationError(f"{migration.label} failed{resume}: {message}{extra}")


def pending_migrations(conninfo: str, settings: MigrationSettings | None = None) -> list[Migration]:
    """The migrations ``migrate`` would apply, in order; changes nothing.

    Raises :class:`MigrationError` where ``migrate`` would: when an applied file
    has changed, or the user id type is not the database's.
    """
    settings = settings or MigrationSettings()
    migrations = settings.load()
    with Session(conninfo, settings) as session:
        rows = _statuses(migrations, read_history(session), settings.sets)
        refuse_changed(rows)
        _check_user_id_type(session, settings)
    return [row.migration for row in rows if row.state == "pending" and row.migration]


def migrate(conninfo: str, settings: MigrationSettings | None = None) -> list[Migration]:
    """Apply every pending migration of ``settings.sets``; return those applied.

    Safe to run from several processes at once: each migration is applied once.
    Through a connection pooler in transaction mode it stops before it locks or
    changes anything (:class:`~feature_gates.migrate.NotOneSession`).
    """
    settings = settings or MigrationSettings()
    migrations = settings.load()
    with Session(conninfo, settings) as session:
        with session.migration_lock():
            session.ensure_schema()
            with session.transaction() as conn:
                conn.execute(store.CREATE_HISTORY)
            history = read_history(session)
            refuse_changed(_statuses(migrations, history, settings.sets))
            _check_user_id_type(session, settings)
            applied = []
            for migration in migrations:
                if migration.key in history:
                    continue
                logger.info("applying %s", migration.label)
                try:
                    _apply(session, migration)
                except psycopg.Error as exc:
                    raise _failed(migration, exc, settings) from exc
                applied.append(migration)
    return applied


def applied_migrations(
    conninfo: str, settings: MigrationSettings | None = None
) -> list[AppliedMigration]:
    """The history rows of the database, oldest first."""
    settings = settings or MigrationSettings()
    with Session(conninfo, settings) as session:
        return list(read_history(session).values())


def status(conninfo: str, settings: MigrationSettings | None = None) -> list[MigrationStatus]:
    """Each migration of ``settings.sets`` with its history row, in order; then the
    history rows of those sets whose file no longer exists; then, not ``selected``,
    the history rows of every other set the database holds."""
    settings = settings or MigrationSettings()
    migrations = settings.load()
    with Session(conninfo, settings) as session:
        history = read_history(session)
    return _statuses(migrations, history, settings.sets)


def migration_lock_holder(
    conninfo: str, settings: MigrationSettings | None = None
) -> LockHolder | None:
    """The session holding the migration lock (a migration running, or a lock a
    killed or pooled run left behind), or None when it is free."""
    with Session(conninfo, settings or MigrationSettings()) as session:
        return session.lock_holder()


def _find_version(migrations: Sequence[Migration], target: str) -> int:
    """The position of ``target`` (``SET/VERSION`` or ``VERSION``) in ``migrations``."""
    set_name, _, version = target.rpartition("/")
    if not version.isdigit():
        raise MigrationError(
            f"--to {target!r}: give a version like 0003, or SET/VERSION like core/0003"
        )
    found = [
        i
        for i, m in enumerate(migrations)
        if int(m.version) == int(version) and (not set_name or m.set_name == set_name)
    ]
    if not found:
        raise MigrationError(f"--to {target!r}: no migration has that version")
    if len(found) > 1:
        labels = ", ".join(migrations[i].label for i in found)
        raise MigrationError(f"--to {target!r} is ambiguous ({labels}); write it as SET/VERSION")
    return found[0]


def rollback(
    conninfo: str,
    settings: MigrationSettings | None = None,
    *,
    to: str | None = None,
    everything: bool = False,
    dry_run: bool = False,
    confirm: Callable[[list[Migration]], bool] | None = None,
) -> list[Migration]:
    """Run the rollback (down) files of applied migrations, newest first.

    Without ``to`` or ``everything``, rolls back the last applied migration;
    with ``to``, every migration applied after that version (which stays);
    with ``everything``, all of them. ``dry_run`` returns what would be rolled
    back and changes nothing. ``confirm`` is called with that list before
    anything changes; when it returns False nothing is done and [] is returned.
    Each rollback file removes only what its migration added.
    """
    settings = settings or MigrationSettings()
    if to is not None and everything:
        raise MigrationError("give either --to VERSION or --all, not both")
    migrations = settings.load()

    def targets_now(session: Session) -> list[Migration]:
        history = read_history(session)
        refuse_changed(_statuses(migrations, history, settings.sets))
        applied = [m for m in migrations if m.key in history]
        if everything:
            targets = applied
        elif to is not None:
            position = _find_version(migrations, to)
            targets = [m for m in migrations[position + 1 :] if m.key in history]
        else:
            targets = applied[-1:]
        return list(reversed(targets))

    with Session(conninfo, settings) as session:
        if dry_run:
            return targets_now(session)
        with session.migration_lock():
            targets = targets_now(session)
            if not targets:
                return targets
            if confirm is not None and not confirm(targets):
                return []
            for migration in targets:
                logger.info("rolling back %s", migration.label)
                try:
                    _unapply(session, migration)
                except psycopg.Error as exc:
                    raise _failed(migration, exc, settings) from exc
    return targets


def _unapply(session: Session, migration: Migration) -> None:
    def forget() -> None:
        session.conn.execute(store.DELETE_HISTORY, migration.key)

    steps = migration.down_steps
    if len(steps) == 1 and steps[0].kind == "transaction":
        session.run_step(steps[0], f"rollback of {migration.label}", after=forget)
    else:
        for step in steps:
            session.run_step(step, f"rollback of {migration.label}")
        forget()
