"""The one way feature-gates sends a statement at run time.

A statement gets a pooled connection (its socket polled first: one the server
closed while it sat idle is dropped, so a restart that is over is not taken for
an outage), runs in a transaction of its own with the statement timeout, under
the watchdog, and its failure is classified once (:mod:`.errors`):

* an **outage** is reported to the health and raised as StorageUnavailable: the
  caller applies its fail mode. While it lasts, an attempt allowed by the health
  (a probe) uses a connection of its own, not the pool;
* an answered **"try again"** is sent once more;
* any other **error** is logged once with its SQLSTATE, counted, and raised as
  StorageError.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections import Counter
from collections.abc import Collection
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import TypeVar
from typing import cast

import psycopg
from psycopg import ClientCursor
from psycopg.rows import RowFactory
from psycopg_pool import ConnectionPool
from psycopg_pool import PoolTimeout

from .._config import ConfigError
from .._config import Settings
from .errors import Outcome
from .errors import PoolExhausted
from .errors import StorageError
from .errors import StorageUnavailable
from .errors import classify
from .errors import describe
from .errors import hint
from .errors import sqlstate
from .health import Emit
from .health import Health
from .pool import Connection
from .pool import LazyPool
from .statements import Statements
from .watchdog import NoAnswer
from .watchdog import limit_for
from .watchdog import watchdog

__all__ = ["Storage", "StorageStats"]

logger = logging.getLogger("feature_gates")

R = TypeVar("R")
Params = Mapping[str, Any] | tuple[Any, ...]

_POLL = hasattr(select, "poll")

#: The attribute of a connection holding its one client-side cursor, kept for the
#: connection's life: a new cursor looks up its adapters afresh, some 20 us of
#: every statement. (On the connection, not in a weak mapping: the cursor refers
#: to its connection, so a mapping's entry would keep both alive.)
_CURSOR = "_feature_gates_cursor"


def _cursor(conn: Connection, row: RowFactory[R]) -> ClientCursor[R]:
    """The connection's cursor, returning rows made by ``row``."""
    cursor: ClientCursor[Any] | None = getattr(conn, _CURSOR, None)
    if cursor is None or cursor.closed:
        cursor = ClientCursor(conn)
        setattr(conn, _CURSOR, cursor)
    cursor.row_factory = row
    return cast("ClientCursor[R]", cursor)


def closed_by_server(conn: Any) -> bool:
    """Whether the server has written to an idle connection: it only does so to end
    it (a restart's "terminating connection", or the socket's end). A poll of the
    socket, no round trip."""
    fd = conn.fileno()
    if _POLL:
        # poll, not select: select() refuses descriptors of 1024 and above, which
        # a busy server reaches.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll, no such limit
    return bool(readable)


@dataclass(frozen=True)
class StorageStats:
    """What the database did to this process's statements since it started."""

    #: Statements that failed with an error that is not an outage, by SQLSTATE
    #: (``""`` for an error without one, such as a pool whose connections all
    #: stayed in use).
    errors: Mapping[str, int]
    #: Statements sent once more after an answered "try again" (40001, 40P01, ...).
    retries: int
    #: Outages begun.
    outages: int
    #: When the current outage began; None while the database answers.
    unavailable_since: datetime | None
    #: The last error that was not an outage: its class, SQLSTATE and message.
    last_error: str | None


