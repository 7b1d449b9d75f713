"""Edges of the gates, the reads and the commands: each of these once went wrong."""

from __future__ import annotations

import os
import resource
import signal
import socket
import time
from types import SimpleNamespace

import psycopg
import pytest
from click.testing import CliRunner
from flask import Flask
from gates_sample import DESTINATIONS
from gates_sample import headers

from feature_gates import ConfigError
from feature_gates import FeatureGates
from feature_gates import FlushTimeout
from feature_gates import Subject
from feature_gates import feature_required
from feature_gates.cli import cli
from feature_gates.core import one_line
from feature_gates.core._storage.storage import closed_by_server
from feature_gates.core._storage.watchdog import watchdog
from feature_gates.signals import storage_unavailable


def test_a_subject_without_a_user_id_is_refused_before_the_view_runs():
    with pytest.raises(ValueError, match="user_id must not be None"):
        Subject(user_id=None, plan="free")


def test_a_stock_request_that_adds_nothing_passes_above_the_limit(app, client, monkeypatch):
    monkeypatch.setitem(DESTINATIONS, 1, 9)  # over free's 5, after a downgrade say
    response = client.post(
        "/itineraries/1/destinations", json={"waypoints": []}, headers=headers(1, "free")
    )
    assert response.status_code == 201
    response = client.post(
        "/itineraries/1/destinations", json={"waypoints": ["x"]}, headers=headers(1, "free")
    )
    assert response.status_code == 429


def test_reads_do_not_pass_monthly_counts_off_as_stock_counts(app, gates):
    subject = Subject(user_id=1, plan="free")
    with app.app_context():
        gates.track(1, "itinerary_destinations", 3)  # recorded uses, not the stock held
        decision = gates.check("itinerary_destinations", subject)
        assert (decision.allowed, decision.limit, decision.used, decision.remaining) == (
            True,
            5,
            None,
            None,
        )
        assert gates.check("itinerary_destinations", subject, used=4).remaining == 1
        assert gates.entitlements(subject)["itinerary_destinations"].used is None
        assert gates.entitlements(subject)["chat_messages_monthly"].used == 0


def _app_with_a_late_view(feature_gates_database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=feature_gates_database_url,
        FEATURE_GATES_PLANS={"free": {"can_export_pdf": True}},
        FEATURE_GATES_TRACKING="off",
    )
    gates = FeatureGates(app)  # before the views, as most applications do
    gates.subject_loader(lambda: Subject(1, "free"))

    @app.post("/pdf")
    @feature_required("can_export_pfd")
    def export_pdf():
        return {"pdf": "ok"}

    return app


def test_a_view_registered_after_init_app_is_checked_on_the_first_request(
    feature_gates_database_url,
):
    app = _app_with_a_late_view(feature_gates_database_url)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    try:
        with pytest.raises(ConfigError, match="endpoint 'export_pdf': feature 'can_export_pfd'"):
            app.test_client().post("/pdf")
    finally:
        app.extensions["feature_gates"].close()


def test_one_line_keeps_the_line_that_names_the_server():
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    line = one_line(caught.value)
    assert "127.0.0.1" in line and "\n" not in line


def test_the_console_script_reports_usage_from_the_database_url(feature_gates_database_url):
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        conn.execute("SELECT increment_feature_usage_safe(1, 'saved_searches', 4)")
    runner = CliRunner()
    result = runner.invoke(cli, ["--database-url", feature_gates_database_url, "usage"])
    assert result.exit_code == 0, result.output
    assert "saved_searches" in result.output
    result = runner.invoke(
        cli, ["--database-url", feature_gates_database_url, "usage", "--near-limit", "80"]
    )
    assert result.exit_code == 1
    assert "--near-limit needs the plans of an application" in result.output


def test_database_url_in_the_environment_does_not_override_the_apps_setting(
    feature_gates_database_url, monkeypatch
):
    app = Flask(__name__)
    app.config.update(FEATURE_GATES_DATABASE_URL=feature_gates_database_url)
    FeatureGates(app)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    try:
        result = app.test_cli_runner().invoke(args=["feature-gates", "status", "--check"])
    finally:
        app.extensions["feature_gates"].close()
    assert result.exit_code == 0, result.output
    assert "applied  core/0001_feature_usage_table" in result.output


def gates_of_app(app):
    return app.extensions["feature_gates"].extension


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_a_metered_check_stuck_behind_a_row_lock_answers_503_whatever_the_fail_mode(
    make_app, feature_gates_database_url, fail_mode
):
    # A statement timeout is the database's answer, not an outage: fail open must not
    # let the request through uncounted.
    app = make_app(FEATURE_GATES_STATEMENT_TIMEOUT=0.3, FEATURE_GATES_FAIL_MODE=fail_mode)
    client = app.test_client()
    assert client.post("/messages", headers=headers(1, "free")).status_code == 201
    with psycopg.connect(feature_gates_database_url) as holder:
        holder.execute("SELECT * FROM feature_usage WHERE user_id = 1 FOR UPDATE")
        response = client.post("/messages", headers=headers(1, "free"))
        holder.rollback()
    assert response.status_code == 503
    assert response.get_json()["title"] == "Feature check failed"


