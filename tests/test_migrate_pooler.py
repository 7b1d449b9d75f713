"""Migrations and a connection pooler: through PgBouncer in transaction mode the
commands that need one session stop before they lock or change anything, and
say which URL to use instead; the read-only ones work; a lock left behind is
reported with its holder."""

from __future__ import annotations

import logging

import psycopg
import pytest
from app_schema import create_app_tables
from click.testing import CliRunner
from pooler import PgBouncer
from pooler import busy

from feature_gates.cli import cli
from feature_gates.migrate import MigrationError
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import NotOneSession
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import migrate
from feature_gates.migrate import migration_lock_holder
from feature_gates.migrate import migration_script
from feature_gates.migrate import pending_migrations
from feature_gates.migrate import recorded_user_id_type
from feature_gates.migrate import refresh
from feature_gates.migrate import rollback
from feature_gates.migrate import status
from feature_gates.migrate import verify
from feature_gates.migrate.session import Session
from feature_gates.migrate.store import LOCK_CLASS_ID
from feature_gates.migrate.store import LOCK_OBJECT_ID

UUID = MigrationSettings(user_id_type="uuid")
CORE_COUNT = len(UUID.load())
LOCK = (LOCK_CLASS_ID, LOCK_OBJECT_ID)


def untouched(url: str) -> bool:
    """Nothing of feature-gates in the database, and no advisory lock held."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regclass('feature_gates_schema_history'), to_regclass('feature_usage'), "
            "to_regtype('feature_usage_user_id'), "
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')"
        ).fetchone()
    return row == (None, None, None, 0)


def migrates_directly_at_once(url: str) -> None:
    """A direct migrate finds the lock free on its first try (lock_wait ends
    the wait after one) and installs the user id type it is asked for."""
    applied = migrate(url, MigrationSettings(user_id_type="uuid", lock_wait=0.01))
    assert len(applied) == CORE_COUNT
    assert recorded_user_id_type(url) == "uuid"


def test_migrate_through_an_idle_pooler_is_refused_before_any_change(pooler, empty_url):
    with pytest.raises(NotOneSession) as refused:
        migrate(pooler.url(empty_url), UUID)
    assert "handed this session's server connection" in str(refused.value)
    assert "nothing was locked or changed" in str(refused.value)
    assert "FEATURE_GATES_MIGRATION_DATABASE_URL" in str(refused.value)
    assert untouched(empty_url)
    migrates_directly_at_once(empty_url)


def test_migrate_through_a_busy_pooler_is_refused_before_any_change(pooler, empty_url):
    url = pooler.url(empty_url)
    with busy(url):
        for _ in range(5):
            with pytest.raises(NotOneSession) as refused:
                migrate(url, UUID)
            assert not refused.value.changed
            assert untouched(empty_url)
    migrates_directly_at_once(empty_url)


@pytest.mark.parametrize("command", ["migrate", "rollback", "repair-counters"])
def test_the_commands_that_need_one_session_refuse_in_one_line(pooler, empty_url, command):
    create_app_tables(empty_url)
    if command != "migrate":
        migrate(empty_url, MigrationSettings(sets=("core", "counters")))
    args = ["--database-url", pooler.url(empty_url), "--set", "core", "--set", "counters", command]
    if command == "rollback":
        args.append("--yes")
    result = CliRunner().invoke(cli, args, env={"DATABASE_URL": ""})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(
        "Error: --database-url leads to a connection pooler in transaction mode ("
    )
    assert lines[0].endswith(
        "give --database-url the URL of PostgreSQL itself (or of a pooler in session mode)"
    )


def test_the_message_names_the_setting_the_url_came_from(pooler, empty_url):
    env = {"FEATURE_GATES_DATABASE_URL": pooler.url(empty_url), "DATABASE_URL": ""}
    result = CliRunner().invoke(cli, ["migrate"], env=env)
    assert result.output.startswith(
        "Error: FEATURE_GATES_DATABASE_URL leads to a connection pooler in transaction mode"
    )
    assert "set FEATURE_GATES_MIGRATION_DATABASE_URL (or --database-url) to the URL of " in (
        result.output
    )
    result = CliRunner().invoke(
        cli, ["migrate"], env={**env, "FEATURE_GATES_MIGRATION_DATABASE_URL": empty_url}
    )
    assert result.exit_code == 0, result.output
    assert len(applied_migrations(empty_url)) == CORE_COUNT


def test_reading_commands_work_through_a_busy_pooler(pooler, feature_gates_database_url):
    direct = feature_gates_database_url
    url = pooler.url(direct)
    settings = MigrationSettings(sets=("core",))
    with busy(url):
        for _ in range(3):  # more than once on each connection of the pool
            assert {row.state for row in status(url, settings)} == {"applied"}
            assert pending_migrations(url, settings) == []
            assert verify(url, settings) == []
            assert migration_lock_holder(url, settings) is None
            assert rollback(url, settings, dry_run=True)
            assert "\\endif" not in migration_script(url, settings)
            assert refresh(url, settings) == 0


def test_migrate_through_a_pooler_in_session_mode_works(feature_gates_server_url, empty_url):
    session_mode = {"pool_mode": "session"}
    with PgBouncer(feature_gates_server_url, pool_size=3, settings=session_mode) as bouncer:
        url = bouncer.url(empty_url)
        with busy(url, clients=1):
            assert len(migrate(url, UUID)) == CORE_COUNT
    assert [m.label for m in applied_migrations(empty_url)] == [m.label for m in UUID.load()]
    assert recorded_user_id_type(empty_url) == "uuid"
    assert migrate(empty_url, MigrationSettings(user_id_type="uuid", lock_wait=0.01)) == []


def test_a_pooler_with_no_server_connection_free_for_the_check_is_refused(
    feature_gates_server_url, empty_url, monkeypatch
):
    """The check needs a second connection: a session-mode pooler whose every
    server connection is taken keeps it waiting, so the runner cannot tell."""
    monkeypatch.setattr("feature_gates.migrate.lock.CHECK_TIMEOUT", 1)
    session_mode = {"pool_mode": "session"}
    with PgBouncer(feature_gates_server_url, pool_size=2, settings=session_mode) as bouncer:
        url = bouncer.url(empty_url)
        with busy(url, clients=1):
            with pytest.raises(NotOneSession) as refused:
                migrate(url, UUID)
    assert str(refused.value).startswith(
        "the database URL leads to a connection pooler or proxy that the runner could not check "
        "(a second connection to the same URL, which the check needs, got no answer within 1 s)"
    )
    assert untouched(empty_url)


def test_a_transaction_on_another_server_connection_stops_before_its_statements(empty_url):
    """Once the session is proven, each transaction checks that it runs on it."""
    with Session(empty_url, MigrationSettings()) as session:
        with session.migration_lock():
            session._token = "a session this server connection is not"  # as if moved
            with pytest.raises(NotOneSession, match="ran on a server connection other"):
                with session.transaction() as conn:
                    conn.execute("CREATE TABLE never_made (id int)")
    with psycopg.connect(empty_url) as conn:
        assert conn.execute("SELECT to_regclass('never_made')").fetchone() == (None,)


# -- a lock left behind ----------------------------------------------------------------


def test_a_lock_left_on_a_pooled_connection_is_reported_and_cleared(pooler, empty_url, caplog):
    """A run through the pooler before this check existed took the session
    lock on a pooled server connection and left: the lock stays there."""
    with psycopg.connect(
        pooler.url(empty_url),
        autocommit=True,
        prepare_threshold=None,
        application_name="an old deploy",
    ) as old_run:
        old_run.execute("SELECT pg_advisory_lock(%s, %s)", LOCK)
    holder = migration_lock_holder(empty_url)
    assert holder is not None
    assert holder.state == "idle"
    assert f"with pg_terminate_backend({holder.pid})" in holder.how_to_clear

    result = CliRunner().invoke(cli, ["--database-url", empty_url, "status"])
    assert f"migration lock: held by pid {holder.pid} (user postgres, " in result.output
    assert "idle for " in result.output
    assert f"end that session with pg_terminate_backend({holder.pid})" in result.output

    with caplog.at_level(logging.WARNING, logger="feature_gates.migrate"):
        with pytest.raises(MigrationError) as waited:
            migrate(empty_url, MigrationSettings(lock_wait=0.01))
    assert f"waiting for the migration lock held by pid {holder.pid} (" in caplog.text
    assert f"pg_terminate_backend({holder.pid})" in caplog.text
    assert f"another migration (pid {holder.pid} (" in str(waited.value)
    assert f"pg_terminate_backend({holder.pid})" in str(waited.value)

    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (holder.pid,))
    migrates_directly_at_once(empty_url)


def test_a_lock_held_by_a_live_session_shows_who_holds_it(empty_url):
    with psycopg.connect(empty_url, autocommit=True, application_name="a killed deploy") as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", LOCK)
        pid = other.info.backend_pid
        holder = migration_lock_holder(empty_url)
        assert holder is not None
        assert (holder.pid, holder.application_name, holder.user) == (
            pid,
            "a killed deploy",
            "postgres",
        )
        assert holder.client == "a local socket"
        assert str(holder).startswith(f"pid {pid} (user postgres, 'a killed deploy', from a ")
    assert migration_lock_holder(empty_url) is None
