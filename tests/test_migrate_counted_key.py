"""The counted key's migrations (core/0020 to 0022): a database of the released
schema upgrades with every count kept while it takes writes, the rollback
returns to exactly that schema with users' monthly counts, an application's
own unique key is replaced and given back; and, read statically, every
statement the runtime sends to the usage tables is keyed by the counted
subject."""

from __future__ import annotations

import importlib.resources
import re
import threading
from pathlib import Path

import psycopg
import pytest

from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate
from feature_gates.migrate import rollback
from feature_gates.migrate import verify
from feature_gates.migrate.sqltext import split_statements
from tests.released_schema import RELEASED_LAST
from tests.released_schema import released_core

CORE = MigrationSettings(sets=("core",))
RELEASED = released_core()
#: The core's versions newer than the released set, oldest first.
SINCE_RELEASE = [m.version for m in CORE.load() if int(m.version) > RELEASED_LAST]
ROOT = Path(__file__).resolve().parent.parent


def scalar(conn, query, params=None):
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


@pytest.fixture
def released_url(feature_gates_databases):
    url = feature_gates_databases.create(RELEASED)
    yield url
    feature_gates_databases.drop(url)


SEED = """
SELECT increment_feature_usage_safe(u, f, u * 3, p)
FROM generate_series(1, 40) AS u,
     unnest(ARRAY['api_calls', 'exports']) AS f,
     unnest(ARRAY['2000-01-01', '2099-01-01', '2099-02-01']::date[]) AS p;
SELECT * FROM write_feature_usage_batch(
    gen_random_uuid(), '{}', ARRAY[1, 2]::feature_usage_user_id[],
    ARRAY['api_calls', 'api_calls'], ARRAY[5, 6]::bigint[],
    ARRAY['2099-02-01', '2099-02-01']::date[], ARRAY['job-1', 'job-2']);
SELECT archive_old_feature_usage(6);
"""


def snapshot(conn):
    """Every count, archived count and idempotency key of a database."""
    return (
        conn.execute(
            "SELECT user_id, feature, period_start, usage_count FROM feature_usage ORDER BY 1, 2, 3"
        ).fetchall(),
        conn.execute(
            "SELECT user_id, feature, period_start, usage_count FROM feature_usage_archive "
            "ORDER BY 1, 2, 3"
        ).fetchall(),
        conn.execute(
            "SELECT user_id, feature, idempotency_key FROM feature_usage_idempotency "
            "ORDER BY 1, 2, 3"
        ).fetchall(),
    )


def test_a_released_database_upgrades_online_with_every_count_kept(released_url):
    with psycopg.connect(released_url, autocommit=True) as conn:
        conn.execute(SEED)
        before = snapshot(conn)
        assert len(before[1]) == 80  # the year 2000 was archived
    # An application keeps counting while the upgrade runs.
    written = 0
    stop = threading.Event()
    failures: list[BaseException] = []

    def count_on() -> None:
        nonlocal written
        with psycopg.connect(released_url, autocommit=True) as app:
            while not stop.is_set():
                try:
                    app.execute("SELECT increment_feature_usage_safe(7, 'live', 1, '2099-02-01')")
                    app.execute("SELECT consume_feature_usage(8, 'live', 1, 1000000, '2099-02-01')")
                    written += 1
                except BaseException as exc:
                    failures.append(exc)
                    return

    writer = threading.Thread(target=count_on)
    writer.start()
    try:
        applied = migrate(released_url, CORE)
    finally:
        stop.set()
        writer.join()
    assert failures == []
    assert [m.version for m in applied] == SINCE_RELEASE
    with psycopg.connect(released_url, autocommit=True) as conn:
        live = conn.execute(
            "SELECT user_id, usage_count FROM feature_usage WHERE feature = 'live' ORDER BY 1"
        ).fetchall()
        assert live == [(7, written), (8, written)]
        conn.execute("DELETE FROM feature_usage WHERE feature = 'live'")
        assert snapshot(conn) == before
        # Every old row reads as a user's count of the calendar month in UTC.
        kinds = conn.execute("SELECT DISTINCT scope, period, period_offset FROM feature_usage")
        assert kinds.fetchall() == [("user", "month", 0)]
        assert scalar(conn, "SELECT get_feature_usage(2, 'api_calls', '2099-02-01')") == 12
        # The keys recorded before still count once.
        again = conn.execute(
            "SELECT * FROM write_feature_usage_batch(gen_random_uuid(), '{}', "
            "ARRAY[1]::feature_usage_user_id[], ARRAY['api_calls'], ARRAY[5]::bigint[], "
            "ARRAY['2099-02-01']::date[], ARRAY['job-1'])"
        )
        assert again.fetchall() == []
    assert verify(released_url, CORE) == []


