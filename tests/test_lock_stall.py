"""The lock-stall measurement works end to end (benchmarks/lock_stall.py): the step
queued behind a reader is applied, and the application's client kept querying.

Its timings are not asserted: they belong to the benchmark (docs/migrations.md).
"""

from __future__ import annotations

from benchmarks import lock_stall
from feature_gates.migrate import MigrationSettings


def test_the_smoke_run_applies_the_step_behind_the_reader(feature_gates_server_url):
    figures = lock_stall.run(feature_gates_server_url, scale="smoke")

    default = MigrationSettings()
    assert figures["default_lock_timeout_s"] == default.lock_timeout
    (case,) = figures["cases"]
    assert case["lock_timeout_s"] == default.lock_timeout
    assert case["lock_retries"] == default.lock_retries
    assert 0 <= case["retries_used"] <= default.lock_retries
    assert case["queries"] > 0
    assert case["stall_ms_max"] == figures["default_stall_ms_max"] >= case["query_ms_p50"]
