"""The `feature-gates` commands, as a deploy pipeline, cron or `flask` runs them."""

from __future__ import annotations

import re

import psycopg
import pytest
from app_schema import create_app_tables
from click.testing import CliRunner
from flask import Flask

from feature_gates import FeatureGates
from feature_gates.cli import cli
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate

CORE_COUNT = len(MigrationSettings(sets=("core",)).load())


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, input=None, env=None):
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def app_url(empty_url):
    create_app_tables(empty_url)
    return empty_url


def test_migrate_status_and_check_exit_codes(run, empty_url):
    result = run("--database-url", empty_url, "status", "--check")
    assert result.exit_code == 1
    assert "pending  core/0001_feature_usage_table" in result.output
    result = run("--database-url", empty_url, "migrate", "--dry-run")
    assert result.exit_code == 0
    assert (
        "would apply core/0002_feature_usage_indexes  (statement by statement, builds "
        "indexes concurrently)" in result.output
    )
    assert applied_migrations(empty_url) == []
    result = run("--database-url", empty_url, "migrate")
    assert result.exit_code == 0, result.output
    assert "applied core/0006_feature_usage_summary" in result.output
    assert "applied core/0008_feature_usage_bulk_increment" in result.output
    assert "applying core/0001_feature_usage_table" in result.stderr
    result = run("--database-url", empty_url, "status", "--check")
    assert result.exit_code == 0
    assert result.output.count("applied ") == CORE_COUNT
    assert "nothing to apply" in run("--database-url", empty_url, "migrate").output


def test_the_database_url_comes_from_the_environment(run, empty_url):
    result = run("migrate", env={"DATABASE_URL": empty_url})
    assert result.exit_code == 0
    assert len(applied_migrations(empty_url)) == CORE_COUNT


UNREACHABLE = "postgresql://nobody@/nodb?host=/nonexistent"


def test_migration_commands_prefer_the_migration_url(run, empty_url):
    """--database-url, then FEATURE_GATES_MIGRATION_DATABASE_URL (the commands
    on the migrations only), then FEATURE_GATES_DATABASE_URL, then DATABASE_URL;
    an error names the one in use."""
    env = {
        "FEATURE_GATES_MIGRATION_DATABASE_URL": empty_url,
        "FEATURE_GATES_DATABASE_URL": UNREACHABLE,
        "DATABASE_URL": UNREACHABLE,
    }
    for command in ("migrate", "status", "verify"):
        result = run(command, env=env)
        assert result.exit_code == 0, result.output
    assert len(applied_migrations(empty_url)) == CORE_COUNT
    result = run("prune", env=env)
    assert result.output.startswith(
        "Error: cannot reach the database named by FEATURE_GATES_DATABASE_URL"
    )
    result = run("prune", env={**env, "FEATURE_GATES_DATABASE_URL": ""})
    assert result.output.startswith("Error: cannot reach the database named by DATABASE_URL")
    result = run("--database-url", UNREACHABLE, "status", env=env)
    assert result.output.startswith("Error: cannot reach the database named by --database-url")
    result = run("status", env={**env, "FEATURE_GATES_MIGRATION_DATABASE_URL": "garbage"})
    assert result.output.startswith(
        "Error: FEATURE_GATES_MIGRATION_DATABASE_URL is not a valid PostgreSQL URL"
    )


def test_flask_reads_the_migration_url_from_the_apps_config(empty_url, monkeypatch):
    monkeypatch.setenv("FEATURE_GATES_MIGRATION_DATABASE_URL", UNREACHABLE)
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_MIGRATION_DATABASE_URL=empty_url, FEATURE_GATES_DATABASE_URL=UNREACHABLE
    )
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(args=["feature-gates", "migrate"])
    assert result.exit_code == 0, result.output
    assert len(applied_migrations(empty_url)) == CORE_COUNT
    result = app.test_cli_runner().invoke(args=["feature-gates", "refresh"])
    assert result.output.startswith(
        "Error: cannot reach the database named by FEATURE_GATES_DATABASE_URL"
    )


