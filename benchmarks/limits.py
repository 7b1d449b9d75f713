"""What each kind of limit costs: against the floor, and against Flask-Limiter.

    python -m benchmarks.limits [--quick | --smoke] [--database-url URL] [--json PATH]
                                [--kinds month,day,...]

Prints one JSON object. Every side is timed in the same run, the sides taking turns
(blocks of calls, the order rotating), so that drift on the machine hits all alike:

- **the floor**: one conditional ``UPDATE`` of one row with its commit, on a
  connection that is already open (autocommit, no pool, no Flask), sent as psycopg
  sends it by default (prepared after five runs); and the same sent the way the
  package sends its statements (simple protocol, ``SET LOCAL statement_timeout`` in
  the same message);
- **a metered @feature_limit of each kind** (a user's calendar month in UTC, the
  default; a day and an ISO week in a zone; a month from the subscription's anchor;
  an organisation's monthly pool with a per-user cap; a rolling window of an hour),
  called with Flask's test client, beside an ungated view of the same app and a
  @feature_required view; a gate's cost is its view minus the ungated view;
- **Flask-Limiter's fixed window** (one limit on one view) on memory, on a private
  Redis without persistence and on one with ``appendfsync always`` (every write on
  disk before the reply, as a PostgreSQL commit is), each minus an ungated view of
  its own app.

``floor_us_p50`` / ``floor_simple_protocol_us_p50``
    The floor's round trip, as psycopg sends it by default / as the package sends
    its statements.
``<kind>_gate_us_p50`` / ``<kind>_vs_floor``
    A metered check's cost (its view minus the ungated view), and that over the floor.
``required_gate_us_p50``
    What @feature_required adds to the ungated view.
``flask_limiter_<storage>_us_p50``
    What Flask-Limiter's fixed window adds, on ``memory``, ``redis`` and
    ``redis_always``.
``<kind>_vs_flask_limiter_redis_always`` / ``metered_vs_flask_limiter_redis_always_max``
    The metered check over Flask-Limiter on a durable Redis; the largest of those.
``flask_limiter_memory_vs_required``
    Flask-Limiter on memory over @feature_required.
``hot_org_uses_per_s`` / ``spread_users_uses_per_s`` / ``hot_org_vs_spread_users``
    16 threads on one organisation's pool against 16 threads on 16 users
    (:mod:`benchmarks.hot_org`).

Without ``--database-url`` a private durable PostgreSQL is started; either way the
measurements run in a fresh migrated database of their own. redis-server must be
installed (``make bench`` installs it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from datetime import timezone
from typing import Any

import psycopg
from flask import Flask
from psycopg import ClientCursor
from psycopg import sql

from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates.core._storage.statements import Statements
from feature_gates.migrate import MigrationSettings
from feature_gates.testing import DatabaseFactory

from . import harness
from . import hot_org
from .redis_server import redis_server

LIMIT = 2**40  # never reached: the benchmark measures allowed calls
#: Each kind of limit measured, as the plan catalogue writes it.
KINDS: dict[str, Any] = {
    "month": LIMIT,
    "day": {"limit": LIMIT, "period": "day"},
    "week": {"limit": LIMIT, "period": "week"},
    "anchored": {"limit": LIMIT, "period": "month", "anchor": "subscription"},
    "pool": {"limit": LIMIT, "period": "month", "scope": "org", "per_user": LIMIT},
    "window": {"limit": LIMIT, "window": "1h"},
}
#: How the goals name each kind.
KIND_NAMES = {
    "month": "calendar month",
    "day": "day",
    "week": "week",
    "anchored": "anchored month",
    "pool": "org pool with a per-user cap",
    "window": "rolling window",
}
#: The goals of docs/performance.md: a kind's cost over the floor.
FLOOR_GOALS = {
    "month": 1.3,
    "day": 1.35,
    "week": 1.35,
    "anchored": 1.35,
    "pool": 1.6,
    "window": 1.7,
}
FLOOR = (
    "UPDATE feature_usage SET usage_count = usage_count + %s "
    "WHERE user_id = %s AND feature = %s AND usage_count + %s <= %s "
    "RETURNING usage_count"
)
FLOOR_IN_SCHEMA = sql.SQL(
    "UPDATE {schema}.feature_usage SET usage_count = usage_count + %s "
    "WHERE user_id = %s AND feature = %s AND usage_count + %s <= %s "
    "RETURNING usage_count"
)
FLOOR_PARAMS = (1, 9, "floor", 1, LIMIT)
STATEMENT_TIMEOUT = 5.0
#: Flask-Limiter's storages: name -> (storage URI, or a Redis to start: durable?).
LIMITER_STORAGES: dict[str, bool | None] = {"memory": None, "redis": False, "redis_always": True}
SIZES = {
    "full": {"blocks": 100, "per_block": 40, "warmup": 200},
    "quick": {"blocks": 30, "per_block": 40, "warmup": 100},
    "smoke": {"blocks": 2, "per_block": 5, "warmup": 3},
}
SUBJECT = Subject(
    1,
    "pro",
    org_id=1,
    period_anchor=datetime(2025, 1, 31, 9, 0, tzinfo=timezone.utc),
    timezone="Europe/Paris",
)


def make_app(database_url: str, kinds: list[str]) -> tuple[Flask, dict[str, str]]:
    """The app of the metered views: its paths by side."""
    app = Flask("benchmark-limits")
    entitlements: dict[str, Any] = {"export": True}
    entitlements.update({kind: KINDS[kind] for kind in kinds})
    app.config.update(
        FEATURE_GATES_DATABASE_URL=database_url,
        FEATURE_GATES_PLANS={"pro": entitlements},
        FEATURE_GATES_TRACKING="background",
        FEATURE_GATES_COMMAND_NAME="",
    )
    gates = FeatureGates(app)
    gates.subject_loader(lambda: SUBJECT)

    @app.post("/plain")
    def plain() -> str:
        return "ok"

    @app.post("/required")
    @feature_required("export")
    def required() -> str:
        return "ok"

    paths = {"plain": "/plain", "required": "/required"}
    for kind in kinds:
        view = feature_limit(kind)(lambda: "ok")
        app.add_url_rule(f"/{kind}", endpoint=kind, view_func=view, methods=["POST"])
        paths[kind] = f"/{kind}"
    return app, paths


def limiter_app(storage_uri: str) -> Flask:
    """An app with Flask-Limiter's fixed window on one view, and an ungated view."""
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    app = Flask("benchmark-flask-limiter")
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage_uri, strategy="fixed-window")

    @app.post("/plain")
    def plain() -> str:
        return "ok"

    @app.post("/limited")
    @limiter.limit(f"{LIMIT}/day")
    def limited() -> str:
        return "ok"

    return app


