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

Then the same for a counter set ``feature-gates counter add`` writes
(:func:`measure_counter_add`), on a second database loaded the same way: the
counters of the example's two tables, written by the generator and applied
while the writer writes, the backfill of the messages' counter killed half-way
(the runner's process killed while it waits for a row the benchmark holds,
after 5 of its 10 batches) and resumed by a second ``migrate``.
``counter_add_max_write_ms`` is the longest any chat_threads write took during
the whole set, both runs and the kill included; ``counter_add_resume_exact``
whether the resumed backfill did exactly the batches the first run had not.

Prints one JSON object. Without ``--database-url`` a private durable server
(fsync on) is started; either way the data lives in a database of its own.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import CounterDefinition
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import add_counter
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate
from feature_gates.migrate import verify
from feature_gates.testing import DatabaseFactory

from . import harness

__all__ = [
    "BASE",
    "COUNTED",
    "Dataset",
    "load",
    "main",
    "measure",
    "measure_counter_add",
    "run",
    "kill_when_it_waits",
]

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
    records how long each write took. ``skip``: a thread it leaves alone."""

    def __init__(self, url: str, threads: int, skip: int | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.threads = threads
        self.skip = skip
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
                    if thread_id == self.skip:
                        continue
                    started = time.perf_counter()
                    conn.execute(
                        "UPDATE chat_threads SET title = %s WHERE id = %s",
                        (f"renamed {started}", thread_id),
                    )
                    self.thread_writes.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    conn.execute(
                        "INSERT INTO chat_messages (thread_id, content) VALUES (%s, 'live')",
                        (thread_id,),
                    )
                    self.message_writes.append(time.perf_counter() - started)
        except BaseException as exc:  # reported by measure()
            self.error = exc


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@contextmanager
def _writing(url: str, threads: int, skip: int | None = None) -> Iterator[Writer]:
    """The writer at work around the block: a second of its own baseline
    before, half a second after; its error, if any, raised at the end."""
    writer = Writer(url, threads, skip)
    writer.start()
    time.sleep(1.0)
    try:
        yield writer
        time.sleep(0.5)
    finally:
        writer.stop.set()
        writer.join()
    if writer.error is not None:
        raise writer.error


def _step_ms(url: str, settings: MigrationSettings, set_name: str) -> dict[str, int]:
    """The history's execution_ms of each migration of ``set_name``."""
    return {
        a.label: a.execution_ms for a in applied_migrations(url, settings) if a.set_name == set_name
    }


def measure(url: str, data: Dataset, batch_size: int = 1000) -> dict[str, Any]:
    """Apply ``counters`` to the loaded database ``url`` under a concurrent writer."""
    migrate(url, WITH_CORE)
    settings = MigrationSettings(sets=COUNTED.sets, folders=COUNTED.folders, batch_size=batch_size)
    with _writing(url, data.threads) as writer:
        started = time.perf_counter()
        migrate(url, settings)
        elapsed = time.perf_counter() - started
    # The legacy message_count drifts by construction (LOAD_MESSAGE_COUNT):
    # verify names it, as it should; the counters feature-gates keeps must not.
    problems = [p for p in verify(url, settings) if p.check != "legacy counter"]
    with psycopg.connect(url) as conn:
        sizes = conn.execute(
            "SELECT relname, round(pg_total_relation_size(oid) / 1048576.0) "
            "FROM pg_class WHERE relname IN "
            "('chat_threads', 'chat_messages', 'travel_itineraries')"
        ).fetchall()
    steps = _step_ms(url, settings, "counters")
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


#: What `feature-gates counter add` is told for the example's two counters.
GENERATED = (
    CounterDefinition(
        "chat_threads.thread_messages_count",
        rows="chat_messages.thread_id",
        index="(user_id, thread_messages_count)",
    ),
    CounterDefinition(
        "travel_itineraries.destinations_count",
        jsonb_length="data.waypoints",
        index="(user_id, destinations_count)",
    ),
)
#: The runner of the first attempt, in a process of its own (to be killed):
#: URL, folder, batch size. It waits for locks as long as it takes.
RUNNER = (
    "import sys; from feature_gates.migrate import MigrationSettings, migrate; "
    "migrate(sys.argv[1], MigrationSettings(sets=('sentinel', 'core', 'app_counters'), "
    "folders={'sentinel': sys.argv[2], 'app_counters': sys.argv[3]}, "
    "batch_size=int(sys.argv[4]), lock_timeout=600))"
)
#: Batches of the backfill before the kill, of 10.
KILLED_AFTER = 5


