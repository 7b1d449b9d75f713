"""The migration lock: who holds it, and the proof that the runner has one session.

The lock is a session-level advisory lock. PostgreSQL releases it when the
session ends (the runner exits or is killed; its host vanishes and the TCP
keepalives give up), so it cannot outlive its runner, with one exception: a
connection pooler in transaction mode (PgBouncer, RDS Proxy, Supavisor...)
keeps the server session after the client has gone and hands it to other
clients, lock included. So before it takes the lock or changes anything, the
runner proves that its connection is one session of its own
(:func:`prove_one_session`), and every transaction it opens afterwards checks
that it still is.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg

from . import store
from .sources import MigrationError

__all__ = ["LockHolder", "NotOneSession", "prove_one_session", "read_holder"]

Connection = psycopg.Connection[tuple[object, ...]]

#: The application_name of the runner's second, short-lived connection.
CHECK_APPLICATION_NAME = "feature-gates migrate (session check)"
#: Rounds of the two-connection test when something (a pooler or a proxy)
#: stands between the runner and PostgreSQL.
PROXIED_ROUNDS = 20
#: Seconds the test's second connection may take to answer.
CHECK_TIMEOUT = 10


class NotOneSession(MigrationError):
    """The database URL does not give the runner one session of its own: it
    leads to a connection pooler in transaction mode, or to one the runner
    could not check (``checked`` False)."""

    def __init__(self, reason: str, *, changed: bool = False, checked: bool = True) -> None:
        self.reason = reason
        self.changed = changed
        self.checked = checked
        super().__init__(self.explain("the database URL"))

    def explain(self, source: str) -> str:
        """The one-line message, naming where the URL came from."""
        if self.checked:
            found = f"{source} leads to a connection pooler in transaction mode ({self.reason})"
        else:
            found = (
                f"{source} leads to a connection pooler or proxy that the runner could not "
                f"check ({self.reason})"
            )
        outcome = (
            "it stopped there (what it applied before stays)"
            if self.changed
            else "nothing was locked or changed"
        )
        if source == "FEATURE_GATES_MIGRATION_DATABASE_URL":
            advice = f"point {source} at PostgreSQL itself"
        elif source == "--database-url":
            advice = "give --database-url the URL of PostgreSQL itself"
        else:
            advice = (
                "set FEATURE_GATES_MIGRATION_DATABASE_URL (or --database-url) to the URL of "
                "PostgreSQL itself"
            )
        return (
            f"{found}: migrations need one database session for their lock and settings, "
            f"and {outcome}; {advice} (or of a pooler in session mode)"
        )


def prove_one_session(conn: Connection, conninfo: str) -> str:
    """Prove that ``conn`` is one server session that no other client shares, and
    return the token that marks it (a setting of the session).

    The token is a session setting of ``conn``, which a session keeps from one
    transaction to the next and shows to no other client. A pooler in
    transaction mode fails one half of the test or the other: busy, it runs the
    next transaction of ``conn`` on another server connection (the token is
    gone); idle, it hands a new client the server connection ``conn`` just used
    (the new client sees the token). On a direct connection the process id
    PostgreSQL announced at connect time (``conn.info.backend_pid``) is the
    server process's own, and one round suffices; a pooler or proxy announces
    one of its own, and the test runs :data:`PROXIED_ROUNDS` rounds (a busy
    pooler may pass one by chance). Raises :class:`NotOneSession` before
    anything is locked or changed.
    """
    token = secrets.token_hex(16)
    row = conn.execute(store.SET_SESSION_TOKEN, (token,)).fetchone()
    direct = row is not None and row[1] == conn.info.backend_pid
    for round_ in range(1 if direct else PROXIED_ROUNDS):
        if round_:
            # Out of step with the pooler's other clients.
            time.sleep(random.uniform(0.0, 0.02))
        if _token_on_new_connection(conninfo, required=not direct) == token:
            raise NotOneSession(
                "a second connection to the same URL was handed this session's server connection"
            )
        if _token(conn) != token:
            raise NotOneSession("a setting of the session was gone in its next transaction")
    return token


def _token_on_new_connection(conninfo: str, *, required: bool) -> str | None:
    """The token a new connection to ``conninfo`` sees. In a thread of its own,
    given :data:`CHECK_TIMEOUT` seconds: a pooler with no free server connection
    keeps a new client waiting, deaf to cancel requests. When the connection is
    not ``required`` (the server announced its own process id), None if it
    cannot be had (a server at max_connections)."""
    seen: list[str | None] = []
    failed: list[psycopg.Error] = []

    def peek() -> None:
        try:
            with psycopg.connect(
                conninfo,
                autocommit=True,
                prepare_threshold=None,
                application_name=CHECK_APPLICATION_NAME,
                connect_timeout=CHECK_TIMEOUT,
            ) as other:
                seen.append(_token(other))
        except psycopg.Error as exc:
            failed.append(exc)

    thread = threading.Thread(target=peek, name="feature-gates-session-check", daemon=True)
    thread.start()
    thread.join(CHECK_TIMEOUT)
    if seen:
        return seen[0]
    if not required:
        return None
    first_line = str(failed[0]).strip().split("\n")[0] if failed else ""
    reason = f" ({first_line})" if first_line else f" within {CHECK_TIMEOUT} s"
    raise NotOneSession(
        f"a second connection to the same URL, which the check needs, got no answer{reason}",
        checked=False,
    )


def _token(conn: Connection) -> str | None:
    row = conn.execute(store.READ_SESSION_TOKEN).fetchone()
    return str(row[0]) if row and row[0] else None


@dataclass(frozen=True)
class LockHolder:
    """The session holding the migration lock, from ``pg_stat_activity``.

    Columns another role's session hides from an unprivileged reader are None.
    """

    pid: int
    user: str | None
    application_name: str | None
    client: str | None
    connected_at: datetime | None
    state: str | None
    state_seconds: int | None
    query: str | None

    def __str__(self) -> str:
        parts = [f"user {self.user}" if self.user else None]
        parts.append(repr(self.application_name) if self.application_name else "no application")
        parts.append(f"from {self.client}" if self.client else None)
        if self.connected_at is not None:
            parts.append(f"connected {self.connected_at.isoformat(sep=' ', timespec='seconds')}")
        if self.state is not None and self.state_seconds is not None:
            parts.append(f"{self.state} for {self.state_seconds} s")
        return f"pid {self.pid} ({', '.join(p for p in parts if p)})"

    @property
    def how_to_clear(self) -> str:
        return (
            "if no migration is running (a run that was killed, or that went through a "
            f"pooler), end that session with pg_terminate_backend({self.pid})"
        )


def read_holder(conn: Connection) -> LockHolder | None:
    """The session holding the migration lock in this database, or None."""
    row = conn.execute(store.LOCK_HOLDER, (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)).fetchone()
    if row is None:
        return None
    pid, user, app, addr, port, connected_at, state, seconds, query = row
    client = None
    if addr is not None:
        client = f"{addr}:{port}" if port is not None and port != -1 else str(addr)
    elif port == -1:
        client = "a local socket"
    return LockHolder(
        pid=int(pid),  # type: ignore[call-overload]
        user=str(user) if user is not None else None,
        application_name=str(app) if app else None,
        client=client,
        connected_at=connected_at if isinstance(connected_at, datetime) else None,
        state=str(state) if state is not None else None,
        state_seconds=int(seconds) if seconds is not None else None,  # type: ignore[call-overload]
        query=str(query) if query is not None else None,
    )
