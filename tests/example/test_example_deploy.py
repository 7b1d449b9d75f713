"""Sentinel deploys like a real app: making it opens no connection, each process
opens its own pool, and migrating is a step of the deploy, run once through the
direct URL while the app's URL goes through a transaction pooler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from examples.sentinel import create_app
from examples.sentinel.state import gates

ROOT = Path(__file__).resolve().parents[2]

SENTINEL_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE application_name = 'sentinel' AND datname = current_database()"
)


def backend_pids(app, uses: int = 5) -> set[int]:
    """The server processes the app's pool reached in ``uses`` uses."""
    pids = set()
    for _ in range(uses):
        with app.extensions["sentinel"].pool.connection() as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pids.add(int(row[0]))
    return pids


def test_a_forked_worker_opens_its_own_pool_and_never_uses_its_parents(
    feature_gates_database_url, db
):
    app = create_app({"FEATURE_GATES_DATABASE_URL": feature_gates_database_url})
    try:
        # As under gunicorn --preload: the app is made, then the workers are forked.
        assert db.execute(SENTINEL_CONNECTIONS).fetchone() == (0,)
        parent = backend_pids(app)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the worker: answer with the server processes it reached
            try:
                os.write(write, " ".join(map(str, backend_pids(app))).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as answer:
            forked = {int(pid) for pid in answer.read().split()}
        os.waitpid(child, 0)
        assert forked and forked.isdisjoint(parent)
        # The parent's pool goes on with connections of its own.
        assert backend_pids(app).isdisjoint(forked)
    finally:
        gates.close(app)
        app.extensions["sentinel"].close()


def flask_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "examples.sentinel", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_making_the_app_migrates_nothing_and_the_deploy_step_migrates_once(empty_url, pooler):
    through_pooler = pooler.url(empty_url)
    app = create_app({"FEATURE_GATES_DATABASE_URL": through_pooler})
    app.extensions["sentinel"].close()
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)

    # The documented step: the app's URL through the pooler, the direct one for migrate.
    refused = flask_command("feature-gates", "migrate", env={"DATABASE_URL": through_pooler})
    assert refused.returncode != 0
    assert "FEATURE_GATES_MIGRATION_DATABASE_URL" in refused.stderr
    applied = flask_command(
        "feature-gates",
        "migrate",
        env={"DATABASE_URL": through_pooler, "FEATURE_GATES_MIGRATION_DATABASE_URL": empty_url},
    )
    assert applied.returncode == 0, applied.stderr
    assert "applied sentinel/0001_base_tables" in applied.stdout
    assert "applied counters/0001_counter_columns" in applied.stdout
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)
