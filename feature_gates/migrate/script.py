"""``migrate --sql``: the pending migrations as one psql script.

The script does what :func:`~feature_gates.migrate.migrate` would do, for a
DBA to read and run by hand (``psql -X -f script.sql``): it takes the
migration lock (failing at once when another runner holds it), runs each
migration's check, runs each
transactional migration in a transaction with its history row, runs
no-transaction files statement by statement, drops an INVALID index left by a
failed concurrent build before rebuilding it, and turns each batched backfill
into a loop that commits after every batch. Each migration runs only while its
history row is absent, so the script run again after a failure picks up where
it stopped.
"""

from __future__ import annotations

from psycopg import sql

from . import store
from .runner import pending_migrations
from .session import Connection
from .session import Session
from .settings import MigrationSettings
from .sources import Migration
from .sources import Step

__all__ = ["migration_script"]


def migration_script(conninfo: str, settings: MigrationSettings | None = None) -> str:
    """The psql script that applies the pending migrations; changes nothing.

    Empty of migrations (but still valid) when the database is up to date.
    """
    settings = settings or MigrationSettings()
    pending = pending_migrations(conninfo, settings)
    with Session(conninfo, settings) as session:
        return _render(session.conn, settings, pending)


def _render(conn: Connection, settings: MigrationSettings, pending: list[Migration]) -> str:
    def text(composable: sql.Composable) -> str:
        return composable.as_string(conn)

    def step_text(step: Step) -> str:
        if step.kind == "batched":
            return text(store.SCRIPT_BATCHED.format(statement=sql.SQL(step.sql)))
        if step.kind != "concurrent":
            return _statement(step.sql)
        # The drop of an INVALID index waits for older transactions as the
        # build does: both run without lock_timeout.
        out = store.SCRIPT_NO_LOCK_TIMEOUT
        if step.index_name is not None:
            out += text(store.SCRIPT_DROP_INVALID_INDEX.format(index=sql.Literal(step.index_name)))
        out += _statement(step.sql)
        return out + text(store.SCRIPT_SET_LOCK_TIMEOUT.format(lock_timeout=lock_timeout))

    lock_keys = {
        "class_id": sql.Literal(store.LOCK_CLASS_ID),
        "object_id": sql.Literal(store.LOCK_OBJECT_ID),
    }
    search_path = [sql.Identifier(settings.schema)]
    if settings.schema != "public":
        search_path.append(sql.Identifier("public"))
    search_path.append(sql.Identifier("pg_temp"))
    lock_timeout = sql.Literal(settings.lock_timeout_ms)
    sets = ", ".join(settings.sets)
    parts = [
        f"-- feature-gates migrations for the sets {sets}: "
        f"{len(pending)} pending when this script was written.\n"
        "-- Run it with: psql -X -f THIS_FILE DATABASE_URL, a direct URL of PostgreSQL:\n"
        "-- through a pooler in transaction mode, its settings and lock would land on\n"
        "-- server connections other clients get.\n"
        "-- It stops at the first error; running it again picks up where it stopped.\n",
        text(
            store.SCRIPT_SESSION.format(
                search_path=sql.SQL(", ").join(search_path),
                user_id_type=sql.Literal(settings.user_id_type),
                batch_size=sql.Literal(str(settings.batch_size)),
                lock_timeout=lock_timeout,
                **lock_keys,
            )
        ),
    ]
    if settings.schema != "public":
        parts.append(text(store.CREATE_SCHEMA.format(schema=sql.Identifier(settings.schema))))
        parts.append(";\n")
    parts.append(store.CREATE_HISTORY.strip() + ";\n")
    for migration in pending:
        parts.append(f"\n-- {migration.label}\n")
        record = text(
            store.SCRIPT_INSERT_HISTORY.format(
                set_name=sql.Literal(migration.set_name),
                version=sql.Literal(migration.version),
                name=sql.Literal(migration.name),
                checksum=sql.Literal(migration.checksum),
            )
        )
        parts.append(
            text(
                store.SCRIPT_IF_PENDING.format(
                    set_name=sql.Literal(migration.set_name),
                    version=sql.Literal(migration.version),
                )
            )
        )
        check = [_statement(migration.check_sql)] if migration.check_sql is not None else []
        if migration.transactional:
            parts.append("BEGIN;\n")
            parts.extend(check)
            parts.append(_statement(migration.up_sql))
            parts.append(record)
            parts.append("COMMIT;\n")
        else:
            parts.extend(check)
            for step in migration.up_steps:
                parts.append(step_text(step))
            parts.append(record)
        parts.append(store.SCRIPT_END_IF)
    parts.append("\n" + text(store.SCRIPT_UNLOCK.format(**lock_keys)))
    return "".join(parts)


def _statement(body: str) -> str:
    body = body.strip()
    if body.endswith(";"):
        return body + "\n"
    # On a line of its own when the last line holds a comment.
    return body + ("\n;\n" if "--" in body.rsplit("\n", 1)[-1] else ";\n")