def poster(app: Flask, path: str) -> Callable[[], None]:
    client = app.test_client()
    return lambda: client.post(path).close()


def run(
    server_url: str | None = None, *, scale: harness.Scale = "full", kinds: str | None = None
) -> dict[str, Any]:
    """Run every measurement and return the figures (what ``main`` prints).

    :param kinds: a comma-separated subset of :data:`KINDS` (all by default).
    """
    chosen = list(KINDS) if not kinds else [k.strip() for k in kinds.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise SystemExit(f"unknown kinds {unknown}: choose among {list(KINDS)}")
    with harness.server(server_url) as url:
        databases = DatabaseFactory(url)
        try:
            database_url = databases.create(MigrationSettings())
            figures = measure(database_url, SIZES[scale], chosen)
            figures.update(hot_org.measure(database_url, scale))
            return figures
        finally:
            databases.close()


def measure(database_url: str, sizes: dict[str, int], kinds: list[str]) -> dict[str, Any]:
    """The latencies of every side, taking turns, and what they say."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feature_usage (user_id, feature, period_start, usage_count) "
            "VALUES (%s, %s, date_trunc('month', now())::date, 0)",
            FLOOR_PARAMS[1:3],
        )
    with ExitStack() as stack:
        app, paths = make_app(database_url, kinds)
        stack.callback(app.extensions["feature_gates"].close)
        sides: dict[str, Callable[[], object]] = {
            name: poster(app, path) for name, path in paths.items()
        }
        for name, durable in LIMITER_STORAGES.items():
            uri = (
                "memory://"
                if durable is None
                else stack.enter_context(redis_server(durable=durable))
            )
            limited = limiter_app(uri)
            sides[f"limiter_{name}_plain"] = poster(limited, "/plain")
            sides[f"limiter_{name}"] = poster(limited, "/limited")
        floor = stack.enter_context(psycopg.connect(database_url, autocommit=True))
        simple = stack.enter_context(
            psycopg.connect(database_url, autocommit=True, prepare_threshold=None)
        )
        sides["floor"] = lambda: floor.execute(FLOOR, FLOOR_PARAMS).fetchone()
        sides["floor_simple_protocol"] = simple_protocol(simple)
        times = harness.alternate(
            sides,
            blocks=sizes["blocks"],
            per_block=sizes["per_block"],
            warmup=sizes["warmup"],
        )
    median = {name: harness.p50(values) for name, values in times.items()}
    floor_us = median["floor"]
    figures: dict[str, Any] = {
        "calls_per_side": len(times["plain"]),
        "floor_us_p50": round(floor_us, 1),
        "floor_simple_protocol_us_p50": round(median["floor_simple_protocol"], 1),
        "plain_view_us_p50": round(median["plain"], 1),
        "required_gate_us_p50": round(median["required"] - median["plain"], 1),
    }
    for name in LIMITER_STORAGES:
        added = median[f"limiter_{name}"] - median[f"limiter_{name}_plain"]
        figures[f"flask_limiter_{name}_us_p50"] = round(added, 1)
    durable = figures["flask_limiter_redis_always_us_p50"]
    for kind in kinds:
        cost = median[kind] - median["plain"]
        figures[f"{kind}_gate_us_p50"] = round(cost, 1)
        figures[f"{kind}_vs_floor"] = harness.ratio(cost, floor_us)
        figures[f"{kind}_vs_flask_limiter_redis_always"] = harness.ratio(cost, durable)
    figures["metered_vs_flask_limiter_redis_always_max"] = max(
        figures[f"{kind}_vs_flask_limiter_redis_always"] for kind in kinds
    )
    figures["flask_limiter_memory_vs_required"] = harness.ratio(
        figures["flask_limiter_memory_us_p50"], figures["required_gate_us_p50"]
    )
    figures["kinds"] = kinds
    return figures


def simple_protocol(conn: psycopg.Connection[Any]) -> Callable[[], object]:
    """The floor's UPDATE sent as the package sends its statements: bound on the
    client, after its SET LOCAL statement_timeout in the same message."""
    query = Statements.build("public", STATEMENT_TIMEOUT).render(FLOOR_IN_SCHEMA)
    cursor = ClientCursor(conn)

    def once() -> object:
        cursor.execute(query, FLOOR_PARAMS)
        cursor.nextset()
        return cursor.fetchone()

    return once


def main(argv: list[str] | None = None) -> None:
    harness.cli(
        "python -m benchmarks.limits",
        __doc__,
        run,
        argv,
        {"--kinds": {"help": f"a comma-separated subset of {','.join(KINDS)}"}},
    )


if __name__ == "__main__":
    main()