class Storage:
    """The database of one application: its pool, its health, its statements."""

    def __init__(self, settings: Settings, *, emit: Emit) -> None:
        self.settings = settings
        self.statements = Statements.build(settings.schema, settings.statement_timeout)
        self.health = Health(emit)
        self.pool = LazyPool(settings)
        #: The watchdog's limit for a statement.
        self.limit = limit_for(settings.statement_timeout)
        self._lock = threading.Lock()
        self._in_use = 0
        self._pid = os.getpid()
        self._errors: Counter[str] = Counter()
        self._retries = 0
        self._last_error: str | None = None
        # The old pool may sit in its reconnection backoff for seconds.
        self.health.on_recovery(self.pool.reset)

    # -- one statement ---------------------------------------------------------------

    def run(
        self,
        query: str,
        params: Params | None,
        *,
        row: RowFactory[R],
        what: str,
        idempotent: bool,
        timeout: float | None = None,
        expected: Collection[str] = (),
        configured: bool = False,
        direct: bool = False,
    ) -> list[R]:
        """The rows of ``query``, sent the one way.

        :param what: names the statement in errors and logs ("the metered check of 'x'").
        :param idempotent: a read: sent again when its connection broke under it (a
            write may have committed before its reply was lost).
        :param timeout: seconds to wait for a connection; FEATURE_GATES_POOL_TIMEOUT
            by default.
        :param expected: SQLSTATEs the caller handles: raised without a log line.
        :param configured: ``query`` is an application's own (a setting).
        :param direct: on a connection of its own, not the pool (a one-off command).
        :raises StorageUnavailable: the database cannot be reached.
        :raises StorageError: any other failure.
        """
        if not self.health.should_try():
            raise StorageUnavailable(f"{what}: the database is unreachable", self.health.cause)
        for first in (True, False):
            conn: Connection | None = None
            try:
                with self.connection(timeout, direct=direct) as conn:
                    rows = self.execute(conn, query, params, row, configured=configured)
            except ConfigError:
                raise
            except Exception as exc:
                outcome = classify(exc)
                if first and self._again(outcome, exc, conn, idempotent, what):
                    continue
                raise self.failed(outcome, exc, what, expected) from exc
            self.health.succeeded()
            return rows
        raise AssertionError("unreachable")

    def _again(
        self,
        outcome: Outcome,
        error: BaseException,
        conn: Connection | None,
        idempotent: bool,
        what: str,
    ) -> bool:
        """Whether the statement is sent once more after ``error``."""
        if outcome is Outcome.RETRY:
            with self._lock:
                self._retries += 1
            logger.info("%s is sent again after %s", what, describe(error))
            return True
        # A read whose connection broke under it: another connection. A consume or
        # a refund may have committed before its reply was lost: not sent twice.
        broke = conn is not None and conn.broken and not isinstance(error, NoAnswer)
        if outcome is Outcome.OUTAGE and idempotent and broke and not self.health.down:
            self.pool.get().check()
            return True
        return False

    def failed(
        self, outcome: Outcome, error: BaseException, what: str, expected: Collection[str] = ()
    ) -> StorageError:
        """The library error for ``error`` (its ``outcome``), reported once: an outage to
        the health, any other error to the log and the stats."""
        if outcome is Outcome.OUTAGE:
            self.health.failed(error)
            return StorageUnavailable(f"{what}: {describe(error)}", error)
        if sqlstate(error) not in expected:
            self.count_error(error)
            logger.error("%s failed: %s%s", what, describe(error), hint(error))
        return StorageError(f"{what} failed: {describe(error)}", error)

    def count_error(self, error: BaseException) -> None:
        """Count ``error`` (not an outage) in the stats."""
        with self._lock:
            self._errors[sqlstate(error) or ""] += 1
            self._last_error = describe(error)

    def execute(
        self,
        conn: Connection,
        query: str,
        params: Params | None,
        row: RowFactory[R],
        *,
        configured: bool = False,
    ) -> list[R]:
        """``query`` on ``conn`` in a transaction of its own, with the statement
        timeout, under the watchdog. Raises what psycopg raises."""
        with watchdog.guard(conn, self.limit) as token:
            try:
                if configured:
                    return self._pipelined(conn, query, params, row)
                # Client-side binding: the statement and its SET LOCAL travel as one
                # simple-protocol message, never prepared on the server.
                cursor = _cursor(conn, row)
                cursor.execute(query, params)
                if self.statements.timeout_ms is not None:
                    cursor.nextset()
                return cursor.fetchall() if cursor.description is not None else []
            except psycopg.Error as exc:
                watchdog.raise_if_severed(token, self.limit, exc)
                raise

    def _pipelined(
        self, conn: Connection, query: Any, params: Params | None, row: RowFactory[R]
    ) -> list[R]:
        # An application's query is sent as it is, after set_config in the same
        # pipeline: one round trip, one implicit transaction.
        cursor = conn.cursor(row_factory=row)
        with conn.pipeline():
            if self.statements.timeout_ms is not None:
                conn.execute(self.statements.local_timeout, (self.statements.timeout_ms,))
            cursor.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []

    # -- connections -----------------------------------------------------------------

    @contextmanager
    def connection(
        self, timeout: float | None = None, *, direct: bool = False
    ) -> Iterator[Connection]:
        """A connection for one statement (or one pass of the usage writer).

        Pooled; but while the database is away, and when the pool had room and got
        no connection in time, one of its own: its failure says why (not "couldn't
        get a connection after 0.25 sec"), and its success ends an outage. With
        ``direct``, always one of its own.
        """
        wait = self.settings.pool_timeout if timeout is None else timeout
        pool = None if direct or self.health.down else self.pool.get()
        conn = None if pool is None else self._checkout(pool, wait)
        if pool is None or conn is None:
            with self.pool.connect(wait) as own:
                yield own
            return
        try:
            yield conn
        finally:
            self._checkin(pool, conn)

    def _checkout(self, pool: ConnectionPool[Connection], wait: float) -> Connection | None:
        """A pooled connection the server has not closed; None when the pool had room
        to grow but got no connection in time (connecting fails, or is slow)."""
        for first in (True, False):
            try:
                conn = pool.getconn(wait)
            except PoolTimeout:
                with self._lock:
                    full = self._in_use >= self.pool.max_size
                if full:
                    raise PoolExhausted(
                        f"all {self.pool.max_size} connections of the pool "
                        f"(FEATURE_GATES_POOL_MAX_SIZE) stayed in use for {wait:g} s"
                    ) from None
                return None
            with self._lock:
                if self._pid != os.getpid():  # a forked child counts its own
                    self._pid, self._in_use = os.getpid(), 0
                self._in_use += 1
            if not first or not closed_by_server(conn):
                return conn
            # A restart closed it while it sat idle: drop it, have the pool check
            # the others (the closed ones are replaced), and take another.
            conn.close()
            self._checkin(pool, conn)
            pool.check()
        raise AssertionError("unreachable")

    def _checkin(self, pool: ConnectionPool[Connection], conn: Connection) -> None:
        with self._lock:
            self._in_use -= 1
        pool.putconn(conn)

    # -- the rest ---------------------------------------------------------------------

    def stats(self) -> StorageStats:
        with self._lock:
            return StorageStats(
                errors=dict(self._errors),
                retries=self._retries,
                outages=self.health.outages,
                unavailable_since=self.health.unavailable_since,
                last_error=self._last_error,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Close this process's pool."""
        self.pool.close(timeout)
