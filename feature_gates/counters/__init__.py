"""Limits on counter columns: what an application enforces on its own counters.

A counter column (``feature-gates counter add``, docs/counters.md) is kept exact by
triggers for every writer. To enforce a stock limit on it ("at most 100 tasks in a
project") exactly under concurrency, reserve the room in the transaction that
writes the rows, before writing them::

    with conn.transaction():
        if not reserve(conn, "projects", "tasks_count", project_id, 1, 100):
            raise ProjectFull(project_id)
        conn.execute("INSERT INTO tasks (project_id, title) VALUES (%s, %s)", ...)

:func:`reserve` is one statement that locks the project's row when the rows fit:
a second caller waits for the first to commit, then sees the count its inserts
left. It does not add to the counter: the triggers count the rows inserted next.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq
from psycopg import sql

from ._statements import RESERVE

__all__ = ["reserve"]


def reserve(
    conn: psycopg.Connection[Any],
    table: str,
    column: str,
    key: object,
    n: int,
    limit: int,
    *,
    key_column: str = "id",
) -> bool:
    """Whether ``n`` more fit in the counter ``table.column`` of the row whose
    ``key_column`` is ``key``, at most ``limit`` in all; True also locks that
    row until the caller's transaction ends.

    Run it in the transaction that then writes the ``n`` rows (or the JSON):
    the counter's triggers count them, and any other reservation of the row
    waits for that transaction and sees the count it leaves. False (nothing
    locked, nothing changed) when they do not fit, or when no row has that
    key. ``table`` may be ``schema.table``.
    """
    if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        raise psycopg.ProgrammingError(
            "reserve() holds the row until the caller's transaction ends, and this "
            "autocommit connection is in none: call it inside 'with conn.transaction():', "
            "with the writes it makes room for"
        )
    if n < 0:
        raise ValueError(f"reserve() makes room for n >= 0 rows, not {n}")
    statement = RESERVE.format(
        table=sql.Identifier(*table.split(".")),
        key_column=sql.Identifier(key_column),
        column=sql.Identifier(column),
    )
    row = conn.execute(statement, {"key": key, "n": n, "limit": limit}).fetchone()
    return row is not None
