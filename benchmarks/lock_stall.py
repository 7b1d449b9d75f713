"""How long the application's queries wait behind a migration step that waits for
its lock, for each ``FEATURE_GATES_MIGRATION_LOCK_TIMEOUT`` compared.

    python -m benchmarks.lock_stall [--quick | --smoke] [--database-url URL] [--json PATH]

A reader holds a transaction open on a table for a few seconds (ACCESS SHARE: it
blocks no other reader). ``migrate`` then applies a migration whose one step adds a
column to that table (ACCESS EXCLUSIVE): the step queues behind the reader, and
every query of the application on the table queues behind the step, until the
step gives up at ``lock_timeout`` and retries later (exponential backoff with
jitter). Meanwhile a client sends a one-row SELECT every 10 ms. Its slowest query
(``stall_ms_max``) is the worst stall an application query saw; the runner's
default is measured beside 2 s (the former default) and 0.5 s. The retries are the
same for all: the runner's default, enough to outlast the reader.

Prints one JSON object. Without ``--database-url`` a private durable server is
started; either way each case works in a database of its own.
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate
from feature_gates.testing import DatabaseFactory

from . import harness

__all__ = ["main", "measure", "run"]

TABLE_ROWS = 10_000
QUERY_EVERY_S = 0.01
#: Queries slower than this waited behind the step (a one-row SELECT takes well under).
STALLED_MS = 50.0
#: Seconds the reader keeps its transaction open, by scale.
HOLD_S = {"full": 5.0, "quick": 3.0, "smoke": 0.6}

CREATE = "CREATE TABLE lock_stall_orders (id bigint PRIMARY KEY, total integer NOT NULL)"
FILL = "INSERT INTO lock_stall_orders SELECT g, g %% 100 FROM generate_series(1, %s) AS g"
STEP = "ALTER TABLE lock_stall_orders ADD COLUMN IF NOT EXISTS note text;\n"
READ = "SELECT count(*) FROM lock_stall_orders"
QUERY = "SELECT total FROM lock_stall_orders WHERE id = %s"


class _RetryCounter(logging.Handler):
    """Counts the runner's "retrying" warnings: one per step that hit lock_timeout."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.retries += 1


def measure(url: str, lock_timeout: float, hold_s: float, folder: Path) -> dict[str, Any]:
    """One case: the reader, the migration and the application's client on ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE)
        conn.execute(FILL, (TABLE_ROWS,))
    holding = threading.Event()
    done = threading.Event()
    latencies: list[float] = []

    def reader() -> None:
        with psycopg.connect(url) as conn:
            conn.execute(READ)
            holding.set()
            time.sleep(hold_s)
            conn.commit()

    def client() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.is_set():
                started = time.perf_counter()
                conn.execute(QUERY, (random.randint(1, TABLE_ROWS),)).fetchone()
                latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(QUERY_EVERY_S)

    threads = [threading.Thread(target=reader), threading.Thread(target=client)]
    for thread in threads:
        thread.start()
    holding.wait(30)
    counter = _RetryCounter()
    logger = logging.getLogger("feature_gates.migrate")
    logger.addHandler(counter)
    settings = MigrationSettings(
        sets=("bench",), folders={"bench": folder}, lock_timeout=lock_timeout
    )
    started = time.perf_counter()
    try:
        migrate(url, settings)
    finally:
        migrate_s = time.perf_counter() - started
        logger.removeHandler(counter)
        time.sleep(0.2)  # a few queries after the step, for the baseline
        done.set()
        for thread in threads:
            thread.join()
    stalled = [ms for ms in latencies if ms > STALLED_MS]
    return {
        "lock_timeout_s": lock_timeout,
        "lock_retries": settings.lock_retries,
        "retries_used": counter.retries,
        "migrate_s": round(migrate_s, 2),
        "queries": len(latencies),
        "query_ms_p50": round(harness.p50(latencies), 2),
        "stall_ms_max": round(max(latencies), 1),
        "stalled_queries": len(stalled),
        "stalled_ms_total": round(sum(stalled), 1),
    }


def run(server_url: str | None = None, *, scale: harness.Scale = "full") -> dict[str, Any]:
    """Every compared lock_timeout, each in a database of its own."""
    default = MigrationSettings().lock_timeout
    compared = [default] if scale == "smoke" else sorted({2.0, 0.5, default}, reverse=True)
    hold_s = HOLD_S[scale]
    with harness.server(server_url) as url, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "0001_orders_note.up.sql").write_text(STEP)
        (folder / "0001_orders_note.down.sql").write_text(
            "ALTER TABLE lock_stall_orders DROP COLUMN IF EXISTS note;\n"
        )
        factory = DatabaseFactory(url)
        cases = []
        try:
            for lock_timeout in compared:
                database = factory.create(None)
                cases.append(measure(database, lock_timeout, hold_s, folder))
                factory.drop(database)
        finally:
            factory.close()
    by_default = next(c for c in cases if c["lock_timeout_s"] == default)
    return {
        "hold_s": hold_s,
        "default_lock_timeout_s": default,
        "default_stall_ms_max": by_default["stall_ms_max"],
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> int:
    harness.cli("python -m benchmarks.lock_stall", __doc__, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
