"""What the alert delivery tests share: a real HTTP receiver on loopback, an
application with thresholds, and alerts made by metered checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

from flask import Flask
from flask import request

from feature_gates import FeatureGates
from feature_gates import StorageError
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates.webhooks import verify

SECRET = "whsec_test"
PLANS = {"pro": {"reports": {"limit": 10, "alerts": [0.8, 1.0]}}}


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (its signature header
    and raw body) and answers each with ``answer(n)`` for the n-th request (1-based):
    a status, after ``hold`` (an Event) is set when one is given."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 200) -> None:
        self.answer = answer
        self.requests: list[tuple[str | None, bytes]] = []
        self.accepted: list[dict[str, Any]] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests.append((self.headers["Feature-Gates-Signature"], body))
                    n = len(receiver.requests)
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                status = receiver.answer(n)
                if status == 200:
                    event = verify(body, self.headers["Feature-Gates-Signature"], SECRET)
                    with receiver._lock:
                        receiver.accepted.append(event)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        """The event ids the receiver accepted, in order."""
        return [event["id"] for event in self.accepted]


def make_app(database_url: str, webhook_url: str | None, **config: Any) -> Flask:
    """An application whose ``reports`` alert at 80% and 100% of 10 on plan pro;
    POST /reports/<user> is one metered use by that user."""
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=database_url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_WEBHOOK_URL=webhook_url,
        FEATURE_GATES_WEBHOOK_SECRET=SECRET,
        FEATURE_GATES_WEBHOOK_TIMEOUT=2.0,
        FEATURE_GATES_WEBHOOK_RETRIES=[0.01, 0.01, 0.01],
        FEATURE_GATES_ALERTS_INTERVAL=0.05,
        FEATURE_GATES_TRACKING="sync",
    )
    app.config.update(config)
    gates = FeatureGates(app)

    @gates.subject_loader
    def load() -> Subject:
        return Subject(int(request.view_args["user"]), "pro")  # type: ignore[index]

    @app.post("/reports/<int:user>")
    @feature_limit("reports")
    def report(user: int) -> str:
        return "ok"

    return app


def cross(app: Flask, user: int, uses: int = 10) -> None:
    """``uses`` metered uses by ``user`` (10 cross 80% and 100%: two alerts)."""
    client = app.test_client()
    for _ in range(uses):
        assert client.post(f"/reports/{user}").status_code == 200


def deliver_until(app: Flask, done: Callable[[], bool], seconds: float = 30) -> None:
    """Run delivery passes until ``done()`` (retries come due after their delay)."""
    gates: FeatureGates = app.extensions["feature_gates"].extension
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the alerts were not delivered in time"
        try:
            with app.app_context():
                gates.deliver_alerts()
        except StorageError:
            pass  # the database restarting: the next pass tries again
        time.sleep(0.02)