def test_a_relative_plans_file_is_read_next_to_the_application(tmp_path, monkeypatch):
    (tmp_path / "plans.toml").write_text("[free]\ncan_export_pdf = true\n")
    app = Flask("relative_plans", root_path=str(tmp_path))
    app.config.update(FEATURE_GATES_PLANS="plans.toml", FEATURE_GATES_TRACKING="off")
    monkeypatch.chdir("/")
    FeatureGates(app)
    assert app.extensions["feature_gates"].catalogue.tiers == ("free",)


def test_a_user_id_of_the_wrong_type_is_named_before_the_view_runs(make_app):
    app = make_app(PROPAGATE_EXCEPTIONS=True)
    gates = app.extensions["feature_gates"].extension
    gates.subject_loader(lambda: Subject(user_id="seven", plan="pro"))
    with pytest.raises(TypeError, match="user ids are bigint here"):
        app.test_client().post("/messages")


def test_a_timed_out_check_answers_503_for_that_request_alone(make_app, feature_gates_database_url):
    app = make_app(FEATURE_GATES_STATEMENT_TIMEOUT=0.3, FEATURE_GATES_FAIL_MODE="closed")
    client = app.test_client()
    for _ in range(3):
        assert client.post("/messages", headers=headers(8, "free")).status_code == 201
    assert client.post("/messages", headers=headers(7, "free")).status_code == 201
    with psycopg.connect(feature_gates_database_url) as holder:
        holder.execute("SELECT * FROM feature_usage WHERE user_id = 7 FOR UPDATE")
        assert client.post("/messages", headers=headers(7, "free")).status_code == 503
        # Another user's check is not swept into an "outage": it still meets its limit.
        assert client.post("/messages", headers=headers(8, "free")).status_code == 429
        holder.rollback()
    with app.app_context():
        assert gates_of_app(app).storage_stats().unavailable_since is None


@pytest.mark.parametrize(
    ("user_id", "user_id_type"),
    [(True, "bigint"), (2**63, "bigint"), ("alice", "uuid")],
)
def test_user_ids_the_database_cannot_take_are_named(make_app, user_id, user_id_type):
    app = make_app(PROPAGATE_EXCEPTIONS=True, FEATURE_GATES_USER_ID_TYPE=user_id_type)
    gates = app.extensions["feature_gates"].extension
    gates.subject_loader(lambda: Subject(user_id=user_id, plan="pro"))
    with pytest.raises(TypeError, match=f"user ids are {user_id_type} here"):
        app.test_client().post("/messages")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 3e6, -1])
def test_a_statement_timeout_postgresql_cannot_take_is_refused(value):
    app = Flask(__name__)
    app.config.update(FEATURE_GATES_TRACKING="off", FEATURE_GATES_STATEMENT_TIMEOUT=value)
    with pytest.raises(ConfigError, match="FEATURE_GATES_STATEMENT_TIMEOUT"):
        FeatureGates(app)


def test_feature_remaining_refuses_to_guess_a_stock_count(app, gates):
    with app.test_request_context(headers=headers(1, "free")):
        assert gates.feature_remaining("chat_messages_monthly") == 3
        with pytest.raises(ValueError, match="stock limit"):
            gates.feature_remaining("itinerary_destinations")


def test_a_pooled_connection_above_descriptor_1023_is_checked():
    # select() refuses descriptors of 1024 and more; a busy server's sockets have them.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = min(4000, hard - 1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, high + 1), hard))
    ours, server = socket.socketpair()
    try:
        os.dup2(ours.fileno(), high)
        conn = SimpleNamespace(fileno=lambda: high)
        assert not closed_by_server(conn)
        server.sendall(b"E")  # what a restart's "terminating connection" starts with
        assert closed_by_server(conn)
    finally:
        os.close(high)
        ours.close()
        server.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_tracker_write_timed_out_behind_a_row_lock_is_not_an_outage(
    make_app, feature_gates_database_url
):
    app = make_app(
        FEATURE_GATES_STATEMENT_TIMEOUT=0.3,
        FEATURE_GATES_FAIL_MODE="closed",
        FEATURE_GATES_TRACKING="background",
    )
    gates = app.extensions["feature_gates"].extension
    unavailable = []
    storage_unavailable.connect(lambda sender, **data: unavailable.append(data), app, weak=False)
    with app.app_context():
        gates.track(7, "can_export_pdf")
        gates.flush(timeout=10)
    client = app.test_client()
    with psycopg.connect(feature_gates_database_url) as holder:
        holder.execute("SELECT * FROM feature_usage WHERE user_id = 7 FOR UPDATE")
        with app.app_context():
            gates.track(7, "can_export_pdf")
            with pytest.raises(FlushTimeout):
                gates.flush(timeout=1)
        # The metered gates still ask the database: a closed fail mode would answer 503.
        assert client.post("/messages", headers=headers(8, "free")).status_code == 201
        holder.rollback()
    with app.app_context():
        gates.flush(timeout=10)
        assert gates.get_usage(7, "can_export_pdf") == 2
    assert unavailable == []
    with app.app_context():
        assert gates_of_app(app).storage_stats().unavailable_since is None


def test_a_child_forked_while_the_watchdog_held_its_lock_can_guard(tmp_path):
    conn = SimpleNamespace(fileno=lambda: 0)
    with watchdog.guard(conn, 60):
        pass  # the parent's watchdog thread runs
    with watchdog._lock:  # as its thread holds it at each look
        pid = os.fork()
        if pid == 0:
            with watchdog.guard(conn, 60):
                pass
            os._exit(0)
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done != (0, 0) and os.waitstatus_to_exitcode(done[1]) == 0
