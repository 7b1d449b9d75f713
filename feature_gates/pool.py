"""A connection pool opened on first use, once per process.

Pre-forking servers (gunicorn ``--preload``) import the application and then fork
workers. A pool's connections and threads do not survive a fork, so each process
opens its own pool the first time it needs one, and never touches the parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from .usage import store

__all__ = ["DatabaseUnavailable", "LazyPool"]


class DatabaseUnavailable(RuntimeError):
    """No database URL is configured, or the database cannot be reached."""


class LazyPool:
    """Opens a :class:`psycopg_pool.ConnectionPool` on first :meth:`get` in each process.

    :param conninfo: the libpq URL or connection string.
    :param setting: the name of the setting ``conninfo`` came from, for error messages.
    :param min_size: connections kept open.
    :param max_size: connections at most.
    :param timeout: seconds a caller waits for a connection before
        :class:`psycopg_pool.PoolTimeout`.
    :param name: the pool's name, in psycopg_pool's log records.
    :param schema: the schema holding the feature-gates objects, put first on each
        connection's search_path.
    :param statement_timeout: seconds after which the server cancels a statement, so
        a request never hangs on a stuck query or lock; 0 leaves the server's setting
        (the role's or the database's ``statement_timeout``).
    """

    def __init__(
        self,
        conninfo: str | None,
        *,
        setting: str = "FEATURE_GATES_DATABASE_URL",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        name: str = "feature_gates",
        schema: str = "public",
        statement_timeout: float = 0,
    ) -> None:
        self.conninfo = conninfo
        self.setting = setting
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.name = name
        self.schema = schema
        self.statement_timeout = statement_timeout
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> ConnectionPool[psycopg.Connection[tuple[Any, ...]]]:
        """The pool of this process, opened if needed (without waiting for connections)."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                if not self.conninfo:
                    raise DatabaseUnavailable(
                        f"{self.setting} is not set: set it to your PostgreSQL URL, "
                        "for example postgresql://user:password@localhost/app"
                    )
                # The parent's pool (if any) is left alone: closing it here would
                # close sockets the parent still uses. No `check=` callback: it
                # would cost every checkout a round trip; a broken connection
                # fails its statement and the pool replaces it.
                self._pool = ConnectionPool(
                    self.conninfo,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    kwargs={"autocommit": True},
                    name=self.name,
                    configure=self._configure,
                    open=False,
                )
                self._pool.open(wait=False)
                self._pid = os.getpid()
            return self._pool

    def _configure(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        timeout_ms = round(self.statement_timeout * 1000)
        conn.execute(store.CONFIGURE_SESSION, {"schema": self.schema, "timeout_ms": timeout_ms})

    @property
    def opened(self) -> bool:
        """Whether this process has opened its pool."""
        return self._pool is not None and self._pid == os.getpid()

    @contextmanager
    def connect(self, timeout: float) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One connection outside the pool, set up like the pool's, closed on exit.

        For the last write at interpreter exit, where a pool cannot start its threads.
        """
        if not self.conninfo:
            raise DatabaseUnavailable(f"{self.setting} is not set")
        with psycopg.connect(
            self.conninfo, autocommit=True, connect_timeout=max(1, round(timeout))
        ) as conn:
            self._configure(conn)
            yield conn

    def close(self, timeout: float = 5.0) -> None:
        """Close this process's pool, if it has one."""
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None and self._pid == os.getpid():
                pool.close(timeout=timeout)
