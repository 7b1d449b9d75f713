"""The migration runner under fire: `feature-gates migrate` killed with SIGKILL in
the middle of the counters backfill, and two `feature-gates migrate` at once, on
a Sentinel database full of rows."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import store

pytestmark = pytest.mark.chaos

#: Sentinel's own tables only: the state before feature-gates is installed.
BASE_TABLES = MigrationSettings(sets=("sentinel",), folders={"sentinel": MIGRATION_FOLDER})
SETS = ["--set", "core", "--set", "counters"]
BATCH_SIZE = 1000  # the console script's default

FILL = [
    "INSERT INTO users (email, name, plan) VALUES ('bulk@chaos.example', 'Bulk', 'pro')",
    """
    INSERT INTO chat_threads (user_id, title)
    SELECT (SELECT id FROM users), 'thread ' || g FROM generate_series(1, %(threads)s) g
    """,
    # 0 to 6 messages a thread, and the application's legacy counter kept right.
    """
    INSERT INTO chat_messages (thread_id, content)
    SELECT t.id, 'message ' || m FROM chat_threads t, generate_series(1, (t.id %% 7)::int) m
    """,
    "UPDATE chat_threads SET message_count = (id %% 7)::int",
    # Every shape of data: waypoints arrays of 0 to 4, none, and not an array.
    """
    INSERT INTO travel_itineraries (user_id, data)
    SELECT (SELECT id FROM users),
           CASE WHEN g %% 9 = 0 THEN '{"waypoints": "paris"}'::jsonb
                WHEN g %% 11 = 0 THEN '{}'::jsonb
                ELSE jsonb_build_object('waypoints',
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('name', 'p' || w)), '[]')
                     FROM generate_series(1, g %% 5) w)) END
    FROM generate_series(1, %(itineraries)s) g
    """,
]

PROGRESS = """
SELECT last_key, done FROM feature_gates_backfill_progress
WHERE counter = 'chat_threads.thread_messages_count'
"""

TRUTH = """
SELECT (SELECT count(*) FROM chat_threads t
        WHERE t.thread_messages_count <>
              (SELECT count(*) FROM chat_messages m WHERE m.thread_id = t.id)),
       (SELECT count(*) FROM travel_itineraries i
        WHERE i.destinations_count <> waypoint_count(i.data))
