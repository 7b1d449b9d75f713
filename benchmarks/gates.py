"""What a gate costs, and whether limits hold under a race.

    python -m benchmarks.gates [--quick | --smoke] [--database-url URL] [--json PATH]

Prints one JSON object. Four views of one app are called with the Flask test client
in one process, in turns (blocks of calls, the order rotating), so that drift on
the machine hits all alike: an ungated view, the same under @feature_required,
under a metered @feature_limit, and an ungated view sending a bare conditional
UPDATE. Tracking is on (background), as in production.

``gate_overhead_us_p50``
    Median latency @feature_required adds to the ungated view.
``metered_limit_us_p50``
    The same for a metered @feature_limit: its one round trip plus Python.
``raw_conditional_update_us_p50``
    The same for the view that sends a bare conditional UPDATE ... RETURNING
    through the same pool: the floor the metered check is built on. Measured inside
    a view, like the metered check, because on a small VM a round trip after some
    Python work costs more than one right after another (the server's CPU has gone
    idle), and both must pay the same.
``consume_statement_us_p50`` / ``raw_update_statement_us_p50`` / ``raw_upsert_statement_us_p50``
    The metered check's statement, the bare UPDATE and the check's upsert written
    out without its function, as round trips on one connection (no Flask), each
    sent as the package sends its statements: the database's share of the figures
    above.
``raw_update_prepared_session_us_p50`` / ``raw_update_per_transaction_vs_prepared_session``
    The bare UPDATE sent the way the package sent statements before: a prepared
    statement on a connection whose statement timeout and search_path are set on
    the session; and what sending them with each transaction instead costs.
``raw_update_unprepared_session_us_p50`` / ``raw_update_unprepared_vs_prepared_session``
    The same without preparing it: the share of that cost that is the prepared
    statement's (the rest is the SET LOCAL).
``feature_usage_updates`` / ``feature_usage_hot_updates``
    Updates of feature_usage rows in the run, and how many of them were HOT.
``consume_race_exact`` / ``consume_race_granted``
    32 threads race one key at a limit through consume_feature_usage: exactly the
    limit is granted.
``naive_race_over_limit``
    The same race with check-then-increment (SELECT, then UPDATE): how many uses
    were granted beyond the limit.

Without ``--database-url`` a private durable PostgreSQL is started; either way the
measurements run in a fresh migrated database of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from flask import Flask
from psycopg import ClientCursor
from psycopg import sql
from psycopg.abc import Params
from psycopg.rows import TupleRow
from psycopg.rows import tuple_row

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates.core import month_start
from feature_gates.core import utc_now
from feature_gates.core._storage.statements import CONSUME as CONSUME_TEMPLATE
from feature_gates.core._storage.statements import RESERVE as RESERVE_TEMPLATE
from feature_gates.core._storage.statements import SETTLE_HOLD as SETTLE_TEMPLATE
from feature_gates.core._storage.statements import Statements
from feature_gates.migrate import MigrationSettings
from feature_gates.testing import DatabaseFactory

from . import harness

LIMIT = 2**40  # never reached: the benchmark measures allowed calls
#: A limit whose count starts at 85 %: between the alert thresholds 0.8 and 1.0.
ARMED_LIMIT = 10**12
RAW_UPDATE = (
    "UPDATE feature_usage SET usage_count = usage_count + %s "
    "WHERE user_id = %s AND feature = %s AND usage_count + %s <= %s "
    "RETURNING usage_count"
)
#: The statement timeout of every statement measured, in seconds (the default).
STATEMENT_TIMEOUT = 5.0
#: The same in the package's schema, for the storage to send as it sends its own.
RAW_UPDATE_IN_SCHEMA = sql.SQL(
    "UPDATE {schema}.feature_usage SET usage_count = usage_count + %s "
    "WHERE user_id = %s AND feature = %s AND usage_count + %s <= %s "
    "RETURNING usage_count"
)
#: The metered check's upsert written out, without the function around it: what
#: consume_feature_usage runs once its checks pass.
RAW_UPSERT = """
INSERT INTO feature_usage AS fu (user_id, feature, period_start, usage_count)
VALUES (%s, %s, %s, %s)
ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
    SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count, updated_at = now()
    WHERE greatest(fu.usage_count, 0) + excluded.usage_count <= %s
