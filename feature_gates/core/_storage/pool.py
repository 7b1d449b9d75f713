"""A connection pool opened on first use, once per process, with no session state.

Pre-forking servers (gunicorn ``--preload``) import the application and then fork
workers. A pool's connections and threads do not survive a fork, so each process
opens its own pool the first time it needs one, and never touches the parent's.

Every connection is set up the same way: autocommit, no server-side prepared
statements (a transaction pooler may run the next transaction on another server
connection, where the statement does not exist), ``application_name``, and the
extra libpq parameters of FEATURE_GATES_CONNECT_OPTIONS. Nothing is set per
session: statements name their schema, and the statement timeout travels with
each transaction (:mod:`.statements`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from .._config import ConfigError
from .._config import Settings

__all__ = ["Connection", "LazyPool"]

Connection = psycopg.Connection[TupleRow]


class LazyPool:
    """Opens a :class:`psycopg_pool.ConnectionPool` on first :meth:`get` in each process,
    as ``settings`` say: FEATURE_GATES_DATABASE_URL, the pool's sizes and timeout,
    FEATURE_GATES_APPLICATION_NAME and FEATURE_GATES_CONNECT_OPTIONS."""

    def __init__(self, settings: Settings) -> None:
        self.conninfo = settings.database_url
        self.min_size = settings.pool_min_size
        self.max_size = settings.pool_max_size
        #: Seconds a caller waits for a connection by default.
        self.timeout = settings.pool_timeout
        self.kwargs: dict[str, Any] = {
            **settings.connect_options,
            "application_name": settings.application_name,
            "autocommit": True,
            "prepare_threshold": None,
        }
        self._pool: ConnectionPool[Connection] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _url(self) -> str:
        if not self.conninfo:
            raise ConfigError(
                "FEATURE_GATES_DATABASE_URL is not set: set it to your PostgreSQL URL, for "
                "example postgresql://user:password@localhost/app"
            )
        return self.conninfo

    def get(self) -> ConnectionPool[Connection]:
        """The pool of this process, opened if needed (without waiting for connections)."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                # The parent's pool (if any) is left alone: closing it here would
                # close sockets the parent still uses. No `check=` callback: it
                # would cost every checkout a round trip; a connection the server
                # closed is found by the storage's poll of its socket.
                self._pool = ConnectionPool(
                    self._url(),
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    kwargs=self.kwargs,
                    name="feature_gates",
                    open=False,
                )
                self._pool.open(wait=False)
                self._pid = os.getpid()
            return self._pool

    @property
    def opened(self) -> bool:
        """Whether this process has opened its pool."""
        return self._pool is not None and self._pid == os.getpid()

    @contextmanager
    def connect(self, timeout: float) -> Iterator[Connection]:
        """One connection outside the pool, set up like the pool's, closed on exit.

        For a probe while the database is away (the pool would wait in its own
        reconnection backoff), and for the last write at interpreter exit, where a
        pool cannot start its threads. libpq waits at least 2 s to connect.
        """
        with psycopg.connect(
            self._url(), connect_timeout=max(2, round(timeout)), **self.kwargs
        ) as conn:
            yield conn

    def reset(self) -> None:
        """Give up this process's pool without waiting; the next :meth:`get` opens a
        new one. After an outage, the old pool may be waiting seconds in its
        reconnection backoff while the database answers again."""
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is None or self._pid != os.getpid():
                return
        # Connections in use are closed when they come back; callers waiting for
        # one get PoolClosed, which the storage sends again on the new pool. Its
        # threads are stopped in the background: the caller has a request to serve.
        threading.Thread(target=pool.close, name="feature-gates-old-pool", daemon=True).start()

    def close(self, timeout: float = 5.0) -> None:
        """Close this process's pool, if it has one."""
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None and self._pid == os.getpid():
                pool.close(timeout=timeout)
