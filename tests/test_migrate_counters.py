"""The counters set on an application's messy tables: backfill, triggers,
audit, repair, resume after an interruption, rollback."""

from __future__ import annotations

import psycopg
import pytest
from app_schema import ITINERARY_DATA
from app_schema import app_fingerprint
from app_schema import create_app_tables
from app_schema import stored_message_counts
from app_schema import true_message_counts

from feature_gates.migrate import MigrationError
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate
from feature_gates.migrate import repair_counters
from feature_gates.migrate import rollback
from feature_gates.migrate import status
from feature_gates.migrate import verify

COUNTERS = MigrationSettings(sets=("core", "counters"), batch_size=4)
LAST_CORE_VERSION = MigrationSettings(sets=("core",)).load()[-1].version


@pytest.fixture(params=["bigint", "uuid"])
def app_url(request, empty_url):
    """An application database: its own tables and messy rows, nothing migrated."""
    create_app_tables(empty_url, key_type=request.param)
    return empty_url


@pytest.fixture
def conn(app_url):
    with psycopg.connect(app_url, autocommit=True) as conn:
        yield conn


def destinations(conn):
    return conn.execute(
        "SELECT data::text, destinations_count FROM travel_itineraries ORDER BY user_id, id"
    ).fetchall()


def test_backfill_counts_every_thread_and_every_shape_of_itinerary(app_url, conn):
    # The application's own counter has drifted on one thread.
    drifted = conn.execute(
        "UPDATE chat_threads SET message_count = message_count + 2 "
        "WHERE id = (SELECT id FROM chat_threads ORDER BY id LIMIT 1) RETURNING id, message_count"
    ).fetchone()
    before = app_fingerprint(conn)
    applied = migrate(app_url, COUNTERS)
    assert [m.label for m in applied][-5:] == [
        "counters/0001_counter_columns",
        "counters/0002_counter_backfill",
        "counters/0003_counter_indexes",
        "counters/0004_legacy_message_count",
        "counters/0005_registered_counters",
    ]
    assert stored_message_counts(conn) == true_message_counts(conn)
    assert set(true_message_counts(conn).values()) >= {0, 1, 16}
    expected = {data: count for data, count in ITINERARY_DATA}
    for data, count in destinations(conn):
        key = None if data is None else conn.execute("SELECT %s::jsonb::text", (data,)).fetchone()
        wanted = (
            expected[None]
            if key is None
            else next(
                c
                for d, c in ITINERARY_DATA
                if d is not None and conn.execute("SELECT %s::jsonb::text", (d,)).fetchone() == key
            )
        )
        assert count == wanted, data
    # The legacy counter is left as the application keeps it, drift and all;
    # verify reports the drift.
    assert app_fingerprint(conn) == before
    id_, stored = drifted
    assert [str(p) for p in verify(app_url, COUNTERS)] == [
        f"legacy counter: chat_threads.message_count id={id_} has {stored}, truth {stored - 2} "
        "(1 rows of chat_threads differ; run repair-counters)"
    ]
    indexes = conn.execute(
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid IN ('chat_threads'::regclass, 'travel_itineraries'::regclass) "
        "AND NOT indisprimary ORDER BY 1"
    ).fetchall()
    assert indexes == [
        ("idx_chat_threads_messages_count", True),
        ("idx_travel_itineraries_destinations_count", True),
    ]


