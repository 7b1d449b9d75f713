"""Alert delivery against a real HTTP receiver on loopback: signed webhooks
retried with the same event id until answered 2xx, then dead after the last
retry; the signal, inside an application context; verify() refusing a tampered
body or an old timestamp; two processes sharing the work; a sender SIGKILLed
mid-request and PostgreSQL restarted mid-delivery losing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest
from alerts_support import SECRET
from alerts_support import Receiver
from alerts_support import cross
from alerts_support import deliver_until
from alerts_support import make_app
from flask import current_app

from feature_gates import ConfigError
from feature_gates import Subject
from feature_gates.core import Settings
from feature_gates.migrate import MigrationSettings
from feature_gates.signals import usage_threshold_crossed
from feature_gates.webhooks import SignatureError
from feature_gates.webhooks import sign
from feature_gates.webhooks import verify

FIELDS = {
    "id",
    "type",
    "feature",
    "scope",
    "user_id",
    "org_id",
    "plan",
    "threshold",
    "used",
    "limit",
    "period_start",
    "reset_at",
    "occurred_at",
}


def states(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT threshold::text, state, attempts FROM feature_usage_alerts ORDER BY id"
        ).fetchall()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"FEATURE_GATES_WEBHOOK_URL": "https://example.com/h"}, "FEATURE_GATES_WEBHOOK_SECRET"),
        ({"FEATURE_GATES_WEBHOOK_URL": "ftp://example.com/h"}, "an http:// or https:// URL"),
        ({"FEATURE_GATES_WEBHOOK_RETRIES": []}, "FEATURE_GATES_WEBHOOK_RETRIES must be"),
        ({"FEATURE_GATES_WEBHOOK_RETRIES": [10, -1]}, "FEATURE_GATES_WEBHOOK_RETRIES must be"),
        ({"FEATURE_GATES_ALERT_THRESHOLDS": [0.8, 0]}, "a threshold is a fraction"),
        ({"FEATURE_GATES_ALERT_THRESHOLDS": 0.8}, "FEATURE_GATES_ALERT_THRESHOLDS must be a list"),
        ({"FEATURE_GATES_WEBHOOK_TIMEOUT": 0}, "FEATURE_GATES_WEBHOOK_TIMEOUT must be"),
    ],
)
def test_alert_settings_that_cannot_work_are_refused_naming_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_mapping(config)


def test_uses_recorded_later_by_the_writer_cross_the_limit_the_gate_recorded(
    feature_gates_database_url,
):
    app = make_app(feature_gates_database_url, None)
    gates = app.extensions["feature_gates"].extension
    cross(app, user=7, uses=7)  # 70%, through the gate: the limit and thresholds recorded
    with app.app_context():
        gates.track_use("reports", 4, subject=Subject(7, "pro"))  # 110%, by the writer
        gates.flush()
        gates.track_use("reports", 9, subject=Subject(8, "pro"))  # no gate checked user 8
        gates.flush()
    app.extensions["feature_gates"].close()
    with psycopg.connect(feature_gates_database_url) as conn:
        rows = conn.execute(
            "SELECT user_id, threshold::text, used FROM feature_usage_alerts ORDER BY id"
        ).fetchall()
    assert rows == [(7, "0.8", 11), (7, "1", 11)]


def test_a_webhook_answered_500_twice_is_retried_under_one_id_until_accepted(
    feature_gates_database_url,
):
    with Receiver(lambda n: 500 if n <= 2 else 200) as receiver:
        app = make_app(feature_gates_database_url, receiver.url)
        cross(app, user=7, uses=8)
        deliver_until(app, lambda: len(receiver.accepted) == 1)
        app.extensions["feature_gates"].close()
    (event,) = receiver.accepted
    assert len(receiver.requests) == 3
    assert {json.loads(body)["id"] for _, body in receiver.requests} == {event["id"]}
    assert set(event) == FIELDS
    assert event["type"] == "usage.threshold_crossed"
    assert (event["feature"], event["scope"], event["user_id"], event["org_id"]) == (
        "reports",
        "user",
        7,
        None,
    )
    assert (event["plan"], event["threshold"], event["used"], event["limit"]) == ("pro", 0.8, 8, 10)
    assert event["period_start"].endswith("-01T00:00:00Z") and event["reset_at"] is not None
    assert states(feature_gates_database_url) == [("0.8", "sent", 3)]


def test_every_signature_verifies_and_a_tampered_body_or_an_old_timestamp_does_not(
    feature_gates_database_url,
):
    with Receiver() as receiver:
        app = make_app(feature_gates_database_url, receiver.url)
        cross(app, user=7)
        deliver_until(app, lambda: len(receiver.accepted) == 2)
        app.extensions["feature_gates"].close()
    for header, body in receiver.requests:
        assert verify(body, header, SECRET)["id"]
        with pytest.raises(SignatureError, match="does not match"):
            verify(body.replace(b'"used":', b'"used":1'), header, SECRET)
        with pytest.raises(SignatureError, match="does not match"):
            verify(body, header, "another secret")
    body = receiver.requests[0][1]
    old = sign(body, SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(SignatureError, match="tolerance of 300 s"):
        verify(body, old, SECRET)
    assert verify(body, old, SECRET, tolerance=600)["type"] == "usage.threshold_crossed"
    for header in (None, "", "v1=abc", "t=1"):
        with pytest.raises(SignatureError):
            verify(body, header, SECRET)


def test_an_alert_failing_past_its_last_retry_is_dead(feature_gates_database_url):
    with Receiver(lambda n: 500) as receiver:
        app = make_app(feature_gates_database_url, receiver.url)
        cross(app, user=7, uses=8)
        gates = app.extensions["feature_gates"].extension
        deliver_until(app, lambda: states(feature_gates_database_url)[0][1] == "dead")
        with app.app_context():
            stats = gates.alert_stats()
        app.extensions["feature_gates"].close()
    assert len(receiver.requests) == 4  # the first attempt and three retries
    assert states(feature_gates_database_url) == [("0.8", "dead", 4)]
    assert (stats.sent, stats.retried, stats.dead) == (0, 3, 1)
    assert stats.last_error == "the webhook answered 500"


def test_the_signal_is_sent_inside_an_application_context_and_a_failing_receiver_retries(
    feature_gates_database_url,
):
    app = make_app(feature_gates_database_url, None)
    received = []

    def on_alert(sender, **event):
        received.append((sender, current_app._get_current_object(), event))
        if len(received) == 1:
            raise RuntimeError("the receiver's own failure")

    usage_threshold_crossed.connect(on_alert, app)
    try:
        cross(app, user=7)
        deliver_until(
            app, lambda: {s for _, s, _ in states(feature_gates_database_url)} == {"sent"}
        )
    finally:
        usage_threshold_crossed.disconnect(on_alert, app)
        app.extensions["feature_gates"].close()
    assert [(s is app, c is app) for s, c, _ in received] == [(True, True)] * 3
    assert [event["threshold"] for _, _, event in received] == [0.8, 0.8, 1.0]
    assert received[0][2]["id"] == received[1][2]["id"] != received[2][2]["id"]
    assert set(received[0][2]) == FIELDS


SENDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from alerts_support import make_app
    app = make_app({url!r}, {webhook!r}, FEATURE_GATES_WEBHOOK_TIMEOUT={timeout!r})
    gates = app.extensions["feature_gates"].extension
    print("ready", flush=True)
    deadline = time.monotonic() + {seconds!r}
    while time.monotonic() < deadline:
        with app.app_context():
            gates.deliver_alerts()
        time.sleep(0.01)
    """
)


