"""The core set: feature_usage, its functions, archive and summary, on a real
PostgreSQL; and the upgrade in place of an application's legacy table."""

from __future__ import annotations

import logging
import threading
import uuid

import psycopg
import pytest
from psycopg import errors

from feature_gates import ConfigError
from feature_gates.migrate import MigrationError
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import applied_migrations
from feature_gates.migrate import archive
from feature_gates.migrate import migrate
from feature_gates.migrate import migration_script
from feature_gates.migrate import refresh
from feature_gates.migrate import rollback
from feature_gates.migrate import verify
from tests.released_schema import released_core

CORE = MigrationSettings(sets=("core",))
CORE_COUNT = len(CORE.load())
#: The set as 0.1.0 released it: the tests of what those files do on their own
#: (adopting an application's tables) run it; tests/test_migrate_counted_key.py
#: takes such tables through the migrations that came after.
RELEASED = released_core()
RELEASED_COUNT = len(RELEASED.load())


def scalar(conn, query, params=None):
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


# -- increment_feature_usage_safe ----------------------------------------------------


def test_increment_creates_then_adds_and_returns_the_new_count(db):
    assert scalar(db, "SELECT increment_feature_usage_safe(1, 'api_calls')") == 1
    assert scalar(db, "SELECT increment_feature_usage_safe(1, 'api_calls', 41)") == 42
    row = db.execute(
        "SELECT usage_count, period_start = feature_usage_current_period(), "
        "updated_at >= created_at FROM feature_usage WHERE user_id = 1"
    ).fetchone()
    assert row == (42, True, True)


def test_the_default_period_is_the_first_day_of_the_utc_month(db):
    db.execute("SET TIME ZONE 'Pacific/Kiritimati'")
    assert scalar(
        db, "SELECT feature_usage_current_period() = date_trunc('month', now() AT TIME ZONE 'UTC')"
    )


def test_increment_keeps_periods_apart(db):
    db.execute("SELECT increment_feature_usage_safe(1, 'x', 3, '2026-01-01')")
    db.execute("SELECT increment_feature_usage_safe(1, 'x', 5, '2026-02-01')")
    rows = db.execute(
        "SELECT period_start::text, usage_count FROM feature_usage ORDER BY period_start"
    ).fetchall()
    assert rows == [("2026-01-01", 3), ("2026-02-01", 5)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "api", 0), "increment must be a positive integer, got 0"),
        ((1, "api", -3), "increment must be a positive integer, got -3"),
        ((1, "api", None), "increment must be a positive integer, got NULL"),
        ((None, "api", 1), "user_id must not be NULL"),
        ((1, None, 1), "feature must not be NULL"),
        ((1, "", 1), "invalid feature name ''"),
        ((1, "Api", 1), "invalid feature name 'Api'"),
        ((1, "9lives", 1), "invalid feature name '9lives'"),
        ((1, "has space", 1), "invalid feature name 'has space'"),
        ((1, "a" * 65, 1), "invalid feature name"),
        ((1, "semi;colon", 1), "invalid feature name"),
    ],
)
def test_increment_rejects_bad_input_with_22023(db, args, message):
    with pytest.raises(errors.InvalidParameterValue, match=message) as caught:
        db.execute("SELECT increment_feature_usage_safe(%s, %s, %s)", args)
    assert caught.value.sqlstate == "22023"
    assert scalar(db, "SELECT count(*) FROM feature_usage") == 0


def test_increment_rejects_a_null_period(db):
    with pytest.raises(errors.InvalidParameterValue, match="period_start must not be NULL"):
        db.execute("SELECT increment_feature_usage_safe(1, 'api', 1, NULL)")


@pytest.mark.parametrize("name", ["a", "a" * 64, "export.pdf", "chat:messages-monthly_v2"])
def test_feature_names_that_are_accepted(db, name):
    assert scalar(db, "SELECT increment_feature_usage_safe(1, %s)", (name,)) == 1


def test_the_table_itself_refuses_rows_that_break_the_rules(db):
    with pytest.raises(errors.CheckViolation):
        db.execute("INSERT INTO feature_usage VALUES (1, 'ok', '2026-01-01', -1)")
    with pytest.raises(errors.CheckViolation):
        db.execute("INSERT INTO feature_usage VALUES (1, 'Not OK', '2026-01-01', 1)")
    insert = (
        "INSERT INTO feature_usage (user_id, feature, period_start) VALUES (1, 'x', '2026-01-01')"
    )
    db.execute(insert)
    with pytest.raises(errors.UniqueViolation):
        db.execute(insert)


# -- consume / refund / get ------------------------------------------------------------


