"""The runner: history and checksums, the migration lock, lock timeouts,
INVALID indexes, application folders, rollback, settings and the psql script."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from app_schema import app_fingerprint
from app_schema import create_app_tables
from psycopg import sql

from feature_gates import ConfigError
from feature_gates.migrate import MigrationError
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate
from feature_gates.migrate import migration_script
from feature_gates.migrate import pending_migrations
from feature_gates.migrate import refuse_changed
from feature_gates.migrate import rollback
from feature_gates.migrate import status
from feature_gates.migrate import verify
from feature_gates.migrate.sources import load_set
from feature_gates.migrate.sources import steps
from feature_gates.pgserver import find_bindir

CORE = MigrationSettings(sets=("core",))
CORE_LABELS = [m.label for m in CORE.load()]
ALL_COUNT = len(CORE_LABELS) + len(load_set("counters"))


@pytest.fixture
def app_folder(tmp_path):
    """An application's own migration set: its base table, applied before core."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "0001_accounts.up.sql").write_text(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, plan text NOT NULL);\n"
    )
    (folder / "0001_accounts.down.sql").write_text(
        "-- Drops accounts and every account in it.\nDROP TABLE accounts;\n"
    )
    return folder


def with_app(folder, *sets, **options):
    return MigrationSettings(sets=("app", *sets), folders={"app": folder}, **options)


# -- files ---------------------------------------------------------------------------


def test_steps_follow_the_directives():
    sql = textwrap.dedent(
        """\
        -- feature-gates: no-transaction
        -- A header.
        ALTER TABLE t ADD COLUMN IF NOT EXISTS c int;
        /* a; comment */ CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_t_c ON t (c);
        -- feature-gates: batched
        SELECT scanned FROM step(';');
        DO $$ BEGIN PERFORM 1; END $$;
        DROP INDEX CONCURRENTLY IF EXISTS idx_old
        """
    )
    found = [(s.kind, s.index_name) for s in steps(sql)]
    assert found == [
        ("statement", None),
        ("statement", None),
        ("batched", None),
        ("statement", None),
        ("concurrent", None),
    ]
    assert steps("CREATE TABLE t (a int); CREATE TABLE u (a int);")[0].kind == "transaction"


def test_a_concurrent_index_is_found_after_its_comments():
    (step,) = [
        s
        for s in steps(
            "-- feature-gates: no-transaction\n-- why\nCREATE INDEX CONCURRENTLY "
            "IF NOT EXISTS Idx_A ON t (a);"
        )
    ]
    assert (step.kind, step.index_name) == ("concurrent", "idx_a")