def test_sets_are_chosen_with_set(run, app_url):
    result = run("--database-url", app_url, "--set", "core", "--set", "counters", "migrate")
    assert result.exit_code == 0, result.output
    assert "applied counters/0003_counter_indexes" in result.output
    result = run("--database-url", app_url, "--set", "counters", "status")
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["applied"] * (5 + CORE_COUNT)
    # The sets the history holds beside the chosen ones are listed, marked.
    assert [line.split()[1] for line in lines[:5]] == [
        "counters/0001_counter_columns",
        "counters/0002_counter_backfill",
        "counters/0003_counter_indexes",
        "counters/0004_legacy_message_count",
        "counters/0005_registered_counters",
    ]
    assert all(line.endswith("(set not selected: --set core)") for line in lines[5:])
    assert lines[5].split()[1] == "core/0001_feature_usage_table"
    # After the command name too, as deploy scripts tend to write it.
    result = run("--database-url", app_url, "status", "--set", "counters", "--check")
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == 5 + CORE_COUNT
    result = run("--database-url", app_url, "status", "--set", "nope")
    assert "Error: unknown migration set 'nope'" in result.output


def user_id_type(url, schema="public"):
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT format_type(t.typbasetype, NULL) FROM pg_type t "
            "JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.typname = 'feature_usage_user_id' AND n.nspname = %s",
            (schema,),
        ).fetchone()
    return row[0] if row else None


def test_the_console_script_follows_the_recorded_user_id_type(run, empty_url):
    migrate(empty_url, MigrationSettings(user_id_type="uuid"))
    result = run("--database-url", empty_url, "migrate")
    assert result.exit_code == 0, result.output
    assert "nothing to apply" in result.output
    assert run("--database-url", empty_url, "status", "--check").exit_code == 0
    # Told otherwise, it refuses, whether by option or environment.
    result = run("--database-url", empty_url, "--user-id-type", "bigint", "migrate")
    assert result.exit_code == 1
    assert "user ids are uuid in this database" in result.output
    assert "--user-id-type" in result.output
    result = run(
        "--database-url", empty_url, "migrate", env={"FEATURE_GATES_USER_ID_TYPE": "bigint"}
    )
    assert result.exit_code == 1
    assert "cannot change that: set it to 'uuid'" in result.output
    assert run("--database-url", empty_url, "--user-id-type", "uuid", "migrate").exit_code == 0
    assert run("--database-url", empty_url, "--user-id-type", "int", "migrate").exit_code == 2
    # A Flask application keeps refusing a type other than its configuration's.
    app = Flask(__name__)
    app.config["FEATURE_GATES_DATABASE_URL"] = empty_url
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(args=["feature-gates", "migrate"])
    assert result.exit_code == 1
    assert "FEATURE_GATES_USER_ID_TYPE" in result.output


def test_the_console_script_chooses_the_user_id_type_of_a_first_install(run, empty_url):
    result = run("--database-url", empty_url, "migrate", env={"FEATURE_GATES_USER_ID_TYPE": "uuid"})
    assert result.exit_code == 0, result.output
    assert user_id_type(empty_url) == "uuid"
    result = run("--database-url", empty_url, "--user-id-type", "bigint", "migrate", "--sql")
    assert result.exit_code == 1


def test_the_console_script_works_in_a_schema_of_its_own(run, empty_url):
    env = {"FEATURE_GATES_SCHEMA": "gates"}
    result = run("--database-url", empty_url, "migrate", env=env)
    assert result.exit_code == 0, result.output
    assert user_id_type(empty_url, "gates") == "bigint"
    assert user_id_type(empty_url) is None
    assert run("--database-url", empty_url, "status", "--check", env=env).exit_code == 0
    assert run("--database-url", empty_url, "--schema", "gates", "status", "--check").exit_code == 0
    assert run("--database-url", empty_url, "status", "--check").exit_code == 1
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("SELECT gates.increment_feature_usage_safe(7, 'api', 3)")
    result = run("--database-url", empty_url, "--schema", "gates", "usage")
    assert result.exit_code == 0, result.output
    assert "api" in result.output
    result = run("--database-url", empty_url, "--schema", "gates", "refresh")
    assert result.output == "refreshed feature_usage_summary: 1 rows\n"
    assert run("--database-url", empty_url, "--schema", "", "status").exit_code == 1