def test_triggers_keep_the_counters_exact_after_the_backfill(app_url, conn):
    migrate(app_url, COUNTERS)
    first, second = [r[0] for r in conn.execute("SELECT id FROM chat_threads ORDER BY id LIMIT 2")]
    conn.execute(
        "INSERT INTO chat_messages (thread_id, body) SELECT %s, 'new' FROM generate_series(1, 3)",
        (first,),
    )
    conn.execute(
        "INSERT INTO chat_messages (thread_id, body) VALUES (%s, 'a'), (%s, 'b')", (first, second)
    )
    conn.execute("DELETE FROM chat_messages WHERE id = (SELECT max(id) FROM chat_messages)")
    conn.execute(
        "UPDATE chat_messages SET thread_id = %s WHERE thread_id = %s AND body = 'new'",
        (second, first),
    )
    conn.execute("UPDATE chat_messages SET body = 'edited'")
    conn.execute("DELETE FROM chat_threads WHERE id = %s", (second,))
    assert stored_message_counts(conn) == true_message_counts(conn)
    conn.execute(
        "UPDATE travel_itineraries SET data = '{\"waypoints\": [1, 2]}' WHERE data IS NULL"
    )
    conn.execute("UPDATE travel_itineraries SET destinations_count = 99")
    conn.execute(
        "INSERT INTO travel_itineraries (user_id, data) VALUES (1, '{\"waypoints\": [1]}')"
    )
    # Only the application's own counter, which these writes did not keep, is off.
    assert [(p.check, f"id={first} " in p.detail) for p in verify(app_url, COUNTERS)] == [
        ("legacy counter", True)
    ]
    conn.execute("TRUNCATE chat_messages")
    assert set(stored_message_counts(conn).values()) == {0}


def test_missing_application_tables_stop_the_migration_with_their_names(empty_url):
    url = empty_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE chat_threads (id bigint PRIMARY KEY, user_id bigint)")
        with pytest.raises(MigrationError) as caught:
            migrate(url, COUNTERS)
        message = str(caught.value)
        assert "counters/0001_counter_columns failed" in message
        missing = "chat_messages.thread_id, travel_itineraries.data, travel_itineraries.id"
        assert missing in message
        assert "create them first" in message
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'chat_threads'::regclass "
            "AND attname = 'thread_messages_count'"
        ).fetchone() == (0,)
    pending = [r.label for r in status(url, COUNTERS) if r.state == "pending"]
    assert pending[0] == "counters/0001_counter_columns"


def test_an_interrupted_backfill_resumes_where_it_stopped(app_url, conn):
    migrate(app_url, COUNTERS)
    # Back to just before the backfill, with every counter wrong again.
    rollback(app_url, COUNTERS, to="counters/0001")
    conn.execute("ALTER TABLE chat_messages DISABLE TRIGGER USER")
    conn.execute("UPDATE chat_threads SET thread_messages_count = 0")
    conn.execute("ALTER TABLE chat_messages ENABLE TRIGGER USER")
    ids = [r[0] for r in conn.execute("SELECT id FROM chat_threads ORDER BY id")]
    impatient = MigrationSettings(
        sets=COUNTERS.sets, batch_size=4, lock_timeout=0.05, lock_retries=0
    )
    # Another session holds the row of the 15th thread: the batch that
    # reaches it cannot get its lock, and the run stops there.
    with psycopg.connect(app_url) as blocker:
        blocker.execute("SELECT 1 FROM chat_threads WHERE id = %s FOR UPDATE", (ids[14],))
        with pytest.raises(MigrationError) as caught:
            migrate(app_url, impatient)
        message = str(caught.value)
        assert "counters/0002_counter_backfill: no lock within 0.05 s" in message
        assert f"oldest open transaction is pid {blocker.info.backend_pid}" in message
        assert "Run migrate again when it has ended" in message
        blocker.rollback()
    truth = true_message_counts(conn)
    stored = stored_message_counts(conn)
    done = [i for i in ids if stored[i] == truth[i]]
    assert all(stored[i] == truth[i] for i in ids[:12])
    assert any(stored[i] != truth[i] for i in ids[12:])
    saved = conn.execute(
        "SELECT last_key FROM feature_gates_backfill_progress "
        "WHERE counter = 'chat_threads.thread_messages_count'"
    ).fetchone()
    assert saved == (str(ids[11]),)
    # A drift planted behind the saved position is not revisited by the resumed
    # backfill, so the audit at the end catches it and names the row.
    conn.execute("UPDATE chat_threads SET thread_messages_count = 999 WHERE id = %s", (ids[2],))
    with pytest.raises(MigrationError) as caught:
        migrate(app_url, COUNTERS)
    message = str(caught.value)
    assert "counter audit failed: 1 rows differ" in message
    planted = f"chat_threads.thread_messages_count id={ids[2]} has 999, truth {truth[ids[2]]}"
    assert planted in message
    assert "repair-counters" in message
    stored = stored_message_counts(conn)
    assert all(stored[i] == truth[i] for i in ids if i != ids[2])
    assert len(done) < len(ids)
    # The repair fixes exactly that row (the counters are not registered yet:
    # it repairs them as counters/0001 made them); the migration then completes.
    assert repair_counters(app_url, COUNTERS, dry_run=True) == {
        "chat_threads.thread_messages_count": 1,
        "travel_itineraries.destinations_count": 0,
    }
    assert repair_counters(app_url, COUNTERS)["chat_threads.thread_messages_count"] == 1
    assert [m.label for m in migrate(app_url, COUNTERS)] == [
        "counters/0002_counter_backfill",
        "counters/0003_counter_indexes",
        "counters/0004_legacy_message_count",
        "counters/0005_registered_counters",
    ]
    assert conn.execute("SELECT count(*) FROM feature_gates_backfill_progress").fetchone() == (0,)


