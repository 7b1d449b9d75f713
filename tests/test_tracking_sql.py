"""The SQL behind the tracker: many-row increments, idempotency keys, batch ids."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from importlib.resources import files

import psycopg
import pytest

from feature_gates.core._storage.statements import Statements
from tests.released_schema import released_core

NOV = date(2026, 11, 1)
#: The runtime's statements, without a statement timeout: sent as plain statements here.
STATEMENTS = Statements.build("public", 0)

BULK = """
SELECT user_id, feature, period_start, increment, usage_count
FROM increment_feature_usage_safe(%s::feature_usage_user_id[], %s::text[], %s::bigint[],
                                  %s::date[], %s::text[])
ORDER BY user_id, feature, period_start
"""


def bulk(db, rows, keys=None):
    user_ids, features, amounts, periods = (list(column) for column in zip(*rows, strict=True))
    return db.execute(BULK, (user_ids, features, amounts, periods, keys)).fetchall()


def write_batch(db, batch_id, rows, forget=()):
    """The writer's statement for users' calendar months in UTC (the default kind);
    (user_id, feature, period_start, increment, usage_count) per key written."""
    user_ids, features, amounts, periods = (list(column) for column in zip(*rows, strict=True))
    none = [None] * len(rows)
    params = (
        batch_id,
        list(forget),
        [str(u) for u in user_ids],
        features,
        ["user"] * len(rows),
        ["month"] * len(rows),
        periods,
        [0] * len(rows),
        none,
        none,
        amounts,
        None,
    )
    written = db.execute(STATEMENTS.write_batch, params).fetchall()
    return [(r[0], r[2], r[5], r[7], r[8]) for r in written]


def usage(db, user_id, feature, period=NOV):
    row = db.execute("SELECT get_feature_usage(%s, %s, %s)", (user_id, feature, period)).fetchone()
    return row[0]


def test_bulk_increment_adds_up_repeated_keys_and_returns_new_totals(db):
    db.execute("SELECT increment_feature_usage_safe(1, 'exports', 10, %s)", (NOV,))
    rows = bulk(db, [(1, "exports", 2, NOV), (2, "exports", 1, NOV), (1, "exports", 3, NOV)])
    assert rows == [(1, "exports", NOV, 5, 15), (2, "exports", NOV, 1, 1)]


@pytest.mark.parametrize(
    ("rows", "keys", "message"),
    [
        ([(1, "Exports", 1, NOV)], None, "invalid feature name"),
        ([(1, "exports", 0, NOV)], None, "increment must be a positive integer"),
        ([(None, "exports", 1, NOV)], None, "user_id must not be NULL"),
        ([(1, "exports", 1, None)], None, "period_start must not be NULL"),
        ([(1, "exports", 1, NOV)], ["k" * 256], "idempotency key must be 1 to 255"),
        ([(1, "exports", 1, NOV)], ["a", "b"], "same length"),
    ],
)
def test_bulk_increment_refuses_bad_input_with_22023(db, rows, keys, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        bulk(db, rows, keys)
    assert db.execute("SELECT count(*) FROM feature_usage").fetchone() == (0,)


def test_a_key_counts_once_per_user_and_feature(db):
    rows = [
        (1, "emails", 2, NOV),
        (1, "emails", 2, NOV),
        (1, "texts", 1, NOV),
        (2, "emails", 1, NOV),
    ]
    assert bulk(db, rows, ["job", "job", "job", "job"]) == [
        (1, "emails", NOV, 2, 2),
        (1, "texts", NOV, 1, 1),
        (2, "emails", NOV, 1, 1),
    ]
    # Sent again (a retried job): nothing counts, nothing is returned.
    assert bulk(db, rows, ["job", "job", "job", "job"]) == []
    # Rows without a key in the same call still count.
    assert bulk(db, [(1, "emails", 2, NOV), (1, "emails", 5, NOV)], ["job", None]) == [
        (1, "emails", NOV, 5, 7)
    ]


def test_a_batch_is_written_once_under_its_id(db):
    first = uuid.uuid4()
    assert write_batch(db, first, [(1, "exports", 3, NOV)]) == [(1, "exports", NOV, 3, 3)]
    assert write_batch(db, first, [(1, "exports", 3, NOV)]) == []
    assert usage(db, 1, "exports") == 3
    # The next batch deletes the record of the first, once the writer saw it committed.
    write_batch(db, uuid.uuid4(), [(1, "exports", 1, NOV)], forget=[first])
    ids = db.execute("SELECT batch_id FROM feature_usage_batches").fetchall()
    assert first not in [row[0] for row in ids] and len(ids) == 1


def test_resolving_a_batch_that_never_arrived_keeps_it_out_for_good(db):
    lost = uuid.uuid4()
    assert db.execute(STATEMENTS.resolve_batch, (lost,)).fetchone() == (False,)
    # It turns up late: it writes nothing, and the answer does not change.
    assert write_batch(db, lost, [(1, "exports", 3, NOV)]) == []
    assert usage(db, 1, "exports") == 0
    assert db.execute(STATEMENTS.resolve_batch, (lost,)).fetchone() == (False,)


def test_resolving_a_batch_still_in_flight_waits_for_its_outcome(db, feature_gates_database_url):
    batch_id = uuid.uuid4()
    answers = []
    with psycopg.connect(feature_gates_database_url) as writer:  # a transaction left open
        write_batch(writer, batch_id, [(1, "exports", 3, NOV)])

        def resolve():
            with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
                answers.append(conn.execute(STATEMENTS.resolve_batch, (batch_id,)).fetchone()[0])

        resolver = threading.Thread(target=resolve)
        resolver.start()
        # The resolver blocks on the writer's uncommitted row: wait until it does.
        for _ in range(600):
            waiting = db.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ("%resolve_feature_usage_batch%",),
            ).fetchone()
            if waiting == (1,):
                break
            threading.Event().wait(0.05)
        assert waiting == (1,) and answers == []
        writer.commit()
        resolver.join(30)
    assert answers == [True]
    assert usage(db, 1, "exports") == 3


def test_prune_deletes_only_what_is_older_than_the_retention(db):
    bulk(db, [(1, "emails", 1, NOV), (1, "emails", 1, NOV)], ["old", "new"])
    write_batch(db, uuid.uuid4(), [(1, "exports", 1, NOV)])
    db.execute(
        "UPDATE feature_usage_idempotency SET recorded_at = now() - interval '31 days' "
        "WHERE idempotency_key = 'old'"
    )
    db.execute("UPDATE feature_usage_batches SET recorded_at = now() - interval '40 days'")
    assert db.execute("SELECT prune_feature_usage_idempotency(30)").fetchone() == (2,)
    assert db.execute("SELECT idempotency_key FROM feature_usage_idempotency").fetchall() == [
        ("new",)
    ]
    # A pruned key counts again.
    assert bulk(db, [(1, "emails", 1, NOV)], ["old"]) == [(1, "emails", NOV, 1, 3)]
    for days in (0, 365_001, None):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="keep_days must be"):
            db.execute("SELECT prune_feature_usage_idempotency(%s::integer)", (days,))


def test_the_migrations_roll_back_and_apply_again(feature_gates_databases):
    # The files as 0.1.0 released them, on the schema they were written for.
    url = feature_gates_databases.create(released_core())
    core = files("feature_gates.migrations") / "core"
    with psycopg.connect(url, autocommit=True) as db:
        for name in ("0008_feature_usage_bulk_increment", "0007_feature_usage_idempotency"):
            db.execute((core / f"{name}.down.sql").read_text())
        assert db.execute("SELECT to_regclass('feature_usage_batches')").fetchone() == (None,)
        for name in ("0007_feature_usage_idempotency", "0008_feature_usage_bulk_increment"):
            db.execute((core / f"{name}.up.sql").read_text())
            db.execute((core / f"{name}.up.sql").read_text())  # and again: idempotent
        batch = db.execute(
            "SELECT user_id, feature, period_start, increment, usage_count "
            "FROM write_feature_usage_batch(%s, '{}', ARRAY[1]::feature_usage_user_id[], "
            "ARRAY['exports'], ARRAY[1]::bigint[], ARRAY[%s]::date[])",
            (uuid.uuid4(), NOV),
        ).fetchall()
        assert batch == [(1, "exports", NOV, 1, 1)]
    feature_gates_databases.drop(url)


def test_uuid_user_ids(feature_gates_databases):
    from feature_gates.migrate import MigrationSettings

    url = feature_gates_databases.create(MigrationSettings(user_id_type="uuid"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            user = uuid.uuid4()
            assert write_batch(conn, uuid.uuid4(), [(user, "exports", 2, NOV)]) == [
                (user, "exports", NOV, 2, 2)
            ]
    finally:
        feature_gates_databases.drop(url)