def test_consume_grants_within_the_limit_and_returns_null_beyond_it(db):
    assert scalar(db, "SELECT consume_feature_usage(1, 'pdf', 3, 5)") == 3
    assert scalar(db, "SELECT consume_feature_usage(1, 'pdf', 2, 5)") == 5
    assert scalar(db, "SELECT consume_feature_usage(1, 'pdf', 1, 5)") is None
    assert scalar(db, "SELECT get_feature_usage(1, 'pdf')") == 5


def test_consume_refuses_a_first_use_larger_than_the_limit_without_a_row(db):
    assert scalar(db, "SELECT consume_feature_usage(1, 'pdf', 6, 5)") is None
    assert scalar(db, "SELECT count(*) FROM feature_usage") == 0
    assert scalar(db, "SELECT consume_feature_usage(1, 'pdf', 1, 0)") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "pdf", 0, 5), "amount must be a positive integer"),
        ((1, "pdf", 1, -1), "limit must be zero or more, got -1"),
        ((1, "pdf", 1, None), "limit must be zero or more, got NULL"),
        ((1, "PDF", 1, 5), "invalid feature name"),
        ((None, "pdf", 1, 5), "user_id must not be NULL"),
    ],
)
def test_consume_rejects_bad_input_with_22023(db, args, message):
    with pytest.raises(errors.InvalidParameterValue, match=message):
        db.execute("SELECT consume_feature_usage(%s, %s, %s, %s)", args)


def test_consume_is_exact_under_concurrency(feature_gates_database_url):
    limit, workers, attempts = 40, 8, 15
    granted = []
    barrier = threading.Barrier(workers)

    def worker():
        with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
            barrier.wait()
            for _ in range(attempts):
                if scalar(conn, "SELECT consume_feature_usage(7, 'race', 1, %s)", (limit,)):
                    granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == limit
    with psycopg.connect(feature_gates_database_url) as conn:
        assert scalar(conn, "SELECT get_feature_usage(7, 'race')") == limit


def test_refund_gives_back_and_never_goes_below_zero(db):
    db.execute("SELECT increment_feature_usage_safe(1, 'pdf', 5)")
    assert scalar(db, "SELECT refund_feature_usage(1, 'pdf', 2)") == 3
    assert scalar(db, "SELECT refund_feature_usage(1, 'pdf', 10)") == 0
    assert scalar(db, "SELECT refund_feature_usage(2, 'pdf', 1)") == 0
    assert scalar(db, "SELECT count(*) FROM feature_usage WHERE user_id = 2") == 0
    with pytest.raises(errors.InvalidParameterValue, match="amount must be a positive integer"):
        db.execute("SELECT refund_feature_usage(1, 'pdf', 0)")


def test_get_feature_usage_is_zero_without_a_row_and_validates(db):
    assert scalar(db, "SELECT get_feature_usage(1, 'nothing')") == 0
    with pytest.raises(errors.InvalidParameterValue):
        db.execute("SELECT get_feature_usage(1, 'No')")


def test_get_user_feature_usage_lists_a_users_features_of_a_period(db):
    db.execute("SELECT increment_feature_usage_safe(1, 'b_feature', 2)")
    db.execute("SELECT increment_feature_usage_safe(1, 'a_feature', 1)")
    db.execute("SELECT increment_feature_usage_safe(2, 'a_feature', 9)")
    db.execute("SELECT increment_feature_usage_safe(1, 'a_feature', 4, '2020-01-01')")
    rows = db.execute("SELECT feature, usage_count FROM get_user_feature_usage(1)").fetchall()
    assert rows == [("a_feature", 1), ("b_feature", 2)]
    old = db.execute("SELECT feature, usage_count FROM get_user_feature_usage(1, '2020-01-01')")
    assert old.fetchall() == [("a_feature", 4)]
    with pytest.raises(errors.InvalidParameterValue, match="user_id must not be NULL"):
        db.execute("SELECT * FROM get_user_feature_usage(NULL)")


# -- archive and summary ---------------------------------------------------------------


def _months_ago(db, months):
    return scalar(
        db, "SELECT (feature_usage_current_period() - make_interval(months => %s))::date", (months,)
    )


def test_archive_moves_rows_older_than_the_kept_months(db, feature_gates_database_url):
    for months in (0, 5, 6, 7, 13):
        db.execute(
            "SELECT increment_feature_usage_safe(1, 'api', %s, %s)",
            (months + 1, _months_ago(db, months)),
        )
    result = archive(feature_gates_database_url, CORE, keep_months=6)
    assert result.moved == 2
    assert result.kept_from == _months_ago(db, 6)
    kept = db.execute("SELECT usage_count FROM feature_usage ORDER BY period_start").fetchall()
    assert kept == [(7,), (6,), (1,)]
    archived = db.execute(
        "SELECT usage_count, archived_at IS NOT NULL FROM feature_usage_archive "
        "ORDER BY period_start"
    ).fetchall()
    assert archived == [(14, True), (8, True)]


