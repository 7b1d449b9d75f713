"""Usage tracking throughput, side by side in one run, into a durable PostgreSQL.

    python -m benchmarks.tracking [--quick | --smoke] [--database-url URL] [--json PATH]

Prints one JSON object. Without ``--database-url`` it starts a private server with
PostgreSQL's default (durable) settings: fsync and synchronous commit on. With it,
the role needs CREATEDB: every measurement runs in a fresh database of its own,
copied from a migrated template, and dropped after.

What is measured, on the same events (many keys, several threads):

* ``track_enqueue_us_p50``: one ``gates.track()`` call, the cost a request pays.
* ``tracker_events_per_s``: events through ``gates.track`` from several threads
  plus the final ``gates.flush()``, until all are in PostgreSQL (background mode,
  default settings); ``tracker_sum_exact`` says every key's count matched.
* ``sync_upsert_events_per_s``: the same events written one
  ``increment_feature_usage_safe`` call per event (a sample of them: it is slow).
  The tracker and the per-event calls take turns, ``repeats`` times; medians.
* ``tracker_flush_rows_per_s``: the tracker's write path alone (rows per second of
  a flush of the coalesced keys), against ``raw_batched_rows_per_s``: a hand-written
  ``unnest`` upsert of the same rows, in batches of the same size
  (``raw_batched_events_per_s``: the events those rows carry, per second of that
  write, as if coalescing them cost nothing). Also
  ``scalar_function_batched_rows_per_s``: the one-row function called per row
  inside one batched statement, the path the many-row function replaced.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import psycopg
from flask import Flask
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from feature_gates import FeatureGates
from feature_gates.core import month_start
from feature_gates.core import utc_now
from feature_gates.migrate import MigrationSettings
from feature_gates.testing import DatabaseFactory

from . import harness

__all__ = ["main", "run"]

Key = tuple[int, str]
#: A batch of rows as columns: user ids, features, periods, amounts.
Batch = tuple[list[int], list[str], list[date], list[int]]

FEATURES = ("chat_messages", "pdf_exports", "route_analysis", "api_calls", "itineraries")

# The reference statements exist only to be measured against; the runtime's
# statements live in feature_gates/core/_storage/statements.py.

#: The original system's way: one call of the one-row function per use.
INCREMENT = "SELECT increment_feature_usage_safe(%s, %s, %s, %s)"

#: A plain batched upsert: no function, no validation, no batch id.
RAW_BATCHED_UPSERT = """
INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::date[], %s::bigint[])
ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
    SET usage_count = fu.usage_count + excluded.usage_count, updated_at = now()
"""

#: The one-row increment_feature_usage_safe called once per row of a batch.
SCALAR_FUNCTION_BATCHED = """
SELECT increment_feature_usage_safe(u.user_id, u.feature, u.amount, u.period_start)
FROM unnest(%s::feature_usage_user_id[], %s::text[], %s::integer[], %s::date[])
     WITH ORDINALITY AS u(user_id, feature, amount, period_start, ord)
ORDER BY u.ord
"""

SIZES: dict[str, dict[str, int]] = {
    "full": {
        "events": 400_000,
        "users": 8_000,
        "sync_sample": 20_000,
        "enqueue_calls": 200_000,
        "repeats": 3,
    },
    "quick": {
        "events": 40_000,
        "users": 800,
        "sync_sample": 3_000,
        "enqueue_calls": 20_000,
        "repeats": 2,
    },
    "smoke": {
        "events": 2_000,
        "users": 100,
        "sync_sample": 200,
        "enqueue_calls": 500,
        "repeats": 1,
    },
}


def make_events(count: int, users: int, seed: int = 7) -> list[Key]:
    """``count`` uses spread over ``users`` x 5 features, the hot ones more often."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) ** 0.6 for rank in range(users)]
    user_ids = rng.choices(range(1, users + 1), weights=weights, k=count)
    return [(user_id, rng.choice(FEATURES)) for user_id in user_ids]


