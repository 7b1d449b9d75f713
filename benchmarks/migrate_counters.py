"""How long applying the ``counters`` set takes on a large database, and how
long the application's writes wait meanwhile.

    python -m benchmarks.migrate_counters [--quick | --smoke] [--database-url URL]
        [--batch-size N] [--json PATH]

Loads the example app's tables (examples/sentinel/migrations) with 10,000 chat
threads holding 1,000,000 messages (ten threads of 10,000, stored contiguously,
the rest interleaved over the others) and 100,000 itineraries (5 to 50
waypoints, plus a share of messy rows), applies ``core``, then times
``migrate`` of ``core`` + ``counters`` while a writer thread keeps writing: an
UPDATE of a random chat_threads row and an INSERT of a message into a random
thread, in turn, as fast as it can. The longest time one of its chat_threads
writes took is the longest any migration step kept chat_threads writes waiting
(``migrate_max_lock_ms``). ``--quick`` and ``--smoke`` load fewer rows (the
JSON says how many): their ``migrate_1m_messages_s`` is not the 1M figure.

Prints one JSON object. Without ``--database-url`` a private durable server
(fsync on) is started; either way the data lives in a database of its own.
"""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import psycopg

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate
from feature_gates.migrate import verify
from feature_gates.testing import DatabaseFactory

from . import harness

__all__ = ["BASE", "COUNTED", "Dataset", "load", "main", "measure", "run"]

#: The example app's own tables, before and after feature-gates' sets.
BASE = MigrationSettings(sets=("sentinel",), folders={"sentinel": MIGRATION_FOLDER})
WITH_CORE = MigrationSettings(sets=("sentinel", "core"), folders={"sentinel": MIGRATION_FOLDER})
COUNTED = MigrationSettings(
    sets=("sentinel", "core", "counters"), folders={"sentinel": MIGRATION_FOLDER}
)


@dataclass(frozen=True)
class Dataset:
    """How much data the example app's tables get."""

    users: int
    threads: int
    messages: int
    #: Threads 1..big_threads hold big_thread_messages each, stored contiguously.
    big_threads: int
    big_thread_messages: int
    itineraries: int


DATASETS = {
    "full": Dataset(2_000, 10_000, 1_000_000, 10, 10_000, 100_000),
    "quick": Dataset(500, 2_000, 200_000, 10, 10_000, 20_000),
    "smoke": Dataset(20, 50, 3_000, 1, 1_000, 200),
}

LOAD_USERS = """
INSERT INTO users (email, name, plan)
SELECT 'user' || g || '@example.com', 'User ' || g, 'pro' FROM generate_series(1, %(users)s) g
"""

LOAD_THREADS = """
INSERT INTO chat_threads (user_id, title)
SELECT 1 + g %% %(users)s, 'thread ' || g FROM generate_series(1, %(threads)s) g
"""

#: The big threads first, each stored contiguously; the rest spread (interleaved)
#: over the other threads.
LOAD_MESSAGES = """
INSERT INTO chat_messages (thread_id, role, content)
SELECT CASE WHEN g <= %(big_total)s THEN 1 + (g - 1) / %(big_size)s
            ELSE %(big)s + 1 + (g::bigint * 7919) %% (%(threads)s - %(big)s) END,
       CASE WHEN g %% 2 = 0 THEN 'assistant' ELSE 'user' END,
       'message ' || g
FROM generate_series(1, %(messages)s) g
"""

#: The legacy counter, drifted from the truth here and there.
LOAD_MESSAGE_COUNT = """
UPDATE chat_threads t SET message_count = c.n + (t.id % 3 = 0)::int
FROM (SELECT thread_id, count(*) AS n FROM chat_messages GROUP BY thread_id) c
WHERE c.thread_id = t.id
"""

#: 5 to 50 waypoints (with notes that compress as little as real ones: a 50-waypoint
#: itinerary is TOASTed), and every shape of messy data a real table holds.
LOAD_ITINERARIES = """
INSERT INTO travel_itineraries (user_id, data)
SELECT 1 + g %% %(users)s,
       CASE g %% 50
           WHEN 0 THEN 'null'::jsonb
           WHEN 1 THEN '{}'::jsonb
           WHEN 2 THEN '{"waypoints": null}'::jsonb
           WHEN 3 THEN '{"waypoints": {"city": "Lyon"}}'::jsonb
           WHEN 4 THEN '{"waypoints": 3}'::jsonb
           ELSE jsonb_build_object(
               'title', 'trip ' || g,
               'waypoints', (SELECT jsonb_agg(jsonb_build_object(
                                 'city', 'city ' || k, 'lat', k * 0.5, 'lon', k * 0.25,
                                 'notes', md5((g * 64 + k)::text)))
                             FROM generate_series(1, 5 + (g * 37) %% 46) k))
       END
FROM generate_series(1, %(itineraries)s) g
"""


