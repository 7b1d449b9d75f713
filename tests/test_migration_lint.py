"""Migration lint: squawk over the migration files and over the ``migrate --sql``
script, and our own check of the DDL squawk cannot see (tools/lint_migrations.py,
run by ``make lint``)."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap

import pytest

from examples.sentinel.database import MIGRATION_FOLDER
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migration_script
from feature_gates.migrate.sources import BUNDLED_SETS
from tools import lint_migrations as lint
from tools.lint_migrations import MigrationFile

EVERY_SET = MigrationSettings(
    sets=("sentinel", "core", "counters"), folders={"sentinel": MIGRATION_FOLDER}
)


def _squawk_json(command, *paths, cwd=lint.ROOT):
    done = subprocess.run(
        [*command, "--reporter=json", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout or "[]")


def _new_migration(folder, name, up, down="SELECT 1;\n"):
    (folder / f"{name}.up.sql").write_text(textwrap.dedent(up))
    (folder / f"{name}.down.sql").write_text(down)
    return MigrationFile("app", folder / f"{name}.up.sql")


# -- squawk over the files -------------------------------------------------------------


def test_every_migration_folder_is_linted():
    assert set(BUNDLED_SETS) <= set(lint.FOLDERS)
    assert set(lint.LANDED) == set(lint.FOLDERS)
    keys = {m.key for m in lint.migration_files()}
    assert "core/0001_feature_usage_table.up.sql" in keys
    assert "sentinel/0001_base_tables.down.sql" in keys
    assert set(lint.ACCEPTED) <= keys, "an accepted finding names a file that is gone"


def test_squawk_and_the_hidden_ddl_check_pass_on_the_migration_files():
    done = subprocess.run(
        [lint.sys.executable, "tools/lint_migrations.py"],
        cwd=lint.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing found" in done.stdout


def test_each_accepted_finding_is_still_made_without_its_acceptance():
    """The acceptances are not stale, and squawk runs the rules they name."""
    files = {m.key: m for m in lint.migration_files()}
    for key, rules in lint.ACCEPTED.items():
        squawk_rules = set(rules) - {lint.HIDDEN_DDL}
        migration = files[key]
        command = lint.squawk_command(in_transaction=migration.transactional)
        found = {f["rule_name"] for f in _squawk_json(command, migration.path)}
        assert squawk_rules <= found, key
    downs = [m.path for m in files.values() if m.rollback]
    found = {f["rule_name"] for f in _squawk_json(lint.squawk_command(in_transaction=True), *downs)}
    assert set(lint.ROLLBACK_RULES) <= found


def test_a_plain_create_index_in_a_new_migration_fails_the_lint(tmp_path, capfd):
    plain = _new_migration(tmp_path, "0002_orders_index", "CREATE INDEX ON orders (user_id);\n")
    assert lint.run_squawk([plain]) != 0
    assert "require-concurrent-index-creation" in capfd.readouterr().out


def test_a_concurrent_index_passes_in_a_no_transaction_file_only(tmp_path, capfd):
    concurrent = "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id ON orders (user_id);\n"
    alone = _new_migration(
        tmp_path, "0002_orders_index", "-- feature-gates: no-transaction\n" + concurrent
    )
    assert lint.run_squawk([alone]) == 0
    in_transaction = _new_migration(tmp_path, "0003_orders_index", "ANALYZE orders;\n" + concurrent)
    assert lint.run_squawk([in_transaction]) != 0
    assert "ban-concurrent-index-creation-in-transaction" in capfd.readouterr().out


def test_a_rollback_may_drop_what_its_migration_made_and_an_up_file_may_not(tmp_path):
    drop = "DROP TABLE IF EXISTS orders_archive;\n"
    (tmp_path / "0002_archive.up.sql").write_text(drop)
    (tmp_path / "0002_archive.down.sql").write_text(drop)
    assert lint.run_squawk([MigrationFile("app", tmp_path / "0002_archive.down.sql")]) == 0
    assert lint.run_squawk([MigrationFile("app", tmp_path / "0002_archive.up.sql")]) != 0


# -- squawk over the migrate --sql script ------------------------------------------------


def _without_psql_commands(script: str) -> str:
    """The script as plain SQL: psql's meta-commands left out (\\gset and \\gexec,
    which end a query, become a semicolon)."""
    lines = []
    for line in script.splitlines():
        if line.lstrip().startswith("\\"):
            lines.append(";" if re.match(r"\s*\\g(set|exec)?\b", line) else "")
        else:
            lines.append(re.sub(r"\s\\g(set|exec)?\s*$", ";", line))
    return "\n".join(lines) + "\n"


def test_squawk_finds_nothing_unaccepted_in_the_migrate_sql_script(empty_url, tmp_path):
    script = migration_script(empty_url, EVERY_SET)
    path = tmp_path / "migrate.sql"
    path.write_text(_without_psql_commands(script))
    # Which migration each line belongs to: the script marks each with its label.
    owner = []
    current = "the script's own statements"
    for line in path.read_text().splitlines():
        marker = re.fullmatch(r"-- ((\w+)/\d+_\w+)", line)
        current = f"{marker[1]}.up.sql" if marker else current
        owner.append(current)
    assert "core/0006_feature_usage_summary.up.sql" in owner
    assert "sentinel/0001_base_tables.up.sql" in owner

    # The script says BEGIN and COMMIT itself: squawk sees its real transactions.
    findings = _squawk_json(lint.squawk_command(in_transaction=False), path)
    unaccepted = [
        (owner[f["line"]], f["rule_name"], f["message"])
        for f in findings
        if f["rule_name"] not in lint.ACCEPTED.get(owner[f["line"]], {})
    ]
    assert unaccepted == []


# -- DDL squawk cannot see ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "advice"),
    [
        (
            """
            DO $$
            BEGIN
                IF to_regclass('orders_user_id') IS NULL THEN
                    CREATE INDEX orders_user_id ON orders (user_id);
                END IF;
            END
            $$;
            """,
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS",
        ),
        (
            """
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'orders_audit') THEN
                    CREATE TRIGGER orders_audit AFTER INSERT ON orders
                        FOR EACH ROW EXECUTE FUNCTION audit();
                END IF;
            END
            $$;
            """,
            "CREATE OR REPLACE TRIGGER",
        ),
        (
            """
            DO $body$
            BEGIN
                EXECUTE 'ALTER TABLE orders ADD COLUMN note text';
            END
            $body$;
            """,
            "ADD COLUMN IF NOT EXISTS",
        ),
        (
            # Built at run time, but a long lock all the same.
            """
            DO $$
            DECLARE v_table text := 'orders';
            BEGIN
                EXECUTE format('CREATE UNIQUE INDEX %I ON %I (id)', v_table || '_id', v_table);
            END
            $$;
            """,
            "blocks writes while it builds",
        ),
        (
            """
            CREATE OR REPLACE FUNCTION tighten(p_table text) RETURNS void
            LANGUAGE plpgsql AS $$
            BEGIN
                EXECUTE format('ALTER TABLE %I ALTER COLUMN total SET NOT NULL', p_table);
            END
            $$;
            """,
            "SET NOT NULL scans the table",
        ),
        (
            """
            DO $$
            BEGIN
                ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0);
            END
            $$;
            """,
            "add it NOT VALID",
        ),
    ],
    ids=["index", "trigger", "execute-add-column", "dynamic-index", "set-not-null", "check"],
)
def test_ddl_hidden_from_squawk_is_found(sql, advice):
    (problem,) = lint.hidden_ddl(textwrap.dedent(sql))
    assert advice in problem.advice
    assert problem.line > 1  # the line of the DDL itself, inside the block


@pytest.mark.parametrize(
    "sql",
    [
        # No plain form: PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS.
        """
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'orders_total') THEN
                ALTER TABLE orders ADD CONSTRAINT orders_total CHECK (total >= 0) NOT VALID;
            END IF;
        END
        $$;
        """,
        # A type chosen at run time; a rename of what the data names.
        """
        DO $$
        BEGIN
            EXECUTE format('CREATE DOMAIN order_id AS %s', current_setting('app.id_type'));
            EXECUTE format('ALTER INDEX %I RENAME TO %I', 'a', 'b');
            EXECUTE format('ALTER TABLE orders VALIDATE CONSTRAINT %I', 'orders_total');
        END
        $$;
        """,
        # A function's scratch table locks no application table.
        """
        CREATE OR REPLACE FUNCTION report() RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            CREATE TEMP TABLE totals AS SELECT 1 AS n;
        END
        $$;
        """,
        # Plain statements, where squawk sees them; strings and comments are not code.
        """
        CREATE OR REPLACE TRIGGER orders_audit AFTER INSERT ON orders
            FOR EACH ROW EXECUTE FUNCTION audit();
        DO $$
        BEGIN
            -- CREATE INDEX would be wrong here
            RAISE NOTICE 'DROP TABLE orders is not run';
        END
        $$;
        """,
    ],
    ids=["add-constraint-not-valid", "dynamic", "temporary", "plain"],
)
def test_ddl_without_a_plain_form_may_stay_in_a_block(sql):
    assert lint.hidden_ddl(textwrap.dedent(sql)) == []


def test_the_check_sees_what_the_landed_migrations_hide():
    """counters/0001 (landed before the rule) creates its triggers in DO blocks and
    sets NOT NULL through EXECUTE: the check finds both kinds."""
    text = (lint.FOLDERS["counters"] / "0001_counter_columns.up.sql").read_text()
    advice = [problem.advice for problem in lint.hidden_ddl(text)]
    assert sum("CREATE OR REPLACE TRIGGER" in a for a in advice) == 5
    assert sum("SET NOT NULL" in a for a in advice) == 1


def test_migrations_after_the_landed_ones_hide_no_ddl():
    assert lint.check_hidden_ddl(lint.migration_files()) == []


def test_a_new_migration_that_hides_ddl_is_reported(tmp_path):
    hidden = _new_migration(
        tmp_path,
        "0009_orders_note",
        "DO $$ BEGIN ALTER TABLE orders ADD COLUMN note text; END $$;\n",
    )
    (message,) = lint.check_hidden_ddl([hidden])
    assert "0009_orders_note.up.sql: line 1: ALTER TABLE orders ADD COLUMN note text" in message


def test_a_justified_exception_is_written_into_the_accepted_table(tmp_path, monkeypatch):
    hidden = _new_migration(
        tmp_path,
        "0009_orders_note",
        "DO $$ BEGIN ALTER TABLE orders ADD COLUMN note text; END $$;\n",
    )
    reason = {lint.HIDDEN_DDL: "the column is added only where the application has none"}
    monkeypatch.setitem(lint.ACCEPTED, hidden.key, reason)
    assert lint.check_hidden_ddl([hidden]) == []
    assert lint.run_squawk([hidden]) == 0  # our rule's name is not passed to squawk