def test_a_migration_without_its_rollback_file_is_refused(tmp_path):
    (tmp_path / "0001_a.up.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="has no matching 0001_a.down.sql"):
        load_set("app", tmp_path)
    (tmp_path / "0001_a.down.sql").write_text("SELECT 1;")
    (tmp_path / "0002_b.down.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="files without a migration: 0002_b.down.sql"):
        load_set("app", tmp_path)


def test_a_concurrent_build_in_a_transactional_file_is_refused_before_it_runs(tmp_path):
    (tmp_path / "0001_a.up.sql").write_text(
        "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n"
    )
    (tmp_path / "0001_a.down.sql").write_text("DROP TABLE t;\n")
    with pytest.raises(
        MigrationError,
        match=r"app/0001_a.up.sql has a statement that cannot run in a transaction "
        r"\(CREATE INDEX CONCURRENTLY t_a ON t \(a\)...\); put '-- feature-gates: "
        "no-transaction' on the file's first line",
    ):
        load_set("app", tmp_path)


def test_an_unknown_set_names_the_setting():
    with pytest.raises(MigrationError, match="FEATURE_GATES_MIGRATION_FOLDERS"):
        MigrationSettings(sets=("nope",)).load()


# -- settings ------------------------------------------------------------------------


def test_settings_from_config_use_defaults_and_name_bad_keys(tmp_path):
    assert MigrationSettings.from_config({}) == MigrationSettings()
    settings = MigrationSettings.from_config(
        {
            "FEATURE_GATES_MIGRATION_SETS": ["app", "core"],
            "FEATURE_GATES_MIGRATION_FOLDERS": {"app": str(tmp_path)},
            "FEATURE_GATES_MIGRATION_LOCK_TIMEOUT": 0.5,
            "FEATURE_GATES_MIGRATION_BATCH_SIZE": 50,
            "FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT": 0,
        }
    )
    assert settings.sets == ("app", "core")
    assert settings.folders == {"app": tmp_path}
    assert settings.lock_timeout_ms == "500ms"
    assert settings.statement_timeout_ms == "0"
    assert MigrationSettings().statement_timeout_ms == "60000ms"
    for key, value in [
        ("FEATURE_GATES_MIGRATION_SETS", "core"),
        ("FEATURE_GATES_MIGRATION_SETS", ["Core!"]),
        ("FEATURE_GATES_MIGRATION_FOLDERS", ["x"]),
        ("FEATURE_GATES_MIGRATION_LOCK_TIMEOUT", "2s"),
        ("FEATURE_GATES_MIGRATION_LOCK_TIMEOUT", 0),
        ("FEATURE_GATES_MIGRATION_LOCK_RETRIES", -1),
        ("FEATURE_GATES_MIGRATION_LOCK_WAIT", True),
        ("FEATURE_GATES_MIGRATION_BATCH_SIZE", 1.5),
        ("FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT", -1),
        ("FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT", "1m"),
        ("FEATURE_GATES_USER_ID_TYPE", "int"),
    ]:
        with pytest.raises(ConfigError, match=key):
            MigrationSettings.from_config({key: value})


def test_settings_from_config_keep_the_base_for_absent_keys(tmp_path):
    base = MigrationSettings(sets=("app", "core"), folders={"app": tmp_path}, batch_size=5)
    settings = MigrationSettings.from_config({"FEATURE_GATES_SCHEMA": "gates"}, base=base)
    assert settings == MigrationSettings(
        sets=("app", "core"), folders={"app": tmp_path}, batch_size=5, schema="gates"
    )
    with pytest.raises(ConfigError, match="FEATURE_GATES_SCHEMA must be a schema name"):
        MigrationSettings.from_config({"FEATURE_GATES_SCHEMA": ""}, base=base)


def test_a_step_longer_than_the_statement_timeout_stops_the_migration(empty_url, app_folder):
    """A step that reads a whole table holds a snapshot as long as it runs: it
    is cancelled after FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT."""
    (app_folder / "0002_long_scan.up.sql").write_text(
        "CREATE TABLE scanned (id int);\nSELECT pg_sleep(2);\n"
    )
    (app_folder / "0002_long_scan.down.sql").write_text("DROP TABLE scanned;\n")
    with pytest.raises(MigrationError) as stopped:
        migrate(empty_url, with_app(app_folder, statement_timeout=0.2))
    assert str(stopped.value).startswith(
        "app/0002_long_scan was stopped after FEATURE_GATES_MIGRATION_STATEMENT_TIMEOUT (0.2 s): "
        "a step that reads a whole table holds a snapshot"
    )
    assert [a.label for a in applied_migrations(empty_url, with_app(app_folder))] == [
        "app/0001_accounts"
    ]
    assert [m.label for m in migrate(empty_url, with_app(app_folder, statement_timeout=0))] == [
        "app/0002_long_scan"
    ]


# -- history -------------------------------------------------------------------------


def test_history_records_each_migration_with_its_checksum(feature_gates_database_url):
    rows = applied_migrations(feature_gates_database_url, CORE)
    files = CORE.load()
    assert [(r.set_name, r.version, r.name, r.checksum) for r in rows] == [
        (m.set_name, m.version, m.name, m.checksum) for m in files
    ]
    assert all(r.installed_by == "postgres" and r.execution_ms >= 0 for r in rows)


def test_a_changed_file_is_refused_by_migrate_and_status(empty_url, app_folder):
    settings = with_app(app_folder)
    migrate(empty_url, settings)
    up = app_folder / "0001_accounts.up.sql"
    up.write_text(up.read_text() + "-- an edit\n")
    with pytest.raises(MigrationError, match=r"app/0001_accounts\.up\.sql was changed after it"):
        migrate(empty_url, settings)
    rows = status(empty_url, settings)
    assert [(r.label, r.state) for r in rows] == [("app/0001_accounts", "changed")]
    with pytest.raises(MigrationError, match="restore the file as it was"):
        refuse_changed(rows)
    with pytest.raises(MigrationError, match="was changed"):
        pending_migrations(empty_url, settings)
    # Line endings alone are not a change.
    up.write_text(up.read_text().replace("-- an edit\n", "").replace("\n", "\r\n"))
    assert migrate(empty_url, settings) == []


def test_an_application_folder_is_applied_first_with_the_same_guarantees(empty_url, app_folder):
    settings = with_app(app_folder, "core")
    assert [m.label for m in migrate(empty_url, settings)][:2] == [
        "app/0001_accounts",
        "core/0001_feature_usage_table",
    ]
    (app_folder / "0002_broken.up.sql").write_text(
        "ALTER TABLE accounts ADD COLUMN email text;\nSELECT no_such_function();\n"
    )
    (app_folder / "0002_broken.down.sql").write_text("ALTER TABLE accounts DROP COLUMN email;\n")
    with pytest.raises(MigrationError, match="app/0002_broken failed: function no_such_function"):
        migrate(empty_url, settings)
    with psycopg.connect(empty_url) as conn:
        # One transaction: the column added before the failure is gone too.
        row = conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass "
            "AND attname = 'email'"
        ).fetchone()
    assert row == (0,)
    states = {r.label: r.state for r in status(empty_url, settings)}
    assert states["app/0002_broken"] == "pending"


def test_a_history_row_without_its_file_is_reported(empty_url, app_folder):
    settings = with_app(app_folder)
    migrate(empty_url, settings)
    (app_folder / "0001_accounts.up.sql").unlink()
    (app_folder / "0001_accounts.down.sql").unlink()
    assert [(r.label, r.state) for r in status(empty_url, settings)] == [
        ("app/0001_accounts", "missing")
    ]


# -- concurrency and locks -------------------------------------------------------------

RUN_MIGRATE = """
import sys
from feature_gates.migrate import MigrationSettings, migrate
settings = MigrationSettings(sets=("core", "counters"), batch_size=3)
print(len(migrate(sys.argv[1], settings)))
"""


def test_two_concurrent_migrate_processes_apply_each_migration_once(empty_url):
    create_app_tables(empty_url, threads=60)
    lock = (int.from_bytes(b"fgat", "big"), 1)
    with psycopg.connect(empty_url, autocommit=True) as gate:
        # Hold the migration lock until both runners wait for it, so that they
        # start together however fast or slow the machine is.
        gate.execute("SELECT pg_advisory_lock(%s, %s)", lock)
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", RUN_MIGRATE, empty_url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        waiting = 0
        while waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            row = gate.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'feature-gates migrate' AND state = 'idle'"
            ).fetchone()
            waiting = row[0] if row else 0
        time.sleep(1.0)  # both have tried the lock once (they poll every 0.5 s)
        gate.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
    results = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert sorted(int(out) for out, _ in results) == [0, ALL_COUNT]
    for _, err in results:
        assert "waiting for the migration lock held by pid" in err
    settings = MigrationSettings(sets=("core", "counters"))
    assert len(applied_migrations(empty_url, settings)) == ALL_COUNT
    assert verify(empty_url, settings) == []