def test_verify_names_drifted_rows_and_repair_fixes_them(app_url, conn):
    migrate(app_url, COUNTERS)
    conn.execute("UPDATE chat_threads SET thread_messages_count = thread_messages_count + 5")
    conn.execute("UPDATE chat_threads SET message_count = 0")
    conn.execute("ALTER TABLE travel_itineraries DISABLE TRIGGER USER")
    conn.execute("UPDATE travel_itineraries SET destinations_count = 3 WHERE data IS NULL")
    conn.execute("ALTER TABLE travel_itineraries ENABLE TRIGGER USER")
    problems = verify(app_url, COUNTERS)
    counter_problems = [p for p in problems if p.check == "counter"]
    assert len(counter_problems) == 22  # 20 threads shown of 30, and both itineraries
    assert "(30 rows of chat_threads differ; run repair-counters)" in counter_problems[0].detail
    assert any(
        "travel_itineraries.destinations_count" in p.detail and "has 3, truth 0" in p.detail
        for p in counter_problems
    )
    # The application's own counter too (the threads with messages; 7 have none).
    legacy = [p.detail for p in problems if p.check == "legacy counter"]
    assert len(legacy) == 20
    assert all(d.endswith("(23 rows of chat_threads differ; run repair-counters)") for d in legacy)
    assert all(d.startswith("chat_threads.message_count id=") for d in legacy)
    drift = {
        "chat_threads.thread_messages_count": 30,
        "travel_itineraries.destinations_count": 2,
        "chat_threads.message_count": 23,
    }
    assert repair_counters(app_url, COUNTERS, dry_run=True) == drift
    assert repair_counters(app_url, COUNTERS) == drift
    assert verify(app_url, COUNTERS) == []
    assert set(repair_counters(app_url, COUNTERS).values()) == {0}
    legacy_counts = dict(conn.execute("SELECT id, message_count FROM chat_threads").fetchall())
    assert legacy_counts == true_message_counts(conn)


