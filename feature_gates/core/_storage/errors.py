"""What a failed statement means: one classification for every caller.

=========  ======================================================================
outcome    errors
=========  ======================================================================
outage     the database cannot be reached: cannot connect, connection lost or
           closed by the server, server shutting down or starting (SQLSTATE class
           08 but 08P01, 57P01, 57P02, 57P03), a connection-level error with no
           SQLSTATE, the watchdog's NoAnswer. The fail mode applies.
retry      the server answered with an error that says "try again", so nothing
           committed: 40001 serialization_failure, 40P01 deadlock_detected, 26000
           invalid_sql_statement_name and 42P05 duplicate_prepared_statement (a
           pooler mixing prepared statements), 08P01 protocol_violation; and a
           pool closed under a waiting caller (nothing was sent). Sent once more.
error      everything else: 53300 too_many_connections, 53100 disk_full, 57014
           query_canceled (the statement timeout), 42883 undefined_function, 28P01
           a wrong password, 3D000 a missing database, a bug, a pool whose every
           connection stayed in use. Logged with its SQLSTATE and counted; never a
           reason to let a request past its limit.
=========  ======================================================================

A connection the server refuses carries no SQLSTATE in libpq, only the server's
message: the few refusals that are not outages are known by it (in English, the
server's default ``lc_messages``; in another language they count as outages).
"""

from __future__ import annotations

import enum
import re

import psycopg
from psycopg_pool import PoolClosed

from .watchdog import NoAnswer

__all__ = [
    "Outcome",
    "PoolExhausted",
    "StorageError",
    "StorageUnavailable",
    "classify",
    "describe",
    "hint",
    "one_line",
    "sqlstate",
]


class Outcome(enum.Enum):
    OUTAGE = "outage"
    RETRY = "retry"
    ERROR = "error"


#: Answered errors after which the same statement is sent once more.
RETRY_ONCE = frozenset({"40001", "40P01", "26000", "42P05", "08P01"})
#: The server is shutting down, crashed, or not accepting connections yet.
SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})
#: A missing object of the package: the migrations have not been applied.
MISSING_OBJECT = frozenset({"42883", "42P01"})

#: Why a server refused a connection, by its (English) message: the SQLSTATE libpq
#: does not give for a connection that failed.
_REFUSALS = (
    (re.compile(r"too many (connections|clients)"), "53300"),
    (re.compile(r"the database system is (starting up|in recovery mode)"), "57P03"),
    (re.compile(r"the database system is (shutting down|not yet accepting connections)"), "57P03"),
    (re.compile(r"password authentication failed|no pg_hba\.conf entry"), "28P01"),
    (re.compile(r'database ".*" does not exist'), "3D000"),
    (re.compile(r'role ".*" does not exist'), "28000"),
)


class StorageError(Exception):
    """A statement of feature-gates failed; ``error`` is what the database (or the
    driver) raised, ``sqlstate`` its code when it has one."""

    def __init__(self, message: str, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.error = error

    @property
    def sqlstate(self) -> str | None:
        return None if self.error is None else sqlstate(self.error)


class StorageUnavailable(StorageError):
    """The database cannot be reached (an outage)."""


class PoolExhausted(Exception):
    """Every connection of the pool stayed in use for the whole wait: a load the pool
    is not sized for, not an outage."""


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of ``error``: the server's, or for a connection it refused, the
    one its message names."""
    state: str | None = getattr(error, "sqlstate", None)
    if state is None and isinstance(error, psycopg.OperationalError):
        message = str(error)
        for pattern, code in _REFUSALS:
            if pattern.search(message):
                return code
    return state


def classify(error: BaseException) -> Outcome:
    """What ``error``, raised by a statement or by getting its connection, means."""
    if isinstance(error, NoAnswer):
        return Outcome.OUTAGE
    if isinstance(error, PoolClosed):
        return Outcome.RETRY
    state = sqlstate(error)
    if state in RETRY_ONCE:
        return Outcome.RETRY
    if state is not None:
        return Outcome.OUTAGE if state[:2] == "08" or state in SERVER_GONE else Outcome.ERROR
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, OSError)):
        return Outcome.OUTAGE  # no answer: a connection that failed or broke
    return Outcome.ERROR


def one_line(error: BaseException) -> str:
    """An error as one line for logs and command output: its first line (libpq puts
    the host, port and reason there), or its class name when it has no text."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def describe(error: BaseException) -> str:
    """``error`` for a log line or the stats: its class, its SQLSTATE, its message."""
    state = sqlstate(error)
    code = f" (SQLSTATE {state})" if state else ""
    return f"{type(error).__name__}{code}: {one_line(error)}"


def hint(error: BaseException) -> str:
    """What to do about ``error``, when the package knows."""
    if sqlstate(error) in MISSING_OBJECT:
        return " (run 'flask feature-gates migrate' to install the feature-gates functions)"
    return ""
