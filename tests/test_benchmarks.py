"""The benchmark run works end to end: every figure is there, of a sane type.

Timings are never asserted (they belong to the benchmarks themselves); the run
uses its smallest sizes, on the session's test server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import GOALS
from benchmarks.__main__ import KEYS
from benchmarks.__main__ import missing
from benchmarks.limits import KINDS
from benchmarks.redis_server import RedisMissing
from benchmarks.redis_server import redis_binary

ROOT = Path(__file__).resolve().parent.parent


def need_redis_server() -> None:
    """Skips the test when redis-server is missing and the run is not root; fails it
    when the run is root (the set-up should have installed it)."""
    try:
        redis_binary()
    except RedisMissing:
        if os.geteuid() != 0:
            pytest.skip(
                "redis-server is not installed and this run is not root "
                "(tools/system-packages installs it as root)"
            )
        pytest.fail(
            "redis-server is not installed although this run is root: run "
            "tools/system-packages (make test does) to install it"
        )


def test_smoke_run_writes_every_figure(feature_gates_server_url, tmp_path):
    need_redis_server()
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--database-url",
            feature_gates_server_url,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())

    assert missing(figures) == []
    for key in KEYS:
        assert key in done.stdout  # the printed table names every figure
    # Durations and rates cannot be negative; an added latency (a difference of two
    # medians) can, in a run this small on a busy machine, so it is not checked.
    differences = {
        "gate_overhead_us_p50",
        "metered_vs_flask_limiter_redis_always_max",
        "flask_limiter_memory_vs_required",
        *(f"{kind}_vs_floor" for kind in KINDS),
    }
    numbers = [k for k, kind in KEYS.items() if kind is not bool and k not in differences]
    assert all(figures[k] >= 0 for k in numbers)
    # Correctness, unlike speed, holds at any size.
    assert figures["tracker_sum_exact"] is True
    assert figures["consume_race_exact"] is True
    assert figures["counters_exact_after_writes"] is True
    assert figures["verify_problems"] == []
    assert figures["counter_add_verify_problems"] == []
    assert figures["counter_add_resume_exact"] is True
    assert set(figures["goals"]) == {goal.name for goal in GOALS}
    assert all(isinstance(g["met"], bool) for g in figures["goals"].values())

    record = figures["machine"]
    assert record["cores"] >= 1
    assert record["scale"] == "smoke"
    assert record["fsync"] in ("on", "off")
    assert record["synchronous_commit"]
    assert record["postgresql"][0].isdigit()
    assert len(record["load_average_start"]) == len(record["load_average_end"]) == 3
    assert record["psycopg"] and record["python"]


def test_missing_names_absent_and_mistyped_figures():
    figures = {key: (True if kind is bool else 1.0) for key, kind in KEYS.items()}
    figures["tracker_events_per_s"] = 10  # ints where ints belong
    figures["naive_race_over_limit"] = 3
    figures["sync_upsert_events_per_s"] = 5
    figures["raw_batched_rows_per_s"] = 7
    figures["hot_org_uses_per_s"] = 11
    figures["spread_users_uses_per_s"] = 13
    assert missing(figures) == []
    del figures["jsonb_len_us_p50"]
    figures["consume_race_exact"] = 1
    figures["gate_overhead_us_p50"] = True
    figures["migrate_1m_messages_s"] = "8.7"
    assert missing(figures) == [
        "gate_overhead_us_p50",
        "consume_race_exact",
        "jsonb_len_us_p50",
        "migrate_1m_messages_s",
    ]


def test_the_migration_scans_benchmark_runs(feature_gates_server_url, tmp_path):
    out = tmp_path / "scans.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.migrate_scans", "--smoke"]
        + ["--database-url", feature_gates_server_url, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["verify_problems"] == []
    assert "core/0006_feature_usage_summary" in figures["core_step_ms"]
    assert "counters/0002_counter_backfill" in figures["counters_step_ms"]
    for key in ("core_longest_snapshots", "counters_longest_snapshots"):
        assert all(s["seconds"] >= 0 and s["statement"] for s in figures[key])