def test_archive_merges_a_late_write_into_the_archived_row(db):
    old = _months_ago(db, 9)
    db.execute("SELECT increment_feature_usage_safe(1, 'api', 3, %s)", (old,))
    assert scalar(db, "SELECT archive_old_feature_usage()") == 1
    db.execute("SELECT increment_feature_usage_safe(1, 'api', 2, %s)", (old,))
    assert scalar(db, "SELECT archive_old_feature_usage(6)") == 1
    assert scalar(db, "SELECT usage_count FROM feature_usage_archive") == 5
    assert scalar(db, "SELECT count(*) FROM feature_usage") == 0


@pytest.mark.parametrize("months", [-1, 12_001, 2**31 - 1])
def test_archive_rejects_months_outside_the_calendar(db, months):
    with pytest.raises(errors.InvalidParameterValue, match="keep_months must be between 0 and"):
        db.execute("SELECT archive_old_feature_usage(%s::integer)", (months,))
    with pytest.raises(MigrationError, match="keep months must be between 0 and 12000"):
        archive("postgresql:///unused", CORE, keep_months=months)


def test_archive_keeps_a_thousand_years(db):
    db.execute("SELECT increment_feature_usage_safe(1, 'api', 3, '1200-01-01')")
    assert scalar(db, "SELECT archive_old_feature_usage(12000)") == 0
    assert scalar(db, "SELECT archive_old_feature_usage(0)") == 1


def test_summary_counts_uses_users_and_refreshes_concurrently(db, feature_gates_database_url):
    db.execute("SELECT increment_feature_usage_safe(1, 'api', 3)")
    db.execute("SELECT increment_feature_usage_safe(2, 'api', 4)")
    db.execute("SELECT increment_feature_usage_safe(2, 'pdf', 1)")
    db.execute("SELECT refund_feature_usage(2, 'pdf', 1)")
    assert refresh(feature_gates_database_url, CORE) == 2
    rows = db.execute(
        "SELECT feature, total_usage, unique_users FROM feature_usage_summary ORDER BY feature"
    ).fetchall()
    assert rows == [("api", 7, 2), ("pdf", 0, 0)]
    # CONCURRENTLY works only with a unique index on plain columns: calling it
    # again from SQL proves the index is usable.
    db.execute("SELECT refresh_feature_usage_summary()")


def test_functions_pin_their_search_path_and_run_as_the_caller(db):
    # Every function feature-gates installs, not only the documented ones.
    rows = db.execute(
        """
        SELECT p.proname, p.prosecdef, p.proconfig
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
        """
    ).fetchall()
    names = {name for name, _, _ in rows}
    assert {
        "increment_feature_usage_safe",
        "consume_feature_usage",
        "refund_feature_usage",
        "get_feature_usage",
        "get_user_feature_usage",
        "archive_old_feature_usage",
        "refresh_feature_usage_summary",
    } <= names
    for name, security_definer, config in rows:
        assert not security_definer, name
        assert any(c.startswith("search_path=") for c in config or []), name
    # A caller's own search_path cannot redirect the functions' tables.
    db.execute("CREATE SCHEMA attacker")
    db.execute("CREATE TABLE attacker.feature_usage (LIKE public.feature_usage)")
    db.execute("SET search_path TO attacker, public")
    db.execute("SELECT increment_feature_usage_safe(1, 'api')")
    assert scalar(db, "SELECT count(*) FROM attacker.feature_usage") == 0
    assert scalar(db, "SELECT count(*) FROM public.feature_usage") == 1


# -- user id types -------------------------------------------------------------------


@pytest.fixture
def uuid_db(feature_gates_databases):
    url = feature_gates_databases.create(MigrationSettings(user_id_type="uuid"))
    yield url
    feature_gates_databases.drop(url)


def test_uuid_user_ids(uuid_db):
    user = uuid.uuid4()
    with psycopg.connect(uuid_db, autocommit=True) as conn:
        assert scalar(conn, "SELECT increment_feature_usage_safe(%s, 'api', 2)", (user,)) == 2
        assert scalar(conn, "SELECT consume_feature_usage(%s, 'api', 1, 3)", (user,)) == 3
        assert scalar(conn, "SELECT get_feature_usage(%s, 'api')", (user,)) == 3
        assert scalar(
            conn,
            "SELECT format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = 'feature_usage'::regclass AND attname = 'user_id'",
        ) == ("feature_usage_user_id")


def test_the_user_id_type_cannot_change_after_the_first_migrate(uuid_db):
    with pytest.raises(MigrationError, match=r"user ids are uuid .* set it to 'uuid'"):
        migrate(uuid_db, MigrationSettings(user_id_type="bigint"))