def _schema(conn):
    """What the released schema is made of, as the catalog says it."""
    tables = conn.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_class c "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'm') "
        "AND c.relname <> 'feature_gates_schema_history' ORDER BY 1, 2"
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
    ).fetchall()
    functions = conn.execute(
        "SELECT pg_get_functiondef(oid) FROM pg_proc "
        "WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
    ).fetchall()
    return tables, indexes, constraints, functions


def test_rollback_returns_to_the_released_schema_with_users_monthly_counts(
    db, feature_gates_database_url, released_url
):
    db.execute("SELECT increment_feature_usage_safe(1, 'api_calls', 5, '2026-02-01')")
    db.execute(
        "SELECT feature_usage_consume(1, 'api_calls', 'user', 'day', '2026-02-01', 0, NULL, 2, 9)"
    )
    db.execute(
        "SELECT feature_usage_consume(1, 'api_calls', 'org', 'month', '2026-02-01', 0, NULL, 3, "
        "9, 4, 5)"
    )
    db.execute(
        "SELECT * FROM feature_usage_increment_many(ARRAY[1, 1]::feature_usage_user_id[], "
        "ARRAY['x', 'x'], ARRAY['user', 'org'], ARRAY['month', 'month'], "
        "ARRAY['2026-02-01', '2026-02-01']::date[], ARRAY[0, 0], NULL, NULL, NULL, "
        "ARRAY[1, 1]::bigint[], ARRAY['k', 'k'])"
    )
    rolled = rollback(feature_gates_database_url, CORE, to="0008")
    assert [m.version for m in rolled] == SINCE_RELEASE[::-1]
    (swap,) = [m for m in rolled if m.version == "0022"]
    assert "DELETES every count that is not a user's count" in swap.rollback_effect
    with psycopg.connect(released_url, autocommit=True) as released:
        assert _schema(db) == _schema(released)
    assert db.execute(
        "SELECT user_id, feature, period_start::text, usage_count FROM feature_usage ORDER BY 2"
    ).fetchall() == [(1, "api_calls", "2026-02-01", 5), (1, "x", "2026-02-01", 1)]
    assert db.execute(
        "SELECT user_id, idempotency_key FROM feature_usage_idempotency"
    ).fetchall() == [(1, "k")]
    # And it upgrades again.
    migrate(feature_gates_database_url, CORE)
    assert verify(feature_gates_database_url, CORE) == []


LEGACY = """
CREATE TABLE feature_usage (
    id serial PRIMARY KEY,
    user_id integer NOT NULL,
    feature varchar(100) NOT NULL,
    period_start date NOT NULL,
    usage_count integer NOT NULL DEFAULT 0,
    CONSTRAINT feature_usage_user_feature_period_key UNIQUE (user_id, feature, period_start)
);
CREATE UNIQUE INDEX legacy_by_feature ON feature_usage (feature, user_id, period_start);
INSERT INTO feature_usage (user_id, feature, period_start, usage_count)
VALUES (1, 'api_calls', '2026-01-01', 10), (2, 'api_calls', '2026-01-01', 3);
"""


def _own_keys(conn):
    return conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'feature_usage' "
        "AND indexname IN ('feature_usage_user_feature_period_key', 'legacy_by_feature') "
        "ORDER BY 1"
    ).fetchall()


