"""The bundled counters set is the generated form of its two counters: applied, it
yields the schema `feature-gates counter add` writes for them, and a database
that applied the set before (counters 0001-0004) moves to it while the
application writes."""

from __future__ import annotations

import importlib.resources
import random
import threading
import time

import psycopg
import pytest
from app_schema import create_app_tables
from app_schema import stored_message_counts
from app_schema import true_message_counts
from psycopg.types.json import Jsonb

from feature_gates.migrate import CounterDefinition
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import add_counter
from feature_gates.migrate import migrate
from feature_gates.migrate import verify

BUNDLED = MigrationSettings(sets=("core", "counters"))
#: What the generator is told for the seed's two counters (the bundled set
#: keeps the names its indexes had).
GENERATED = [
    CounterDefinition(
        "chat_threads.thread_messages_count",
        rows="chat_messages.thread_id",
        index="(user_id, thread_messages_count)",
        index_name="idx_chat_threads_messages_count",
    ),
    CounterDefinition(
        "travel_itineraries.destinations_count",
        jsonb_length="data.waypoints",
        index="(user_id, destinations_count)",
        index_name="idx_travel_itineraries_destinations_count",
    ),
]
TABLES = ("chat_threads", "chat_messages", "travel_itineraries")


@pytest.fixture
def two_databases(feature_gates_databases):
    urls = [feature_gates_databases.create(None) for _ in range(2)]
    yield urls
    for url in urls:
        feature_gates_databases.drop(url)


def schema(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """What the counters make of the application's tables: their columns,
    constraints, triggers (with their functions' definitions), indexes, and the
    registry's rows."""
    tables = list(TABLES)
    return {
        "columns": conn.execute(
            """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relname = ANY (%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2
            """,
            (tables,),
        ).fetchall(),
        "constraints": conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid::regclass::text = ANY (%s) ORDER BY 1, 2",
            (tables,),
        ).fetchall(),
        "triggers": conn.execute(
            "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(t.oid), tgenabled, "
            "pg_get_functiondef(tgfoid) FROM pg_trigger t "
            "WHERE NOT tgisinternal AND tgrelid::regclass::text = ANY (%s) ORDER BY 1, 2",
            (tables,),
        ).fetchall(),
        "indexes": conn.execute(
            "SELECT indrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid::regclass::text = ANY (%s) ORDER BY 1, 2",
            (tables,),
        ).fetchall(),
        "registry": conn.execute(
            "SELECT to_jsonb(r) - 'registered_at' FROM feature_gates_counter_registry r "
            "ORDER BY counter"
        ).fetchall(),
    }


def workload(conn: psycopg.Connection, seed: int) -> None:
    """The same writes on either database: every way a message or a waypoint
    comes and goes."""
    rng = random.Random(seed)
    threads = [r[0] for r in conn.execute("SELECT id FROM chat_threads ORDER BY id")]
    for step in range(120):
        a, b = rng.sample(threads, 2)
        action = step % 6
        if action == 0:
            conn.execute(
                "INSERT INTO chat_messages (thread_id, body) "
                "SELECT t, 'w' FROM unnest(%s::bigint[]) t",
                ([a, b, a],),
            )
        elif action == 1:
            conn.execute(
                "DELETE FROM chat_messages WHERE id IN "
                "(SELECT id FROM chat_messages WHERE thread_id = %s ORDER BY id LIMIT 2)",
                (a,),
            )
        elif action == 2:
            conn.execute(
                "UPDATE chat_messages SET thread_id = %s WHERE id IN "
                "(SELECT id FROM chat_messages WHERE thread_id = %s ORDER BY id LIMIT 3)",
                (b, a),
            )
        elif action == 3:
            conn.execute(
                "INSERT INTO chat_threads (user_id, title, thread_messages_count) "
                "VALUES (1, 'new', 5)"
            )
        elif action == 4:
            waypoints = [{"city": str(i)} for i in range(rng.randrange(4))]
            conn.execute(
                "UPDATE travel_itineraries SET data = %s, destinations_count = 9 WHERE id IN "
                "(SELECT id FROM travel_itineraries ORDER BY id OFFSET %s LIMIT 1)",
                (Jsonb({"waypoints": waypoints}), step % 20),
            )
        elif step == 101:
            conn.execute("TRUNCATE chat_messages")
        else:
            conn.execute(
                "INSERT INTO travel_itineraries (user_id, data) VALUES (1, %s)",
                (Jsonb(rng.choice([None, {"waypoints": [1, 2]}, {"waypoints": "x"}])),),
            )


def counters(conn: psycopg.Connection) -> tuple:
    return (
        conn.execute("SELECT id, thread_messages_count FROM chat_threads ORDER BY id").fetchall(),
        conn.execute(
            "SELECT id, destinations_count FROM travel_itineraries ORDER BY id"
        ).fetchall(),
    )