def test_a_step_waits_briefly_for_its_lock_and_retries(empty_url, caplog):
    """A long transaction holds a lock the migration needs: each try gives up
    after lock_timeout (so the application's queries never queue behind the
    migration for long), and the migration succeeds once the lock is free."""
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE feature_usage (user_id bigint, feature text, period_start date, "
            "usage_count integer)"
        )
    holding = threading.Event()

    def long_transaction():
        with psycopg.connect(empty_url) as conn:
            conn.execute("SELECT count(*) FROM feature_usage")
            holding.set()
            time.sleep(1.0)

    holder = threading.Thread(target=long_transaction)
    holder.start()
    holding.wait()
    try:
        with caplog.at_level(logging.WARNING, logger="feature_gates.migrate"):
            applied = migrate(empty_url, MigrationSettings(lock_timeout=0.05, lock_retries=30))
    finally:
        holder.join()
    assert len(applied) == len(CORE_LABELS)
    assert (
        "core/0001_feature_usage_table: canceling statement due to lock timeout; retrying in"
        in (caplog.text)
    )


def leave_an_invalid_counter_index(url, settings):
    """Migrate core and counters, then undo counters/0003 and leave the INVALID
    index a concurrent build that fails half-way leaves behind."""
    create_app_tables(url)
    migrate(url, settings)
    rollback(url, settings, to="counters/0002")
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(
                "CREATE INDEX CONCURRENTLY idx_chat_threads_messages_count "
                "ON chat_threads ((1 / (thread_messages_count - 4)))"
            )


