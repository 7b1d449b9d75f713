"""Fail open and fail closed with the database stopped (a server of this module's own)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

import psycopg
import pytest
from gates_sample import PLANS
from gates_sample import headers

from feature_gates import FlushTimeout
from feature_gates import StorageUnavailable
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import signals
from feature_gates.migrate import MigrationSettings
from feature_gates.migrate import migrate
from feature_gates.pgserver import LocalPostgres


@pytest.fixture(scope="module")
def server():
    with LocalPostgres() as server:
        migrate(server.url(), MigrationSettings())
        yield server


@pytest.fixture
def stopped(server):
    """Stops the server for the test; starts it again after."""
    server.halt()
    try:
        yield server
    finally:
        server.start()


def signals_of(app, *names):
    sent = []
    receivers = []
    for name in names:

        def record(sender, _name=name, **data):
            assert sender is app
            sent.append((_name, data))

        receivers.append(record)
        getattr(signals, name).connect(record, app)
    return sent, receivers


def wait_until_recovered(app, gates, subject, timeout=60):
    deadline = time.monotonic() + timeout
    with app.app_context():
        while gates.storage_stats().unavailable_since is not None:
            assert time.monotonic() < deadline, "the gates never saw the database again"
            gates.check("chat_messages_monthly", subject)  # a read: probes when due
            time.sleep(0.1)


def warnings_of(caplog):
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "feature_gates" and r.levelno == logging.WARNING
    ]


def test_fail_open_allows_and_counts_later(server, make_app, caplog):
    app = make_app(server.url(), FEATURE_GATES_TRACKING="background")
    gates = app.extensions["feature_gates"].extension
    sent, receivers = signals_of(app, "storage_unavailable", "storage_recovered")
    client = app.test_client()
    assert client.post("/messages", headers=headers(21, "free")).status_code == 201
    server.halt()
    try:
        # free allows 3: fail open lets all through while the database is away
        for _ in range(3):
            assert client.post("/messages", headers=headers(21, "free")).status_code == 201
        assert client.get("/pdf", headers=headers(21, "pro")).status_code == 200
        assert client.get("/intel", headers=headers(21, "free")).status_code == 403
        unreachable = [m for m in warnings_of(caplog) if "unreachable" in m]
        assert len(unreachable) == 1
        assert [name for name, _ in sent] == ["storage_unavailable"]
    finally:
        server.start()
    wait_until_recovered(app, gates, Subject(21, "free"))
    assert [name for name, _ in sent] == ["storage_unavailable", "storage_recovered"]
    assert sent[1][1]["outage_seconds"] > 0
    with app.app_context():
        gates.flush(timeout=30)
        # the uses let through during the outage reached the database via the tracker
        assert gates.get_usage(21, "chat_messages_monthly") == 4
    assert client.post("/messages", headers=headers(21, "free")).status_code == 429
    del receivers


def test_fail_open_with_tracking_off_reports_what_it_cannot_count(
    server, stopped, make_app, caplog
):
    app = make_app(server.url(), FEATURE_GATES_TRACKING="off")
    gates = app.extensions["feature_gates"].extension
    sent, receivers = signals_of(app, "usage_dropped")
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="feature_gates"):
        for _ in range(2):
            assert client.post("/messages", headers=headers(22, "free")).status_code == 201
    with app.app_context():
        assert gates.tracking_stats().dropped == 2
    assert [(d["user_id"], d["amount"], d["reason"]) for _, d in sent] == [
        (22, 1, "tracking-off"),
        (22, 1, "tracking-off"),
    ]
    assert len([r for r in caplog.records if "are not recorded" in r.getMessage()]) == 1
    del receivers


def _server_processes(url):
    """The pids of the server behind ``url``: its postmaster and every child."""
    with psycopg.connect(url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = _parent(backend)  # while the backend lives
    assert postmaster is not None
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(p) == postmaster]
    # Not the backend of the connection above: it is exiting.
    return [postmaster, *(pid for pid in children if pid != backend)]


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.fixture
def frozen(server):
    """Freezes the server (SIGSTOP: it answers nothing, as a frozen host); thaws it after.

    Request it after ``make_app``: it is then thawed before the app closes, which
    flushes its tracker into the server."""
    processes = []

    def thaw():
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def freeze():
        processes.extend(_server_processes(server.url()))
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(pid, signal.SIGSTOP)
        return thaw

    try:
        yield freeze
    finally:
        thaw()


def test_a_database_that_answers_nothing_fails_the_check_not_the_request(server, make_app, frozen):
    app = make_app(
        server.url(),
        FEATURE_GATES_FAIL_MODE="closed",
        FEATURE_GATES_STATEMENT_TIMEOUT=0.5,
        FEATURE_GATES_TRACKING="background",
    )
    gates = app.extensions["feature_gates"].extension
    client = app.test_client()
    assert client.post("/messages", headers=headers(23, "pro")).status_code == 201
    thaw = frozen()
    started = time.monotonic()
    response = client.post("/messages", headers=headers(23, "pro"))
    waited = time.monotonic() - started
    assert response.status_code == 503
    assert waited < 5, waited  # the statement timeout, the watchdog's grace, no more
    # Entitlements need no database.
    assert client.get("/pdf", headers=headers(23, "pro")).status_code == 200
    thaw()
    wait_until_recovered(app, gates, Subject(23, "pro"))
    assert client.post("/messages", headers=headers(23, "pro")).status_code == 201


def test_a_flush_into_a_database_that_answers_nothing_ends_at_its_timeout(server, make_app, frozen):
    app = make_app(
        server.url(), FEATURE_GATES_STATEMENT_TIMEOUT=0.5, FEATURE_GATES_TRACKING="background"
    )
    gates = app.extensions["feature_gates"].extension
    with app.app_context():
        gates.track(24, "can_export_pdf")
        gates.flush(timeout=30)
        thaw = frozen()
        gates.track(24, "can_export_pdf", 2)
        started = time.monotonic()
        with pytest.raises(FlushTimeout):
            gates.flush(timeout=2)
        waited = time.monotonic() - started
        assert waited < 10, waited  # the timeout, and at most one watchdog limit more
        thaw()
        gates.flush(timeout=60)
        assert gates.get_usage(24, "can_export_pdf") == 3


def test_fail_closed_answers_503_problem_json(server, stopped, make_app):
    app = make_app(server.url(), FEATURE_GATES_FAIL_MODE="closed", FEATURE_GATES_TRACKING="off")

    @app.post("/lenient")
    @feature_limit("chat_messages_monthly", fail_mode="open")
    def lenient():
        return "ok"

    client = app.test_client()
    response = client.post("/messages", headers=headers(22, "free"))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["status"], body["feature"], body["plan"]) == (503, "chat_messages_monthly", "free")
    assert body["title"] == "Feature check unavailable"
    assert int(response.headers["Retry-After"]) > 0
    # fail_mode on the decorator wins over FEATURE_GATES_FAIL_MODE
    assert client.post("/lenient", headers=headers(22, "free")).status_code == 200
    # unlimited plans and boolean gates need no database
    assert client.post("/messages", headers=headers(22, "enterprise")).status_code == 201
    assert client.get("/pdf", headers=headers(22, "pro")).status_code == 200


def test_reads_apply_the_fail_mode_too(server, stopped, make_app):
    app = make_app(server.url(), FEATURE_GATES_FAIL_MODE="closed", FEATURE_GATES_TRACKING="off")
    gates = app.extensions["feature_gates"].extension
    with app.app_context():
        decision = gates.check("chat_messages_monthly", Subject(23, "free"))
        assert (decision.allowed, decision.reason, decision.used) == (False, "unavailable", None)
        assert gates.check("can_export_pdf", Subject(23, "pro")).allowed


def test_plans_need_no_database(stopped, make_app):
    app = make_app(stopped.url(), FEATURE_GATES_TRACKING="off", FEATURE_GATES_PLANS=PLANS)
    assert app.test_client().get("/intel", headers=headers(24, "pro")).status_code == 200


def test_feature_remaining_tells_unlimited_from_a_count_it_cannot_read(server, make_app, stopped):
    app = make_app(server.url())
    state = app.extensions["feature_gates"]
    with app.test_request_context(headers=headers(7, "enterprise")):
        assert state.feature_remaining("chat_messages_monthly") is None  # unlimited: no read
    with app.test_request_context(headers=headers(7, "free")):
        with pytest.raises(StorageUnavailable):
            state.feature_remaining("chat_messages_monthly")
        # check() never raises: a limit with nothing known left.
        decision = state.check("chat_messages_monthly")
        assert (decision.limit, decision.remaining) == (3, None)
