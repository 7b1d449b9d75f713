"""Tracking through database outages: nothing lost, nothing written twice.

These tests stop and start a PostgreSQL server of their own, and put a proxy
between the tracker and the server that can cut a connection at the worst moment:
after the server committed a batch and before its reply reached the tracker.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter

import psycopg
import pytest
from flask import Flask
from gates_sample import create_app
from gates_sample import headers
from gates_sample import usage
from tracking_support import tracker_for

from feature_gates import FeatureGates
from feature_gates import FlushTimeout
from feature_gates.core._storage import Health
from feature_gates.migrate import MigrationSettings
from feature_gates.signals import storage_recovered
from feature_gates.signals import storage_unavailable
from feature_gates.signals import tracking_failed

SOCKET_NAME = ".s.PGSQL.5432"
READY_FOR_QUERY = b"Z\x00\x00\x00\x05I"


@pytest.fixture
def url(own_databases):
    url = own_databases.create(MigrationSettings())
    yield url
    own_databases.drop(url)


def count_of(url, user_id, feature):
    with psycopg.connect(url) as conn:
        return usage(conn, user_id, feature)


def stats_of(app):
    with app.app_context():
        return app.extensions["feature_gates"].extension.tracking_stats()


def wait_until(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_requests_keep_succeeding_through_an_outage_and_every_count_is_exact(
    own_server, url, caplog
):
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_FLUSH_INTERVAL=0.02,
        FEATURE_GATES_FLUSH_MAX_BACKOFF=0.2,
        FEATURE_GATES_FLUSH_MAX_KEYS=50,
    )
    gates = FeatureGates(app)

    @app.post("/use/<int:user_id>")
    def use(user_id):
        gates.track(user_id, "api_calls")
        return "ok"

    events = Counter()

    def count(name):
        return lambda sender, **data: events.update([name])

    receivers = {
        tracking_failed: count("failed"),
        storage_unavailable: count("unavailable"),
        storage_recovered: count("recovered"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, app)

    served: Counter[int] = Counter()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed):
        http = app.test_client()
        n = seed
        while not stop.is_set():
            n += 1
            response = http.post(f"/use/{n % 40}")
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    served[n % 40] += 1

    clients = [threading.Thread(target=client, args=(seed,)) for seed in range(3)]
    try:
        with caplog.at_level(logging.INFO, logger="feature_gates.tracking"):
            for thread in clients:
                thread.start()
            wait_until(lambda: stats_of(app).written > 200)
            own_server.halt()
            wait_until(lambda: stats_of(app).retries >= 3)
            during = sum(statuses.values())
            wait_until(lambda: sum(statuses.values()) > during + 200)
            own_server.start()
            wait_until(lambda: events["recovered"] == 1)
            time.sleep(0.2)
            stop.set()
            for thread in clients:
                thread.join()
            with app.app_context():
                gates.flush(timeout=60)
    finally:
        stop.set()
        for signal, receiver in receivers.items():
            signal.disconnect(receiver, app)
        gates.close(app, timeout=60)

    assert set(statuses) == {200}
    for user_id, expected in served.items():
        assert count_of(url, user_id, "api_calls") == expected
    stats = stats_of(app)
    assert stats.written == stats.tracked == sum(served.values())
    assert stats.dropped == stats.rejected == stats.pending == 0
    assert events["unavailable"] == 1 and events["failed"] >= 3
    # One warning when the outage began, one when it ended: not one per attempt.
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "feature_gates.tracking" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 2
    assert "usage writes failed" in warnings[0] and "succeed again" in warnings[1]


def test_flush_raises_with_the_pending_count_while_the_database_is_down(own_server, url):
    tracker = tracker_for(url, storage={"pool_timeout": 1}, flush_interval=3600)
    try:
        tracker.track(1, "exports", 4)
        tracker.track(2, "exports", 3)
        own_server.halt()
        try:
            with pytest.raises(FlushTimeout, match="7 uses of 2 keys still pending") as raised:
                tracker.flush(timeout=1.5)
            assert (raised.value.pending, raised.value.pending_keys) == (7, 2)
            assert tracker.stats().unavailable_since is not None
        finally:
            own_server.start()
        tracker.flush(timeout=60)
        assert (count_of(url, 1, "exports"), count_of(url, 2, "exports")) == (4, 3)
        assert tracker.stats().unavailable_since is None
    finally:
        tracker.close(timeout=30)
        tracker.storage.close()


class CuttingProxy:
    """Forwards PostgreSQL connections from a unix socket of its own to the server's.

    Armed with :meth:`cut_next_batch`, it cuts the connection that sends the next
    batch (or the next statement naming ``marker``), either before the server gets
    it or after the server has answered (committed) and before the answer is passed
    on.
    """

    def __init__(self, server_url):
        target_dir = psycopg.conninfo.conninfo_to_dict(server_url)["host"]
        self.target = os.path.join(target_dir, SOCKET_NAME)
        self.dir = tempfile.mkdtemp(prefix="fg-proxy-")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.dir, SOCKET_NAME))
        self.listener.listen()
        self.sockets = []
        self.mode = None
        self.marker = b""
        self.cuts = 0
        self.lock = threading.Lock()
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def url(self, dbname):
        return f"postgresql://postgres@/{dbname}?host={self.dir}"

    def cut_next_batch(self, when, marker=b"feature_usage_write_batch"):
        assert when in ("before-server", "after-commit")
        self.marker = marker
        self.mode = when

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            link = {"watching": False}
            for source, sink, to_server in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, to_server, link), daemon=True
                ).start()

    def _pump(self, source, sink, to_server, link):
        reply = b""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._close(source, sink)
                return
            if to_server and self.mode and self.marker in data:
                if self.mode == "before-server":
                    self._cut(source, sink)
                    return
                link["watching"] = True
            if not to_server and link["watching"]:
                reply += data
                if READY_FOR_QUERY in reply:  # committed and answered
                    self._cut(source, sink)
                    return
                continue
            try:
                sink.sendall(data)
            except OSError:
                self._close(source, sink)
                return

    def _cut(self, *sockets):
        self.mode = None
        self.cuts += 1
        self._close(*sockets)

    def _close(self, *sockets):
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()
        self.accepting.join(5)
        with self.lock:
            for sock in self.sockets:
                sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def proxy(own_server):
    proxy = CuttingProxy(own_server.url())
    yield proxy
    proxy.close()


@pytest.mark.parametrize("when", ["after-commit", "before-server"])
def test_a_batch_whose_reply_was_lost_is_counted_once(proxy, url, when, caplog):
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    tracker = tracker_for(proxy.url(dbname), flush_interval=3600)
    try:
        tracker.track(1, "exports", 3)
        tracker.track(2, "exports", 1, idempotency_key="job-1")
        proxy.cut_next_batch(when)
        with caplog.at_level(logging.INFO, logger="feature_gates.tracking"):
            tracker.flush(timeout=60)
        assert proxy.cuts == 1
        assert (count_of(url, 1, "exports"), count_of(url, 2, "exports")) == (3, 1)
        stats = tracker.stats()
        assert (stats.written, stats.pending, stats.retries) == (4, 0, 1)
        outcome = "was written" if when == "after-commit" else "not written"
        assert any(outcome in r.getMessage() for r in caplog.records)

        # The job is retried: its key was recorded with the batch, exactly once.
        tracker.track(2, "exports", 1, idempotency_key="job-1")
        tracker.flush(timeout=60)
        assert count_of(url, 2, "exports") == 1
        with psycopg.connect(url) as conn:
            records = conn.execute("SELECT applied FROM feature_usage_batches").fetchall()
        # The batch settled as not written stays recorded (until pruned), so that
        # it can never be written late; records of written batches are deleted.
        assert sorted(records) == ([(False,), (True,)] if when == "before-server" else [(True,)])
    finally:
        tracker.close(timeout=30)
        tracker.storage.close()


def test_a_refund_whose_reply_was_lost_is_not_sent_again(proxy, url):
    """A refund that committed and lost its reply must not be given twice: the user
    would get a use beyond the limit."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    app = create_app(proxy.url(dbname), FEATURE_GATES_TRACKING="off")
    client = app.test_client()
    try:
        statuses = [client.post("/messages", headers=headers(7, "free")).status_code]
        statuses.append(client.post("/messages", headers=headers(7, "free")).status_code)
        proxy.cut_next_batch("after-commit", marker=b"feature_usage_give_back")
        statuses.append(client.post("/messages?status=500", headers=headers(7, "free")).status_code)
        assert proxy.cuts == 1
        # The lost reply looked like an outage: let the gate's first probe come due.
        time.sleep(Health.first_backoff * 2)
        statuses += [
            client.post("/messages", headers=headers(7, "free")).status_code for _ in range(2)
        ]
        assert statuses == [201, 201, 500, 201, 429]
        assert count_of(url, 7, "chat_messages_monthly") == 3
    finally:
        app.extensions["feature_gates"].close()
