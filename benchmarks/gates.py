"""What a gate costs, and whether limits hold under a race.

    python -m benchmarks.gates [--iterations N] [--database-url URL]

Prints one JSON object:

``gate_overhead_us_p50``
    Median latency @feature_required (tracking on, background) adds to a view,
    measured with the Flask test client in one process, gated and ungated calls
    interleaved so that drift on the machine hits both alike.
``metered_limit_us_p50``
    The same for a metered @feature_limit: its one round trip plus Python.
``raw_conditional_update_us_p50``
    The same for an ungated view that sends a bare conditional UPDATE ... RETURNING
    through the same pool: the floor the metered check is built on. Measured inside
    a view, like the metered check, because on a small VM a round trip after some
    Python work costs more than one right after another (the server's CPU has gone
    idle), and both must pay the same.
``consume_race_exact`` / ``consume_race_granted``
    32 threads race one key at a limit through consume_feature_usage: exactly the
    limit is granted.
``naive_race_over_limit``
    The same race with check-then-increment (SELECT, then UPDATE): how many uses
    were granted beyond the limit.

Without ``--database-url`` a throwaway PostgreSQL is started (and migrated).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import psycopg
from flask import Flask

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate
from feature_gates.pgserver import LocalPostgres

LIMIT = 2**40  # never reached: the benchmark measures allowed calls
RAW_UPDATE = (
    "UPDATE feature_usage SET usage_count = usage_count + %s "
    "WHERE user_id = %s AND feature = %s AND usage_count + %s <= %s "
    "RETURNING usage_count"
)
RACE_THREADS = 32
RACE_LIMIT = 100
RACE_ATTEMPTS_PER_THREAD = 10


def make_app(database_url: str) -> tuple[Flask, FeatureGates]:
    app = Flask("benchmark")
    app.config.update(
        FEATURE_GATES_DATABASE_URL=database_url,
        FEATURE_GATES_PLANS={"pro": {"export": True, "messages": LIMIT}},
        FEATURE_GATES_TRACKING="background",
        FEATURE_GATES_COMMAND_NAME="",
    )
    gates = FeatureGates(app)
    subject = Subject(1, "pro")
    gates.subject_loader(lambda: subject)

    @app.post("/plain")
    def plain() -> str:
        return "ok"

    @app.post("/required")
    @feature_required("export")
    def required() -> str:
        return "ok"

    @app.post("/metered")
    @feature_limit("messages")
    def metered() -> str:
        return "ok"

    @app.post("/raw")
    def raw() -> str:
        with app.extensions["feature_gates"].pool.get().connection() as conn:
            conn.execute(RAW_UPDATE, (1, 2, "raw", 1, LIMIT)).fetchone()
        return "ok"

    return app, gates


def interleaved_overhead(call: Callable[[str], None], path: str, iterations: int) -> float:
    """Median of (gated - plain) over pairs of calls, in microseconds."""
    for _ in range(min(iterations, 200)):  # warm-up: pools, prepared statements, caches
        call("/plain")
        call(path)
    plain, gated = [], []
    for i in range(iterations):
        order = ("/plain", path) if i % 2 == 0 else (path, "/plain")
        for which in order:
            started = time.perf_counter_ns()
            call(which)
            elapsed = (time.perf_counter_ns() - started) / 1000
            (plain if which == "/plain" else gated).append(elapsed)
    return statistics.median(gated) - statistics.median(plain)


def race(url: str, attempt: Callable[[psycopg.Connection[Any], int], bool], feature: str) -> int:
    """Uses granted when RACE_THREADS threads race one key."""
    granted = 0
    lock = threading.Lock()
    start = threading.Barrier(RACE_THREADS)

    def worker() -> None:
        nonlocal granted
        with psycopg.connect(url, autocommit=True) as conn:
            start.wait()
            mine = sum(attempt(conn, RACE_LIMIT) for _ in range(RACE_ATTEMPTS_PER_THREAD))
        with lock:
            granted += mine

    threads = [threading.Thread(target=worker) for _ in range(RACE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return granted


def atomic_attempt(conn: psycopg.Connection[Any], limit: int) -> bool:
    row = conn.execute("SELECT consume_feature_usage(3, 'race_atomic', 1, %s)", (limit,)).fetchone()
    return row is not None and row[0] is not None


def naive_attempt(conn: psycopg.Connection[Any], limit: int) -> bool:
    row = conn.execute("SELECT get_feature_usage(3, 'race_naive')").fetchone()
    if row is None or row[0] + 1 > limit:
        return False
    conn.execute("SELECT increment_feature_usage_safe(3, 'race_naive', 1)")
    return True


def run(database_url: str | None, iterations: int) -> dict[str, Any]:
    with ExitStack() as stack:
        if database_url is None:
            server = stack.enter_context(LocalPostgres())
            database_url = server.url()
            migrate(database_url, MigrationSettings())
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO feature_usage (user_id, feature, period_start, usage_count) "
                "VALUES (2, 'raw', date_trunc('month', now())::date, 0)"
            )
        app, gates = make_app(database_url)
        stack.callback(app.extensions["feature_gates"].close)
        client = app.test_client()

        def call(path: str) -> None:
            client.post(path).close()

        results: dict[str, Any] = {
            "iterations": iterations,
            "gate_overhead_us_p50": round(interleaved_overhead(call, "/required", iterations), 1),
            "metered_limit_us_p50": round(interleaved_overhead(call, "/metered", iterations), 1),
            "raw_conditional_update_us_p50": round(
                interleaved_overhead(call, "/raw", iterations), 1
            ),
        }
        granted = race(database_url, atomic_attempt, "race_atomic")
        naive = race(database_url, naive_attempt, "race_naive")
        results.update(
            {
                "race_threads": RACE_THREADS,
                "race_limit": RACE_LIMIT,
                "race_attempts": RACE_THREADS * RACE_ATTEMPTS_PER_THREAD,
                "consume_race_granted": granted,
                "consume_race_exact": granted == RACE_LIMIT,
                "naive_race_granted": naive,
                "naive_race_over_limit": max(naive - RACE_LIMIT, 0),
            }
        )
        return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gates", description=__doc__)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--database-url", help="a migrated database (default: a throwaway one)")
    args = parser.parse_args()
    print(json.dumps(run(args.database_url, args.iterations), indent=2))


if __name__ == "__main__":
    main()