def test_verify_reports_a_disabled_or_missing_trigger(app_url, conn):
    migrate(app_url, COUNTERS)
    insert = "feature_gates_count_chat_threads_thread_messages_count_insert"
    conn.execute(f"ALTER TABLE chat_messages DISABLE TRIGGER {insert}")
    problems = [str(p) for p in verify(app_url, COUNTERS)]
    assert problems == [
        f"trigger: trigger {insert} on chat_messages is disabled; "
        "chat_threads.thread_messages_count drifts without it: ALTER TABLE chat_messages "
        f"ENABLE TRIGGER {insert}, then run repair-counters"
    ]
    recount = "feature_gates_count_chat_threads_thread_messages_count_recount"
    conn.execute(f"ALTER TABLE chat_messages ENABLE TRIGGER {insert}")
    conn.execute(f"DROP TRIGGER {recount} ON chat_threads")
    problems = [str(p) for p in verify(app_url, COUNTERS)]
    assert problems == [
        f"trigger: trigger {recount} on chat_threads is missing; "
        "chat_threads.thread_messages_count drifts without it: roll back and migrate the set "
        "that added it, then run repair-counters"
    ]


def test_repair_without_any_counter_says_how_to_add_one(feature_gates_database_url):
    with pytest.raises(MigrationError) as caught:
        repair_counters(feature_gates_database_url)
    assert "no counter is installed in this database" in str(caught.value)
    assert "'feature-gates counter add' (docs/counters.md)" in str(caught.value)
    assert "add 'counters' to FEATURE_GATES_MIGRATION_SETS" in str(caught.value)


def test_rollback_then_migrate_round_trips_with_the_application_rows_intact(app_url, conn):
    before = app_fingerprint(conn)
    migrate(app_url, COUNTERS)
    # The application writes meanwhile, its own counter included.
    conn.execute(
        "WITH t AS (SELECT id FROM chat_threads ORDER BY id LIMIT 3), "
        "m AS (INSERT INTO chat_messages (thread_id, body) SELECT id, 'during' FROM t) "
        "UPDATE chat_threads SET message_count = message_count + 1 WHERE id IN (SELECT id FROM t)"
    )
    during = app_fingerprint(conn)
    assert during != before
    rolled = rollback(app_url, COUNTERS, to=f"core/{LAST_CORE_VERSION}")
    assert [m.label for m in rolled] == [
        "counters/0005_registered_counters",
        "counters/0004_legacy_message_count",
        "counters/0003_counter_indexes",
        "counters/0002_counter_backfill",
        "counters/0001_counter_columns",
    ]
    assert app_fingerprint(conn) == during
    leftovers = conn.execute(
        """
        SELECT (SELECT count(*) FROM pg_attribute WHERE attname IN
                    ('thread_messages_count', 'destinations_count') AND NOT attisdropped),
               (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'feature_gates%'),
               (SELECT count(*) FROM pg_proc WHERE proname LIKE 'feature\\_gates\\_count\\_%'
                    OR proname IN ('feature_gates_counters', 'feature_gates_counter_audit')),
               to_regclass('feature_gates_backfill_progress'),
               (SELECT count(*) FROM feature_gates_counter_registry)
        """
    ).fetchone()
    assert leftovers == (0, 0, 0, None, 0)
    assert [m.label for m in migrate(app_url, COUNTERS)] == [m.label for m in reversed(rolled)]
    assert app_fingerprint(conn) == during
    assert stored_message_counts(conn) == true_message_counts(conn)
    assert verify(app_url, COUNTERS) == []


# -- counter columns and indexes the application already had ---------------------------


