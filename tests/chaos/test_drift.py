"""Counters corrupted on purpose behind the app's back, with plain SQL: verify
names exactly those rows, and repair-counters makes verify pass again."""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest
from chaos_support import SENTINEL_SETTINGS
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from test_migrate_faults import feature_gates_command

from feature_gates.migrate import repair_counters
from feature_gates.migrate import verify

pytestmark = pytest.mark.chaos

THREADS = "chat_threads.thread_messages_count"
ITINERARIES = "travel_itineraries.destinations_count"
LEGACY = "chat_threads.message_count"
#: verify names at most this many rows of each counter.
SHOWN = 20

FILL = [
    "INSERT INTO users (email, name, plan) VALUES ('drift@chaos.example', 'Drift', 'pro')",
    """
    INSERT INTO chat_threads (user_id, title)
    SELECT (SELECT id FROM users), 'thread ' || g FROM generate_series(1, 60) g
    """,
    """
    INSERT INTO chat_messages (thread_id, content)
    SELECT t.id, 'message' FROM chat_threads t, generate_series(1, (t.id % 6)::int) m
    """,
    # The application keeps its legacy counter right.
    "UPDATE chat_threads SET message_count = (id % 6)::int",
    """
    INSERT INTO travel_itineraries (user_id, data)
    SELECT (SELECT id FROM users),
           jsonb_build_object('waypoints', (SELECT coalesce(jsonb_agg(w), '[]')
                                            FROM generate_series(1, g % 4) w))
    FROM generate_series(1, 60) g
    """,
]

DRIFT = re.compile(r"^(\S+) id=(\d+) has (-?\d+), truth (\d+) \((\d+) rows of \w+ differ")


@pytest.fixture
def url(feature_gates_database_url):
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        for statement in FILL:
            conn.execute(statement)
    return feature_gates_database_url


def corrupt(url: str, threads: dict[int, int], itineraries: dict[int, int]) -> set[tuple]:
    """Set counters to wrong values by direct SQL; returns (counter, id, stored, truth)."""
    planted = set()
    with psycopg.connect(url, autocommit=True) as conn:
        for thread_id, value in threads.items():
            (truth,) = conn.execute(
                "SELECT count(*) FROM chat_messages WHERE thread_id = %s", (thread_id,)
            ).fetchone()
            stored = value if value != truth else truth + 1
            conn.execute(
                "UPDATE chat_threads SET thread_messages_count = %s WHERE id = %s",
                (stored, thread_id),
            )
            planted.add((THREADS, thread_id, stored, truth))
        # The row trigger recounts destinations_count on every write: a replica
        # session fires no trigger, as a restore or a careless bulk load would.
        conn.execute("SET session_replication_role = replica")
        for itinerary_id, value in itineraries.items():
            (truth,) = conn.execute(
                "SELECT waypoint_count(data) FROM travel_itineraries WHERE id = %s",
                (itinerary_id,),
            ).fetchone()
            stored = value if value != truth else truth + 1
            conn.execute(
                "UPDATE travel_itineraries SET destinations_count = %s WHERE id = %s",
                (stored, itinerary_id),
            )
            planted.add((ITINERARIES, itinerary_id, stored, truth))
    return planted


def reported(lines: list[str]) -> set[tuple]:
    """(counter, id, stored, truth) of each line of verify's output."""
    found = set()
    for line in lines:
        assert line.startswith("counter: "), line
        counter, row_id, stored, truth, _ = DRIFT.match(line.removeprefix("counter: ")).groups()
        found.add((counter, int(row_id), int(stored), int(truth)))
    return found


def ids(url: str) -> tuple[list[int], list[int]]:
    """The ids of the threads and of the itineraries."""
    with psycopg.connect(url) as conn:
        threads = conn.execute("SELECT id FROM chat_threads ORDER BY id").fetchall()
        itineraries = conn.execute("SELECT id FROM travel_itineraries ORDER BY id").fetchall()
    return [r[0] for r in threads], [r[0] for r in itineraries]


counter_value = st.integers(min_value=-(2**31), max_value=2**31 - 1)


# Each example runs verify and repair: a third of the profile's examples.
@settings(
    max_examples=max(5, settings.default.max_examples // 3),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_verify_names_exactly_the_drifted_rows_and_repair_fixes_them(url, data):
    thread_ids, itinerary_ids = ids(url)
    threads = data.draw(st.dictionaries(st.sampled_from(thread_ids), counter_value, max_size=SHOWN))
    itineraries = data.draw(
        st.dictionaries(st.sampled_from(itinerary_ids), counter_value, max_size=SHOWN)
    )
    planted = corrupt(url, threads, itineraries)
    problems = verify(url, SENTINEL_SETTINGS)
    assert reported([str(p) for p in problems]) == planted
    for problem in problems:
        total = int(DRIFT.match(problem.detail).group(5))
        assert total == (len(threads) if problem.detail.startswith(THREADS) else len(itineraries))
    assert repair_counters(url, SENTINEL_SETTINGS) == {
        THREADS: len(threads),
        ITINERARIES: len(itineraries),
        LEGACY: 0,
    }
    assert verify(url, SENTINEL_SETTINGS) == []


def test_the_commands_report_the_drift_exit_1_and_repair_it(url):
    threads, itineraries = ids(url)
    planted = corrupt(
        url,
        {threads[3]: 999, threads[40]: 0, threads[59]: -1},
        {itineraries[7]: 50, itineraries[8]: 0},
    )
    found = subprocess.run(feature_gates_command(url, "verify"), capture_output=True, text=True)
    assert found.returncode == 1
    assert reported(found.stdout.splitlines()) == planted
    assert found.stderr.strip().endswith("5 problem(s) found")
    fixed = subprocess.run(
        feature_gates_command(url, "repair-counters"), capture_output=True, text=True
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines() == [
        f"{THREADS}: 3 rows fixed",
        f"{ITINERARIES}: 2 rows fixed",
        f"{LEGACY}: 0 rows fixed",
    ]
    again = subprocess.run(feature_gates_command(url, "verify"), capture_output=True, text=True)
    assert (again.returncode, again.stdout) == (
        0,
        "ok: core, counters as the migrations left them\n",
    )