def load(url: str, data: Dataset) -> float:
    """Create the example app's tables in the empty database ``url`` and fill them;
    returns the seconds it took."""
    started = time.perf_counter()
    migrate(url, BASE)
    params = {
        **asdict(data),
        "big": data.big_threads,
        "big_size": data.big_thread_messages,
        "big_total": data.big_threads * data.big_thread_messages,
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LOAD_USERS, params)
        conn.execute(LOAD_THREADS, params)
        conn.execute(LOAD_MESSAGES, params)
        conn.execute(LOAD_MESSAGE_COUNT)
        conn.execute(LOAD_ITINERARIES, params)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


class Writer(threading.Thread):
    """The application: writes to chat_threads and chat_messages in turn, and
    records how long each write took."""

    def __init__(self, url: str, threads: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.threads = threads
        self.stop = threading.Event()
        self.thread_writes: list[float] = []
        self.message_writes: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.stop.is_set():
                    thread_id = rng.randint(1, self.threads)
                    started = time.perf_counter()
                    conn.execute(
                        "UPDATE chat_threads SET title = %s WHERE id = %s",
                        (f"renamed {started}", thread_id),
                    )
                    self.thread_writes.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    conn.execute(
                        "INSERT INTO chat_messages (thread_id, content) VALUES (%s, 'live')",
                        (rng.randint(1, self.threads),),
                    )
                    self.message_writes.append(time.perf_counter() - started)
        except BaseException as exc:  # reported by measure()
            self.error = exc


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def measure(url: str, data: Dataset, batch_size: int = 1000) -> dict[str, Any]:
    """Apply ``counters`` to the loaded database ``url`` under a concurrent writer."""
    migrate(url, WITH_CORE)
    settings = MigrationSettings(sets=COUNTED.sets, folders=COUNTED.folders, batch_size=batch_size)
    writer = Writer(url, data.threads)
    writer.start()
    time.sleep(1.0)  # the writer's own baseline before the migration starts
    started = time.perf_counter()
    try:
        migrate(url, settings)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)
    finally:
        writer.stop.set()
        writer.join()
    if writer.error is not None:
        raise writer.error
    # The legacy message_count drifts by construction (LOAD_MESSAGE_COUNT):
    # verify names it, as it should; the counters feature-gates keeps must not.
    problems = [p for p in verify(url, settings) if p.check != "legacy counter"]
    with psycopg.connect(url) as conn:
        sizes = conn.execute(
            "SELECT relname, round(pg_total_relation_size(oid) / 1048576.0) "
            "FROM pg_class WHERE relname IN "
            "('chat_threads', 'chat_messages', 'travel_itineraries')"
        ).fetchall()
    steps = {
        a.label: a.execution_ms
        for a in applied_migrations(url, settings)
        if a.set_name == "counters"
    }
    thread_writes = sorted(writer.thread_writes)
    return {
        "migrate_1m_messages_s": round(elapsed, 2),
        "migrate_max_lock_ms": _ms(thread_writes[-1]),
        "chat_threads_write_p50_ms": _ms(statistics.median(thread_writes)),
        "chat_threads_write_p99_ms": _ms(harness.percentile(thread_writes, 0.99)),
        "chat_messages_write_max_ms": _ms(max(writer.message_writes)),
        "writes_during_run": len(thread_writes) + len(writer.message_writes),
        "step_ms": steps,
        "verify_problems": [str(p) for p in problems],
        "migrate_threads": data.threads,
        "migrate_messages": data.messages,
        "migrate_itineraries": data.itineraries,
        "batch_size": batch_size,
        "table_mb": {str(name): int(mb) for name, mb in sizes},
    }


def run(
    server_url: str | None = None, *, scale: harness.Scale = "full", batch_size: int = 1000
) -> dict[str, Any]:
    """Load a fresh database, apply ``counters`` to it, and return the figures."""
    data = DATASETS[scale]
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            database_url = databases.create(None)
            load_s = load(database_url, data)
            return {**measure(database_url, data, batch_size), "load_s": round(load_s, 1)}
        finally:
            databases.close()


def main(argv: list[str] | None = None) -> int:
    figures = harness.cli(
        "python -m benchmarks.migrate_counters",
        __doc__,
        run,
        argv,
        {"--batch-size": {"type": int, "default": 1000, "help": "rows per backfill batch"}},
    )
    return 1 if figures["verify_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