class _Batches(logging.Handler):
    """Catches the runner's report of each batched step: (migration, batches)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"(\S+): (\d+) batches", record.getMessage())
        if found:
            self.steps.append((found[1], int(found[2])))


def measure_counter_add(url: str, data: Dataset) -> dict[str, Any]:
    """Apply a generated counter set to the loaded database ``url`` under a
    concurrent writer, killing its first backfill half-way, then resuming it."""
    migrate(url, WITH_CORE)
    batch = max(1, data.threads // 10)
    with tempfile.TemporaryDirectory() as scratch:
        folder, first = Path(scratch) / "counters", Path(scratch) / "first"
        for definition in GENERATED:
            add_counter(url, definition, folder)
        # The first migration alone (column and triggers), from a folder that
        # holds only it: the next run starts at the backfill.
        first.mkdir()
        for path in folder.glob("0001_*"):
            (first / path.name).write_text(path.read_text())
        settings = MigrationSettings(
            sets=("sentinel", "core", "app_counters"),
            folders={"sentinel": MIGRATION_FOLDER, "app_counters": folder},
            batch_size=batch,
        )
        held = KILLED_AFTER * batch + 1  # the first thread of the 6th batch
        with _writing(url, data.threads, skip=held) as writer:
            started = time.perf_counter()
            migrate(url, MigrationSettings(sets=settings.sets, folders={
                "sentinel": MIGRATION_FOLDER, "app_counters": first}))  # fmt: skip
            columns_s = time.perf_counter() - started
            killed_s = _kill_half_way(url, folder, batch, held)
            caught = _Batches()
            logging.getLogger("feature_gates.migrate").addHandler(caught)
            logging.getLogger("feature_gates.migrate").setLevel(logging.INFO)
            started = time.perf_counter()
            try:
                migrate(url, settings)
            finally:
                logging.getLogger("feature_gates.migrate").removeHandler(caught)
            resumed_s = time.perf_counter() - started
        problems = verify(url, settings)
        steps = _step_ms(url, settings, "app_counters")
    resumed = next(
        n for label, n in caught.steps if label.endswith("thread_messages_count_backfill")
    )
    thread_writes = sorted(writer.thread_writes)
    return {
        "counter_add_max_write_ms": _ms(thread_writes[-1]),
        "counter_add_write_p99_ms": _ms(harness.percentile(thread_writes, 0.99)),
        "counter_add_resume_exact": resumed == -(-data.threads // batch) - KILLED_AFTER,
        "counter_add_resumed_batches": resumed,
        "counter_add_batch_size": batch,
        "counter_add_seconds": {
            "columns_and_triggers": round(columns_s, 2),
            "until_killed": round(killed_s, 2),
            "resumed_to_the_end": round(resumed_s, 2),
        },
        "counter_add_step_ms": steps,
        "counter_add_verify_problems": [str(p) for p in problems],
    }


def kill_when_it_waits(
    conn: psycopg.Connection[tuple[Any, ...]], runner: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    """Kill the migration ``runner`` (a process of its own) once it waits for a
    lock, and end its server session, which would wait on for the lock.
    RuntimeError if it ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while runner.poll() is None and time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = "
            "'feature-gates migrate' AND wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None:
            runner.kill()
            runner.wait()
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            return
        time.sleep(0.01)
    raise RuntimeError(f"the runner never waited for a lock (exit status {runner.poll()})")


def _kill_half_way(url: str, folder: Path, batch: int, held: int) -> float:
    """Run the rest of the set in a process of its own while a transaction holds
    the first thread of the 6th batch, and kill that process when the runner
    waits for it; returns the seconds it ran."""
    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as conn:
        blocker.execute("SELECT 1 FROM chat_threads WHERE id = %s FOR UPDATE", (held,))
        started = time.perf_counter()
        runner = subprocess.Popen(
            [sys.executable, "-c", RUNNER, url, str(MIGRATION_FOLDER), str(folder), str(batch)],
            cwd=harness.ROOT,
        )
        try:
            kill_when_it_waits(conn, runner)
            ran = time.perf_counter() - started
            saved = conn.execute(
                "SELECT last_key FROM feature_gates_counter_positions "
                "WHERE counter = 'chat_threads.thread_messages_count' AND step = 'backfill'"
            ).fetchone()
            assert saved == (str(held - 1),), saved
        finally:
            runner.kill()
            runner.wait()
        blocker.rollback()
    return ran


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
            figures = {**measure(database_url, data, batch_size), "load_s": round(load_s, 1)}
            databases.drop(database_url)
            database_url = databases.create(None)
            load(database_url, data)
            return {**figures, **measure_counter_add(database_url, data)}
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
    failed = figures["verify_problems"] or figures["counter_add_verify_problems"]
    return 1 if failed or not figures["counter_add_resume_exact"] else 0


if __name__ == "__main__":
    sys.exit(main())