def test_an_invalid_index_left_by_a_failed_build_is_dropped_and_rebuilt(empty_url):
    settings = MigrationSettings(sets=("core", "counters"))
    leave_an_invalid_counter_index(empty_url, settings)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        invalid = (
            "SELECT indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indexrelid = 'idx_chat_threads_messages_count'::regclass"
        )
        assert conn.execute(invalid).fetchone()[0] is False
        problems = [str(p) for p in verify(empty_url, settings)]
        assert any(
            "idx_chat_threads_messages_count on chat_threads is INVALID" in p for p in problems
        )
        migrate(empty_url, settings)
        valid, definition = conn.execute(invalid).fetchone()
    assert valid is True
    assert definition.endswith(
        "ON public.chat_threads USING btree (user_id, thread_messages_count)"
    )
    assert verify(empty_url, settings) == []


@contextmanager
def idle_reader(url, table, seconds):
    """An idle-in-transaction session that read ``table``: a concurrent index
    build or drop on it waits until the session ends, ``seconds`` later."""
    reading = threading.Event()

    def read():
        with psycopg.connect(url) as conn:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            reading.set()
            time.sleep(seconds)

    reader = threading.Thread(target=read)
    reader.start()
    reading.wait()
    try:
        yield
    finally:
        reader.join()


def test_an_invalid_index_is_dropped_without_lock_timeout(empty_url):
    """DROP INDEX CONCURRENTLY waits for every transaction that touched the
    table, as the build does: under lock_timeout it would fail where the build
    would wait."""
    settings = MigrationSettings(sets=("core", "counters"), lock_timeout=0.05, lock_retries=1)
    leave_an_invalid_counter_index(empty_url, settings)
    with idle_reader(empty_url, "chat_threads", 2.0):
        assert [m.label for m in migrate(empty_url, settings)] == [
            "counters/0003_counter_indexes",
            "counters/0004_legacy_message_count",
            "counters/0005_registered_counters",
        ]
    assert verify(empty_url, settings) == []


