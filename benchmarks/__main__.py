"""Every figure feature-gates promises, measured against its alternative in one run.

    python -m benchmarks [--quick | --smoke] [--database-url URL] [--json PATH]

Starts a private PostgreSQL with its durable defaults (fsync and synchronous commit
on), or measures the server of ``--database-url`` (its role needs CREATEDB: every
case works in databases of its own, dropped after). Builds the data each case
needs, runs the cases (each with a warm-up, the compared sides taking turns), and
prints a table of the figures and of the goals they meet or miss. ``--json PATH``
writes every figure, the goals and the machine record (cores, PostgreSQL version,
durability settings, client versions, load average at start and end).

``--quick`` (under two minutes on two cores) is for checking a change; only the
full run (under fifteen) is published, in docs/performance.md. ``--smoke`` uses
tiny sizes to prove that every case runs; its figures mean nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from feature_gates.testing import DatabaseFactory

from . import counters
from . import gates
from . import harness
from . import limits
from . import migrate_counters
from . import tracking

__all__ = ["GOALS", "KEYS", "Goal", "main", "run"]

#: The figures every run writes (docs/performance.md explains each).
KEYS: dict[str, type | tuple[type, ...]] = {
    "track_enqueue_us_p50": float,
    "tracker_events_per_s": int,
    "tracker_sum_exact": bool,
    "sync_upsert_events_per_s": int,
    "raw_batched_rows_per_s": int,
    "gate_overhead_us_p50": float,
    "metered_limit_us_p50": float,
    "raw_conditional_update_us_p50": float,
    "consume_race_exact": bool,
    "naive_race_over_limit": int,
    "count_star_us_p50": float,
    "counter_column_us_p50": float,
    "jsonb_len_us_p50": float,
    "destinations_column_us_p50": float,
    "counter_write_overhead_ratio": float,
    "migrate_1m_messages_s": float,
    "migrate_max_lock_ms": float,
    "counter_add_max_write_ms": float,
    "counter_add_resume_exact": bool,
    "floor_us_p50": float,
    **{f"{kind}_vs_floor": float for kind in limits.KINDS},
    "metered_vs_flask_limiter_redis_always_max": float,
    "flask_limiter_memory_vs_required": float,
    "hot_org_uses_per_s": int,
    "spread_users_uses_per_s": int,
    "alerts_consume_vs_consume": float,
    "reserve_vs_consume": float,
    "commit_vs_consume": float,
    "granted_consume_vs_consume": float,
}


def _at_most(figure: str, bound: float) -> Callable[[dict[str, Any]], bool]:
    """A goal's test: ``figure`` is at most ``bound``."""
    return lambda figures: bool(figures[figure] <= bound)


@dataclass(frozen=True)
class Goal:
    """A promise, and how to tell from the figures whether a run kept it."""

    name: str
    text: str
    figure: str
    met: Callable[[dict[str, Any]], bool]


GOALS = [
    Goal(
        "tracker_vs_sync_upsert",
        "tracker >= 20x one increment_feature_usage_safe call per event",
        "tracker_vs_sync_upsert",
        lambda f: f["tracker_vs_sync_upsert"] >= 20,
    ),
    Goal(
        "tracker_vs_raw_batched",
        "tracker's writes >= 0.5x a hand-written batched unnest upsert (same rows)",
        "tracker_flush_vs_raw_batched",
        lambda f: f["tracker_flush_vs_raw_batched"] >= 0.5,
    ),
    Goal(
        "tracker_end_to_end",
        "events through track + flush >= 0.5x that ceiling, end to end",
        "tracker_vs_raw_batched_events",
        lambda f: f["tracker_vs_raw_batched_events"] >= 0.5,
    ),
    Goal(
        "enqueue",
        "gates.track() <= 5 us (p50)",
        "track_enqueue_us_p50",
        lambda f: f["track_enqueue_us_p50"] <= 5,
    ),
    Goal(
        "gate_overhead",
        "@feature_required adds <= 20 us (p50)",
        "gate_overhead_us_p50",
        lambda f: f["gate_overhead_us_p50"] <= 20,
    ),
    Goal(
        "metered_limit",
        "metered @feature_limit within 1.25x a bare conditional UPDATE",
        "metered_vs_raw_conditional_update",
        lambda f: f["metered_vs_raw_conditional_update"] <= 1.25,
    ),
    Goal(
        "alerts_consume",
        "the metered check with alert thresholds within 1.1x of without",
        "alerts_consume_vs_consume",
        lambda f: f["alerts_consume_vs_consume"] <= 1.1,
    ),
    Goal(
        "reserve",
        "a reserve (gates.reserve's statement) within 1.3x a metered consume",
        "reserve_vs_consume",
        lambda f: f["reserve_vs_consume"] <= 1.3,
    ),
    Goal(
        "commit",
        "a hold's commit within 1.3x a metered consume",
        "commit_vs_consume",
        lambda f: f["commit_vs_consume"] <= 1.3,
    ),
    Goal(
        "granted_consume",
        "a metered consume drawing on grants within 1.5x one that does not",
        "granted_consume_vs_consume",
        lambda f: f["granted_consume_vs_consume"] <= 1.5,
    ),
    Goal(
        "race",
        "atomic consume exact at the limit while check-then-increment overshoots",
        "naive_race_over_limit",
        lambda f: f["consume_race_exact"] and f["naive_race_over_limit"] > 0,
    ),
    Goal(
        "counter_column",
        "counter column >= 4x faster than COUNT(*) at 10,000 messages",
        "count_star_vs_counter_column",
        lambda f: f["count_star_vs_counter_column"] >= 4,
    ),
    Goal(
        "migration_locks",
        "no migration step blocks writes to chat_threads for 1 s",
        "migrate_max_lock_ms",
        lambda f: f["migrate_max_lock_ms"] < 1000,
    ),
    Goal(
        "counter_add_locks",
        "a generated counter set, killed half-way and resumed, blocks no chat_threads "
        "write for 1 s",
        "counter_add_max_write_ms",
        lambda f: f["counter_add_resume_exact"] and f["counter_add_max_write_ms"] < 1000,
    ),
    *(
        Goal(
            f"{kind}_vs_floor",
            f"a metered {limits.KIND_NAMES[kind]} within {bound}x the floor (one UPDATE)",
            f"{kind}_vs_floor",
            _at_most(f"{kind}_vs_floor", bound),
        )
        for kind, bound in limits.FLOOR_GOALS.items()
    ),
    Goal(
        "metered_vs_durable_redis",
        "every kind <= Flask-Limiter on Redis with appendfsync always",
        "metered_vs_flask_limiter_redis_always_max",
        lambda f: f["metered_vs_flask_limiter_redis_always_max"] <= 1,
    ),
    Goal(
        "required_vs_flask_limiter",
        "@feature_required >= 5x cheaper than Flask-Limiter on memory",
        "flask_limiter_memory_vs_required",
        lambda f: f["flask_limiter_memory_vs_required"] >= 5,
    ),
]