"""


def feature_gates_command(url: str, *args: str) -> list[str]:
    """The `feature-gates` console script of this environment, on ``url``."""
    script = Path(sys.executable).with_name("feature-gates")
    return [str(script), "--database-url", url, *SETS, *args]


def filled_database(databases, threads: int) -> str:
    url = databases.create(BASE_TABLES)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in FILL:
            conn.execute(statement, {"threads": threads, "itineraries": threads // 2})
    return url


def batches_of(stderr: str) -> list[int]:
    """The batch counts of each backfill a run reported (threads, then itineraries)."""
    return [int(n) for n in re.findall(r"counter_backfill: (\d+) batches", stderr)]


def test_a_migrate_killed_in_the_backfill_resumes_and_ends_verified(
    feature_gates_databases, budget, report
):
    url = filled_database(feature_gates_databases, budget.backfill_threads)
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM chat_threads ORDER BY id")]
        total_batches = -(-len(ids) // BATCH_SIZE)
        blocker = psycopg.connect(url)
        run = subprocess.Popen(
            feature_gates_command(url, "migrate"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            blocked = False
            while True:
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the backfill never got a third of the way"
                if not blocked and _has_progress(conn):
                    # The counter columns are there. A thread near the end stays
                    # locked until the kill, so however fast the machine, the
                    # backfill cannot be done before it: it is killed running.
                    blocker.execute(
                        "SELECT 1 FROM chat_threads WHERE id = %s FOR UPDATE", (ids[-10],)
                    )
                    blocked = True
                row = conn.execute(PROGRESS).fetchone() if blocked else None
                if row and row[0] is not None and int(row[0]) >= ids[len(ids) // 3]:
                    break  # killed once a third of the threads are counted
                time.sleep(0.005)
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
            blocker.close()
        assert run.returncode == -signal.SIGKILL

        applied = {m.label for m in applied_migrations(url, MigrationSettings(sets=SETS[1::2]))}
        assert "counters/0001_counter_columns" in applied
        assert "counters/0002_counter_backfill" not in applied
        saved, done = conn.execute(PROGRESS).fetchone()
        assert not done and ids[len(ids) // 3] <= int(saved) < ids[-10]

        # The application goes on writing meanwhile, on both sides of the saved
        # position: the triggers count what the backfill has passed.
        # (Its own message_count too.)
        conn.execute(
            "WITH added AS (INSERT INTO chat_messages (thread_id, content) "
            "SELECT id, 'later' FROM chat_threads WHERE id % 97 = 0 RETURNING thread_id) "
            "UPDATE chat_threads t SET message_count = message_count + 1 "
            "FROM added WHERE t.id = added.thread_id"
        )
        conn.execute(
            "WITH gone AS (DELETE FROM chat_messages WHERE id % 89 = 0 RETURNING thread_id) "
            "UPDATE chat_threads t SET message_count = message_count - g.n "
            "FROM (SELECT thread_id, count(*) AS n FROM gone GROUP BY thread_id) AS g "
            "WHERE t.id = g.thread_id"
        )
        conn.execute(
            "UPDATE travel_itineraries SET data = '{\"waypoints\": [1, 2, 3, 4, 5, 6]}' "
            "WHERE id % 83 = 0"
        )

        second = subprocess.run(
            feature_gates_command(url, "migrate"), capture_output=True, text=True, timeout=600
        )
        assert second.returncode == 0, second.stderr
        assert "applied counters/0002_counter_backfill" in second.stdout
        # It went on from the saved position, not from the first thread.
        left = len(ids) - (ids.index(int(saved)) + 1)
        resumed = batches_of(second.stderr)[0]
        assert resumed == -(-left // BATCH_SIZE)
        checked = subprocess.run(
            feature_gates_command(url, "verify"), capture_output=True, text=True, timeout=600
        )
        assert (checked.returncode, checked.stdout.strip()) == (
            0,
            "ok: core, counters as the migrations left them",
        )
        assert conn.execute(TRUTH).fetchone() == (0, 0)
        assert conn.execute("SELECT count(*) FROM feature_gates_backfill_progress").fetchone() == (
            0,
        )
    report(
        threads=len(ids),
        thread_batches=total_batches,
        killed_after_thread=int(saved),
        batches_after_resume=resumed,
    )


def _has_progress(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('feature_gates_backfill_progress')").fetchone()
    return row is not None and row[0] is not None


def test_two_migrates_at_once_apply_each_migration_once(feature_gates_databases):
    url = filled_database(feature_gates_databases, 2000)
    lock = (store.LOCK_CLASS_ID, store.LOCK_OBJECT_ID)
    with psycopg.connect(url, autocommit=True) as gate:
        # Both runners start while the lock is held, then race for it.
        gate.execute("SELECT pg_advisory_lock(%s, %s)", lock)
        runs = [
            subprocess.Popen(
                feature_gates_command(url, "migrate"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = gate.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'feature-gates migrate'"
            ).fetchone()
            if row and row[0] == 2:
                break
            time.sleep(0.05)
        time.sleep(0.6)  # both have tried the lock (they poll every 0.5 s)
        gate.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    outputs = sorted(out for out, _ in results)
    assert outputs[0].startswith("applied core/0001_feature_usage_table")
    assert outputs[1] == "nothing to apply: the database is up to date\n"
    settings = MigrationSettings(sets=("core", "counters"))
    labels = [m.label for m in applied_migrations(url, settings)]
    # and the base tables of the example (set up by filled_database)
    assert len(labels) == len(set(labels)) == len(settings.load()) + len(BASE_TABLES.load())
    verified = subprocess.run(feature_gates_command(url, "verify"), capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout
