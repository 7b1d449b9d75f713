"""What the whole-table reads inside the migrations cost, in time and in the
longest snapshot they hold (which holds vacuum back as long).

    python -m benchmarks.migrate_scans [--quick | --smoke] [--database-url URL] [--json PATH]

Loads an application's existing ``feature_usage`` table (users x 10 features x
12 months, no index) and migrates ``core`` onto it: 0002 checks it for
duplicate keys and builds its indexes, 0003 validates its checks, 0006 builds
the summary view from it. Then loads the example app's tables as
``benchmarks.migrate_counters`` does and migrates ``counters``: 0002 backfills
in batches, then audits every counter in one statement. Last, ``verify``.

A watcher samples ``pg_stat_activity`` every 20 ms: for each statement the
runner sent, how long it had been running with a snapshot open
(``backend_xmin`` set). A file that runs in one transaction is sent as one
statement, so its figure covers the whole file. Prints one JSON object.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import psycopg

from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate
from feature_gates.migrate import verify
from feature_gates.testing import DatabaseFactory

from . import harness
from . import migrate_counters

__all__ = ["main", "run"]

CORE = MigrationSettings(sets=("core",))
#: Rows of the existing feature_usage table.
USAGE_ROWS = {"full": 2_400_000, "quick": 240_000, "smoke": 2_400}

CREATE_USAGE = """
CREATE TABLE feature_usage (
    user_id bigint NOT NULL, feature text NOT NULL, period_start date NOT NULL,
    usage_count integer NOT NULL DEFAULT 0
)
"""
LOAD_USAGE = """
INSERT INTO feature_usage (user_id, feature, period_start, usage_count)
SELECT u, 'feature_' || f, date '2026-01-01' + make_interval(months => m), (u * f + m) %% 97
FROM generate_series(1, %(users)s) u, generate_series(1, 10) f, generate_series(0, 11) m
"""

#: The runner's statements that hold a snapshot now, and for how long so far.
WATCH = """
SELECT extract(epoch FROM clock_timestamp() - query_start)::float8,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
FROM pg_stat_activity
WHERE application_name = 'feature-gates migrate' AND state = 'active'
  AND backend_xmin IS NOT NULL
"""


class SnapshotWatch(threading.Thread):
    """Records, per statement of the runner, the longest it held a snapshot."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.longest: dict[str, float] = {}

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                for seconds, query in conn.execute(WATCH).fetchall():
                    key = str(query)
                    self.longest[key] = max(self.longest.get(key, 0.0), float(seconds))
                time.sleep(0.02)

    def __enter__(self) -> SnapshotWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()

    def top(self, n: int = 3) -> list[dict[str, Any]]:
        ranked = sorted(self.longest.items(), key=lambda item: item[1], reverse=True)[:n]
        return [{"seconds": round(s, 2), "statement": q} for q, s in ranked]


def _steps(url: str, settings: MigrationSettings, set_name: str) -> dict[str, int]:
    return {
        a.label: a.execution_ms for a in applied_migrations(url, settings) if a.set_name == set_name
    }


def _watched(url: str, action: Any) -> tuple[float, list[dict[str, Any]]]:
    with SnapshotWatch(url) as watch:
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
    return round(elapsed, 2), watch.top()


def measure(url_core: str, url_counters: str, scale: harness.Scale) -> dict[str, Any]:
    rows = USAGE_ROWS[scale]
    with psycopg.connect(url_core, autocommit=True) as conn:
        conn.execute(CREATE_USAGE)
        conn.execute(LOAD_USAGE, {"users": rows // 120})
        conn.execute("VACUUM ANALYZE feature_usage")
    core_s, core_top = _watched(url_core, lambda: migrate(url_core, CORE))
    data = migrate_counters.DATASETS[scale]
    migrate_counters.load(url_counters, data)
    migrate(url_counters, migrate_counters.WITH_CORE)
    counted = migrate_counters.COUNTED
    counters_s, counters_top = _watched(url_counters, lambda: migrate(url_counters, counted))
    problems: list[Any] = []
    verify_s, verify_top = _watched(
        url_counters, lambda: problems.extend(verify(url_counters, counted))
    )
    return {
        "feature_usage_rows": rows,
        "core_migrate_s": core_s,
        "core_step_ms": _steps(url_core, CORE, "core"),
        "core_longest_snapshots": core_top,
        "messages": data.messages,
        "threads": data.threads,
        "itineraries": data.itineraries,
        "counters_migrate_s": counters_s,
        "counters_step_ms": _steps(url_counters, counted, "counters"),
        "counters_longest_snapshots": counters_top,
        "verify_s": verify_s,
        "verify_longest_snapshots": verify_top,
        # The legacy message_count drifts by construction (migrate_counters).
        "verify_problems": [str(p) for p in problems if p.check != "legacy counter"],
        "verify_legacy_rows_named": sum(p.check == "legacy counter" for p in problems),
    }


def run(server_url: str | None = None, *, scale: harness.Scale = "full") -> dict[str, Any]:
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            return measure(databases.create(None), databases.create(None), scale)
        finally:
            databases.close()


def main(argv: list[str] | None = None) -> int:
    harness.cli("python -m benchmarks.migrate_scans", __doc__, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