def run(server_url: str | None = None, *, scale: harness.Scale = "full") -> dict[str, Any]:
    """Run every case; return the figures, the goals and the machine record."""
    with harness.server(server_url) as url:
        load_at_start = harness.load_average()
        record = harness.machine(url)
        figures: dict[str, Any] = {}
        seconds: dict[str, float] = {}

        def case(name: str, measure: Callable[[], dict[str, Any]]) -> None:
            started = time.perf_counter()
            figures.update(measure())
            seconds[name] = round(time.perf_counter() - started, 1)
            sys.stderr.write(f"benchmarks: {name} done in {seconds[name]} s\n")

        case("gates", lambda: gates.run(url, scale=scale))
        case("tracking", lambda: tracking.run(url, scale=scale))
        case("limits", lambda: limits.run(url, scale=scale))
        databases = DatabaseFactory(url)
        try:
            case("counters", lambda: _counters(databases, scale))
            case("counter_add", lambda: _counter_add(databases, scale))
        finally:
            databases.close()
        load_at_end = harness.load_average()
    figures["goals"] = {
        goal.name: {"goal": goal.text, "figure": goal.figure, "met": bool(goal.met(figures))}
        for goal in GOALS
    }
    figures["case_seconds"] = seconds
    figures["machine"] = {
        **record,
        "scale": scale,
        "load_average_start": load_at_start,
        "load_average_end": load_at_end,
    }
    return figures


def _counters(databases: DatabaseFactory, scale: harness.Scale) -> dict[str, Any]:
    """The migration, then the reads on the same (now counted) data, then the writes."""
    data = migrate_counters.DATASETS[scale]
    sizes = counters.SIZES[scale]
    url = databases.create(None)
    try:
        figures = {"load_s": round(migrate_counters.load(url, data), 1)}
        figures.update(migrate_counters.measure(url, data))
        figures.update(counters.measure_reads(url, sizes))
    finally:
        databases.drop(url)
    figures.update(counters.measure_writes(databases, sizes))
    return figures


def _counter_add(databases: DatabaseFactory, scale: harness.Scale) -> dict[str, Any]:
    """A generated counter set on the same data, killed half-way and resumed."""
    url = databases.create(None)
    try:
        migrate_counters.load(url, migrate_counters.DATASETS[scale])
        return migrate_counters.measure_counter_add(url, migrate_counters.DATASETS[scale])
    finally:
        databases.drop(url)


def missing(figures: dict[str, Any]) -> list[str]:
    """The keys of :data:`KEYS` absent from ``figures`` or of the wrong type."""
    wrong = []
    for key, kind in KEYS.items():
        value = figures.get(key)
        # An int is a fine float; a bool is not a number here.
        ok = isinstance(value, kind) or (kind is float and type(value) is int)
        if not ok or (kind is not bool and isinstance(value, bool)):
            wrong.append(key)
    return wrong


def table(figures: dict[str, Any]) -> str:
    """The figures and the goals, as a plain-text table."""
    lines = [f"{'figure':<36} {'value':>14}"]
    for key in KEYS:
        lines.append(f"{key:<36} {figures[key]!s:>14}")
    lines += ["", f"{'goal':<72} {'figure':>10}  verdict"]
    for goal in GOALS:
        verdict = "met" if figures["goals"][goal.name]["met"] else "MISSED"
        lines.append(f"{goal.text:<72} {figures[goal.figure]!s:>10}  {verdict}")
    record = figures["machine"]
    lines += [
        "",
        f"{record['cores']} cores, PostgreSQL {record['postgresql']}, fsync={record['fsync']}, "
        f"synchronous_commit={record['synchronous_commit']}, Python {record['python']}, "
        f"psycopg {record['psycopg']}, load average {record['load_average_start']} -> "
        f"{record['load_average_end']}, scale {record['scale']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = harness.parser("python -m benchmarks", __doc__).parse_args(argv)
    figures = run(args.database_url, scale=harness.scale_of(args))
    wrong = missing(figures)
    if wrong:
        sys.stderr.write(f"benchmarks: figures missing or of the wrong type: {wrong}\n")
    sys.stdout.write(table(figures) + "\n")
    if args.json:
        harness.write_json(figures, args.json, echo=False)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