def test_an_unknown_user_id_type_is_refused_with_the_key_named():
    with pytest.raises(ConfigError, match="FEATURE_GATES_USER_ID_TYPE"):
        MigrationSettings(user_id_type="text")


# -- idempotence -----------------------------------------------------------------------


def test_migrate_again_applies_nothing(feature_gates_database_url):
    assert migrate(feature_gates_database_url, CORE) == []


def test_every_released_up_file_can_run_again_over_its_own_objects(feature_gates_databases):
    """A run interrupted after its work but before its history row is written is
    run again: every file must cope with finding its objects there."""
    url = feature_gates_databases.create(RELEASED)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SELECT increment_feature_usage_safe(1, 'kept', 3)")
        db.execute("DELETE FROM feature_gates_schema_history")
        assert len(migrate(url, RELEASED)) == RELEASED_COUNT
        assert scalar(db, "SELECT get_feature_usage(1, 'kept')") == 3
    assert verify(url, RELEASED) == []
    feature_gates_databases.drop(url)


def test_every_up_file_of_the_counted_key_can_run_again_over_its_own_objects(
    db, feature_gates_database_url
):
    """The files from 0020 run again over the schema they made, counts of other
    kinds included (the released files are run again above, on theirs)."""
    db.execute("SELECT increment_feature_usage_safe(1, 'kept', 3)")
    db.execute(
        "SELECT feature_usage_consume(1, 'kept', 'user', 'day', current_date, 0, NULL, 2, 5)"
    )
    again = db.execute(
        "DELETE FROM feature_gates_schema_history WHERE version::int >= 20 RETURNING 1"
    ).rowcount
    assert len(migrate(feature_gates_database_url, CORE)) == again
    assert scalar(db, "SELECT get_feature_usage(1, 'kept')") == 3
    assert scalar(db, "SELECT sum(usage_count) FROM feature_usage") == 5
    indexes = "SELECT count(*) FROM pg_index WHERE indrelid = 'feature_usage'::regclass"
    assert scalar(db, indexes) == 2
    assert verify(feature_gates_database_url, CORE) == []


def test_verify_reports_a_function_that_lost_its_pinned_search_path_or_became_definer(
    db, feature_gates_database_url
):
    db.execute("ALTER FUNCTION get_feature_usage(feature_usage_user_id, text, date) RESET ALL")
    db.execute("ALTER FUNCTION refund_feature_usage SECURITY DEFINER")
    problems = sorted(str(p) for p in verify(feature_gates_database_url, CORE))
    assert len(problems) == 2, problems
    assert "get_feature_usage(" in problems[0] and "does not pin its search_path" in problems[0]
    assert "refund_feature_usage(" in problems[1] and "SECURITY DEFINER" in problems[1]


# -- a legacy feature_usage table ------------------------------------------------------

LEGACY = """
CREATE TABLE feature_usage (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    feature varchar(100) NOT NULL,
    period_start date NOT NULL,
    usage_count integer NOT NULL DEFAULT 0,
    created_at timestamp DEFAULT now(),
    CONSTRAINT feature_usage_user_feature_period_key UNIQUE (user_id, feature, period_start)
);
INSERT INTO feature_usage (user_id, feature, period_start, usage_count, created_at) VALUES
    (1, 'api_calls', '2026-01-01', 10, '2026-01-02'),
    (1, 'api_calls', '2026-02-01', 20, NULL),
    (2, 'Export PDF', '2026-01-01', 3, '2026-01-05'),
    (3, 'api_calls', '2026-01-01', -2, '2026-01-06');
"""