def test_the_console_script_applies_application_folders(run, empty_url, tmp_path):
    (tmp_path / "0001_accounts.up.sql").write_text("CREATE TABLE accounts (id bigint);\n")
    (tmp_path / "0001_accounts.down.sql").write_text("DROP TABLE accounts;\n")
    args = ("--database-url", empty_url, "--migrations", f"app={tmp_path}", "--set", "app")
    result = run(*args, "--set", "core", "migrate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "applied app/0001_accounts"
    assert run(*args, "status", "--check").exit_code == 0
    result = run("--database-url", empty_url, "--migrations", "app", "status")
    assert result.exit_code == 2
    assert "'app' is not NAME=PATH" in result.output
    result = run("--database-url", empty_url, "--set", "app", "status")
    assert "Error: unknown migration set 'app'" in result.output


def test_flask_takes_schema_and_user_id_type_from_the_apps_config(app_url, tmp_path):
    app = Flask(__name__)
    app.config["FEATURE_GATES_DATABASE_URL"] = app_url
    app.cli.add_command(cli)
    runner = app.test_cli_runner()
    # The environment is the console script's: the application's config decides here.
    result = runner.invoke(args=["feature-gates", "migrate"], env={"FEATURE_GATES_SCHEMA": "gates"})
    assert result.exit_code == 0, result.output
    assert user_id_type(app_url) == "bigint"
    result = runner.invoke(args=["feature-gates", "--schema", "gates", "status"])
    assert result.exit_code == 1
    assert "--schema 'gates' differs from the application's FEATURE_GATES_SCHEMA" in result.output
    result = runner.invoke(args=["feature-gates", "--user-id-type", "bigint", "status"])
    assert result.exit_code == 0
    (tmp_path / "0001_accounts.up.sql").write_text("CREATE TABLE accounts (id bigint);\n")
    (tmp_path / "0001_accounts.down.sql").write_text("DROP TABLE accounts;\n")
    result = runner.invoke(
        args=["feature-gates", "--migrations", f"app={tmp_path}", "--set", "app", "migrate"]
    )
    assert result.stdout == "applied app/0001_accounts\n"


def test_migrate_sql_prints_a_script_and_changes_nothing(run, empty_url):
    result = run("--database-url", empty_url, "migrate", "--sql")
    assert result.exit_code == 0
    assert result.output.startswith(
        f"-- feature-gates migrations for the sets core: {CORE_COUNT} pending"
    )
    assert (
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_feature_usage_user_feature_period"
        in result.output
    )
    assert applied_migrations(empty_url) == []
    assert run("--database-url", empty_url, "migrate", "--sql", "--dry-run").exit_code == 2


def test_status_refuses_a_changed_file(run, empty_url, tmp_path):
    (tmp_path / "0001_things.up.sql").write_text("CREATE TABLE things (id int);\n")
    (tmp_path / "0001_things.down.sql").write_text("DROP TABLE things;\n")
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=empty_url,
        FEATURE_GATES_MIGRATION_SETS=["app"],
        FEATURE_GATES_MIGRATION_FOLDERS={"app": str(tmp_path)},
    )
    app.cli.add_command(cli)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["feature-gates", "migrate"]).exit_code == 0
    (tmp_path / "0001_things.up.sql").write_text("CREATE TABLE things (id bigint);\n")
    result = runner.invoke(args=["feature-gates", "status"])
    assert result.exit_code == 1
    assert "changed  app/0001_things" in result.output
    assert "Error: app/0001_things.up.sql was changed after it was applied" in result.output
    result = runner.invoke(args=["feature-gates", "migrate"])
    assert result.exit_code == 1
    assert "was changed after it was applied" in result.output


