"""A migration session: one connection, the migration lock, and the steps it runs.

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
from typing import TypeVar

import psycopg
from psycopg import errors
from psycopg import sql

from . import store
from .settings import MigrationSettings
from .sources import MigrationError
from .sources import Step

__all__ = ["Connection", "Session"]

logger = logging.getLogger("feature_gates.migrate")

Connection = psycopg.Connection[tuple[object, ...]]
T = TypeVar("T")

#: Errors after which the same step is tried again: the lock was not granted in
#: time, or PostgreSQL broke a deadlock by cancelling this side.
RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected)
BACKOFF_BASE = 0.25
BACKOFF_CAP = 10.0


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
    """One autocommit connection set up for the runner: schema, user id type,
    batch size. Use as a context manager."""

    def __init__(self, conninfo: str, settings: MigrationSettings) -> None:
        self.settings = settings
        self.conn: Connection = psycopg.connect(
            conninfo, autocommit=True, application_name="feature-gates migrate"
        )
        try:
            self.conn.add_notice_handler(_log_notice)
            self.conn.execute(store.SET_SEARCH_PATH, {"schema": settings.schema})
            self.conn.execute(store.SET_USER_ID_TYPE, (settings.user_id_type,))
            self.conn.execute(store.SET_BATCH_SIZE, (str(settings.batch_size),))
            self.conn.execute(store.SET_SESSION_LOCK_TIMEOUT, (settings.lock_timeout_ms,))
            self.conn.execute(store.NO_STATEMENT_TIMEOUT)
        except BaseException:
            self.conn.close()
            raise

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def ensure_schema(self) -> None:
        row = self.conn.execute(store.SCHEMA_EXISTS, (self.settings.schema,)).fetchone()
        if not (row and row[0]):
            self.conn.execute(
                store.CREATE_SCHEMA.format(schema=sql.Identifier(self.settings.schema))
            )

    # -- the migration lock ------------------------------------------------------

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Hold the session-level migration lock.

        Polled with pg_try_advisory_lock: a runner blocked inside
        pg_advisory_lock holds a snapshot, and CREATE INDEX CONCURRENTLY run by
        the lock holder waits for every older snapshot, so two runners would
        deadlock.
        """
        keys = (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)
        wait = self.settings.lock_wait
        deadline = time.monotonic() + wait
        reported = False
        while True:
            row = self.conn.execute(store.TRY_LOCK, keys).fetchone()
            if row and row[0]:
                break
            if not reported:
                logger.warning("waiting for the migration lock held by %s", self._lock_holder())
                reported = True
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"another migration ({self._lock_holder()}) has held the migration lock "
                    f"for more than {wait:.0f} s; try again when it has finished"
                )
            time.sleep(0.5)
        try:
            yield
        finally:
            if not self.conn.closed:
                self.conn.execute(store.UNLOCK, keys)

    def _lock_holder(self) -> str:
        keys = (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)
        holder = self.conn.execute(store.LOCK_HOLDER, keys).fetchone()
        if not holder:
            return "another session"
        pid, user, app, addr, since = holder
        return (
            f"pid {pid}, user {user}, {app or 'no application name'}"
            f"{f' from {addr}' if addr else ''}, connected since {since:%Y-%m-%d %H:%M:%S}"
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
        row = self.conn.execute(store.OLDEST_TRANSACTION).fetchone()
        if row is None:
            return "no other transaction is open now"
        pid, user, app, state, seconds, query = row
        return (
            f"the oldest open transaction is pid {pid} ({user}, {app}, {state}, "
            f"open for {seconds} s: {query!r})"
        )

    # -- steps ---------------------------------------------------------------------

    def run_step(self, step: Step, what: str, after: Callable[[], None] | None = None) -> int:
        """Run one step; ``after`` runs in the same transaction when the step is a
        whole file in one. Returns the rows a batched step changed (else 0)."""
        if step.kind == "transaction":
            self.with_retries(what, lambda: self._in_transaction(step.sql, after))
        elif step.kind == "statement":
            self.with_retries(what, lambda: self._in_transaction(step.sql, None))
        elif step.kind == "concurrent":
            self._concurrently(step, what)
        else:
            return self._batched(step, what)
        return 0

    def _in_transaction(self, statement: str, after: Callable[[], None] | None) -> None:
        with self.conn.transaction():
            self.conn.execute(store.SET_LOCK_TIMEOUT, (self.settings.lock_timeout_ms,))
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
        row = self.conn.execute(store.INVALID_INDEX, (index,)).fetchone()
        if row is None:
            return False
        schema, name = str(row[0]), str(row[1])
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
        with self.conn.transaction():
            self.conn.execute(store.SET_LOCK_TIMEOUT, (self.settings.lock_timeout_ms,))
            return self.conn.execute(statement.encode()).fetchone()
