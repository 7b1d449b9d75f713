"""Sentinel deployed as docs/deployment.md deploys it: a real gunicorn (sync workers,
``--preload``, gthread), every connection through a real PgBouncer in transaction
mode with two server connections per database (tests/pooler.py), migrations applied
beforehand on a direct connection.

After a bounded load and a graceful stop (SIGTERM): no 5xx, every answer right for
its caller, ``feature_usage`` equal to the uses the clients counted, nobody above a
limit. A worker killed with SIGKILL loses at most the uses it tracked in its last
flush interval; workers recycled by ``--max-requests`` lose nothing. And after a 5 s
pooler restart, metered checks reach the database again soon after it answers.

``pytest --long tests/chaos/test_deploy.py`` repeats issue 12's run: 4 sync
workers, 4 with ``--preload``, gthread 4 x 8, 16 clients for 60 s each.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

import psycopg
import pytest
from chaos_support import Http
from gunicorn_server import Gunicorn
from test_outage import gated_app
from test_outage import recoveries
from test_soak import check_counters
from test_soak import check_usage
from test_soak import run_clients
from test_soak import soak_users

from examples.sentinel.state import gates
from feature_gates.migrate import MigrationSettings

pytestmark = pytest.mark.chaos

SENTINEL = "examples.sentinel:create_app()"

#: Lines gunicorn's log must never hold after a run.
BAD_LOG_LINES = ("Traceback", " ERROR ", " CRITICAL ", "usage lost", "WORKER TIMEOUT")


def serving(kind: str, workers: int, threads: int) -> tuple[list[str], str]:
    """gunicorn's options for ``kind``, and the app with its pools sized as
    docs/deployment.md says: the package's for the requests served at once and the
    usage writer, the app's for the requests."""
    options = ["--workers", str(workers), "--graceful-timeout", "30"]
    if kind == "preload":
        options.append("--preload")
    if kind != "gthread":
        threads = 1
    else:
        options += ["--worker-class", "gthread", "--threads", str(threads)]
    sizes = {"FEATURE_GATES_POOL_MAX_SIZE": threads + 1, "SENTINEL_POOL_MAX_SIZE": threads}
    return options, f"examples.sentinel:create_app({sizes!r})"


@pytest.fixture
def deployment(feature_gates_database_url, pooler, make_sentinel, tmp_path):
    """``deploy(options, per_plan)``: users on every plan made on the direct URL
    (the deploy step's side), then Sentinel under gunicorn through the pooler.
    Returns (the unstarted server, the users)."""

    def deploy(options: list[str], per_plan: int, app: str = SENTINEL):
        direct = make_sentinel(feature_gates_database_url, SENTINEL_DEMO_DATA=True)
        users = soak_users(direct, per_plan)
        with direct.app_context():
            gates.flush(timeout=60)  # the demo history, before anything is counted
        server = Gunicorn(
            app, options, pooler.url(feature_gates_database_url), tmp_path / "gunicorn.log"
        )
        return server, users

    return deploy


def workers_stopped_seconds(server: Gunicorn) -> float:
    """From the master handling SIGTERM to the last worker's tracker stopped (its
    pending uses written), read from the log's timestamps."""
    stamps = {}
    for line in server.log().splitlines():
        if "Handling signal: term" in line:
            stamps["term"] = line[:23]
        elif "the usage tracker stopped" in line and f"[{server.pid}]" not in line:
            stamps["stopped"] = line[:23]
    term, stopped = (
        datetime.strptime(stamps[k], "%Y-%m-%d %H:%M:%S,%f") for k in ("term", "stopped")
    )
    return (stopped - term).total_seconds()


def check_log(server: Gunicorn) -> None:
    log = server.log()
    bad = [line for line in log.splitlines() if any(mark in line for mark in BAD_LOG_LINES)]
    assert bad == [], "\n".join(bad[:20])


@pytest.mark.parametrize("kind", ["sync", "preload", "gthread"])
def test_sentinel_under_gunicorn_through_pgbouncer_counts_exactly(
    kind, deployment, feature_gates_database_url, budget, report
):
    options, app = serving(kind, budget.served_workers, budget.served_threads)
    server, users = deployment(options, per_plan=2, app=app)
    with server:
        tally = run_clients(server.url, users, budget.served_clients, budget.served_seconds)
        code, stop_seconds = server.stop(signal.SIGTERM)

    assert code == 0, server.log()[-3000:]
    assert tally.wrong == []
    statuses: Counter[int] = Counter()
    for (_, status), n in tally.answers.items():
        statuses[status] += n
    assert [s for s in statuses if s >= 500] == []
    # Every use the clients saw succeed, no more, and no metered count over its limit.
    check_usage(feature_gates_database_url, users, tally.used)
    checked = check_counters(feature_gates_database_url, users)
    check_log(server)
    report(
        kind=kind,
        options=" ".join(options),
        app=app,
        seconds=budget.served_seconds,
        clients=budget.served_clients,
        requests=tally.requests,
        requests_per_second=round(tally.requests / budget.served_seconds),
        statuses={str(s): n for s, n in sorted(statuses.items())},
        uses_counted=sum(tally.used.values()),
        graceful_stop_seconds=round(stop_seconds, 2),
        workers_stopped_seconds=workers_stopped_seconds(server),
        **checked,
    )


# -- a worker killed, workers recycled ---------------------------------------------