def test_rollback_says_what_is_lost_and_asks(run, feature_gates_database_url):
    url = feature_gates_database_url
    result = run("--database-url", url, "rollback", "--to", "core/0004", "--dry-run")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    # The ledger of uses (issue 17: 0043 on) first.
    ledger = [line for line in lines if re.match(r"would roll back core/004[3-9]_", line)]
    assert ledger[-1].startswith("would roll back core/0043_feature_usage_ledger_uses: ")
    assert lines[: len(ledger)] == ledger
    lines = lines[len(ledger) :]
    assert lines[0].startswith("would roll back core/0042_feature_usage_holds_credits_functions: ")
    assert lines[1].startswith("would roll back core/0041_feature_usage_credits: ")
    assert "every grant, its remaining balance and the ledger are lost" in lines[1]
    assert lines[2].startswith("would roll back core/0040_feature_usage_holds: ")
    assert "capacity still held stays counted" in lines[2]
    lines = lines[3:]
    assert lines[0].startswith("would roll back core/0031_feature_usage_alerts_functions: ")
    assert lines[1].startswith("would roll back core/0030_feature_usage_alerts: ")
    assert "the alerts recorded and their delivery states are lost" in lines[1]
    lines = lines[2:]
    assert lines[0].startswith("would roll back core/0025_feature_usage_increment_many_planned: ")
    lines = lines[1:]
    assert lines[0].startswith("would roll back core/0024_feature_usage_summary_swap: ")
    assert lines[1].startswith("would roll back core/0023_feature_usage_summary_next: ")
    lines = lines[2:]
    assert lines[0].startswith(
        "would roll back core/0022_feature_usage_counted_key_swap: DELETES every count that is "
        "not a user's count of the calendar month in UTC"
    )
    assert lines[1].startswith("would roll back core/0021_feature_usage_counted_functions: ")
    assert lines[2].startswith("would roll back core/0020_feature_usage_counted_key: ")
    assert "every member share of an organisation pool" in lines[2]
    assert lines[3].startswith("would roll back core/0009_counter_registry: ")
    lines = lines[4:]
    assert lines[0].startswith("would roll back core/0008_feature_usage_bulk_increment: ")
    assert lines[1].startswith("would roll back core/0007_feature_usage_idempotency: ")
    assert lines[2:] == [
        "would roll back core/0006_feature_usage_summary: Drops the feature_usage_summary view; "
        "no data is lost (it is computed from feature_usage).",
        "would roll back core/0005_feature_usage_archive: Drops feature_usage_archive and every "
        "archived usage count in it; an application's own archive table (adopted) is kept "
        "with its rows.",
    ]
    result = run("--database-url", url, "rollback", "--to", "core/0004", input="n\n")
    assert "will roll back core/0005_feature_usage_archive" in result.output
    assert "losing the data described above? [y/N]" in result.output
    assert "nothing rolled back" in result.output
    assert len(applied_migrations(url)) == CORE_COUNT
    result = run("--database-url", url, "rollback", "--all", "--yes")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "rolled back core/0001_feature_usage_table"
    assert applied_migrations(url) == []
    assert run("--database-url", url, "rollback", "--yes").output.strip() == "nothing to roll back"
    assert run("--database-url", url, "rollback").output.strip() == "nothing to roll back"