@pytest.fixture
def legacy_url(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(LEGACY)
    return empty_url


def _legacy_rows(conn):
    return conn.execute(
        "SELECT id, user_id, feature, period_start::text, usage_count, created_at::text "
        "FROM feature_usage ORDER BY id"
    ).fetchall()


def test_a_legacy_table_is_upgraded_in_place_with_its_rows_kept(legacy_url, caplog):
    with psycopg.connect(legacy_url, autocommit=True) as conn:
        before = _legacy_rows(conn)
        with caplog.at_level(logging.WARNING, logger="feature_gates.migrate"):
            migrate(legacy_url, RELEASED)
        assert _legacy_rows(conn) == before
        columns = dict(
            conn.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = 'feature_usage'::regclass AND attnum > 0 AND NOT attisdropped"
            ).fetchall()
        )
        assert columns["usage_count"] == "integer"
        assert columns["updated_at"] == "timestamp with time zone"
        assert columns["id"] == "integer"
        validated = dict(
            conn.execute(
                "SELECT conname, convalidated FROM pg_constraint "
                "WHERE conrelid = 'feature_usage'::regclass AND contype = 'c'"
            ).fetchall()
        )
        assert validated == {
            "feature_usage_usage_count_nonnegative": False,
            "feature_usage_feature_format": False,
        }
        # The functions work on the adopted table, and treat a negative count as 0.
        increment = "SELECT increment_feature_usage_safe(%s, 'api_calls', %s, '2026-01-01')"
        assert scalar(conn, increment, (1, 5)) == 15
        assert scalar(conn, increment, (3, 1)) == 1
        assert scalar(conn, "SELECT consume_feature_usage(9, 'api_calls', 2, 3)") == 2
        # The functions that return rows too, the background writer's among them.
        rows = conn.execute(
            "SELECT feature, usage_count FROM get_user_feature_usage(1, '2026-01-01')"
        ).fetchall()
        assert rows == [("api_calls", 15)]
        written = conn.execute(
            "SELECT user_id::text, feature, increment, usage_count FROM write_feature_usage_batch("
            "gen_random_uuid(), '{}', ARRAY['1', '9']::feature_usage_user_id[], "
            "ARRAY['api_calls', 'api_calls'], ARRAY[1, 4]::bigint[], "
            "ARRAY['2026-01-01', '2026-01-01']::date[])"
        ).fetchall()
        assert sorted(written) == [("1", "api_calls", 1, 16), ("9", "api_calls", 4, 4)]
        # New rows are checked even though old ones are not validated yet.
        with pytest.raises(errors.CheckViolation):
            conn.execute(
                "INSERT INTO feature_usage (user_id, feature, period_start) "
                "VALUES (5, 'Bad Name', '2026-01-01')"
            )
    assert "break constraint feature_usage_feature_format" in caplog.text
    problems = sorted(str(p) for p in verify(legacy_url, RELEASED))
    assert len(problems) == 2
    assert "feature_usage_feature_format" in problems[0]
    assert "1 rows of feature_usage break it" in problems[0]
    assert "'Export PDF'" in problems[0]
    # The negative count was healed by the increment above: nothing breaks that
    # rule any more, and verify says how to validate it.
    assert "feature_usage_usage_count_nonnegative is not validated, and no row" in problems[1]


def test_a_legacy_table_survives_rollback_and_migrates_again(legacy_url):
    migrate(legacy_url, RELEASED)
    with psycopg.connect(legacy_url, autocommit=True) as conn:
        conn.execute("UPDATE feature_usage SET feature = 'export_pdf' WHERE feature = 'Export PDF'")
        conn.execute("UPDATE feature_usage SET usage_count = 0 WHERE usage_count < 0")
        before = _legacy_rows(conn)
        assert len(rollback(legacy_url, RELEASED, everything=True)) == RELEASED_COUNT
        assert _legacy_rows(conn) == before
        names = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'feature_usage'::regclass "
                "AND attnum > 0 AND NOT attisdropped"
            ).fetchall()
        }
        assert names == {"id", "user_id", "feature", "period_start", "usage_count", "created_at"}
        kept_constraint = (
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'feature_usage'::regclass "
            "AND conname = 'feature_usage_user_feature_period_key'"
        )
        assert scalar(conn, kept_constraint) == 1
        assert scalar(conn, "SELECT to_regclass('feature_usage_archive')") is None
        assert len(migrate(legacy_url, RELEASED)) == RELEASED_COUNT
        assert _legacy_rows(conn) == before
    # The rows now break no rule: both constraints are validated.
    assert verify(legacy_url, RELEASED) == []


