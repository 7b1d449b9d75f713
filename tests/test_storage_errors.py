"""Only an outage is an outage: each class of database error, injected into a real
PostgreSQL, and what the request, the writer and the stats make of it.

Errors are injected by a trigger on feature_usage that raises a given SQLSTATE for
the next N row inserts (or updates) it sees (a sequence counts them: it is not
rolled back with the failing statement); lost connections by pg_terminate_backend,
too many connections by a role's connection limit, an exhausted pool by a slow
statement holding its one connection.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest
from gates_sample import headers
from gates_sample import usage
from psycopg import errors

from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates import signals
from feature_gates.core._storage import Outcome
from feature_gates.core._storage import classify
from feature_gates.core._storage.errors import PoolExhausted
from feature_gates.core._storage.watchdog import NoAnswer

INJECTOR = """
CREATE TABLE fg_inject (sqlstate text, op text, skip bigint, failures bigint, sleep float);
INSERT INTO fg_inject VALUES (NULL, 'INSERT', 0, 0, 0);
CREATE SEQUENCE fg_inject_calls;
CREATE FUNCTION fg_inject() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v fg_inject;
    n bigint;
BEGIN
    SELECT * INTO v FROM fg_inject;
    IF v.sleep > 0 THEN
        PERFORM pg_sleep(v.sleep);
    END IF;
    IF v.sqlstate IS NOT NULL AND TG_OP = v.op THEN
        n := nextval('fg_inject_calls');
        IF n > v.skip AND n <= v.skip + v.failures THEN
            RAISE EXCEPTION 'injected %', v.sqlstate USING ERRCODE = v.sqlstate;
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fg_inject BEFORE INSERT OR UPDATE ON feature_usage
    FOR EACH ROW EXECUTE FUNCTION fg_inject();