def test_a_schema_of_its_own_leaves_other_schemas_alone(empty_url, tmp_path):
    create_app_tables(empty_url)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE feature_usage (user_id text, note text)")
        conn.execute("INSERT INTO feature_usage VALUES ('someone', 'not ours')")
        before = app_fingerprint(conn)
        settings = MigrationSettings(sets=("core", "counters"), schema="gates")
        path = tmp_path / "migrate.sql"
        path.write_text(migration_script(empty_url, settings))
        result = _psql(empty_url, path)
        assert result.returncode == 0, result.stderr
        assert verify(empty_url, settings) == []
        found = conn.execute(
            """
            SELECT to_regclass('gates.feature_usage') IS NOT NULL,
                   to_regclass('gates.feature_gates_schema_history') IS NOT NULL,
                   to_regprocedure('gates.feature_gates_counter_audit()') IS NOT NULL,
                   (SELECT count(*) FROM public.feature_usage WHERE note = 'not ours')
            """
        ).fetchone()
        assert found == (True, True, True, 1)
        conn.execute("SET search_path TO gates")
        assert conn.execute("SELECT increment_feature_usage_safe(1, 'api')").fetchone() == (1,)
        assert len(rollback(empty_url, settings, everything=True)) == ALL_COUNT
        conn.execute("SET search_path TO public")
        assert app_fingerprint(conn) == before
        assert conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'gates'::regnamespace "
            "AND relname NOT LIKE 'feature_gates_schema_history%'"
        ).fetchone() == (0,)


# -- rollback ------------------------------------------------------------------------


def test_rollback_takes_back_the_last_migration_by_default(feature_gates_database_url):
    url = feature_gates_database_url
    last = CORE_LABELS[-1]
    assert [m.label for m in rollback(url, CORE, dry_run=True)] == [last]
    assert len(applied_migrations(url, CORE)) == len(CORE_LABELS)
    assert [m.label for m in rollback(url, CORE)] == [last]
    assert [r.state for r in status(url, CORE)] == ["applied"] * (len(CORE_LABELS) - 1) + [
        "pending"
    ]


def test_rollback_asks_before_acting_and_does_nothing_when_refused(feature_gates_database_url):
    url = feature_gates_database_url
    asked = []

    def refuse(targets):
        asked.append([m.label for m in targets])
        return False

    assert rollback(url, CORE, to="3", confirm=refuse) == []
    assert asked == [[m.label for m in reversed(CORE.load()) if int(m.version) > 3]]
    assert "core/0004_feature_usage_functions" in asked[0]
    assert len(applied_migrations(url, CORE)) == len(CORE_LABELS)


def test_rollback_effects_come_from_the_rollback_files():
    effects = {m.label: m.rollback_effect for m in CORE.load()}
    assert effects["core/0005_feature_usage_archive"].startswith(
        "Drops feature_usage_archive and every archived usage count"
    )
    assert "No data is lost" in effects["core/0002_feature_usage_indexes"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"to": "core/x"}, "give a version like 0003"),
        ({"to": "0099"}, "no migration has that version"),
        ({"to": "0003", "everything": True}, "not both"),
    ],
)
def test_rollback_refuses_unclear_targets(feature_gates_database_url, options, message):
    with pytest.raises(MigrationError, match=message):
        rollback(feature_gates_database_url, CORE, **options)


def test_an_ambiguous_version_must_name_its_set(empty_url):
    url = empty_url
    create_app_tables(url)
    settings = MigrationSettings(sets=("core", "counters"))
    migrate(url, settings)
    with pytest.raises(MigrationError, match="ambiguous .* write it as SET/VERSION"):
        rollback(url, settings, to="0002")


# -- the psql script -----------------------------------------------------------------


def _psql(url, script_path):
    return subprocess.run(
        [str(find_bindir() / "psql"), "-X", "-q", "-f", str(script_path), url],
        capture_output=True,
        text=True,
    )