def test_verify_and_repair_counters(run, app_url):
    assert (
        run("--database-url", app_url, "--set", "core", "--set", "counters", "migrate").exit_code
        == 0
    )
    args = ("--database-url", app_url, "--set", "core", "--set", "counters")
    result = run(*args, "verify")
    assert result.exit_code == 0
    assert result.output == "ok: core, counters as the migrations left them\n"
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("UPDATE chat_threads SET thread_messages_count = -1 WHERE user_id = 1")
    result = run(*args, "verify")
    assert result.exit_code == 1
    assert "counter: chat_threads.thread_messages_count id=2 has -1" in result.output
    assert "8 problem(s) found" in result.stderr
    result = run(*args, "repair-counters", "--dry-run")
    assert result.output.splitlines() == [
        "chat_threads.thread_messages_count: 8 rows differ from the truth",
        "travel_itineraries.destinations_count: 0 rows differ from the truth",
        "chat_threads.message_count: 0 rows differ from the truth",
    ]
    result = run(*args, "repair-counters")
    assert "chat_threads.thread_messages_count: 8 rows fixed" in result.output
    assert run(*args, "verify").exit_code == 0
    # The application's own legacy counter is audited and repaired too.
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("UPDATE chat_threads SET message_count = message_count + 1 WHERE id = 3")
    result = run(*args, "verify")
    assert result.exit_code == 1
    assert result.output.startswith("legacy counter: chat_threads.message_count id=3 has ")
    assert "(1 rows of chat_threads differ; run repair-counters)" in result.output
    result = run(*args, "repair-counters")
    assert "chat_threads.message_count: 1 rows fixed" in result.output
    assert run(*args, "verify").exit_code == 0


def test_archive_and_refresh_for_cron(run, feature_gates_database_url):
    url = feature_gates_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT increment_feature_usage_safe(1, 'api', 1, '2001-01-01')")
        conn.execute("SELECT increment_feature_usage_safe(1, 'api', 1)")
    result = run("--database-url", url, "refresh")
    assert result.output == "refreshed feature_usage_summary: 2 rows\n"
    result = run("--database-url", url, "archive", "--keep-months", "3")
    assert result.exit_code == 0
    assert result.output.startswith("archived 1 rows of periods before ")
    assert run("--database-url", url, "archive", "--keep-months", "-1").exit_code == 2
    assert run("--database-url", url, "archive", "--keep-months", "12001").exit_code == 2


def test_prune_for_cron(run, feature_gates_database_url):
    url = feature_gates_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO feature_usage_idempotency (user_id, feature, idempotency_key, "
            "recorded_at) VALUES (1, 'emails', 'old', now() - interval '8 days'), "
            "(1, 'emails', 'new', now())"
        )
        # A window whose last use was in 1970, long gone.
        conn.execute(
            "SELECT feature_usage_consume(1, 'tokens', 'user', 'window:3600', '1970-01-01', 0, "
            "NULL, 1, 5, NULL, NULL, 1000)"
        )
    result = run("--database-url", url, "prune", "--keep-days", "7")
    assert result.output == (
        "pruned 1 idempotency keys and batch records older than 7 days\n"
        "pruned 1 rolling windows whose every use had left them\n"
    )
    assert run("--database-url", url, "prune").output.startswith("pruned 0 ")
    assert run("--database-url", url, "prune", "--keep-days", "0").exit_code == 2


def test_errors_are_one_clear_line(run, empty_url):
    result = run("migrate", env={"DATABASE_URL": ""})
    assert result.exit_code == 1
    assert result.output == (
        "Error: no database: set --database-url, FEATURE_GATES_MIGRATION_DATABASE_URL, "
        "FEATURE_GATES_DATABASE_URL or DATABASE_URL to your PostgreSQL URL\n"
    )
    result = run("prune", env={"DATABASE_URL": ""})
    assert result.output == (
        "Error: no database: set --database-url, FEATURE_GATES_DATABASE_URL or DATABASE_URL "
        "to your PostgreSQL URL\n"
    )
    result = run("--database-url", "postgresql://nobody@/nodb?host=/nonexistent", "status")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach the database named by --database-url")
    assert len(result.output.strip().splitlines()) == 1
    result = run("--database-url", empty_url, "--set", "counters", "migrate")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: counters/0001_counter_columns failed")
    assert "missing: chat_messages.thread_id" in result.output
    result = run("--database-url", empty_url, "repair-counters")
    assert "Error: no counter is installed in this database" in result.output
    result = run("--database-url", empty_url, "--set", "Bad!", "status")
    assert "Error: FEATURE_GATES_MIGRATION_SETS: 'Bad!' is not a set name" in result.output


