"""PostgreSQL stopped and started again under load (a server of this module's own).

A gated app whose callers are named by request headers (as with a signed
session or a JWT, the gates need no database to know who is asking) is soaked
while its database goes away and comes back: boolean and tier gates keep
answering, metered gates follow the fail mode, and every use that succeeded is
in the database once it is back, exactly. Then Sentinel, whose every call
needs its database, through the same outage.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import psycopg
import pytest
from chaos_support import SENTINEL_SETTINGS
from chaos_support import Http
from flask import Flask
from flask import request
from test_soak import check_counters
from test_soak import check_usage
from test_soak import run_clients
from test_soak import soak_users

from examples.sentinel.state import gates as sentinel_gates
from feature_gates import FeatureGates
from feature_gates import Subject
from feature_gates import feature_limit
from feature_gates import feature_required
from feature_gates import feature_tier
from feature_gates.migrate import MigrationSettings
from feature_gates.signals import storage_unavailable
from feature_gates.testing import fire_concurrently
from feature_gates.testing import serve

pytestmark = pytest.mark.chaos

PLANS = {
    "free": {"reports": False, "messages": 40},
    "pro": {"reports": True, "messages": 400},
    "enterprise": {"reports": True, "messages": None},
}
#: (path, method, feature) of each call a client makes, with its weight.
CALLS = [("/report", "GET", "reports", 2), ("/intel", "GET", "intel", 2),
         ("/messages", "POST", "messages", 6)]  # fmt: skip
PROBLEM = "application/problem+json"


#: The warning of a refund the database was not there to take: its uses stay counted.
KEPT_USES = re.compile(r"(\d+) uses of '([^']+)' by (\d+) not refunded")


def gated_app(url: str, fail_mode: str, **config: Any) -> tuple[Flask, FeatureGates]:
    app = Flask(__name__)
    app.config.update(
        FEATURE_GATES_DATABASE_URL=url,
        FEATURE_GATES_PLANS=PLANS,
        FEATURE_GATES_FAIL_MODE=fail_mode,
        FEATURE_GATES_FLUSH_INTERVAL=0.05,
        FEATURE_GATES_FLUSH_MAX_BACKOFF=0.5,
        **config,
    )
    gates = FeatureGates()

    @gates.subject_loader
    def caller():
        return Subject(int(request.headers["X-User"]), request.headers["X-Plan"])

    @app.get("/report")
    @feature_required("reports")
    def report():
        return {"report": "ok"}

    @app.get("/intel")
    @feature_tier("pro", feature="intel")
    def intel():
        return {"intel": "ok"}

    @app.post("/messages")
    @feature_limit("messages")
    def message():
        return {"sent": True}, 201

    gates.init_app(app)
    return app, gates


@dataclass(frozen=True)
class Answer:
    began: float
    ended: float
    user: int
    plan: str
    path: str
    status: int
    mimetype: str
    retry_after: str | None


@dataclass
class Timeline:
    """Every answer, and when the database went away and came back."""

    answers: list[Answer] = field(default_factory=list)
    #: (halt called, halted, start called, started, app saw it back) per outage.
    outages: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def during_outage(self, answer: Answer) -> bool:
        return any(down < answer.began and answer.ended < up for _, down, up, *_ in self.outages)

    def after_recovery(self, answer: Answer) -> bool:
        return answer.began > self.outages[-1][4]


def client(http: Http, user: int, plan: str, seed: int, stop: threading.Event, timeline: Timeline):
    rng = random.Random(seed)
    headers = {"X-User": str(user), "X-Plan": plan}
    paths = [(p, m) for p, m, _, _ in CALLS]
    weights = [w for *_, w in CALLS]
    while not stop.is_set():
        path, method = rng.choices(paths, weights)[0]
        began = time.monotonic()
        reply = http.call(method, path, headers=headers)
        answer = Answer(
            began,
            time.monotonic(),
            user,
            plan,
            path,
            reply.status,
            reply.mimetype,
            reply.headers.get("Retry-After"),
        )
        with timeline.lock:
            timeline.answers.append(answer)


def run_through_outages(base_url, users, own_server, budget, recovered) -> Timeline:
    """Clients call until the database went away ``budget.outages`` times, came
    back each time and ``recovered()`` says the app noticed; then a little longer."""
    timeline = Timeline()
    stop = threading.Event()
    http = Http(base_url)
    threads = [
        threading.Thread(target=client, args=(http, user, plan, n, stop, timeline))
        for n, (user, plan) in enumerate(users * 2)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(budget.outages):
            time.sleep(budget.outage_seconds)
            halting = time.monotonic()
            own_server.halt()
            down = time.monotonic()
            time.sleep(budget.outage_seconds)
            starting = time.monotonic()
            own_server.start()
            started = time.monotonic()
            deadline = started + 60
            while not recovered():
                assert time.monotonic() < deadline, "the app never saw the database again"
                time.sleep(0.05)
            timeline.outages.append((halting, down, starting, started, time.monotonic()))
        time.sleep(budget.outage_seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return timeline


FEATURES = {path: feature for path, _, feature, _ in CALLS}


def expected_statuses(answer: Answer, fail_mode: str) -> set[int]:
    entitled = answer.plan != "free"
    if answer.path in ("/report", "/intel"):
        return {200} if entitled else {403}
    if answer.plan == "enterprise":
        return {201}
    return {201, 429} | ({503} if fail_mode == "closed" else set())


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_gates_answer_through_an_outage_and_count_every_use_once(
    own_server, own_databases, fail_mode, budget, quiet_server_log, report
):
    url = own_databases.create(MigrationSettings())
    app, gates = gated_app(url, fail_mode)
    users = [(n, plan) for n, plan in enumerate(["free", "pro", "enterprise"] * 2, start=1)]

    def recovered():
        # A metered check reached the database again, and the writer wrote.
        with app.app_context():
            gates.check("messages", Subject(1, "free"))
            down = gates.storage_stats().unavailable_since
            return down is None and gates.tracking_stats().last_error is None

    try:
        with serve(app) as base_url:
            timeline = run_through_outages(base_url, users, own_server, budget, recovered)
        with app.app_context():
            gates.flush(timeout=60)
            stats = gates.tracking_stats()
    finally:
        gates.close(app, timeout=60)

    answers = timeline.answers
    wrong = [a for a in answers if a.status not in expected_statuses(a, fail_mode)]
    assert wrong == []
    assert all(a.mimetype == PROBLEM for a in answers if a.status >= 400)

    during = [a for a in answers if timeline.during_outage(a)]
    by_path = Counter(a.path for a in during)
    assert min(by_path[p] for p in FEATURES) > 0, by_path  # every gate was called while down
    limited = [a for a in during if a.path == "/messages" and a.plan != "enterprise"]
    if fail_mode == "open":
        assert {a.status for a in limited} == {201}
    else:
        assert {a.status for a in limited} == {503}
        assert all(int(a.retry_after or 0) > 0 for a in limited)
    after = [a for a in answers if timeline.after_recovery(a) and a.path == "/messages"]
    assert 503 not in {a.status for a in after}

    succeeded = Counter((a.user, FEATURES[a.path]) for a in answers if a.status < 400)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT user_id, feature, sum(usage_count)::bigint FROM feature_usage "
            "GROUP BY user_id, feature"
        ).fetchall()
    assert {(u, f): n for u, f, n in rows} == dict(succeeded)
    assert (stats.pending, stats.dropped, stats.rejected) == (0, 0, 0)
    plan_of = dict(users)
    over = {}
    for (user, feature), n in succeeded.items():
        limit = PLANS[plan_of[user]][feature] if feature == "messages" else None
        if limit is not None and n > limit:
            over[user] = n - limit
    if fail_mode == "closed":
        assert over == {}
    statuses = Counter(a.status for a in answers)
    report(
        fail_mode=fail_mode,
        outages=len(timeline.outages),
        outage_seconds=budget.outage_seconds,
        requests=len(answers),
        requests_during_outages=len(during),
        statuses={str(s): n for s, n in sorted(statuses.items())},
        uses_recorded=sum(succeeded.values()),
        tracked_during_outage=sum(1 for a in during if a.status < 400),
        granted_over_limit_by_fail_open=sum(over.values()),
        write_retries=stats.retries,
        seconds_to_notice_recovery=[round(seen - up, 1) for *_, up, seen in timeline.outages],
    )


def recoveries(
    checked: Callable[[], bool],
    down: Callable[[], None],
    up: Callable[[], None],
    outages: int,
    away: float,
) -> tuple[list[float], int]:
    """``outages`` times: ``down()``, ``away`` seconds in which no metered call is
    checked, ``up()``. Returns the seconds from each ``up()`` to the first checked
    call, and the calls not checked after an ``up()``."""
    seconds, unchecked = [], 0
    assert checked()
    for _ in range(outages):
        down()
        until = time.monotonic() + away
        while time.monotonic() < until:
            assert not checked()
            time.sleep(0.05)
        up()
        back = time.monotonic()
        while not checked():
            unchecked += 1
            assert time.monotonic() - back < 60, "the gates never saw the database again"
            time.sleep(0.01)
        seconds.append(round(time.monotonic() - back, 2))
    return seconds, unchecked


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_metered_checks_reach_the_database_soon_after_it_is_back(
    own_server, own_databases, budget, fail_mode, report
):
    """After each restart: the seconds from the server accepting connections again to
    the first metered check that reached it (fail open granting unchecked, or fail
    closed refusing, until then). Reported, not bounded: docs/reliability.md."""
    url = own_databases.create(MigrationSettings())
    # With the limit headers, a consumed call says what is left; one let through by
    # fail open, uncounted, does not.
    app, gates = gated_app(url, fail_mode, FEATURE_GATES_HEADERS_ENABLED=True)
    client = app.test_client()
    pro = {"X-User": "1", "X-Plan": "pro"}

    def checked() -> bool:
        response = client.post("/messages", headers=pro)
        return response.status_code == 201 and "X-Feature-Remaining" in response.headers

    try:
        # Long enough for the probes to back off to their longest.
        away = max(budget.outage_seconds, 1.5)
        seconds, unchecked = recoveries(
            checked, own_server.halt, own_server.start, max(budget.outages, 3), away
        )
    finally:
        gates.close(app, timeout=60)
    report(
        fail_mode=fail_mode,
        restarts=len(seconds),
        seconds_to_first_checked_call=seconds,
        calls_not_checked_after_restart=unchecked,
    )


def test_sentinel_answers_503_while_its_database_is_away_and_recovers(
    own_server, own_databases, make_sentinel, budget, quiet_server_log, report, caplog
):
    """Every Sentinel call needs its database (the token is looked up there): while
    it is away, calls wait for it or answer 503 problem+json, never 500, and once
    it is back the counters are exact and every use is counted once."""
    url = own_databases.create(SENTINEL_SETTINGS)
    app = make_sentinel(url, SENTINEL_DEMO_DATA=True)
    users = soak_users(app, 1)
    seconds = budget.outage_seconds * 2 * (budget.outages + 1)
    result = {}
    with caplog.at_level(logging.WARNING, logger="feature_gates"), serve(app) as base_url:
        clients = threading.Thread(
            target=lambda: result.update(
                tally=run_clients(base_url, users, budget.soak_clients // 2, seconds, outages=True)
            )
        )
        clients.start()
        try:
            for _ in range(budget.outages):
                time.sleep(budget.outage_seconds)
                own_server.halt()
                time.sleep(budget.outage_seconds)
                own_server.start()
        finally:
            own_server.start()
            clients.join()
    with app.app_context():
        sentinel_gates.flush(timeout=60)

    tally = result["tally"]
    assert tally.wrong == []
    # A metered call that failed while the database was away may have kept its
    # uses: the gate says so, with the amount, when it cannot give them back.
    kept = Counter()
    for record in caplog.records:
        kept_uses = KEPT_USES.match(record.getMessage())
        if record.name == "feature_gates" and kept_uses:
            amount, feature, user_id = kept_uses.groups()
            kept[(int(user_id), feature)] += int(amount)
    checked = check_counters(url, users)
    check_usage(url, users, tally.used + kept, within_limits=False)
    statuses = Counter()
    for (_, status), n in tally.answers.items():
        statuses[status] += n
    report(
        outages=budget.outages,
        outage_seconds=budget.outage_seconds,
        requests=tally.requests,
        statuses={str(s): n for s, n in sorted(statuses.items())},
        uses_recorded=sum(tally.used.values()),
        uses_kept_by_failed_refunds=sum(kept.values()),
        **checked,
    )


def test_a_restart_between_requests_is_not_an_outage(own_server, own_databases, quiet_server_log):
    """A restart closes every connection the pool keeps: the next checks must get
    new ones, not take the closed ones for a database that is away."""
    url = own_databases.create(MigrationSettings())
    app, gates = gated_app(url, "closed")
    state = app.extensions["feature_gates"]
    outages = []
    storage_unavailable.connect(lambda sender, **data: outages.append(data), app, weak=False)
    headers = {"X-User": "7", "X-Plan": "pro"}
    try:
        with serve(app) as base_url:
            # Enough at once that the pool keeps several connections.
            assert fire_concurrently(base_url, "POST", "/messages", n=16, headers=headers).allowed
            assert state.engine.storage.pool.get().get_stats()["pool_size"] > 1
            own_server.halt()
            own_server.start()
            # The usage writer is first to meet the closed connections.
            assert Http(base_url).call("GET", "/report", headers=headers).status == 200
            with app.app_context():
                gates.flush(timeout=10)
            after = fire_concurrently(base_url, "POST", "/messages", n=16, headers=headers)
            again = Http(base_url).call("POST", "/messages", headers=headers)
    finally:
        gates.close(app, timeout=60)
    assert after.statuses == Counter({201: 16})
    assert again.status == 201
    assert outages == []