def test_the_bundled_set_yields_the_schema_the_generator_writes(two_databases, tmp_path):
    bundled, generated = two_databases
    for url in two_databases:
        create_app_tables(url)
    migrate(bundled, BUNDLED)
    migrate(generated, MigrationSettings(sets=("core",)))
    out = tmp_path / "generated"
    for definition in GENERATED:
        add_counter(generated, definition, out)
    app = MigrationSettings(sets=("core", "app"), folders={"app": out})
    migrate(generated, app)

    with psycopg.connect(bundled, autocommit=True) as one:
        with psycopg.connect(generated, autocommit=True) as other:
            ours, theirs = schema(one), schema(other)
            assert len(ours["triggers"]) == 6
            assert len(ours["registry"]) == 2
            for part in ours:
                assert ours[part] == theirs[part], part
            # And they count alike, exactly.
            workload(one, seed=5)
            workload(other, seed=5)
            assert counters(one) == counters(other)
            assert stored_message_counts(one) == true_message_counts(one)
    # Beyond the generated form, the bundled set audits the application's
    # legacy message_count, which these writes did not keep.
    assert {p.check for p in verify(bundled, BUNDLED)} == {"legacy counter"}
    assert verify(generated, app) == []


def _former_sets(tmp_path):
    """The bundled sets as they were before the counter registry: core
    0001-0008, counters 0001-0004 (the same files, so the same checksums)."""
    folders = {}
    for set_name, last in (("core", 8), ("counters", 4)):
        folder = tmp_path / set_name
        folder.mkdir()
        source = importlib.resources.files("feature_gates.migrations").joinpath(set_name)
        for entry in source.iterdir():
            version = entry.name.split("_", 1)[0]
            if entry.name == "verify.sql" or (version.isdigit() and int(version) <= last):
                if not entry.name.endswith(".verify.sql"):
                    (folder / entry.name).write_text(entry.read_text())
        folders[set_name] = folder
    return MigrationSettings(sets=("core", "counters"), folders=folders)


class _Writer(threading.Thread):
    """The application: messages in and out of random threads (its legacy
    message_count moved in the same transaction), itineraries rewritten, each
    write timed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.longest = 0.0
        self.writes = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        rng = random.Random(3)
        try:
            # Unprepared, each statement locks chat_messages before chat_threads, the
            # order counters/0005 takes them in. psycopg prepares a statement run 5
            # times, and a prepared one locks chat_threads first: against a writer
            # with no pause, that is a lock cycle at nearly every try of 0005, which
            # gives way each time (docs/migrations.md, counters/0005).
            with psycopg.connect(self.url, autocommit=True, prepare_threshold=None) as conn:
                threads = [r[0] for r in conn.execute("SELECT id FROM chat_threads")]
                while not self._stopping.is_set():
                    started = time.perf_counter()
                    thread = rng.choice(threads)
                    if self.writes % 3 == 0:
                        conn.execute(
                            "WITH m AS (INSERT INTO chat_messages (thread_id, body) "
                            "VALUES (%(t)s, 'w') RETURNING thread_id) "
                            "UPDATE chat_threads SET message_count = message_count + 1 "
                            "WHERE id IN (SELECT thread_id FROM m)",
                            {"t": thread},
                        )
                    elif self.writes % 3 == 1:
                        conn.execute(
                            "WITH m AS (DELETE FROM chat_messages WHERE id = "
                            "(SELECT max(id) FROM chat_messages WHERE thread_id = %(t)s) "
                            "RETURNING thread_id) "
                            "UPDATE chat_threads SET message_count = message_count - 1 "
                            "WHERE id IN (SELECT thread_id FROM m)",
                            {"t": thread},
                        )
                    else:
                        conn.execute(
                            "UPDATE travel_itineraries SET data = %s WHERE id = "
                            "(SELECT id FROM travel_itineraries ORDER BY random() LIMIT 1)",
                            (Jsonb({"waypoints": list(range(rng.randrange(5)))}),),
                        )
                    self.longest = max(self.longest, time.perf_counter() - started)
                    self.writes += 1
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def test_a_database_that_applied_the_former_set_upgrades_while_the_application_writes(
    empty_url, tmp_path
):
    url = empty_url
    create_app_tables(url, threads=200)
    before = migrate(url, _former_sets(tmp_path))
    assert before[-1].label == "counters/0004_legacy_message_count"
    writer = _Writer(url)
    writer.start()
    time.sleep(0.3)
    try:
        applied = migrate(url, BUNDLED)
        time.sleep(0.3)
    finally:
        writer.stop()
    assert writer.error is None
    assert writer.writes > 0
    # The core's migrations since the former set (the registry first), then the move.
    labels = [m.label for m in applied]
    assert labels[0] == "core/0009_counter_registry"
    assert all(label.startswith("core/") for label in labels[:-1])
    assert labels[-1] == "counters/0005_registered_counters"
    with psycopg.connect(url, autocommit=True) as conn:
        assert stored_message_counts(conn) == true_message_counts(conn)
        registry = conn.execute(
            "SELECT counter, had_column, had_index FROM feature_gates_counter_registry "
            "ORDER BY counter"
        ).fetchall()
    assert registry == [
        ("chat_threads.thread_messages_count", False, False),
        ("travel_itineraries.destinations_count", False, False),
    ]
    assert verify(url, BUNDLED) == []