def test_a_legacy_table_with_duplicate_keys_is_refused_with_examples(empty_url):
    url = empty_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE feature_usage (user_id bigint, feature text, period_start date, "
            "usage_count bigint)"
        )
        conn.execute(
            "INSERT INTO feature_usage VALUES (1, 'api', '2026-01-01', 1), "
            "(1, 'api', '2026-01-01', 2), (2, 'api', '2026-01-01', 1)"
        )
        with pytest.raises(MigrationError, match=r"1 duplicated .* \(1, api, 2026-01-01\) x2"):
            migrate(url, CORE)
        assert scalar(conn, "SELECT count(*) FROM feature_usage") == 3
        assert scalar(conn, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0


def test_a_table_named_feature_usage_of_another_shape_is_refused(empty_url):
    url = empty_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE feature_usage (user_id text, feature text, n int)")
    with pytest.raises(
        MigrationError,
        match="cannot be upgraded: no column period_start; no column usage_count; "
        "user_id is text, not bigint or integer or uuid",
    ):
        migrate(url, CORE)


# -- objects of feature-gates' names that an application already had -----------------


def _index_definitions(conn):
    return dict(
        conn.execute(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_class c "
            "WHERE c.relname IN ('idx_feature_usage_user_feature_period', "
            "'idx_feature_usage_period_start')"
        ).fetchall()
    )


def test_a_non_unique_index_of_the_upsert_index_name_is_refused(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE feature_usage (user_id bigint NOT NULL, feature text NOT NULL, "
            "period_start date NOT NULL, usage_count integer NOT NULL DEFAULT 0)"
        )
        conn.execute(
            "CREATE INDEX idx_feature_usage_user_feature_period "
            "ON feature_usage (user_id, feature, period_start)"
        )
        conn.execute("INSERT INTO feature_usage VALUES (1, 'api', '2026-01-01', 4)")
        with pytest.raises(MigrationError) as caught:
            migrate(empty_url, CORE)
        message = str(caught.value)
        assert "idx_feature_usage_user_feature_period" in message
        assert "not UNIQUE on exactly (user_id, feature, period_start)" in message
        assert "rename it or drop it" in message
        # Refused before anything changed.
        assert scalar(conn, "SELECT to_regclass('feature_gates_adopted_tables')") is None
        assert _legacy_columns(conn) == {"user_id", "feature", "period_start", "usage_count"}
        # Done as the message says, the migration goes through and upserts work.
        conn.execute(
            "ALTER INDEX idx_feature_usage_user_feature_period RENAME TO feature_usage_by_user"
        )
        migrate(empty_url, CORE)
        assert scalar(conn, "SELECT increment_feature_usage_safe(1, 'api', 1, '2026-01-01')") == 5
    assert verify(empty_url, CORE) == []


def test_verify_reports_an_upsert_index_that_is_not_unique_on_the_key(
    db, feature_gates_database_url
):
    db.execute("DROP INDEX idx_feature_usage_user_feature_period")
    db.execute(
        "CREATE INDEX idx_feature_usage_user_feature_period "
        "ON feature_usage (user_id, feature, period_start)"
    )
    db.execute("DROP INDEX idx_feature_usage_period_start")
    db.execute("CREATE INDEX idx_feature_usage_period_start ON feature_usage (feature)")
    problems = sorted(str(p) for p in verify(feature_gates_database_url, CORE))
    assert len(problems) == 2, problems
    assert problems[0].startswith("index: idx_feature_usage_period_start")
    assert "not an index on feature_usage (period_start" in problems[0]
    assert problems[1].startswith("index: idx_feature_usage_user_feature_period")
    assert (
        "not UNIQUE on exactly (user_id, feature, scope, period, period_start, period_offset)"
        in problems[1]
    )
    assert "the counted key every upsert relies on" in problems[1]


OWN_OBJECTS = """
CREATE TABLE feature_usage (
    user_id bigint NOT NULL,
    feature text NOT NULL,
    period_start date NOT NULL,
    usage_count integer NOT NULL DEFAULT 0
        CONSTRAINT feature_usage_usage_count_nonnegative CHECK (usage_count >= 0)
);
CREATE UNIQUE INDEX idx_feature_usage_user_feature_period
    ON feature_usage (user_id, feature, period_start);
CREATE INDEX idx_feature_usage_period_start
    ON feature_usage (period_start) WHERE period_start >= '2024-01-01';
INSERT INTO feature_usage VALUES (1, 'api', '2026-01-01', 4), (2, 'api', '2023-01-01', 1);
"""


def _legacy_columns(conn):
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'feature_usage'::regclass "
        "AND attnum > 0 AND NOT attisdropped"
    ).fetchall()
    return {r[0] for r in rows}


def _constraints(conn):
    rows = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'feature_usage'::regclass"
    ).fetchall()
    return dict(rows)