def test_an_adopted_tables_own_unique_keys_are_replaced_and_given_back(empty_url, caplog):
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute(LEGACY)
        keys = _own_keys(conn)
        assert len(keys) == 2
        migrate(empty_url, CORE)
        assert _own_keys(conn) == []
        recorded = conn.execute("SELECT index_name FROM feature_gates_replaced_keys ORDER BY 1")
        assert recorded.fetchall() == [
            ("feature_usage_user_feature_period_key",),
            ("legacy_by_feature",),
        ]
        # A day's count beside the month's, on the application's table.
        conn.execute(
            "SELECT feature_usage_consume(1, 'api_calls', 'user', 'day', '2026-01-01', 0, NULL, "
            "2, 9)"
        )
        assert scalar(conn, "SELECT get_feature_usage(1, 'api_calls', '2026-01-01')") == 10
        rollback(empty_url, CORE, to="0008")
        assert _own_keys(conn) == keys
        assert conn.execute(
            "SELECT user_id, usage_count FROM feature_usage ORDER BY id"
        ).fetchall() == [(1, 10), (2, 3)]
    assert verify(empty_url, RELEASED) == []


# -- every statement on the usage tables is keyed by the counted subject ---------------

#: The tables a distributed database splits by the counted subject.
USAGE_TABLES = (
    "feature_usage",
    "feature_usage_members",
    "feature_usage_idempotency",
    "feature_usage_holds",
    "feature_usage_grants",
    "feature_usage_ledger",
)
#: A statement on them names its subject: user_id (the user, or an organisation
#: for its pool) or org_id (member shares) equal to a parameter, a variable or a
#: row of the input; an insert (or upsert) carries its subject in the rows it
#: inserts, its first column.
KEYED = re.compile(
    r"\b(?:\w+\.)?(?:user_id|org_id)\s*=\s*(?:ANY\s*\(\s*)?(?:p_\w+|%s|%\(\w+\)s|v_\w+\.\w+|\w+\.subject)",
    re.IGNORECASE,
)
UPSERT = re.compile(
    r"\bON\s+CONFLICT\s*\(\s*(?:user_id|org_id)\b"
    r"|\bINSERT\s+INTO\s+\w+(?:\s+AS\s+\w+)?\s*\(\s*(?:user_id|org_id)\b",
    re.IGNORECASE,
)
#: What every subject's rows at once may be: a maintenance job or a report, never
#: a request's statement; it says so in a comment.
ALL_SUBJECTS = "-- all subjects:"
#: Functions of the released files that work on every subject, for cron.
RELEASED_MAINTENANCE = {"prune_feature_usage_idempotency", "refresh_feature_usage_summary"}
_TABLE_USE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(?:ONLY\s+)?(?:\{schema\}\.|\w+\.)?("
    + "|".join(USAGE_TABLES)
    + r")\b(?!\s*\()",
    re.IGNORECASE,
)
_FUNCTION = re.compile(
    r"CREATE\s+OR\s+REPLACE\s+FUNCTION\s+(\w+)\s*\((.*?)\)\s*(?:RETURNS|LANGUAGE).*?AS\s+\$\$(.*?)\$\$",
    re.IGNORECASE | re.DOTALL,
)


def _latest_functions() -> dict[tuple[str, str], str]:
    """The body of each function as the last core migration that defines it has it."""
    core = importlib.resources.files("feature_gates.migrations").joinpath("core")
    bodies: dict[tuple[str, str], str] = {}
    for entry in sorted(core.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".up.sql"):
            continue
        for name, arguments, body in _FUNCTION.findall(entry.read_text(encoding="utf-8")):
            bodies[(name, " ".join(arguments.split()))] = body
    return bodies


def _store_statements() -> list[tuple[str, str]]:
    """The runtime's statements, as the storage module writes them."""
    module = ROOT / "feature_gates" / "core" / "_storage" / "statements.py"
    text = module.read_text(encoding="utf-8")
    found = re.findall(r'^(\w+) = sql\.SQL\("""(.*?)"""\)', text, re.MULTILINE | re.DOTALL)
    found += re.findall(r'^(\w+) = sql\.SQL\("([^"].*)"\)$', text, re.MULTILINE)
    assert len(found) >= 10, "the statements module changed shape: read it here again"
    return [(f"statements.py:{name}", sql) for name, sql in found]