def test_the_sql_script_applies_cleanly_with_psql(empty_url, tmp_path):
    create_app_tables(empty_url)
    settings = MigrationSettings(sets=("core", "counters"), batch_size=4)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        before = app_fingerprint(conn)
        script = migration_script(empty_url, settings)
        # Writing the script changed nothing.
        assert conn.execute(
            "SELECT to_regclass('feature_gates_schema_history'), to_regclass('feature_usage')"
        ).fetchone() == (None, None)
        path = tmp_path / "migrate.sql"
        path.write_text(script)
        result = _psql(empty_url, path)
        assert result.returncode == 0, result.stderr
        assert "ERROR" not in result.stderr
        assert [r.state for r in status(empty_url, settings)] == ["applied"] * ALL_COUNT
        assert migrate(empty_url, settings) == []
        assert verify(empty_url, settings) == []
        assert app_fingerprint(conn) == before
        # Nothing pending: the script is still valid and does nothing.
        path.write_text(migration_script(empty_url, settings))
        assert _psql(empty_url, path).returncode == 0


def test_the_sql_script_run_again_after_a_failure_picks_up_where_it_stopped(empty_url, tmp_path):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        # An adopted table with a duplicated key: core/0001 adopts it, core/0002
        # (no-transaction, concurrent builds) refuses to index it.
        conn.execute(
            "CREATE TABLE feature_usage (id serial PRIMARY KEY, user_id bigint, feature text, "
            "period_start date, usage_count integer)"
        )
        conn.execute(
            "INSERT INTO feature_usage (user_id, feature, period_start, usage_count) "
            "VALUES (1, 'api', '2026-01-01', 2), (1, 'api', '2026-01-01', 3)"
        )
        path = tmp_path / "migrate.sql"
        path.write_text(migration_script(empty_url, CORE))
        result = _psql(empty_url, path)
        assert result.returncode != 0
        assert "duplicated (user_id, feature, period_start) keys" in result.stderr
        assert [r.state for r in status(empty_url, CORE)] == ["applied"] + ["pending"] * (
            len(CORE_LABELS) - 1
        )
        conn.execute("DELETE FROM feature_usage WHERE usage_count = 3")
        result = _psql(empty_url, path)
        assert result.returncode == 0, result.stderr
        assert [r.state for r in status(empty_url, CORE)] == ["applied"] * len(CORE_LABELS)
        # Once more: everything is recorded, nothing runs.
        assert _psql(empty_url, path).returncode == 0
        assert conn.execute("SELECT count(*) FROM feature_gates_schema_history").fetchone() == (
            len(CORE_LABELS),
        )
    assert verify(empty_url, CORE) == []


def test_the_sql_script_stops_when_another_migration_holds_the_lock(empty_url, tmp_path):
    path = tmp_path / "migrate.sql"
    path.write_text(migration_script(empty_url, CORE))
    with psycopg.connect(empty_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, 1)", (int.from_bytes(b"fgat", "big"),))
        result = _psql(empty_url, path)
    assert result.returncode != 0
    assert "another feature-gates migration holds the migration lock" in result.stderr
    with psycopg.connect(empty_url) as conn:
        assert conn.execute("SELECT to_regclass('feature_usage')").fetchone() == (None,)


def test_the_sql_script_rebuilds_an_invalid_index(feature_gates_database_url, tmp_path):
    url = feature_gates_database_url
    rollback(url, CORE, to="core/0001")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO feature_usage VALUES (1, 'a', '2026-01-01', 0)")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute(
                "CREATE INDEX CONCURRENTLY idx_feature_usage_period_start "
                "ON feature_usage ((1 / usage_count))"
            )
        path = tmp_path / "migrate.sql"
        # The drop waits for the idle reader, without lock_timeout, as the build does.
        path.write_text(migration_script(url, MigrationSettings(lock_timeout=0.05)))
        with idle_reader(url, "feature_usage", 2.0):
            result = _psql(url, path)
        assert result.returncode == 0, result.stderr
        assert conn.execute(
            "SELECT indisvalid FROM pg_index "
            "WHERE indexrelid = 'idx_feature_usage_period_start'::regclass"
        ).fetchone() == (True,)
    assert verify(url, CORE) == []