class Caller:
    """Calls one endpoint in a loop until ``stop`` is set, keeping the time and the
    status of each answer (0: no answer, as when the worker is killed under it)."""

    def __init__(self, http: Http, method: str, path: str, token: str, body: Any = None):
        self.http, self.method, self.path, self.token, self.body = http, method, path, token, body
        self.answers: list[tuple[float, int]] = []

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                reply = self.http.call(self.method, self.path, token=self.token, json=self.body)
                status = reply.status
            except (OSError, http.client.HTTPException):
                status = 0
            self.answers.append((time.monotonic(), status))

    def ok(self, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for at, status in self.answers if since <= at <= until and 200 <= status < 300)


def run_callers(callers: list[Caller], seconds: float, during: Any = None) -> None:
    """Run ``callers`` for ``seconds``; ``during()`` is called half-way."""
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in callers]
    for thread in threads:
        thread.start()
    try:
        time.sleep(seconds / 2)
        if during is not None:
            during()
        time.sleep(seconds / 2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def usage_by_feature(url: str, user_ids: list[int]) -> Counter[tuple[int, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT user_id, feature, sum(usage_count)::bigint FROM feature_usage "
            "WHERE user_id = ANY(%s) GROUP BY 1, 2",
            (user_ids,),
        ).fetchall()
    return Counter({(user_id, feature): n for user_id, feature, n in rows})


def test_a_sigkilled_worker_loses_at_most_the_uses_of_its_last_flush_interval(
    deployment, feature_gates_database_url, report
):
    interval = 1.0  # FEATURE_GATES_FLUSH_INTERVAL, the default
    server, users = deployment(["--workers", "1"], per_plan=1)
    free, pro = users[0], users[1]
    killed: dict[str, Any] = {}
    with server:
        http = Http(server.url, timeout=30)
        # Tracked: the analyst notes of a tier gate; metered: a free user's messages.
        tracked = [Caller(http, "GET", "/intel", pro.token) for _ in range(3)]
        thread = http.call("POST", "/threads", token=free.token, json={"title": "t"}).json()
        metered = Caller(
            http,
            "POST",
            f"/threads/{thread['id']}/messages",
            free.token,
            {"messages": [{"content": "hello"}]},
        )

        def kill() -> None:
            (worker,) = server.workers()
            killed["at"] = time.monotonic()
            os.kill(worker, signal.SIGKILL)

        run_callers([*tracked, metered], 5.0, during=kill)
        code, _ = server.stop(signal.SIGTERM)
    assert code == 0, server.log()[-3000:]

    at = killed["at"]
    counted = sum(c.ok() for c in tracked)
    recorded = usage_by_feature(feature_gates_database_url, [pro.id, free.id])
    lost = counted - recorded[(pro.id, "analyst_intelligence")]
    # The worker writes what it tracked every interval: at most the uses it answered
    # in the interval before it was killed are gone (and none of another worker's).
    last_interval = sum(c.ok(at - interval, at) for c in tracked)
    in_flight = len(tracked)  # tracked, then killed before the answer left
    assert -in_flight <= lost <= last_interval, (lost, last_interval, counted)
    # A metered use is consumed in the database before the view runs: never lost,
    # never over the limit (a call killed in flight may have consumed one).
    messages = recorded[(free.id, "chat_messages_monthly")]
    assert metered.ok() <= messages <= min(metered.ok() + 1, 50)
    report(
        tracked_uses_counted=counted,
        tracked_uses_lost=lost,
        tracked_uses_in_the_last_interval=last_interval,
        messages_counted=metered.ok(),
        messages_recorded=messages,
    )


def test_workers_recycled_by_max_requests_lose_nothing(
    deployment, feature_gates_database_url, budget, report
):
    options = ["--workers", "2", "--max-requests", "40", "--max-requests-jitter", "10"]
    server, users = deployment(options, per_plan=2)
    with server:
        first = set(server.workers())
        tally = run_clients(server.url, users, budget.served_clients, budget.served_seconds)
        last = set(server.workers())
        code, _ = server.stop(signal.SIGTERM)
    assert code == 0, server.log()[-3000:]
    recycled = server.log().count("Autorestarting worker")
    assert recycled > 0 and first != last, "no worker reached --max-requests"
    assert tally.wrong == []
    assert not [s for (_, s) in tally.answers if s >= 500]
    check_usage(feature_gates_database_url, users, tally.used)
    check_log(server)
    report(requests=tally.requests, workers_recycled=recycled)


# -- the pooler restarted ---------------------------------------------------------


def test_metered_checks_reach_the_database_soon_after_a_5_s_pooler_restart(
    own_pooler, own_databases, budget, report
):
    """Fail open while PgBouncer is away for 5 s; then the seconds from PgBouncer
    answering again to the first metered check that reached the database.
    Reported, not bounded: docs/reliability.md."""
    url = own_databases.create(MigrationSettings())
    app, closing = gated_app(own_pooler.url(url), "open", FEATURE_GATES_HEADERS_ENABLED=True)
    client = app.test_client()
    pro = {"X-User": "1", "X-Plan": "pro"}

    def checked() -> bool:
        response = client.post("/messages", headers=pro)
        assert response.status_code == 201, response.get_data(as_text=True)
        return "X-Feature-Remaining" in response.headers

    try:
        seconds, unchecked = recoveries(
            checked, own_pooler.halt, own_pooler.start, budget.outages, 5.0
        )
    finally:
        closing.close(app, timeout=60)
    report(
        restarts=len(seconds),
        seconds_to_first_checked_call=seconds,
        calls_not_checked_after_restart=unchecked,
    )