def test_rollback_keeps_the_indexes_and_constraints_a_legacy_table_had(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(OWN_OBJECTS)
        indexes, constraints = _index_definitions(conn), _constraints(conn)
        migrate(empty_url, RELEASED)
        assert scalar(conn, "SELECT increment_feature_usage_safe(1, 'api', 1, '2026-01-01')") == 5
        # Its own indexes serve: none was built beside them.
        assert _index_definitions(conn) == indexes
        assert verify(empty_url, RELEASED) == []
        rollback(empty_url, RELEASED, to="core/0001")
        assert _index_definitions(conn) == indexes
        migrate(empty_url, RELEASED)
        rollback(empty_url, RELEASED, everything=True)
        assert _index_definitions(conn) == indexes
        assert _constraints(conn) == constraints
        assert _legacy_columns(conn) == {"user_id", "feature", "period_start", "usage_count"}
        assert scalar(conn, "SELECT sum(usage_count) FROM feature_usage") == 6
        # And the next migrate adopts them again.
        assert len(migrate(empty_url, RELEASED)) == RELEASED_COUNT
        assert _index_definitions(conn) == indexes
    assert verify(empty_url, RELEASED) == []


def test_rollback_drops_the_indexes_it_built_on_a_legacy_table(legacy_url):
    migrate(legacy_url, RELEASED)
    with psycopg.connect(legacy_url, autocommit=True) as conn:
        assert set(_index_definitions(conn)) == {
            "idx_feature_usage_user_feature_period",
            "idx_feature_usage_period_start",
        }
        rollback(legacy_url, RELEASED, everything=True)
        assert _index_definitions(conn) == {}
        leftovers = "SELECT count(*) FROM pg_class WHERE relname LIKE 'fg\\_drop\\_%'"
        assert scalar(conn, leftovers) == 0


# -- a legacy table whose columns allow NULL -----------------------------------------

NULLABLE = """
CREATE TABLE feature_usage (
    user_id bigint,
    feature varchar(100),
    period_start date,
    usage_count integer,
    created_at timestamp
);
INSERT INTO feature_usage VALUES
    (1, 'api', '2020-01-01', 5, '2020-01-02'),
    (2, 'api', '2020-01-01', NULL, NULL),
    (3, NULL, '2020-01-01', 2, NULL),
    (3, NULL, '2020-01-01', 7, NULL),
    (NULL, 'api', '2020-02-01', 1, NULL),
    (4, 'api', NULL, 1, NULL),
    (5, 'api', '2099-01-01', NULL, NULL);
"""


def test_a_legacy_table_with_nullable_columns_gets_a_not_null_check(empty_url, caplog):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(NULLABLE)
        with caplog.at_level(logging.WARNING, logger="feature_gates.migrate"):
            migrate(empty_url, CORE)
        assert "break constraint feature_usage_not_null" in caplog.text
        assert _constraints(conn)["feature_usage_not_null"] == (
            "CHECK (((user_id IS NOT NULL) AND (feature IS NOT NULL) AND "
            "(period_start IS NOT NULL) AND (usage_count IS NOT NULL))) NOT VALID"
        )
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO feature_usage (user_id, feature) VALUES (1, 'api')")
        problems = [str(p) for p in verify(empty_url, CORE)]
        assert len(problems) == 1, problems
        assert "feature_usage_not_null" in problems[0]
        assert "6 rows of feature_usage break it" in problems[0]
        assert "(user_id 3, feature NULL, period 2020-01-01, usage_count 2)" in problems[0]
        assert "(user_id 4, feature 'api', period NULL, usage_count 1)" in problems[0]
        # A NULL count reads as 0, in both reading functions.
        assert scalar(conn, "SELECT get_feature_usage(5, 'api', '2099-01-01')") == 0
        assert conn.execute(
            "SELECT feature, usage_count FROM get_user_feature_usage(5, '2099-01-01')"
        ).fetchall() == [("api", 0)]
        # The archive moves what it can and never fails on such rows: a NULL
        # count is archived as 0; a row without a user or feature stays.
        assert archive(empty_url, CORE, keep_months=6).moved == 2
        archived = conn.execute(
            "SELECT user_id, usage_count FROM feature_usage_archive ORDER BY user_id"
        ).fetchall()
        assert archived == [(1, 5), (2, 0)]
        assert scalar(conn, "SELECT count(*) FROM feature_usage") == 5
        assert refresh(empty_url, CORE) >= 1
        # Fixed as verify says, the check validates.
        conn.execute(
            "DELETE FROM feature_usage WHERE user_id IS NULL OR feature IS NULL "
            "OR period_start IS NULL"
        )
        conn.execute("UPDATE feature_usage SET usage_count = 0 WHERE usage_count IS NULL")
        conn.execute("ALTER TABLE feature_usage VALIDATE CONSTRAINT feature_usage_not_null")
        assert verify(empty_url, CORE) == []
        rollback(empty_url, CORE, everything=True)
        assert "feature_usage_not_null" not in _constraints(conn)


def test_a_legacy_table_with_nullable_but_complete_columns_is_validated(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE feature_usage (user_id bigint, feature text, period_start date, "
            "usage_count bigint)"
        )
        conn.execute("INSERT INTO feature_usage VALUES (1, 'api', '2026-01-01', 1)")
        migrate(empty_url, CORE)
        assert _constraints(conn)["feature_usage_not_null"].endswith("(usage_count IS NOT NULL)))")
    assert verify(empty_url, CORE) == []


# -- an archive table the application already had -------------------------------------

LEGACY_ARCHIVE = """
CREATE TABLE feature_usage_archive (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    feature varchar(100) NOT NULL,
    period_start date NOT NULL,
    usage_count integer NOT NULL,
    created_at timestamp,
    updated_at timestamp,
    CONSTRAINT legacy_archive_key UNIQUE (period_start, user_id, feature)
);
INSERT INTO feature_usage_archive (user_id, feature, period_start, usage_count)
VALUES (1, 'api_calls', '2020-01-01', 7);
"""


def test_an_archive_table_the_application_had_is_adopted_and_kept_on_rollback(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(LEGACY_ARCHIVE)
        migrate(empty_url, RELEASED)
        conn.execute("SELECT increment_feature_usage_safe(1, 'api_calls', 2, '2020-02-01')")
        assert archive(empty_url, RELEASED).moved == 1
        rows = "SELECT user_id, feature, period_start::text, usage_count FROM feature_usage_archive"
        assert sorted(conn.execute(rows).fetchall()) == [
            (1, "api_calls", "2020-01-01", 7),
            (1, "api_calls", "2020-02-01", 2),
        ]
        rollback(empty_url, RELEASED, everything=True)
        assert sorted(conn.execute(rows).fetchall()) == [
            (1, "api_calls", "2020-01-01", 7),
            (1, "api_calls", "2020-02-01", 2),
        ]
        columns = conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attname = 'archived_at' "
            "AND attrelid = 'feature_usage_archive'::regclass"
        ).fetchone()
        assert columns == (0,)  # added by feature-gates, removed by its rollback
        assert len(migrate(empty_url, RELEASED)) == RELEASED_COUNT


def test_an_archive_table_the_job_cannot_write_is_refused_by_name(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(LEGACY_ARCHIVE)
        conn.execute("ALTER TABLE feature_usage_archive DROP CONSTRAINT legacy_archive_key")
        conn.execute("ALTER TABLE feature_usage_archive DROP COLUMN updated_at")
    with pytest.raises(MigrationError, match="feature_usage_archive") as refused:
        migrate(empty_url, CORE)
    assert "updated_at, a unique key on exactly (user_id, feature, period_start)" in str(
        refused.value
    )


def _applied(url):
    return [a.label for a in applied_migrations(url, CORE)]


def test_a_summary_of_the_applications_own_is_refused_before_core_0006(empty_url):
    """core/0006 creates its view IF NOT EXISTS: without its check, an
    application's table of that name would be taken for it, and dropped by
    rollback."""
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE feature_usage_summary (day date, visits bigint)")
        conn.execute("INSERT INTO feature_usage_summary VALUES ('2026-01-01', 12)")
    with pytest.raises(MigrationError) as refused:
        migrate(empty_url, CORE)
    assert str(refused.value) == (
        "core/0006_feature_usage_summary failed: the application already has table "
        "feature_usage_summary: core/0006 would take it for its summary view, and "
        "its rollback would drop it; rename it, or set FEATURE_GATES_SCHEMA to install "
        "feature-gates in a schema of its own"
    )
    assert _applied(empty_url)[-1] == "core/0005_feature_usage_archive"
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert scalar(conn, "SELECT visits FROM feature_usage_summary") == 12
        assert scalar(conn, "SELECT to_regproc('refresh_feature_usage_summary')") is None
        conn.execute("ALTER TABLE feature_usage_summary RENAME TO site_visits")
    migrate(empty_url, CORE)
    rollback(empty_url, CORE, everything=True)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert scalar(conn, "SELECT visits FROM site_visits") == 12


def test_tables_and_functions_of_the_applications_own_are_refused_before_core_0007(empty_url):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE feature_usage_batches (id serial PRIMARY KEY, rows int)")
        conn.execute(
            "CREATE FUNCTION prune_feature_usage_idempotency(integer) RETURNS bigint "
            "LANGUAGE sql AS 'SELECT 42::bigint'"
        )
    with pytest.raises(MigrationError) as refused:
        migrate(empty_url, CORE)
    assert str(refused.value).startswith(
        "core/0007_feature_usage_idempotency failed: the application already has table "
        "feature_usage_batches, index feature_usage_batches_pkey, function "
        "prune_feature_usage_idempotency(integer): core/0007 would take it for the "
        "idempotency records it keeps"
    )
    assert _applied(empty_url)[-1] == "core/0006_feature_usage_summary"
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert scalar(conn, "SELECT prune_feature_usage_idempotency(1)") == 42
        assert scalar(conn, "SELECT to_regclass('feature_usage_idempotency')") is None


def test_the_checks_are_in_the_sql_script_and_skip_applied_migrations(empty_url):
    script = migration_script(empty_url, CORE)
    assert script.count("the application already has %") == 2
    migrate(empty_url, CORE)
    assert "the application already has %" not in migration_script(empty_url, CORE)
    # Applied, the objects are feature-gates' own: migrate again is a no-op.
    assert migrate(empty_url, CORE) == []
