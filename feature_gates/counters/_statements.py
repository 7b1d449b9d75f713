"""Every SQL statement of :mod:`feature_gates.counters`, in one place."""

from __future__ import annotations

from psycopg import sql

#: Room for ``n`` more under ``limit`` in a counter, and the row locked while
#: the caller's transaction lasts (only a row that has the room is locked).
#: FOR NO KEY UPDATE: it waits for, and makes wait, the counter's triggers and
#: other reservations of the row; a foreign key check of a child row (FOR KEY
#: SHARE) goes on.
RESERVE = sql.SQL(
    "SELECT true FROM {table} WHERE {key_column} = %(key)s AND {column} + %(n)s <= %(limit)s "
    "FOR NO KEY UPDATE"
)
