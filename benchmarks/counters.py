"""What the counter columns buy on the read side, and what they cost on the write side.

    python -m benchmarks.counters [--quick | --smoke] [--database-url URL] [--json PATH]

Limit checks, one round trip each on one connection, the two ways taking turns
(blocks of calls, the order rotating) on the example app's tables with the
``counters`` set applied (see :mod:`benchmarks.migrate_counters` for the data):

``count_star_us_p50`` / ``counter_column_us_p50``
    How many messages a thread of 10,000 holds: ``COUNT(*)`` over chat_messages
    (the original system's check) against the thread manager's read of
    ``thread_messages_count``. The tables are vacuumed first, so ``COUNT(*)``
    gets its best plan (an index-only scan).
``jsonb_len_us_p50`` / ``destinations_column_us_p50``
    How many waypoints an itinerary of 50 holds: ``jsonb_array_length`` of its
    (TOASTed) data against the itinerary manager's read of ``destinations_count``.

The write side, each call one transaction through a connection pool, the sides
taking turns, messages spread over 100 threads, two messages per call:

``counter_write_overhead_ratio``
    ``ThreadManager.add_messages`` (the conditional UPDATE that reserves room
    under the limit, the insert, and the ``counters`` trigger that moves
    ``thread_messages_count`` and its index) against a bare insert of the same
    messages into the same tables without the ``counters`` set.
    ``trigger_insert_overhead_ratio`` splits it: the bare insert on the tables
    with the ``counters`` set (trigger and index, no reservation).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from examples.sentinel import itineraries
from examples.sentinel import threads
from examples.sentinel.database import Connection
from examples.sentinel.database import Pool
from examples.sentinel.threads import ThreadManager
from feature_gates.migrate import migrate
from feature_gates.testing import DatabaseFactory

from . import harness
from .migrate_counters import BASE
from .migrate_counters import COUNTED
from .migrate_counters import DATASETS
from .migrate_counters import load

__all__ = ["main", "measure_reads", "measure_writes", "run"]

# The original system's checks, measured against the managers' reads; only here.
COUNT_STAR = "SELECT count(*) FROM chat_messages WHERE thread_id = %s"
THREAD_OWNER = "SELECT user_id FROM chat_threads WHERE id = %s"
JSONB_LENGTH = (
    "SELECT jsonb_array_length(data -> 'waypoints') FROM travel_itineraries "
    "WHERE id = %s AND user_id = %s"
)
#: A bare insert of the messages: the thread manager's own statement, alone.
BARE_INSERT = threads.INSERT_MESSAGES

#: Round trips (reads) and transactions (writes) per side: blocks x per block.
SIZES = {
    "full": {"blocks": 40, "per_block": 100, "write_blocks": 20, "write_per_block": 100},
    "quick": {"blocks": 15, "per_block": 100, "write_blocks": 8, "write_per_block": 50},
    "smoke": {"blocks": 2, "per_block": 10, "write_blocks": 2, "write_per_block": 5},
}
WRITE_THREADS = 100
MESSAGES = [{"role": "user", "content": "Is the road to Kano open?"}]
MESSAGES.append({"role": "assistant", "content": "Yes, with a checkpoint at Zaria."})
ROLES = [m["role"] for m in MESSAGES]
CONTENTS = [m["content"] for m in MESSAGES]


def _biggest(conn: psycopg.Connection[TupleRow]) -> tuple[int, int, int, int, int, int]:
    """(thread id, its messages, itinerary id, its owner, its waypoints, its bytes) of
    the largest thread and of an itinerary with the most waypoints."""
    thread = conn.execute(
        "SELECT id, thread_messages_count FROM chat_threads "
        "ORDER BY thread_messages_count DESC, id LIMIT 1"
    ).fetchone()
    itinerary = conn.execute(
        "SELECT id, user_id, destinations_count, pg_column_size(data) FROM travel_itineraries "
        "ORDER BY destinations_count DESC, id LIMIT 1"
    ).fetchone()
    assert thread is not None and itinerary is not None
    return (thread[0], thread[1], *itinerary)


def measure_reads(url: str, sizes: dict[str, int]) -> dict[str, Any]:
    """The two limit checks, each against its counter column, on the loaded database."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE chat_messages, chat_threads, travel_itineraries")
        thread_id, messages, itinerary_id, owner, waypoints, data_bytes = _biggest(conn)
        thread_owner = conn.execute(THREAD_OWNER, (thread_id,)).fetchone()
        assert thread_owner is not None
        # Both answer the same question; a wrong answer would void the comparison.
        count = conn.execute(COUNT_STAR, (thread_id,)).fetchone()
        length = conn.execute(JSONB_LENGTH, (itinerary_id, owner)).fetchone()
        assert count is not None and count[0] == messages, (count, messages)
        assert length is not None and length[0] == waypoints, (length, waypoints)

        def read(query: str, params: tuple[int, ...]) -> Callable[[], object]:
            # prepare=True: a server-side prepared statement on both sides, as
            # psycopg makes one after a few executions anyway.
            return lambda: conn.execute(query, params, prepare=True).fetchone()

        times = harness.alternate(
            {
                "count_star": read(COUNT_STAR, (thread_id,)),
                "counter_column": read(threads.OWNED_THREAD_COUNT, (thread_id, thread_owner[0])),
                "jsonb_len": read(JSONB_LENGTH, (itinerary_id, owner)),
                "destinations_column": read(itineraries.DESTINATIONS_COUNT, (itinerary_id, owner)),
            },
            blocks=sizes["blocks"],
            per_block=sizes["per_block"],
            warmup=50,
        )
    median = {name: round(harness.p50(values), 1) for name, values in times.items()}
    return {
        "count_star_us_p50": median["count_star"],
        "counter_column_us_p50": median["counter_column"],
        "count_star_vs_counter_column": harness.ratio(
            median["count_star"], median["counter_column"]
        ),
        "count_star_us_p99": round(harness.percentile(times["count_star"], 0.99), 1),
        "counter_column_us_p99": round(harness.percentile(times["counter_column"], 0.99), 1),
        "count_star_thread_messages": messages,
        "jsonb_len_us_p50": median["jsonb_len"],
        "destinations_column_us_p50": median["destinations_column"],
        "jsonb_len_vs_destinations_column": harness.ratio(
            median["jsonb_len"], median["destinations_column"]
        ),
        "jsonb_len_waypoints": waypoints,
        "jsonb_len_data_bytes": data_bytes,
        "reads_per_side": len(times["count_star"]),
    }


