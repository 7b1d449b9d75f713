"""Ends a statement the database never answers.

``statement_timeout`` is enforced by the server: a server that is alive cancels a
stuck statement and answers. One that stopped answering altogether (a frozen host
or process, a network partition without a reset) answers nothing, and a request
waiting for the reply would wait forever. The watchdog shuts down the socket of a
connection whose statement outlived its deadline; the waiting call then fails at
once, as on a lost connection: the gate applies its fail mode, and the usage
writer keeps its batch (in doubt, settled later) and retries.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

__all__ = ["GRACE", "NoAnswer", "Watchdog", "limit_for", "watchdog"]

#: Seconds past the statement timeout after which a statement the database has
#: not answered (not even with its cancellation) is ended.
GRACE = 1.0


def limit_for(statement_timeout: float) -> float:
    """The watchdog's limit for statements under ``statement_timeout`` (0: none)."""
    return statement_timeout + GRACE if statement_timeout > 0 else 0.0


class NoAnswer(psycopg.OperationalError):
    """The database answered nothing within the watchdog's limit: the connection was
    ended. Checking the pool's other connections would wait on it too."""


class Watchdog:
    """Watches guarded statements from one daemon thread per process.

    :param interval: seconds between two looks; a deadline is enforced within it.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._severed: set[int] = set()
        self._next_token = 0
        self._pid = 0

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any], seconds: float) -> Iterator[int]:
        """Shut ``conn`` down if the block has not ended after ``seconds``. Yields a
        token for :meth:`severed`. ``seconds <= 0`` guards nothing."""
        if seconds <= 0:
            yield -1
            return
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._pid != os.getpid():
                self._start()  # first use, or the first in a forked child
            token = self._next_token
            self._next_token += 1
            self._watched[token] = (deadline, conn)
        try:
            yield token
        except BaseException:
            raise  # the caller asks severed(token) while handling it
        else:
            with self._lock:
                self._severed.discard(token)  # ended in time after all
        finally:
            with self._lock:
                self._watched.pop(token, None)

    def raise_if_severed(self, token: int, limit: float, error: BaseException) -> None:
        """Raise :class:`NoAnswer` (from ``error``) if the watchdog ended the guarded
        connection; for the handler of the error that ending caused."""
        if self.severed(token):
            raise NoAnswer(
                f"the database did not answer within {limit:g} s; the connection was ended"
            ) from error

    def severed(self, token: int) -> bool:
        """Whether the watchdog ended the guarded connection (once: the mark is cleared)."""
        with self._lock:
            if token in self._severed:
                self._severed.discard(token)
                return True
            return False

    def _after_fork(self) -> None:
        # The parent's thread may have held the lock at the fork: the child starts
        # with a new one, and its own thread on first use.
        self._lock = threading.Lock()
        self._pid = 0

    def _start(self) -> None:
        # Under the lock. A forked child has none of the parent's threads.
        self._watched.clear()
        self._severed.clear()
        self._pid = os.getpid()
        thread = threading.Thread(target=self._run, name="feature-gates-watchdog", daemon=True)
        thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while self._pid == pid:
            time.sleep(self.interval)
            now = time.monotonic()
            with self._lock:
                # Shut down under the lock: a guard that ends meanwhile has not yet
                # given its connection back to the pool, so no other request's
                # statement can be on it.
                for token, (deadline, conn) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        self._severed.add(token)
                        _shut_down(conn)


def _shut_down(conn: psycopg.Connection[Any]) -> None:
    try:
        # A duplicate of the descriptor: shutdown() acts on the socket itself, and
        # closing the duplicate leaves the connection's own descriptor to psycopg.
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed already


#: The process's watchdog.
watchdog = Watchdog()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=watchdog._after_fork)
