"""`feature-gates counter add` on an application's own tables: the migration sets it
writes, applied to messy data while writers run, killed half-way and resumed,
rolled back; and what it refuses before writing anything."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from click.testing import CliRunner
from counter_shapes import COUNTERS
from counter_shapes import ORPHAN_FOLDERS
from counter_shapes import Workload
from counter_shapes import create_tables
from counter_shapes import drift
from counter_shapes import settings
from counter_shapes import write_sets
from flask import Flask

from benchmarks.migrate_counters import kill_when_it_waits
from feature_gates.cli import cli
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate
from feature_gates.migrate import migration_script
from feature_gates.migrate import repair_counters
from feature_gates.migrate import rollback
from feature_gates.migrate import verify
from feature_gates.pgserver import find_bindir
from tools import lint_migrations as lint

CORE = MigrationSettings(sets=("core",))
LAST_CORE = CORE.load()[-1].version
NO_DRIFT = {name: [] for name in COUNTERS}


@pytest.fixture
def app_url(empty_url):
    """An application database: its own tables and messy rows, core migrated."""
    create_tables(empty_url)
    migrate(empty_url, CORE)
    return empty_url


@pytest.fixture
def conn(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_generated_sets_count_exactly_before_and_after_a_random_concurrent_workload(
    app_url, conn, tmp_path, request
):
    out = tmp_path / "app"
    write_sets(app_url, out)
    migrate(app_url, settings(out, batch_size=7))
    assert drift(conn) == NO_DRIFT
    # Every shape counts something, and the messy rows count nothing.
    totals = conn.execute(
        "SELECT (SELECT sum(tasks_count) FROM projects),"
        " (SELECT sum(open_tasks_count) FROM projects), (SELECT sum(cards_count) FROM boards),"
        " (SELECT sum(notes_count) FROM app.folders),"
        " (SELECT sum(tags_count) FROM documents)"
    ).fetchone()
    assert all(total > 0 for total in totals)

    seconds = 30.0 if request.config.getoption("--long") else 4.0
    workload = Workload(app_url, seconds)
    workload.run()
    assert workload.ops > 100
    assert drift(conn) == NO_DRIFT
    assert verify(app_url, settings(out)) == []

    # A folder created for notes that pointed nowhere gets their count, and a
    # parent inserted with a count of its own gets the truth instead.
    orphan = ORPHAN_FOLDERS[3]
    conn.execute("INSERT INTO app.folders (id, user_id, notes_count) VALUES (%s, 1, 99)", (orphan,))
    pointing = conn.execute(
        "SELECT count(*) FROM app.notes WHERE folder_id = %s", (orphan,)
    ).fetchone()
    assert (
        conn.execute("SELECT notes_count FROM app.folders WHERE id = %s", (orphan,)).fetchone()
        == pointing
    )
    assert drift(conn) == NO_DRIFT


def test_verify_names_drift_and_repair_counters_fixes_every_registered_counter(
    app_url, conn, tmp_path
):
    out = tmp_path / "app"
    write_sets(app_url, out)
    migrate(app_url, settings(out))
    for table in ("tasks", "cards", "app.notes", "documents"):
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    conn.execute("UPDATE tasks SET deleted_at = NULL WHERE deleted_at IS NOT NULL")
    conn.execute("DELETE FROM cards WHERE board_id IS NOT NULL AND id % 2 = 0")
    conn.execute('UPDATE documents SET body = \'{"meta": {"tags": [1, 2, 3]}}\' WHERE id < 5')
    for table in ("tasks", "cards", "app.notes", "documents"):
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    expected = {name: len(rows) for name, rows in drift(conn).items()}
    assert expected["projects.open_tasks_count"] > 0
    assert expected["boards.cards_count"] > 0
    assert expected["documents.tags_count"] == 4
    assert expected["projects.tasks_count"] == expected["app.folders.notes_count"] == 0

    found = [str(p) for p in verify(app_url, settings(out))]
    first = min(drift(conn)["documents.tags_count"], key=lambda row: int(row[0]))
    assert (
        f"counter: documents.tags_count id={first[0]} has {first[1]}, truth {first[2]} "
        "(4 rows of documents differ; run repair-counters)"
    ) in found
    assert len(found) == sum(min(n, 20) for n in expected.values())
    assert repair_counters(app_url, settings(out), dry_run=True) == expected
    assert repair_counters(app_url, settings(out)) == expected
    assert drift(conn) == NO_DRIFT
    assert verify(app_url, settings(out)) == []


def test_a_backfill_killed_half_way_resumes_with_the_remaining_batches(empty_url, tmp_path, caplog):
    url = empty_url
    create_tables(url, projects=400)
    migrate(url, CORE)
    out = tmp_path / "app"
    write_sets(url, out, ["projects.tasks_count"])
    # The column and the triggers first (the same migration, from a folder
    # that has only it): the backfill is what is killed.
    first = tmp_path / "first"
    first.mkdir()
    for path in out.glob("0001_*"):
        (first / path.name).write_text(path.read_text())
    migrate(url, settings(first))
    with psycopg.connect(url, autocommit=True) as conn:
        keys = [r[0] for r in conn.execute("SELECT id FROM projects ORDER BY id")]
    batch = 20
    # The application holds a row of the 11th batch: the runner waits there,
    # after 10 batches, and is killed while it waits.
    blocked = keys[10 * batch + 5]
    blocker = psycopg.connect(url)
    blocker.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (blocked,))
    writer = _TaskWriter(url, [k for k in keys if k != blocked])
    writer.start()
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from feature_gates.migrate import MigrationSettings, migrate; "
            "migrate(sys.argv[1], MigrationSettings(sets=('core', 'app'), "
            "folders={'app': sys.argv[2]}, batch_size=20, lock_timeout=120))",
            url,
            str(out),
        ]
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            kill_when_it_waits(conn, runner)
            saved = conn.execute(
                "SELECT last_key, done FROM feature_gates_counter_positions "
                "WHERE counter = 'projects.tasks_count' AND step = 'backfill'"
            ).fetchone()
            assert saved == (str(keys[10 * batch - 1]), False)
    finally:
        runner.kill()
        runner.wait()
        blocker.close()
    with caplog.at_level("INFO", logger="feature_gates.migrate"):
        applied = migrate(url, settings(out, batch_size=batch))
    writer.stop()
    assert [m.name for m in applied] == ["projects_tasks_count_backfill"]
    backfill = next(r.getMessage() for r in caplog.records if "_backfill: " in r.getMessage())
    # The 10 batches before the kill are not done again: 10 remain of 20.
    assert re.search(r": 10 batches, \d+ rows changed", backfill), backfill
    assert writer.writes > 0
    with psycopg.connect(url, autocommit=True) as conn:
        assert drift(conn, ["projects.tasks_count"]) == {"projects.tasks_count": []}


class _TaskWriter(threading.Thread):
    """The application, inserting and deleting tasks of its projects meanwhile."""

    def __init__(self, url: str, projects: list[int]) -> None:
        super().__init__(daemon=True)
        self.url, self.projects = url, projects
        self.writes = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stopping.is_set():
                project = self.projects[self.writes % len(self.projects)]
                conn.execute("INSERT INTO tasks (project_id, title) VALUES (%s, 'w')", (project,))
                conn.execute(
                    "DELETE FROM tasks WHERE id = "
                    "(SELECT min(id) FROM tasks WHERE project_id = %s)",
                    (self.projects[(self.writes * 7) % len(self.projects)],),
                )
                self.writes += 1
                time.sleep(0.002)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def app_rows(conn) -> tuple:
    """A digest of the application's own columns and rows."""
    return conn.execute(
        """
        SELECT (SELECT md5(string_agg(format('%s|%s|%s', id, user_id, name), ',' ORDER BY id))
                FROM projects),
               (SELECT md5(string_agg(format('%s|%s|%s|%s', id, project_id, title, deleted_at),
                                      ',' ORDER BY id)) FROM tasks),
               (SELECT md5(string_agg(format('%s|%s', id, user_id), ',' ORDER BY id)) FROM boards),
               (SELECT md5(string_agg(format('%s|%s|%s', id, board_id, body), ',' ORDER BY id))
                FROM cards),
               (SELECT md5(string_agg(format('%s|%s|%s', id, folder_id, text), ',' ORDER BY id))
                FROM app.notes),
               (SELECT md5(string_agg(format('%s|%s|%s', id, user_id, body), ',' ORDER BY id))
                FROM documents)
        """
    ).fetchone()


