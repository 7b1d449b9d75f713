"""A migration session: one connection, the migration lock, and the steps it runs.

Each transaction the session opens sets the runner's settings (search path,
user id type, batch size, lock and statement timeouts) locally, first thing,
so reads work through a connection pooler in transaction mode as well as
directly. Work that needs one session (the migration lock, the migrations
themselves) first proves that it has one (:mod:`.lock`).

Every step that takes a table lock runs with a short ``lock_timeout`` and is
retried with exponential backoff and jitter when the lock cannot be had, so a
migration never waits long in a lock queue, where it would block the
application's queries queued behind it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from typing import TypeVar

import psycopg
from psycopg import errors
from psycopg import sql

from . import store
from .lock import LockHolder
from .lock import NotOneSession
from .lock import prove_one_session
from .lock import read_holder
from .settings import MigrationSettings
from .sources import MigrationError
from .sources import Step

__all__ = ["APPLICATION_NAME", "Connection", "Session"]

logger = logging.getLogger("feature_gates.migrate")

Connection = psycopg.Connection[tuple[object, ...]]
T = TypeVar("T")

#: How the runner's connections show in pg_stat_activity.
APPLICATION_NAME = "feature-gates migrate"
#: Errors after which the same step is tried again: the lock was not granted in
#: time, or PostgreSQL broke a deadlock by cancelling this side.
RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected)
BACKOFF_BASE = 0.25
BACKOFF_CAP = 10.0
#: Tries, 50 ms apart, to release a lock left on a server connection the
#: session was moved away from.
RELEASE_TRIES = 40


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): doubling, capped,
    with jitter so that several runners do not retry in step."""
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
    return delay * random.uniform(0.5, 1.5)


def _log_notice(diagnostic: psycopg.errors.Diagnostic) -> None:
    if diagnostic.severity_nonlocalized == "WARNING":
        logger.warning("%s", diagnostic.message_primary)
    else:
        logger.debug("%s", diagnostic.message_primary)