def counter_columns(conn):
    """Per counter column: its type, whether it is NOT NULL, its default."""
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid IN ('chat_threads'::regclass, 'travel_itineraries'::regclass)
          AND a.attname IN ('thread_messages_count', 'destinations_count')
          AND NOT a.attisdropped
        """
    ).fetchall()
    return {name: rest for name, *rest in rows}


def counter_indexes(conn):
    rows = conn.execute(
        "SELECT relname, pg_get_indexdef(oid) FROM pg_class "
        "WHERE relname IN ('idx_chat_threads_messages_count', "
        "'idx_travel_itineraries_destinations_count')"
    ).fetchall()
    return dict(rows)


def test_an_existing_counter_column_is_adopted_made_not_null_and_kept(app_url, conn):
    # As the original system's counter migration may have left them: a
    # nullable column with its index, values missing or wrong; another with
    # a default of its own.
    conn.execute("ALTER TABLE chat_threads ADD COLUMN thread_messages_count integer")
    conn.execute(
        "UPDATE chat_threads SET thread_messages_count = 3 "
        "WHERE id IN (SELECT id FROM chat_threads ORDER BY id LIMIT 5)"
    )
    conn.execute(
        "CREATE INDEX idx_chat_threads_messages_count "
        "ON chat_threads (user_id, thread_messages_count)"
    )
    conn.execute("ALTER TABLE travel_itineraries ADD COLUMN destinations_count integer DEFAULT 5")
    conn.execute("UPDATE travel_itineraries SET destinations_count = NULL WHERE data IS NULL")
    before_columns, before_indexes = counter_columns(conn), counter_indexes(conn)
    own_index = before_indexes["idx_chat_threads_messages_count"]
    before = app_fingerprint(conn)

    migrate(app_url, COUNTERS)
    assert counter_columns(conn) == {
        "thread_messages_count": ["integer", True, "0"],
        "destinations_count": ["integer", True, "0"],
    }
    assert stored_message_counts(conn) == true_message_counts(conn)
    assert counter_indexes(conn)["idx_chat_threads_messages_count"] == own_index
    assert "idx_travel_itineraries_destinations_count" in counter_indexes(conn)
    assert verify(app_url, COUNTERS) == []
    # No check of feature-gates' is left behind.
    checks = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'c' AND conrelid IN "
        "('chat_threads'::regclass, 'travel_itineraries'::regclass)"
    ).fetchone()
    assert checks == (0,)

    rollback(app_url, COUNTERS, everything=True)
    # The columns and the index the application had are there as they were,
    # with their exact values; the index feature-gates built is gone.
    assert counter_columns(conn) == before_columns
    assert counter_indexes(conn) == before_indexes
    assert stored_message_counts(conn) == true_message_counts(conn)
    assert app_fingerprint(conn) == before

    assert len(migrate(app_url, COUNTERS)) == len(COUNTERS.load())
    assert counter_indexes(conn)["idx_chat_threads_messages_count"] == own_index
    assert verify(app_url, COUNTERS) == []


def test_verify_reports_a_counter_column_that_allows_null(app_url, conn):
    migrate(app_url, COUNTERS)
    conn.execute("ALTER TABLE chat_threads ALTER COLUMN thread_messages_count DROP NOT NULL")
    problems = [str(p) for p in verify(app_url, COUNTERS)]
    assert problems == [
        "column: chat_threads.thread_messages_count is integer NULL DEFAULT 0; the counter "
        "must be integer NOT NULL DEFAULT 0: ALTER TABLE chat_threads ALTER COLUMN "
        "thread_messages_count SET NOT NULL"
    ]


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        (
            "ALTER TABLE chat_threads ADD COLUMN thread_messages_count text",
            "chat_threads.thread_messages_count exists as text, not integer",
        ),
        (
            "ALTER TABLE chat_threads ADD COLUMN thread_messages_count integer; "
            "CREATE INDEX idx_chat_threads_messages_count ON chat_threads (thread_messages_count)",
            "idx_chat_threads_messages_count (CREATE INDEX idx_chat_threads_messages_count ON "
            "public.chat_threads USING btree (thread_messages_count)) is not an index on "
            "chat_threads (user_id, thread_messages_count, ...)",
        ),
    ],
)
def test_an_existing_counter_column_or_index_that_cannot_serve_is_refused(
    empty_url, existing, message
):
    create_app_tables(empty_url)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(existing)
        before = counter_columns(conn)
        with pytest.raises(MigrationError) as caught:
            migrate(empty_url, COUNTERS)
        assert message in str(caught.value)
        assert "rename it or drop it" in str(caught.value)
        assert counter_columns(conn) == before