def _counts(url: str) -> dict[Key, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT user_id, feature, usage_count FROM feature_usage").fetchall()
    return {(int(user_id), str(feature)): int(count) for user_id, feature, count in rows}


@contextmanager
def _gates(url: str, **config: Any) -> Iterator[tuple[Flask, FeatureGates]]:
    app = Flask("benchmarks.tracking")
    app.config.update(FEATURE_GATES_DATABASE_URL=url, FEATURE_GATES_COMMAND_NAME="", **config)
    gates = FeatureGates(app)
    try:
        yield app, gates
    finally:
        gates.close(app, timeout=120)


def measure_enqueue(url: str, events: list[Key], calls: int) -> dict[str, float]:
    """The cost of one ``gates.track()`` call, the writer running meanwhile."""
    sample = events[:calls]
    timer = time.perf_counter_ns
    with _gates(url) as (app, gates), app.app_context():
        durations = []
        for user_id, feature in sample:
            started = timer()
            gates.track(user_id, feature)
            durations.append(timer() - started)
        started = timer()
        for user_id, feature in sample:
            gates.track(user_id, feature)
        mean = (timer() - started) / len(sample)
        gates.flush(timeout=120)
    durations.sort()
    return {
        "track_enqueue_us_p50": round(durations[len(durations) // 2] / 1000, 2),
        "track_enqueue_us_p99": round(durations[int(len(durations) * 0.99)] / 1000, 2),
        "track_enqueue_us_mean": round(mean / 1000, 2),
    }


def measure_tracker(url: str, events: list[Key], threads: int) -> dict[str, Any]:
    """Events through ``gates.track`` in ``threads`` threads, then ``flush()``."""
    shares = [events[n::threads] for n in range(threads)]
    with _gates(url) as (app, gates):

        def work(index: int) -> None:
            with app.app_context():
                track = gates.track
                for user_id, feature in shares[index]:
                    track(user_id, feature)

        started = time.perf_counter()
        harness.in_threads(work, threads)
        with app.app_context():
            gates.flush(timeout=600)
            stats = gates.tracking_stats()
        elapsed = time.perf_counter() - started
    exact = _counts(url) == dict(Counter(events))
    return {
        "tracker_events_per_s": round(len(events) / elapsed),
        "tracker_sum_exact": exact and stats.written == len(events),
        "tracker_batches": stats.batches,
        "tracker_seconds": round(elapsed, 3),
    }


def measure_sync_upserts(url: str, events: list[Key], threads: int) -> dict[str, Any]:
    """The same events, one increment_feature_usage_safe call (and commit) each."""
    period = month_start(utc_now())
    shares = [events[n::threads] for n in range(threads)]
    pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
        url, min_size=threads, max_size=threads, kwargs={"autocommit": True}, open=False
    )
    pool.open(wait=True, timeout=60)
    try:

        def work(index: int) -> None:
            for user_id, feature in shares[index]:
                with pool.connection() as conn:
                    conn.execute(INCREMENT, (user_id, feature, 1, period))

        elapsed = harness.in_threads(work, threads)
    finally:
        pool.close()
    return {
        "sync_upsert_events_per_s": round(len(events) / elapsed),
        "sync_upsert_events_measured": len(events),
        "sync_upsert_sum_exact": _counts(url) == dict(Counter(events)),
    }


def _batches(rows: dict[Key, int], size: int, period: date) -> list[Batch]:
    keys = sorted(rows)
    batches: list[Batch] = []
    for start in range(0, len(keys), size):
        chunk = keys[start : start + size]
        batches.append(
            (
                [k[0] for k in chunk],
                [k[1] for k in chunk],
                [period] * len(chunk),
                [rows[k] for k in chunk],
            )
        )
    return batches


def _raw_batched(url: str, batches: list[Batch]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for user_ids, features, periods, amounts in batches:
            conn.execute(RAW_BATCHED_UPSERT, (user_ids, features, periods, amounts))


def _scalar_batched(url: str, batches: list[Batch]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for user_ids, features, periods, amounts in batches:
            conn.execute(SCALAR_FUNCTION_BATCHED, (user_ids, features, amounts, periods))


def _tracker_flush(url: str, rows: dict[Key, int]) -> float:
    """Seconds the tracker's flush takes to write ``rows`` (tracked beforehand)."""
    with _gates(url, FEATURE_GATES_FLUSH_INTERVAL=3600, FEATURE_GATES_MAX_PENDING_KEYS=10**7) as (
        app,
        gates,
    ):
        with app.app_context():
            for (user_id, feature), amount in rows.items():
                gates.track(user_id, feature, amount)
            state = app.extensions["feature_gates"]
            state.engine.storage.pool.get().wait(timeout=60)
            started = time.perf_counter()
            gates.flush(timeout=600)
            return time.perf_counter() - started


def measure_write_paths(
    databases: DatabaseFactory, events: list[Key], batch_size: int, repeats: int
) -> dict[str, Any]:
    """Rows per second of three ways to write the same coalesced rows.

    Each way writes every row twice into a fresh database: the first pass inserts,
    the second (timed) updates, the steady state of a month under way. The ways
    take turns, ``repeats`` times; the median is kept.
    """
    rows = dict(Counter(events))
    period = month_start(utc_now())
    batches = _batches(rows, batch_size, period)
    settings = MigrationSettings()

    def timed(write: Callable[[str], float]) -> float:
        url = databases.create(settings)
        try:
            write(url)  # inserts
            return write(url)  # updates
        finally:
            databases.drop(url)

    def clock(function: Callable[[str, list[Batch]], None]) -> Callable[[str], float]:
        def write(url: str) -> float:
            started = time.perf_counter()
            function(url, batches)
            return time.perf_counter() - started

        return write

    seconds: dict[str, list[float]] = {"raw": [], "tracker": [], "scalar": []}
    for _ in range(repeats):
        seconds["raw"].append(timed(clock(_raw_batched)))
        seconds["tracker"].append(timed(lambda url: _tracker_flush(url, rows)))
        seconds["scalar"].append(timed(clock(_scalar_batched)))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    rate = {name: len(rows) / value for name, value in median.items()}
    return {
        "rows": len(rows),
        "batch_keys": batch_size,
        "raw_batched_rows_per_s": round(rate["raw"]),
        # The events those rows carry, written as if coalescing cost nothing.
        "raw_batched_events_per_s": round(len(events) / median["raw"]),
        "tracker_flush_rows_per_s": round(rate["tracker"]),
        "scalar_function_batched_rows_per_s": round(rate["scalar"]),
    }


def run(
    server_url: str | None = None,
    *,
    scale: harness.Scale = "full",
    threads: int = 4,
    repeats: int | None = None,
) -> dict[str, Any]:
    """Run every measurement and return the figures (what ``main`` prints)."""
    sizes = SIZES[scale]
    repeats = repeats or sizes["repeats"]
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            return _run(databases, sizes, threads, repeats)
        finally:
            databases.close()


def _run(
    databases: DatabaseFactory, sizes: dict[str, int], threads: int, repeats: int
) -> dict[str, Any]:
    events = make_events(sizes["events"], sizes["users"])
    settings = MigrationSettings()

    def fresh(measure: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        url = databases.create(settings)
        try:
            return measure(url)
        finally:
            databases.drop(url)

    figures: dict[str, Any] = {
        "events": len(events),
        "distinct_keys": len(set(events)),
        "threads": threads,
        "repeats": repeats,
    }
    figures.update(fresh(lambda url: measure_enqueue(url, events, sizes["enqueue_calls"])))
    # The tracker and the per-event calls take turns: drift hits both alike.
    sample = events[: sizes["sync_sample"]]
    tracker_runs, sync_runs = [], []
    for _ in range(repeats):
        tracker_runs.append(fresh(lambda url: measure_tracker(url, events, threads)))
        sync_runs.append(fresh(lambda url: measure_sync_upserts(url, sample, threads)))
    figures.update(_median_run(tracker_runs, "tracker_events_per_s"))
    figures["tracker_events_per_s_runs"] = [r["tracker_events_per_s"] for r in tracker_runs]
    figures["tracker_sum_exact"] = all(r["tracker_sum_exact"] for r in tracker_runs)
    figures.update(_median_run(sync_runs, "sync_upsert_events_per_s"))
    figures["sync_upsert_events_per_s_runs"] = [r["sync_upsert_events_per_s"] for r in sync_runs]
    figures["sync_upsert_sum_exact"] = all(r["sync_upsert_sum_exact"] for r in sync_runs)
    figures.update(measure_write_paths(databases, events, 1000, repeats))
    figures["tracker_vs_sync_upsert"] = harness.ratio(
        figures["tracker_events_per_s"], figures["sync_upsert_events_per_s"], 1
    )
    figures["tracker_flush_vs_raw_batched"] = harness.ratio(
        figures["tracker_flush_rows_per_s"], figures["raw_batched_rows_per_s"]
    )
    figures["tracker_vs_raw_batched_events"] = harness.ratio(
        figures["tracker_events_per_s"], figures["raw_batched_events_per_s"]
    )
    figures["scalar_function_vs_raw_batched"] = harness.ratio(
        figures["scalar_function_batched_rows_per_s"], figures["raw_batched_rows_per_s"]
    )
    return figures


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return dict(ordered[(len(ordered) - 1) // 2])


def main(argv: list[str] | None = None) -> None:
    harness.cli("python -m benchmarks.tracking", __doc__, run, argv)


if __name__ == "__main__":
    main()