RETURNING fu.usage_count
"""
#: The same in the package's schema.
RAW_UPSERT_IN_SCHEMA = sql.SQL("""
INSERT INTO {schema}.feature_usage AS fu (user_id, feature, period_start, usage_count)
VALUES (%s, %s, %s, %s)
ON CONFLICT (user_id, feature, scope, period, period_start, period_offset) DO UPDATE
    SET usage_count = greatest(fu.usage_count, 0) + excluded.usage_count, updated_at = now()
    WHERE greatest(fu.usage_count, 0) + excluded.usage_count <= %s
RETURNING fu.usage_count
""")
#: Ratios of the statement figures: (name, (side, divided by)).
STATEMENT_RATIOS = {
    "consume_vs_raw_update_statement": ("consume_statement", "raw_update_statement"),
    # Alert thresholds configured: below them (the common case), and between two
    # of them (the trigger runs on every use and records nothing).
    "alerts_consume_vs_consume": ("consume_alerts_statement", "consume_statement"),
    "alerts_armed_consume_vs_consume": ("consume_alerts_armed_statement", "consume_statement"),
    # Holds: a reserve (the check and the hold's row) and a commit of part of one.
    "reserve_vs_consume": ("reserve_statement", "consume_statement"),
    "commit_vs_consume": ("commit_statement", "consume_statement"),
    # A check past the allowance that draws on a grant (a ledger row each time).
    "granted_consume_vs_consume": ("consume_granted_statement", "consume_statement"),
    "raw_update_per_transaction_vs_prepared_session": (
        "raw_update_statement",
        "raw_update_prepared_session",
    ),
    "raw_update_unprepared_vs_prepared_session": (
        "raw_update_unprepared_session",
        "raw_update_prepared_session",
    ),
}
RACE_THREADS = 32
RACE_LIMIT = 100
RACE_ATTEMPTS_PER_THREAD = 10
#: Calls of each view: blocks x calls per block (after a warm-up of each).
SIZES = {
    "full": {"blocks": 100, "per_block": 50, "warmup": 300},
    "quick": {"blocks": 30, "per_block": 50, "warmup": 200},
    "smoke": {"blocks": 2, "per_block": 10, "warmup": 5},
}
PATHS = {"plain": "/plain", "required": "/required", "metered": "/metered", "raw": "/raw"}


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

    storage = app.extensions["feature_gates"].engine.storage
    raw_update = storage.statements.render(RAW_UPDATE_IN_SCHEMA)

    @app.post("/raw")
    def raw() -> str:
        # Through the same storage as the metered check: the same pool, the same
        # connection settings, the statement timeout sent the same way.
        storage.run(
            raw_update, (1, 2, "raw", 1, LIMIT), row=tuple_row, what="raw", idempotent=False
        )
        return "ok"

    return app, gates


def view_latencies(call: Callable[[str], None], sizes: dict[str, int]) -> dict[str, list[float]]:
    """Microseconds of each call of each view, the views taking turns."""

    def side(path: str) -> Callable[[], object]:
        return lambda: call(path)

    return harness.alternate(
        {name: side(path) for name, path in PATHS.items()},
        blocks=sizes["blocks"],
        per_block=sizes["per_block"],
        warmup=sizes["warmup"],
    )


def statement_latencies(url: str, sizes: dict[str, int]) -> dict[str, Any]:
    """Round trips on one connection, taking turns: the metered check's statement
    against a bare conditional UPDATE and against its own upsert written out, all
    sent as the package sends its statements (no prepared statement, the statement
    timeout in the same message): how much of the metered figure is the
    database's. And the bare UPDATE the way the package sent statements before
    (prepared after five runs, the timeout and search_path set on the session):
    what sending everything with each transaction costs."""
    period = month_start(utc_now())
    consume = {
        "subject": 4,
        "feature": "sql",
        "scope": "user",
        "rule": "month",
        "start": period,
        "offset": 0,
        "end": None,
        "amount": 1,
        "limit": LIMIT,
        "member": None,
        "member_limit": None,
        "bucket": None,
        "thresholds": None,
        "plan": "pro",
        "now": utc_now(),
    }
    # The same with alert thresholds at 80 % and 100 %, on keys of their own:
    # one far below them, one between them (85 % of a limit it never reaches).
    alerts = {**consume, "subject": 7, "thresholds": ["0.8", "1.0"]}
    armed = {**alerts, "subject": 8, "limit": ARMED_LIMIT}
    # Holds of 2 uses, each committed for 1, on a key of their own.
    reserve = {**consume, "subject": 10, "amount": 2, "expires": utc_now() + timedelta(days=1)}
    # A key whose allowance (1) is used up and whose grant is never used up.
    granted = {**consume, "subject": 11, "limit": 1}
    calls = sizes["warmup"] + sizes["blocks"] * sizes["per_block"]
    statements = Statements.build("public", STATEMENT_TIMEOUT)
    with (
        psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn,
        psycopg.connect(url, autocommit=True) as session,
    ):
        conn.execute(
            "INSERT INTO feature_usage (user_id, feature, period_start, usage_count) "
            "VALUES (5, 'raw', %s, 0), (8, 'sql', %s, %s)",
            (period, period, ARMED_LIMIT * 85 // 100),
        )
        session.execute(
            "SELECT set_config('statement_timeout', %s, false), "
            "set_config('search_path', 'public', false)",
            (str(round(STATEMENT_TIMEOUT * 1000)),),
        )
        conn.execute(
            "SELECT feature_usage_consume(11, 'sql', 'user', 'month', %s, 0, NULL, 1, 1, "
            "NULL, NULL, NULL, NULL, 'pro')",
            (period,),
        )
        conn.execute(
            "SELECT feature_usage_grant(11, 'sql', 'user', %s, NULL, 'benchmark', NULL, "
            "'grant', now())",
            (LIMIT,),
        )
        held = [
            row[0]
            for row in conn.execute(
                "SELECT (feature_usage_reserve(12, 'sql', 'user', 'month', %s, 0, NULL, 2, %s, "
                "NULL, NULL, NULL, NULL, 'pro', now(), now() + interval '1 day')).hold_id "
                "FROM generate_series(1, %s)",
                (period, LIMIT, calls),
            )
        ]
        commits = iter(
            [
                {"subject": 12, "hold": hold, "actual": 1, "now": utc_now(), "now_bucket": None}
                for hold in held
            ]
        )

        def commit() -> object:
            cursor = ClientCursor(conn)
            cursor.execute(statements.render(SETTLE_TEMPLATE), next(commits))
            cursor.nextset()
            return cursor.fetchone()

        def send(template: sql.SQL, params: Params) -> Callable[[], object]:
            # As the package's storage sends a statement: its SET LOCAL first.
            query = statements.render(template)
            cursor = ClientCursor(conn)

            def once() -> object:
                cursor.execute(query, params)
                cursor.nextset()
                return cursor.fetchone()

            return once

        def on_session(query: str, params: Params, prepare: bool) -> Callable[[], object]:
            return lambda: session.execute(query, params, prepare=prepare).fetchone()

        update = (1, 5, "raw", 1, LIMIT)
        times = harness.alternate(
            {
                "consume_statement": send(CONSUME_TEMPLATE, consume),
                "consume_alerts_statement": send(CONSUME_TEMPLATE, alerts),
                "consume_alerts_armed_statement": send(CONSUME_TEMPLATE, armed),
                "reserve_statement": send(RESERVE_TEMPLATE, reserve),
                "commit_statement": commit,
                "consume_granted_statement": send(CONSUME_TEMPLATE, granted),
                "raw_update_statement": send(RAW_UPDATE_IN_SCHEMA, update),
                "raw_upsert_statement": send(RAW_UPSERT_IN_SCHEMA, (6, "upsert", period, 1, LIMIT)),
                "raw_update_prepared_session": on_session(RAW_UPDATE, update, True),
                "raw_update_unprepared_session": on_session(RAW_UPDATE, update, False),
            },
            blocks=sizes["blocks"],
            per_block=sizes["per_block"],
            warmup=sizes["warmup"],
        )
    median = {name: round(harness.p50(values), 1) for name, values in times.items()}
    figures: dict[str, Any] = {f"{name}_us_p50": value for name, value in median.items()}
    for ratio, (side, base) in STATEMENT_RATIOS.items():
        figures[ratio] = harness.ratio(median[side], median[base])
    return figures


def hot_updates(url: str) -> dict[str, Any]:
    """How many of the updates of feature_usage rows were HOT (no new index entries,
    dead versions pruned in place), counted by the server's statistics."""
    time.sleep(1.5)  # sessions report their counts when they end or within a second
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size(relid) "
            "FROM pg_stat_user_tables WHERE relname = 'feature_usage'"
        ).fetchone()
    assert row is not None
    updates, hot, size = row
    return {
        "feature_usage_updates": updates,
        "feature_usage_hot_updates": hot,
        "feature_usage_table_kb": size // 1024,
    }


