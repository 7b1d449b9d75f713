"""feature_gates.counters.reserve: a stock limit on an application's own counter,
exact under concurrency, in the caller's transaction."""

from __future__ import annotations

import threading

import psycopg
import pytest
from counter_shapes import create_tables
from counter_shapes import settings
from counter_shapes import write_sets

from feature_gates.counters import reserve
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate


@pytest.fixture(scope="module")
def url(feature_gates_databases, tmp_path_factory):
    """The counter shapes' tables with every counter applied. Each test writes
    only what it rolls back, or rows of its own."""
    url = feature_gates_databases.create(None)
    create_tables(url)
    migrate(url, MigrationSettings(sets=("core",)))
    out = tmp_path_factory.mktemp("counters") / "app"
    write_sets(url, out)
    migrate(url, settings(out))
    yield url
    feature_gates_databases.drop(url)


def add_tasks(url: str, project: int, n: int, limit: int, outcomes: list[bool]) -> None:
    """Keep adding n tasks to the project while they fit."""
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            with conn.transaction():
                fits = reserve(conn, "projects", "open_tasks_count", project, n, limit)
                if fits:
                    conn.execute(
                        "INSERT INTO tasks (project_id, title) "
                        "SELECT %s, 'reserved' FROM generate_series(1, %s)",
                        (project, n),
                    )
            outcomes.append(fits)
            if not fits:
                return


def test_concurrent_callers_never_land_more_than_the_limit(url):
    with psycopg.connect(url, autocommit=True) as conn:
        project = conn.execute(
            "INSERT INTO projects (user_id, name) VALUES (1, 'limited') RETURNING id"
        ).fetchone()[0]
    outcomes: list[bool] = []
    callers = [
        threading.Thread(target=add_tasks, args=(url, project, 3, 20, outcomes)) for _ in range(8)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert outcomes.count(True) == 6  # 6 x 3 = 18 <= 20; a 7th would make 21
    assert outcomes.count(False) == 8
    with psycopg.connect(url) as conn:
        stored, truth = conn.execute(
            "SELECT open_tasks_count, (SELECT count(*) FROM tasks WHERE project_id = p.id "
            "AND deleted_at IS NULL) FROM projects p WHERE id = %s",
            (project,),
        ).fetchone()
    assert stored == truth == 18


def test_reserve_changes_nothing_and_counts_only_what_the_predicate_counts(url):
    with psycopg.connect(url) as conn:
        project, before = conn.execute(
            "SELECT id, open_tasks_count FROM projects ORDER BY id LIMIT 1"
        ).fetchone()
        assert reserve(conn, "projects", "open_tasks_count", project, 2, before + 2)
        assert not reserve(conn, "projects", "open_tasks_count", project, 3, before + 2)
        assert conn.execute(
            "SELECT open_tasks_count FROM projects WHERE id = %s", (project,)
        ).fetchone() == (before,)
        # A soft-deleted task takes no room.
        conn.execute(
            "INSERT INTO tasks (project_id, title, deleted_at) VALUES (%s, 'gone', now())",
            (project,),
        )
        assert reserve(conn, "projects", "open_tasks_count", project, 2, before + 2)
        conn.rollback()


def test_reserve_holds_the_row_until_the_callers_transaction_ends(url):
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        project = first.execute("SELECT id FROM projects ORDER BY id LIMIT 1").fetchone()[0]
        assert reserve(first, "projects", "tasks_count", project, 1, 10_000)
        second.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            reserve(second, "projects", "tasks_count", project, 1, 10_000)
        second.rollback()
        first.commit()
        assert reserve(second, "projects", "tasks_count", project, 1, 10_000)


def test_keys_of_any_type_in_any_schema(url):
    with psycopg.connect(url) as conn:
        board = conn.execute("SELECT id, cards_count FROM boards ORDER BY id LIMIT 1").fetchone()
        assert reserve(conn, "boards", "cards_count", board[0], 1, board[1] + 1)
        assert not reserve(conn, "boards", "cards_count", board[0], 2, board[1] + 1)
        folder = conn.execute("SELECT id, notes_count FROM app.folders WHERE id = 2").fetchone()
        assert reserve(conn, "app.folders", "notes_count", 2, 0, folder[1])
        assert not reserve(conn, "app.folders", "notes_count", 123456, 0, 10)
        assert reserve(conn, "projects", "tasks_count", "project 1", 0, 10_000, key_column="name")


def test_reserve_refuses_an_autocommit_connection_outside_a_transaction(url):
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.ProgrammingError, match="inside 'with conn.transaction\\(\\):'"):
            reserve(conn, "projects", "tasks_count", 1, 1, 10)
        with conn.transaction():
            assert reserve(conn, "projects", "tasks_count", 1, 0, 10_000)
    with psycopg.connect(url) as conn, pytest.raises(ValueError, match="n >= 0"):
        reserve(conn, "projects", "tasks_count", 1, -1, 10)