"""


@pytest.fixture
def inject(db):
    """``inject(sqlstate, times)``: the next ``times`` row inserts (``on="UPDATE"``:
    updates), after ``skip`` of them, fail with ``sqlstate``; ``inject(sleep=s)``:
    every row write first sleeps ``s`` seconds. A consume inserts its row (and
    updates it when it exists); a refund updates it; a batch inserts its rows."""
    db.execute(INJECTOR)

    def arm(sqlstate=None, times=0, *, on="INSERT", skip=0, sleep=0.0):
        db.execute("SELECT setval('fg_inject_calls', 1, false)")
        db.execute(
            "UPDATE fg_inject SET sqlstate = %s, op = %s, skip = %s, failures = %s, sleep = %s",
            (sqlstate, on, skip, times, sleep),
        )

    return arm


def stats(app):
    with app.app_context():
        return app.extensions["feature_gates"].extension.storage_stats()


def post(app, user_id=7, plan="free", **query):
    path = "/messages" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    return app.test_client().post(path, headers=headers(user_id, plan))


# -- the table ----------------------------------------------------------------------------


#: What each error means (reliability.md, "Database errors").
MEANINGS = {
    Outcome.RETRY: [
        errors.SerializationFailure("x"),
        errors.DeadlockDetected("x"),
        errors.InvalidSqlStatementName("x"),
        errors.DuplicatePreparedStatement("x"),
        errors.ProtocolViolation("x"),
    ],
    Outcome.OUTAGE: [
        errors.ConnectionFailure("x"),
        errors.AdminShutdown("x"),
        errors.CrashShutdown("x"),
        errors.CannotConnectNow("x"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.OperationalError("connection failed: Connection refused"),
        psycopg.OperationalError("FATAL:  the database system is starting up"),
        NoAnswer("no answer"),
    ],
    Outcome.ERROR: [
        errors.TooManyConnections("x"),
        errors.DiskFull("x"),
        errors.QueryCanceled("x"),
        errors.UndefinedFunction("x"),
        errors.InvalidTextRepresentation("x"),
        psycopg.OperationalError("FATAL:  sorry, too many clients already"),
        psycopg.OperationalError('FATAL:  password authentication failed for user "a"'),
        PoolExhausted("all 10 connections stayed in use"),
        psycopg.ProgrammingError("a bug"),
    ],
}


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(error, outcome) for outcome, found in MEANINGS.items() for error in found],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_error_has_one_meaning(error, outcome):
    assert classify(error) is outcome


# -- retried once ---------------------------------------------------------------------------


@pytest.mark.parametrize("sqlstate", ["40001", "40P01", "26000", "42P05", "08P01"])
def test_an_answered_try_again_is_sent_once_more_and_counts_once(make_app, db, inject, sqlstate):
    app = make_app(FEATURE_GATES_FAIL_MODE="open")
    inject(sqlstate, 1)
    assert post(app).status_code == 201
    assert usage(db, 7) == 1
    found = stats(app)
    assert (found.retries, found.errors, found.unavailable_since) == (1, {}, None)


def test_a_try_again_that_fails_twice_answers_503_and_passes_no_limit(make_app, db, inject, caplog):
    app = make_app(FEATURE_GATES_FAIL_MODE="open")
    for _ in range(3):
        assert post(app).status_code == 201  # free allows 3: now at the limit
    inject("40001", 2)
    with caplog.at_level(logging.ERROR, logger="feature_gates"):
        response = post(app)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["title"], body["status"]) == ("Feature check failed", 503)
    assert response.headers["Retry-After"] == "1"
    assert usage(db, 7) == 3
    assert post(app).status_code == 429  # the limit still holds
    (line,) = [r.getMessage() for r in caplog.records if r.name == "feature_gates"]
    assert "SQLSTATE 40001" in line
    found = stats(app)
    assert (found.retries, found.errors) == (1, {"40001": 1})
    assert "SerializationFailure (SQLSTATE 40001)" in found.last_error


def test_a_refund_meets_a_deadlock_and_is_sent_again(make_app, db, inject):
    app = make_app()
    assert post(app).status_code == 201
    # The consume's update passes; the refund's fails once, and is sent again.
    inject("40P01", 1, on="UPDATE", skip=1)
    assert post(app, status=500).status_code == 500
    assert usage(db, 7) == 1
    assert stats(app).retries == 1


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_an_error_never_applies_the_fail_mode(make_app, db, inject, fail_mode):
    app = make_app(FEATURE_GATES_FAIL_MODE=fail_mode)
    unavailable = []
    signals.storage_unavailable.connect(
        lambda sender, **data: unavailable.append(data), app, weak=False
    )
    inject("53100", 1)  # disk full: the database answers, and refuses
    response = post(app)
    assert response.status_code == 503
    assert response.get_json()["title"] == "Feature check failed"
    assert usage(db, 7) == 0
    assert unavailable == []
    assert stats(app).errors == {"53100": 1}
    assert post(app).status_code == 201  # the next one is checked as usual


def test_a_dropped_function_answers_503_naming_the_fix(make_app, db, caplog):
    app = make_app(FEATURE_GATES_FAIL_MODE="open")
    db.execute(
        "DROP FUNCTION feature_usage_take(feature_usage_user_id, text, text, text, date, "
        "integer, timestamptz, integer, bigint, feature_usage_user_id, bigint, bigint, numeric[], "
        "text, timestamptz, boolean)"
    )
    with caplog.at_level(logging.ERROR, logger="feature_gates"):
        assert post(app).status_code == 503
    assert any("42883" in r.getMessage() and "migrate" in r.getMessage() for r in caplog.records)
    assert usage(db, 7) == 0


def test_too_many_connections_is_an_error_named_by_its_sqlstate(
    make_app, db, feature_gates_database_url
):
    db.execute("CREATE ROLE fg_limited LOGIN CONNECTION LIMIT 1")
    db.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO fg_limited")
    db.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO fg_limited")
    params = psycopg.conninfo.conninfo_to_dict(feature_gates_database_url)
    params["user"] = "fg_limited"
    url = psycopg.conninfo.make_conninfo("", **params)
    try:
        with psycopg.connect(url):  # the role's one connection
            app = make_app(url, FEATURE_GATES_FAIL_MODE="open", FEATURE_GATES_TRACKING="off")
            response = post(app)
            assert response.status_code == 503
            assert response.get_json()["title"] == "Feature check failed"
            assert stats(app).errors == {"53300": 1}
            app.extensions["feature_gates"].close()
        assert usage(db, 7) == 0
    finally:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'fg_limited'"
        )
        db.execute("REASSIGN OWNED BY fg_limited TO CURRENT_USER")
        db.execute("DROP OWNED BY fg_limited")
        db.execute("DROP ROLE fg_limited")


def test_a_pool_exhausted_by_load_is_an_error_not_an_outage(make_app, db, inject):
    app = make_app(
        FEATURE_GATES_POOL_MAX_SIZE=1,
        FEATURE_GATES_POOL_MIN_SIZE=1,
        FEATURE_GATES_FAIL_MODE="open",
    )
    assert post(app, user_id=8).status_code == 201  # the pool has its connection
    inject(sleep=1.0)
    slow = threading.Thread(target=post, args=(app, 8))
    slow.start()
    time.sleep(0.3)  # the slow check holds the pool's one connection
    response = post(app, user_id=9)
    slow.join()
    assert response.status_code == 503
    assert stats(app).errors == {"": 1}
    assert "FEATURE_GATES_POOL_MAX_SIZE" in stats(app).last_error
    assert (usage(db, 8), usage(db, 9)) == (2, 0)


# -- outages --------------------------------------------------------------------------------


def backends(db, state):
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'feature-gates' "
        "AND datname = current_database() AND state = %s",
        (state,),
    ).fetchall()
    return [row[0] for row in rows]


def test_an_idle_connection_ended_by_the_server_is_replaced_not_an_outage(make_app, db):
    app = make_app(FEATURE_GATES_FAIL_MODE="closed")
    assert post(app).status_code == 201
    idle = backends(db, "idle")
    assert idle, "the pool keeps a connection"
    for pid in idle:
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    assert post(app).status_code == 201
    assert usage(db, 7) == 2
    assert stats(app).outages == 0


@pytest.mark.parametrize(("fail_mode", "status"), [("open", 201), ("closed", 503)])
def test_a_connection_ended_under_a_check_is_an_outage(make_app, db, inject, fail_mode, status):
    app = make_app(FEATURE_GATES_FAIL_MODE=fail_mode, FEATURE_GATES_TRACKING="background")
    assert post(app).status_code == 201
    inject(sleep=2.0)
    answers = []
    check = threading.Thread(target=lambda: answers.append(post(app).status_code))
    check.start()
    deadline = time.monotonic() + 10
    while not (active := backends(db, "active")) and time.monotonic() < deadline:
        time.sleep(0.02)
    db.execute("SELECT pg_terminate_backend(%s)", (active[0],))
    check.join()
    inject(sleep=0)
    assert answers == [status]
    assert stats(app).outages == 1
    # The database never went away: the next probe ends the outage.
    deadline = time.monotonic() + 10
    while stats(app).unavailable_since is not None:
        assert time.monotonic() < deadline, "the gates never came back"
        post(app, user_id=9)
        time.sleep(0.05)
    with app.app_context():
        app.extensions["feature_gates"].extension.flush(timeout=30)
    # Fail open's use is counted once the tracker writes it; fail closed's never was.
    assert usage(db, 7) == (2 if fail_mode == "open" else 1)


def test_a_missing_database_url_is_a_configuration_error_not_an_outage():
    from flask import Flask

    app = Flask(__name__)
    app.config.update(FEATURE_GATES_TRACKING="off")
    gates = FeatureGates(app)
    with app.app_context():
        with pytest.raises(ConfigError, match="FEATURE_GATES_DATABASE_URL"):
            gates.get_usage(7, "chat_messages_monthly")
        assert gates.storage_stats().outages == 0


# -- the writer ------------------------------------------------------------------------------


def test_the_writer_keeps_its_batches_through_errors_and_names_the_real_one(
    make_app, db, inject, caplog
):
    app = make_app(
        FEATURE_GATES_TRACKING="background",
        FEATURE_GATES_FLUSH_INTERVAL=0.05,
        FEATURE_GATES_FLUSH_MAX_BACKOFF=0.2,
    )
    gates = app.extensions["feature_gates"].extension
    unavailable = []
    signals.storage_unavailable.connect(
        lambda sender, **data: unavailable.append(data), app, weak=False
    )
    inject("53100", 4)
    with app.app_context(), caplog.at_level(logging.WARNING, logger="feature_gates.tracking"):
        for user_id in range(5):
            gates.track(user_id, "api_calls", 2)
        deadline = time.monotonic() + 30
        while gates.tracking_stats().retries < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        failing = gates.tracking_stats()
        assert failing.last_error.startswith("DiskFull (SQLSTATE 53100): injected 53100")
        gates.flush(timeout=30)
        done = gates.tracking_stats()
    assert (done.written, done.pending, done.dropped, done.last_error) == (10, 0, 0, None)
    assert {user_id: usage(db, user_id, "api_calls") for user_id in range(5)} == {
        user_id: 2 for user_id in range(5)
    }
    (failed, recovered) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "feature_gates.tracking" and r.levelno == logging.WARNING
    ]
    assert "SQLSTATE 53100" in failed and "couldn't get a connection" not in failed
    assert "succeed again" in recovered
    assert unavailable == []
    assert stats(app).errors.get("53100", 0) >= 2


def test_the_writer_sends_a_batch_again_after_a_serialization_failure(make_app, db, inject):
    app = make_app(FEATURE_GATES_TRACKING="background", FEATURE_GATES_FLUSH_INTERVAL=3600)
    gates = app.extensions["feature_gates"].extension
    inject("40001", 1)
    with app.app_context():
        gates.track(3, "api_calls", 5)
        gates.flush(timeout=30)
        found = gates.tracking_stats()
    assert (found.written, found.retries, found.last_error) == (5, 1, None)
    assert usage(db, 3, "api_calls") == 5