def race(
    url: str, attempt: Callable[[psycopg.Connection[TupleRow], int], bool], feature: str
) -> int:
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


def atomic_attempt(conn: psycopg.Connection[TupleRow], limit: int) -> bool:
    row = conn.execute("SELECT consume_feature_usage(3, 'race_atomic', 1, %s)", (limit,)).fetchone()
    return row is not None and row[0] is not None


def naive_attempt(conn: psycopg.Connection[TupleRow], limit: int) -> bool:
    row = conn.execute("SELECT get_feature_usage(3, 'race_naive')").fetchone()
    if row is None or row[0] + 1 > limit:
        return False
    conn.execute("SELECT increment_feature_usage_safe(3, 'race_naive', 1)")
    return True


def run(server_url: str | None = None, *, scale: harness.Scale = "full") -> dict[str, Any]:
    """Run every measurement and return the figures (what ``main`` prints)."""
    sizes = SIZES[scale]
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            database_url = databases.create(MigrationSettings())
            return _run(database_url, sizes)
        finally:
            databases.close()


def _run(database_url: str, sizes: dict[str, int]) -> dict[str, Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feature_usage (user_id, feature, period_start, usage_count) "
            "VALUES (2, 'raw', date_trunc('month', now())::date, 0)"
        )
    app, _ = make_app(database_url)
    client = app.test_client()

    def call(path: str) -> None:
        client.post(path).close()

    try:
        times = view_latencies(call, sizes)
    finally:
        app.extensions["feature_gates"].close()
    results_sql = statement_latencies(database_url, sizes)
    median = {name: harness.p50(values) for name, values in times.items()}
    added = {name: round(median[name] - median["plain"], 1) for name in PATHS}
    results: dict[str, Any] = {
        "calls_per_view": len(times["plain"]),
        "plain_view_us_p50": round(median["plain"], 1),
        "gate_overhead_us_p50": added["required"],
        "metered_limit_us_p50": added["metered"],
        "raw_conditional_update_us_p50": added["raw"],
        "metered_vs_raw_conditional_update": harness.ratio(added["metered"], added["raw"]),
        **results_sql,
    }
    granted = race(database_url, atomic_attempt, "race_atomic")
    naive = race(database_url, naive_attempt, "race_naive")
    results.update(hot_updates(database_url))
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


def main(argv: list[str] | None = None) -> None:
    harness.cli("python -m benchmarks.gates", __doc__, run, argv)


if __name__ == "__main__":
    main()
