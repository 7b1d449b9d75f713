"""The thread manager: chat threads and their messages.

A thread's ``thread_messages_count`` is the number of its messages, so that a
limit check never needs ``COUNT(*)``. The ``counters`` migration set keeps it exact
with triggers on ``chat_messages`` (for every writer, this one included); the
manager reserves room for new messages with
:func:`feature_gates.counters.reserve`, one conditional statement that locks the
thread, and moves the legacy ``message_count`` in the same transaction, for the
readers that still use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from feature_gates.counters import reserve

from .database import Pool

__all__ = ["Message", "Thread", "ThreadFull", "ThreadManager", "ThreadNotFound"]

INSERT_THREAD = """
INSERT INTO chat_threads (user_id, title, message_count)
VALUES (%s, %s, 0)
RETURNING id, user_id, title, thread_messages_count, message_count, created_at, updated_at
"""

SELECT_THREAD = """
SELECT id, user_id, title, thread_messages_count, message_count, created_at, updated_at
FROM chat_threads WHERE id = %s AND user_id = %s
"""

SELECT_THREADS = """
SELECT id, user_id, title, thread_messages_count, message_count, created_at, updated_at
FROM chat_threads WHERE user_id = %s ORDER BY id
"""

# After reserve() has locked the thread with room for n more: the legacy
# message_count has no trigger, so it moves here, in the same transaction as the
# messages. thread_messages_count is moved by the `counters` set's triggers on
# chat_messages, by the inserts that follow; adding n here as well would count
# every message twice. RETURNING shows the thread as it is once the inserts are
# done. The owner is part of the match: another user's thread is not found.
COUNT_LEGACY = """
UPDATE chat_threads
SET message_count = message_count + %(n)s,
    updated_at = now()
WHERE id = %(thread_id)s AND user_id = %(user_id)s
RETURNING id, user_id, title, thread_messages_count + %(n)s AS thread_messages_count,
          message_count, created_at, updated_at
"""

# Read only when reserve() found no room: full, or not the owner's.
OWNED_THREAD_COUNT = "SELECT thread_messages_count FROM chat_threads WHERE id = %s AND user_id = %s"

INSERT_MESSAGES = """
INSERT INTO chat_messages (thread_id, role, content)
SELECT %s, m.role, m.content
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS m(role, content, ord)
ORDER BY m.ord
RETURNING id, thread_id, role, content, created_at
"""

SELECT_MESSAGES = """
SELECT m.id, m.thread_id, m.role, m.content, m.created_at
FROM chat_messages m JOIN chat_threads t ON t.id = m.thread_id
WHERE m.thread_id = %s AND t.user_id = %s
ORDER BY m.id
"""


@dataclass(frozen=True)
class Thread:
    id: int
    user_id: int
    title: str
    thread_messages_count: int
    message_count: int
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "messages": self.thread_messages_count,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Message:
    id: int
    thread_id: int
    role: str
    content: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "created_at": self.created_at.isoformat(),
        }


class ThreadFull(Exception):
    """Adding the messages would take a thread past its limit; nothing was added."""

    def __init__(self, thread_id: int, count: int, adding: int, limit: int) -> None:
        super().__init__(
            f"thread {thread_id} holds {count} of at most {limit} messages; "
            f"{adding} more do not fit"
        )
        self.thread_id = thread_id
        self.count = count
        self.adding = adding
        self.limit = limit


class ThreadNotFound(LookupError):
    """The thread does not exist or belongs to someone else; nothing was added."""


class ThreadManager:
    """Creates threads and adds messages to them, keeping both counters exact."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def create_thread(self, user_id: int, title: str) -> Thread:
        """A new, empty thread of ``user_id``."""
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Thread))
            thread = cur.execute(INSERT_THREAD, (user_id, title)).fetchone()
        assert thread is not None
        return thread

    def get_thread(self, thread_id: int, user_id: int) -> Thread | None:
        """The thread, or None when it does not exist or belongs to someone else."""
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Thread))
            return cur.execute(SELECT_THREAD, (thread_id, user_id)).fetchone()

    def list_threads(self, user_id: int) -> list[Thread]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Thread))
            return cur.execute(SELECT_THREADS, (user_id,)).fetchall()

    def list_messages(self, thread_id: int, user_id: int) -> list[Message]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(Message))
            return cur.execute(SELECT_MESSAGES, (thread_id, user_id)).fetchall()

    def add_messages(
        self, thread_id: int, messages: list[dict[str, str]], limit: int, *, user_id: int
    ) -> tuple[Thread, list[Message]]:
        """Add ``messages`` (each ``{"role": ..., "content": ...}``) to ``user_id``'s
        thread holding at most ``limit`` messages, all or none, in one transaction.

        Raises :class:`ThreadFull` when they do not fit and :class:`ThreadNotFound`
        when the thread does not exist or is not ``user_id``'s.
        """
        n = len(messages)
        if n == 0:
            raise ValueError("add_messages needs at least one message")
        roles = [m.get("role", "user") for m in messages]
        contents = [m["content"] for m in messages]
        with self.pool.connection() as conn, conn.transaction():
            # One statement locks the thread if the messages fit: concurrent
            # callers queue on it, and each sees the count the previous one
            # left, so N callers at a limit never land more than the limit.
            if not reserve(conn, "chat_threads", "thread_messages_count", thread_id, n, limit):
                row = conn.execute(OWNED_THREAD_COUNT, (thread_id, user_id)).fetchone()
                if row is None:
                    raise ThreadNotFound(f"thread {thread_id} does not exist")
                raise ThreadFull(thread_id, int(row[0]), n, limit)
            cur = conn.cursor(row_factory=class_row(Thread))
            params = {"n": n, "thread_id": thread_id, "user_id": user_id}
            thread = cur.execute(COUNT_LEGACY, params).fetchone()
            if thread is None:
                raise ThreadNotFound(f"thread {thread_id} does not exist")
            mcur = conn.cursor(row_factory=class_row(Message))
            added = mcur.execute(INSERT_MESSAGES, (thread_id, roles, contents)).fetchall()
        return thread, added