def _unkeyed(where: str, sql: str) -> list[str]:
    problems = []
    for statement in split_statements(sql):
        if not _TABLE_USE.search(statement) or ALL_SUBJECTS in statement:
            continue
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            continue
        if KEYED.search(statement) or UPSERT.search(statement):
            continue
        problems.append(f"{where}: {' '.join(statement.split())[:160]}")
    return problems


def test_every_runtime_statement_on_the_usage_tables_is_keyed_by_the_counted_subject():
    functions = _latest_functions()
    assert {"feature_usage_consume", "feature_usage_increment_many"} <= {n for n, _ in functions}
    problems = []
    for (name, _), body in sorted(functions.items()):
        if name not in RELEASED_MAINTENANCE:
            problems += _unkeyed(f"function {name}", body)
    for where, sql in _store_statements():
        problems += _unkeyed(where, sql)
    assert problems == []


def test_the_subject_key_check_finds_an_unkeyed_statement():
    assert _unkeyed("x", "UPDATE feature_usage SET usage_count = 0 WHERE feature = p_feature")
    assert _unkeyed("x", "SELECT count(*) FROM feature_usage_members WHERE period = 'day'")
    assert not _unkeyed("x", "SELECT 1 FROM feature_usage fu WHERE fu.user_id = p_subject")
    assert not _unkeyed("x", "INSERT INTO feature_usage_holds AS h (user_id, feature) VALUES (1)")
    assert _unkeyed("x", "INSERT INTO feature_usage_holds AS h (feature, user_id) VALUES ('a')")
    assert not _unkeyed("x", "-- all subjects: a report\nSELECT count(*) FROM feature_usage")


def _function_text(path: Path, name: str) -> str:
    text = path.read_text()
    start = text.index(f"CREATE OR REPLACE FUNCTION {name}(")
    return text[start : text.index("\n$$;", start)]


def test_the_planned_batch_function_rolls_back_to_what_0021_wrote(db, feature_gates_database_url):
    """0025 replaces the writer's function in place (same arguments, same results);
    its rollback puts 0021's body back, text for text, and the writer writes on
    through either."""
    core = ROOT / "migrations" / "core"
    name = "feature_usage_increment_many"
    assert _function_text(
        core / "0025_feature_usage_increment_many_planned.down.sql", name
    ) == _function_text(core / "0021_feature_usage_counted_functions.up.sql", name)
    definition = f"SELECT pg_get_functiondef('{name}'::regproc)"
    batch = (
        "SELECT coalesce(sum(increment), 0) FROM feature_usage_write_batch("
        "gen_random_uuid(), '{}', ARRAY[1, 1, 2]::feature_usage_user_id[], "
        "ARRAY['x', 'x', 'x'], ARRAY['user', 'user', 'user'], ARRAY['month', 'month', 'day'], "
        "ARRAY['2026-02-01', '2026-02-01', '2026-02-01']::date[], ARRAY[0, 0, 0], NULL, "
        "NULL, NULL, ARRAY[1, 2, 3]::bigint[], ARRAY[NULL, %s, %s])"
    )
    assert "force_custom_plan" in scalar(db, definition)
    assert scalar(db, batch, ("k", "k")) == 6
    rolled = rollback(feature_gates_database_url, CORE, to="0024")
    assert rolled[-1].version == "0025"  # after any newer migration
    assert "force_custom_plan" not in scalar(db, definition)
    assert scalar(db, batch, ("k", "k")) == 1  # the keys were recorded: once only
    assert [m.version for m in migrate(feature_gates_database_url, CORE)] == [
        m.version for m in reversed(rolled)
    ]
    assert scalar(db, batch, ("k", "j")) == 4  # user 2's key 'j' is new
    assert db.execute(
        "SELECT user_id, period, usage_count FROM feature_usage WHERE feature = 'x' ORDER BY 1"
    ).fetchall() == [(1, "month", 5), (2, "day", 6)]