def columns(conn) -> list[tuple]:
    return conn.execute(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname IN ('public', 'app') AND c.relkind = 'r' AND a.attnum > 0
          AND NOT a.attisdropped AND c.relname NOT LIKE 'feature%'
        ORDER BY 1, 2
        """
    ).fetchall()


def objects(conn) -> tuple:
    """Indexes of the application's tables, and feature-gates' triggers and
    trigger functions."""
    return conn.execute(
        """
        SELECT (SELECT array_agg(indexrelid::regclass::text
                                 ORDER BY indexrelid::regclass::text) FROM pg_index i
                JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname NOT LIKE 'feature%'
                AND c.relnamespace IN ('public'::regnamespace, 'app'::regnamespace)),
               (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'feature\\_gates%'),
               (SELECT count(*) FROM pg_proc WHERE proname LIKE 'feature\\_gates\\_count\\_%')
        """
    ).fetchone()


def test_rolling_back_generated_sets_leaves_the_application_tables_and_rows_intact(
    app_url, conn, tmp_path
):
    # A counter column the application already had: nullable, a default of its
    # own, values missing or wrong, and its own index.
    conn.execute("ALTER TABLE boards ADD COLUMN cards_count integer DEFAULT 5")
    conn.execute("UPDATE boards SET cards_count = NULL WHERE user_id = 1")
    conn.execute("CREATE INDEX idx_boards_cards_count ON boards (cards_count)")
    before_columns, before_objects = columns(conn), objects(conn)
    out = tmp_path / "app"
    write_sets(app_url, out)
    migrate(app_url, settings(out))
    assert drift(conn) == NO_DRIFT
    adopted = [c for c in columns(conn) if c[1] == "cards_count"]
    assert adopted == [("boards", "cards_count", "integer", True, "0")]
    Workload(app_url, 1.0).run()
    during = app_rows(conn)

    rolled = rollback(app_url, settings(out), to=f"core/{LAST_CORE}")
    assert len(rolled) == len(settings(out).load()) - len(CORE.load())
    assert app_rows(conn) == during
    assert columns(conn) == before_columns
    assert objects(conn) == before_objects
    assert conn.execute("SELECT count(*) FROM feature_gates_counter_registry").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM feature_gates_counter_positions").fetchone() == (0,)

    # And back: the counters are exact again, the adopted column NOT NULL again.
    migrate(app_url, settings(out))
    assert drift(conn) == NO_DRIFT
    assert app_rows(conn) == during
    assert verify(app_url, settings(out)) == []


def test_a_generated_set_applies_as_a_psql_script_too(app_url, conn, tmp_path):
    out = tmp_path / "app"
    write_sets(app_url, out)
    script = tmp_path / "migrate.sql"
    script.write_text(migration_script(app_url, settings(out, batch_size=9)))
    done = subprocess.run(
        [str(find_bindir() / "psql"), "-X", "-q", "-f", str(script), app_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(applied_migrations(app_url)) == len(settings(out).load())
    assert drift(conn) == NO_DRIFT
    assert verify(app_url, settings(out)) == []


# -- what the generator writes ----------------------------------------------------------


def test_the_files_are_numbered_after_the_folders_versions(run, app_url, tmp_path):
    out = tmp_path / "migrations"
    out.mkdir()
    (out / "0007_base_tables.up.sql").write_text("SELECT 1;\n")
    (out / "0007_base_tables.down.sql").write_text("SELECT 1;\n")
    result = run(
        "--database-url",
        app_url,
        "counter",
        "add",
        "projects.open_tasks_count",
        "--rows",
        "tasks.project_id",
        "--where",
        "deleted_at IS NULL",
        "--index",
        "(user_id, open_tasks_count)",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "0007_base_tables.down.sql",
        "0007_base_tables.up.sql",
        "0008_projects_open_tasks_count_counter.down.sql",
        "0008_projects_open_tasks_count_counter.up.sql",
        "0009_projects_open_tasks_count_backfill.down.sql",
        "0009_projects_open_tasks_count_backfill.up.sql",
        "0010_projects_open_tasks_count_index.down.sql",
        "0010_projects_open_tasks_count_index.up.sql",
    ]
    assert f"wrote {out / '0008_projects_open_tasks_count_counter.up.sql'}" in result.output
    up = (out / "0008_projects_open_tasks_count_counter.up.sql").read_text()
    assert up.startswith(
        "-- feature-gates: no-transaction\n-- The counter projects.open_tasks_count"
    )
    assert "WHERE tasks.project_id IS NOT NULL AND (deleted_at IS NULL)" in up
    index = (out / "0010_projects_open_tasks_count_index.up.sql").read_text()
    assert (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_projects_open_tasks_count\n"
        "    ON projects (user_id, open_tasks_count);"
    ) in index
    # A second time, the folder already has it.
    again = run(
        "--database-url", app_url, "counter", "add", "projects.open_tasks_count",
        "--rows", "tasks.project_id", "--out", str(out),
    )  # fmt: skip
    assert again.exit_code == 1
    assert "already has the counter projects.open_tasks_count" in again.output
    assert len(list(out.iterdir())) == 8


def test_flask_feature_gates_counter_add_reads_the_apps_database(app_url, tmp_path):
    app = Flask(__name__)
    app.config.update(FEATURE_GATES_DATABASE_URL=app_url)
    app.cli.add_command(cli)
    out = tmp_path / "app"
    result = app.test_cli_runner().invoke(
        args=["feature-gates", "counter", "add", "documents.tags_count", "--jsonb-length",
              "body.meta.tags", "--out", str(out)]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.sql"))) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.tasks_count", "--rows", "tasks.project_id"], "the table nope does not exist"),
        (["projects.tasks_count", "--rows", "nope.project_id"], "the table nope does not exist"),
        (["projects.tasks_count", "--rows", "tasks.nope"], "tasks has no column nope"),
        (["projects", "--rows", "tasks.project_id"], "'projects' is not TABLE.COLUMN"),
        (
            ["projects.name", "--rows", "tasks.project_id"],
            "projects.name exists as text, not integer",
        ),
        (
            ["projects.cards_count", "--rows", "cards.board_id"],
            "cards.board_id is uuid, but projects.id is bigint",
        ),
        (
            ["projects.n", "--rows", "tasks.project_id", "--where", "nope IS NULL"],
            'is not a predicate on the rows of tasks: column "nope" does not exist',
        ),
        (
            ["projects.n", "--rows", "tasks.project_id", "--where", "deleted_at > now()"],
            "depends on more than the row of tasks",
        ),
        (
            ["projects.n", "--rows", "tasks.project_id", "--where", "id IN (SELECT 1)"],
            "reads more than the row of tasks",
        ),
        (
            ["projects.n", "--rows", "tasks.project_id", "--where", "true; DROP TABLE tasks"],
            "without comments, semicolons or dollar quotes",
        ),
        (["documents.n", "--jsonb-length", "nope.tags"], "documents has no column nope"),
        (["documents.n", "--jsonb-length", "user_id.tags"], "documents.user_id is bigint, not"),
        (["documents.n", "--jsonb-length", "body"], "is not JSONB_COLUMN.KEY[.KEY...]"),
        (["documents.n"], "give one of them"),
        (
            ["projects.n", "--rows", "tasks.project_id", "--jsonb-length", "body.x"],
            "give one of them",
        ),
        (["documents.n", "--jsonb-length", "body.x", "--where", "true"], "--where filters"),
        (
            ["projects.n", "--rows", "tasks.project_id", "--index", "(user_id, nope)"],
            "projects has no column nope",
        ),
        (
            ["projects.n", "--rows", "tasks.project_id", "--index", "user_id"],
            "write the columns in parentheses",
        ),
        (["keyless.n", "--rows", "tasks.project_id"], "keyless has no primary key"),
        (["project_names.n", "--rows", "tasks.project_id"], "project_names is a view"),
    ],
)
def test_what_cannot_be_counted_is_refused_before_any_file_is_written(
    run, app_url, conn, tmp_path, args, message
):
    conn.execute("CREATE TABLE IF NOT EXISTS keyless (id bigint)")
    conn.execute("CREATE OR REPLACE VIEW project_names AS SELECT id, name FROM projects")
    out = tmp_path / "app"
    result = run("--database-url", app_url, "counter", "add", *args, "--out", str(out))
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.startswith("Error: ")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (
            ["projects.comments_count", "--rows", "comments.project_id"],
            "warning: no index of comments leads with project_id: the triggers and the backfill "
            "count by it",
        ),
        (
            ["documents.tags_count", "--jsonb-length", "body.meta.Tags"],
            "warning: no row of the first 60 rows of documents has an array at body.meta.Tags",
        ),
    ],
)
def test_what_cannot_be_checked_is_warned_about(run, app_url, conn, tmp_path, args, warning):
    conn.execute("CREATE TABLE comments (id bigint PRIMARY KEY, project_id bigint)")
    result = run("--database-url", app_url, "counter", "add", *args, "--out", str(tmp_path))
    assert result.exit_code == 0
    assert warning in result.stderr
    assert len(list(tmp_path.glob("*.sql"))) == 4


def test_the_generated_files_pass_squawk_and_hide_no_ddl(app_url, tmp_path):
    out = tmp_path / "app"
    write_sets(app_url, out)
    files = lint.migration_files({"app": out})
    assert len(files) == 2 * (len(COUNTERS) * 2 + 3)  # three counters with an index
    assert lint.check_hidden_ddl(files) == []
    findings = []
    for migration in files:
        command = lint.squawk_command(
            in_transaction=migration.transactional,
            also_excluded=(*lint.accepted_rules(migration), *lint.GENERATED_ACCEPTED),
        )
        done = subprocess.run(
            [*command, "--reporter=gcc", str(migration.path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        findings += [line for line in done.stdout.splitlines() if line.strip()]
    assert findings == []