def sender_process(url, webhook, *, seconds=60.0, timeout=2.0):
    script = SENDER.format(
        tests=os.path.dirname(__file__), url=url, webhook=webhook, seconds=seconds, timeout=timeout
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def stop(process, how):
    process.send_signal(how)
    process.wait(10)
    process.stdout.close()


def test_two_processes_sending_at_once_deliver_each_alert_once(feature_gates_database_url):
    with Receiver() as receiver:
        app = make_app(feature_gates_database_url, receiver.url)
        for user in range(1, 21):
            cross(app, user=user)
        app.extensions["feature_gates"].close()
        processes = [sender_process(feature_gates_database_url, receiver.url) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while len(receiver.accepted) < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # a second delivery of any alert would arrive by now
        finally:
            for process in processes:
                stop(process, signal.SIGTERM)
    ids = receiver.ids()
    assert len(ids) == 40 and len(set(ids)) == 40
    assert len(receiver.requests) == 40
    # In order per subject: each user's 80% before its 100%.
    for user in range(1, 21):
        mine = [e["threshold"] for e in receiver.accepted if e["user_id"] == user]
        assert mine == [0.8, 1.0]


def test_a_sender_sigkilled_mid_request_loses_nothing_and_repeats_only_the_same_id(
    feature_gates_database_url,
):
    with Receiver(lambda n: 200) as receiver:
        receiver.hold = threading.Event()
        app = make_app(feature_gates_database_url, receiver.url, FEATURE_GATES_WEBHOOK_TIMEOUT=0.5)
        cross(app, user=7, uses=8)
        app.extensions["feature_gates"].close()
        process = sender_process(feature_gates_database_url, receiver.url, timeout=0.5)
        assert receiver.arrived.wait(30)
        stop(process, signal.SIGKILL)
        receiver.hold.set()  # the killed sender's request is answered to nobody
        app = make_app(feature_gates_database_url, receiver.url, FEATURE_GATES_WEBHOOK_TIMEOUT=0.5)
        # Its lease runs out (2 x the timeout + 1 s); then this process sends it again.
        deliver_until(app, lambda: states(feature_gates_database_url)[0][1] == "sent")
        app.extensions["feature_gates"].close()
    ids = [json.loads(body)["id"] for _, body in receiver.requests]
    assert len(ids) == 2 and len(set(ids)) == 1
    assert states(feature_gates_database_url) == [("0.8", "sent", 2)]


@pytest.fixture
def own_url(own_databases):
    url = own_databases.create(MigrationSettings())
    yield url
    own_databases.drop(url)


def test_postgresql_restarted_mid_delivery_loses_nothing_and_repeats_only_the_same_id(
    own_server, own_url
):
    with Receiver(lambda n: 200) as receiver:
        receiver.hold = threading.Event()
        app = make_app(own_url, receiver.url, FEATURE_GATES_WEBHOOK_TIMEOUT=0.5)
        cross(app, user=7, uses=8)
        gates = app.extensions["feature_gates"].extension
        errors = []

        def deliver():
            try:
                with app.app_context():
                    gates.deliver_alerts()
            except Exception as exc:  # the restart's outage
                errors.append(exc)

        first = threading.Thread(target=deliver)
        first.start()
        assert receiver.arrived.wait(30)
        own_server.halt()  # the answer cannot be recorded
        own_server.start()
        receiver.hold.set()
        first.join(30)
        deliver_until(app, lambda: states(own_url)[0][1] == "sent")
        app.extensions["feature_gates"].close()
    ids = [json.loads(body)["id"] for _, body in receiver.requests]
    assert len(set(ids)) == 1 and len(ids) >= 1
    assert len(receiver.accepted) == len(ids)
    assert states(own_url)[0][1] == "sent"