class Session:
    """One autocommit connection for the runner. Use as a context manager.

    No server-side prepared statements (a pooler would send them to the wrong
    server connection), and no setting kept in the session until
    :meth:`migration_lock` has proven that the session is one.
    """

    def __init__(self, conninfo: str, settings: MigrationSettings) -> None:
        self.settings = settings
        self._conninfo = conninfo
        #: The session's token once it is proven to be one (see lock.py).
        self._token: str | None = None
        self._locked = False
        self.conn: Connection = psycopg.connect(
            conninfo, autocommit=True, application_name=APPLICATION_NAME, prepare_threshold=None
        )
        self.conn.add_notice_handler(_log_notice)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _settings(self, *, local: bool = True, bounded: bool = False) -> dict[str, Any]:
        return {
            "local": local,
            "schema": self.settings.schema,
            "user_id_type": self.settings.user_id_type,
            "batch_size": str(self.settings.batch_size),
            "lock_timeout": self.settings.lock_timeout_ms,
            "statement_timeout": self.settings.statement_timeout_ms if bounded else "0",
        }

    @contextmanager
    def transaction(self, *, bounded: bool = False) -> Iterator[Connection]:
        """A transaction whose first statement sets the runner's settings in it;
        in a proven session, it stops when it finds itself on another one.

        ``bounded``: a migration's step, cancelled after the migration statement
        timeout; reads are not bounded.
        """
        with self.conn.transaction():
            settings = self._settings(bounded=bounded)
            row = self.conn.execute(store.SET_SETTINGS, settings).fetchone()
            if self._token is not None and (row is None or row[-1] != self._token):
                raise NotOneSession(
                    "a transaction of the runner ran on a server connection other than its "
                    "session's",
                    changed=self._locked,
                )
            yield self.conn

    def query(
        self, statement: str | bytes | sql.SQL | sql.Composed, params: Any = None
    ) -> list[tuple[object, ...]]:
        """The rows of one statement, in a transaction of its own."""
        with self.transaction():
            cursor = self.conn.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []

    def ensure_schema(self) -> None:
        with self.transaction():
            row = self.conn.execute(store.SCHEMA_EXISTS, (self.settings.schema,)).fetchone()
            if not (row and row[0]):
                self.conn.execute(
                    store.CREATE_SCHEMA.format(schema=sql.Identifier(self.settings.schema))
                )

    # -- the migration lock ------------------------------------------------------

    def lock_holder(self) -> LockHolder | None:
        """The session holding the migration lock, or None."""
        with self.transaction():
            return read_holder(self.conn)

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Prove that this is one session, then hold the session-level migration
        lock.

        Polled with pg_try_advisory_lock: a runner blocked inside
        pg_advisory_lock holds a snapshot, and CREATE INDEX CONCURRENTLY run by
        the lock holder waits for every older snapshot, so two runners would
        deadlock.
        """
        if self._token is None:
            self._token = prove_one_session(self.conn, self._conninfo)
            self.conn.execute(store.SET_SETTINGS, self._settings(local=False))
        lock_pid = self._take_lock()
        self._locked = True
        try:
            yield
        finally:
            self._locked = False
            if not self.conn.closed:
                self._release_lock(lock_pid)

    def _take_lock(self) -> int:
        keys = (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)
        wait = self.settings.lock_wait
        deadline = time.monotonic() + wait
        reported = False
        while True:
            with self.transaction():
                row = self.conn.execute(store.TRY_LOCK, keys).fetchone()
            if row and row[0] and isinstance(row[1], int):
                return row[1]
            holder = self.lock_holder()
            held_by = str(holder) if holder else "another session"
            if not reported:
                clear = f"; {holder.how_to_clear}" if holder else ""
                logger.warning("waiting for the migration lock held by %s%s", held_by, clear)
                reported = True
            if time.monotonic() > deadline:
                clear = f" ({holder.how_to_clear})" if holder else ""
                raise MigrationError(
                    f"another migration ({held_by}) has held the migration lock "
                    f"for more than {wait:g} s; try again when it has finished{clear}"
                )
            time.sleep(0.5)

    def _release_lock(self, lock_pid: int) -> None:
        """Release the lock. If a pooler moved the session away from the server
        connection that holds it, try a while to get that connection back, and
        otherwise say how to end it."""
        keys = (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)
        for _ in range(RELEASE_TRIES):
            try:
                with self.transaction():
                    self.conn.execute(store.UNLOCK, keys)
                return
            except NotOneSession:
                time.sleep(0.05)
        logger.error(
            "the migration lock stays on the pooled server connection pid %d; end that "
            "session with pg_terminate_backend(%d)",
            lock_pid,
            lock_pid,
        )

    # -- retries -------------------------------------------------------------------

    def with_retries(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action``; when it fails for a lock, wait and run it again."""
        retries = self.settings.lock_retries
        for attempt in range(retries + 1):
            try:
                return action()
            except RETRYABLE as exc:
                if attempt == retries:
                    raise MigrationError(
                        f"{what}: no lock within {self.settings.lock_timeout:g} s after "
                        f"{retries + 1} tries ({exc.diag.message_primary}); "
                        f"{self._oldest_transaction()}. Run migrate again when it has ended, "
                        "or raise FEATURE_GATES_MIGRATION_LOCK_RETRIES"
                    ) from exc
                delay = backoff(attempt)
                logger.warning("%s: %s; retrying in %.1f s", what, exc.diag.message_primary, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _oldest_transaction(self) -> str:
        rows = self.query(store.OLDEST_TRANSACTION)
        if not rows:
            return "no other transaction is open now"
        pid, user, app, state, seconds, query = rows[0]
        return (
            f"the oldest open transaction is pid {pid} ({user}, {app}, {state}, "
            f"open for {seconds} s: {query!r})"
        )

    # -- steps ---------------------------------------------------------------------

    def run_step(
        self,
        step: Step,
        what: str,
        *,
        before: str | None = None,
        after: Callable[[], None] | None = None,
    ) -> int:
        """Run one step; ``before`` (SQL) and ``after`` run in the same transaction
        when the step is a whole file in one. Returns the rows a batched step
        changed (else 0)."""
        if step.kind == "transaction":
            self.with_retries(what, lambda: self._in_transaction(step.sql, before, after))
        elif step.kind == "statement":
            self.with_retries(what, lambda: self._in_transaction(step.sql, None, None))
        elif step.kind == "concurrent":
            self._concurrently(step, what)
        else:
            return self._batched(step, what)
        return 0

    def _in_transaction(
        self, statement: str, before: str | None, after: Callable[[], None] | None
    ) -> None:
        with self.transaction(bounded=True):
            if before is not None:
                self.conn.execute(before.encode())
            self.conn.execute(statement.encode())
            if after is not None:
                after()

    def _concurrently(self, step: Step, what: str) -> None:
        """A CONCURRENTLY statement, outside any transaction.

        It blocks no writes, so it runs without lock_timeout: its wait for older
        transactions counts as a lock wait and would fail the build. An INVALID
        index of the same name, left by a build that failed, is dropped first
        (``IF NOT EXISTS`` would accept it silently), also without lock_timeout:
        DROP INDEX CONCURRENTLY waits for the same transactions.
        """

        def attempt() -> None:
            index = step.index_name
            self.conn.execute(store.SET_SESSION_LOCK_TIMEOUT, ("0",))
            try:
                if index is not None:
                    self.drop_invalid_index(index)
                self.conn.execute(step.sql.encode())
            finally:
                self.conn.execute(store.SET_SESSION_LOCK_TIMEOUT, (self.settings.lock_timeout_ms,))

        self.with_retries(what, attempt)

    def drop_invalid_index(self, index: str) -> bool:
        """Drop ``index`` if a failed build left it INVALID; True when it did.
        Run it without lock_timeout, as :meth:`_concurrently` does."""
        rows = self.query(store.INVALID_INDEX, (index,))
        if not rows:
            return False
        schema, name = str(rows[0][0]), str(rows[0][1])
        logger.warning("dropping INVALID index %s.%s left by a failed build", schema, name)
        self.conn.execute(
            store.DROP_INDEX_CONCURRENTLY.format(
                schema=sql.Identifier(schema), index=sql.Identifier(name)
            )
        )
        return True

    def _batched(self, step: Step, what: str) -> int:
        changed = 0
        batches = 0
        while True:
            row = self.with_retries(what, lambda: self._one_batch(step.sql))
            if row is None or not row[0]:
                break
            batches += 1
            changed += int(row[1]) if len(row) > 1 and row[1] is not None else 0  # type: ignore[call-overload]
        logger.info("%s: %d batches, %d rows changed", what, batches, changed)
        return changed

    def _one_batch(self, statement: str) -> tuple[object, ...] | None:
        with self.transaction(bounded=True):
            return self.conn.execute(statement.encode()).fetchone()