def test_a_malformed_url_is_named_by_where_it_came_from(run):
    result = run("--database-url", "garbage", "status")
    assert result.exit_code == 1
    assert result.output == (
        'Error: --database-url is not a valid PostgreSQL URL (missing "=" after '
        '"garbage" in connection info string); write it as '
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE\n"
    )
    result = run("migrate", env={"DATABASE_URL": "postgresql://u:p%zz@h/db"})
    assert result.exit_code == 1
    assert result.output.startswith("Error: DATABASE_URL is not a valid PostgreSQL URL")
    # libpq quotes the token it could not decode: a password is not echoed.
    assert "p%zz" not in result.output
    assert len(result.output.splitlines()) == 1
    app = Flask(__name__)
    app.config["FEATURE_GATES_DATABASE_URL"] = "host=db port"
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(args=["feature-gates", "status"])
    assert result.output.startswith(
        "Error: FEATURE_GATES_DATABASE_URL is not a valid PostgreSQL URL (missing"
    )


# -- inside a Flask application ------------------------------------------------------


def test_flask_reads_the_apps_feature_gates_config(empty_url):
    app = Flask(__name__)
    app.config.update(FEATURE_GATES_DATABASE_URL=empty_url, FEATURE_GATES_USER_ID_TYPE="uuid")
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(args=["feature-gates", "migrate"])
    assert result.exit_code == 0, result.output
    with psycopg.connect(empty_url) as conn:
        row = conn.execute(
            "SELECT format_type(typbasetype, NULL) FROM pg_type "
            "WHERE typname = 'feature_usage_user_id'"
        ).fetchone()
    assert row == ("uuid",)


def test_flask_uses_the_extensions_migration_settings_when_it_has_them(app_url):
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=app_url,
        FEATURE_GATES_TRACKING="off",
        FEATURE_GATES_MIGRATION_SETS=["core", "counters"],
        FEATURE_GATES_MIGRATION_BATCH_SIZE=2,
    )
    FeatureGates(app)
    # What the extension parsed at init_app counts, as for its gates.
    app.config["FEATURE_GATES_MIGRATION_SETS"] = ["core"]
    try:
        result = app.test_cli_runner().invoke(args=["feature-gates", "migrate"])
    finally:
        app.extensions["feature_gates"].close()
    assert result.exit_code == 0, result.output
    assert "applied counters/0003_counter_indexes" in result.output


def test_flask_config_errors_name_the_key():
    app = Flask(__name__)
    app.config["FEATURE_GATES_MIGRATION_BATCH_SIZE"] = "many"
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(args=["feature-gates", "status"])
    assert result.exit_code == 1
    assert "FEATURE_GATES_MIGRATION_BATCH_SIZE must be a positive integer" in result.output


def test_flask_without_a_database_url_names_the_setting():
    app = Flask(__name__)
    app.cli.add_command(cli)
    result = app.test_cli_runner().invoke(
        args=["feature-gates", "status"], env={"DATABASE_URL": ""}
    )
    assert (
        "no database: set --database-url, FEATURE_GATES_MIGRATION_DATABASE_URL, "
        "FEATURE_GATES_DATABASE_URL or DATABASE_URL" in result.output
    )


def test_the_console_script_serves_an_adopted_table_of_integer_ids(run, empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE feature_usage (user_id integer NOT NULL, feature text NOT NULL, "
            "period_start date NOT NULL, usage_count integer NOT NULL DEFAULT 0, "
            "UNIQUE (user_id, feature, period_start))"
        )
    assert run("--database-url", empty_url, "migrate").exit_code == 0
    for command in (["migrate"], ["migrate", "--dry-run"], ["status", "--check"]):
        result = run("--database-url", empty_url, *command)
        assert result.exit_code == 0, result.output