def _threads(pool: Pool, user_id: int) -> list[int]:
    with pool.connection() as conn:
        rows = conn.execute(
            "INSERT INTO chat_threads (user_id, title) "
            "SELECT %s, 'thread ' || g FROM generate_series(1, %s) g RETURNING id",
            (user_id, WRITE_THREADS),
        ).fetchall()
    return [row[0] for row in rows]


def _user(pool: Pool) -> int:
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO users (email, name, plan) VALUES ('writer@example.com', 'Writer', 'pro') "
            "RETURNING id"
        ).fetchone()
    assert row is not None
    return int(row[0])


def measure_writes(databases: DatabaseFactory, sizes: dict[str, int]) -> dict[str, Any]:
    """add_messages with the counters against a bare insert, in fresh databases."""
    bare_url = databases.create(BASE)
    counted_url = databases.create(COUNTED)
    pools: list[ConnectionPool[Connection]] = []
    try:
        for url in (bare_url, counted_url):
            pool: ConnectionPool[Connection] = ConnectionPool(
                url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False
            )
            pool.open(wait=True)
            pools.append(pool)
        bare_pool, counted_pool = pools
        bare_threads = itertools.cycle(_threads(bare_pool, _user(bare_pool)))
        counted_user = _user(counted_pool)
        counted_ids = _threads(counted_pool, counted_user)
        trigger_threads = itertools.cycle(counted_ids)
        manager_threads = itertools.cycle(counted_ids)
        manager = ThreadManager(counted_pool)
        limit = 2**31 - 1

        def insert(pool: Pool, ids: itertools.cycle[int]) -> Callable[[], object]:
            def call() -> None:
                with pool.connection() as conn:
                    conn.execute(BARE_INSERT, (next(ids), ROLES, CONTENTS)).fetchall()

            return call

        times = harness.alternate(
            {
                "add_messages": lambda: manager.add_messages(
                    next(manager_threads), MESSAGES, limit, user_id=counted_user
                ),
                "bare_insert": insert(bare_pool, bare_threads),
                "trigger_insert": insert(counted_pool, trigger_threads),
            },
            blocks=sizes["write_blocks"],
            per_block=sizes["write_per_block"],
            warmup=20,
        )
        with counted_pool.connection() as conn:
            drift = conn.execute("SELECT count(*) FROM feature_gates_counter_audit()").fetchone()
    finally:
        for pool in pools:
            pool.close()
        databases.drop(bare_url)
        databases.drop(counted_url)
    median = {name: round(harness.p50(values), 1) for name, values in times.items()}
    return {
        "add_messages_us_p50": median["add_messages"],
        "bare_insert_us_p50": median["bare_insert"],
        "trigger_insert_us_p50": median["trigger_insert"],
        "counter_write_overhead_ratio": harness.ratio(
            median["add_messages"], median["bare_insert"]
        ),
        "trigger_insert_overhead_ratio": harness.ratio(
            median["trigger_insert"], median["bare_insert"]
        ),
        "counters_exact_after_writes": drift is not None and drift[0] == 0,
        "writes_per_side": len(times["add_messages"]),
        "messages_per_write": len(MESSAGES),
    }


def run(server_url: str | None = None, *, scale: harness.Scale = "full") -> dict[str, Any]:
    """Load the example app's tables, apply the counters, measure reads and writes."""
    sizes = SIZES[scale]
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            database_url = databases.create(None)
            load(database_url, DATASETS[scale])
            migrate(database_url, COUNTED)
            figures = measure_reads(database_url, sizes)
            databases.drop(database_url)
            figures.update(measure_writes(databases, sizes))
            return figures
        finally:
            databases.close()


def main(argv: list[str] | None = None) -> None:
    harness.cli("python -m benchmarks.counters", __doc__, run, argv)


if __name__ == "__main__":
    main()
