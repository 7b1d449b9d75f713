"""The soak: Sentinel on a real threaded server, many clients on every plan doing
a random mix of calls for a bounded time; then nothing lost, nothing
over-granted, nothing corrupted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest
from chaos_support import SENTINEL_SETTINGS
from chaos_support import Http
from chaos_support import add_user
from sentinel_clients import SoakClient
from sentinel_clients import Tally
from sentinel_clients import User

from examples.sentinel.state import gates
from feature_gates.migrate import verify
from feature_gates.reports import gated_routes
from feature_gates.testing import serve

pytestmark = pytest.mark.chaos

PLANS = ("free", "pro", "enterprise")
DEMO_TOKENS = {
    "free": "sntl_demo_free",
    "pro": "sntl_demo_pro",
    "enterprise": "sntl_demo_enterprise",
}

#: Every thread: the legacy counter, the feature-gates counter and the rows agree.
THREAD_COUNTS = """
SELECT t.id, t.message_count, t.thread_messages_count,
       (SELECT count(*) FROM chat_messages m WHERE m.thread_id = t.id)
FROM chat_threads t ORDER BY t.id
"""

#: Every itinerary: destinations_count and the waypoints it counts.
ITINERARY_COUNTS = """
SELECT i.id, i.user_id, i.destinations_count,
       CASE WHEN jsonb_typeof(i.data -> 'waypoints') = 'array'
            THEN jsonb_array_length(i.data -> 'waypoints') ELSE 0 END
FROM travel_itineraries i ORDER BY i.id
"""

#: What feature_usage holds for the given users, all periods added up.
USAGE = """
SELECT user_id, feature, sum(usage_count)::bigint FROM feature_usage
WHERE user_id = ANY(%s) GROUP BY user_id, feature
"""

#: The largest count of one (user, feature) in one period, for the limit check.
PEAK_USAGE = """
SELECT user_id, feature, max(usage_count) FROM feature_usage
WHERE user_id = ANY(%s) GROUP BY user_id, feature
"""

HOLDINGS = """
SELECT u.id, (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id),
       (SELECT count(*) FROM saved_searches s WHERE s.user_id = u.id),
       (SELECT coalesce(max(t.thread_messages_count), 0) FROM chat_threads t
        WHERE t.user_id = u.id)
FROM users u WHERE u.id = ANY(%s)
"""


def soak_users(app, per_plan: int) -> list[User]:
    """``per_plan`` users on each plan: the demo account first, then new ones."""
    catalogue = app.extensions["feature_gates"].catalogue
    accounts = app.extensions["sentinel"].accounts
    metered = frozenset(route.feature for route in gated_routes(app) if route.kind == "metered")
    users = []
    for plan in PLANS:
        limits = {f: catalogue.entitlement(plan, f).limit for f in catalogue.kinds}
        for n in range(per_plan):
            token = DEMO_TOKENS[plan] if n == 0 else f"sntl_chaos_{plan}_{n}"
            if n == 0:
                user_id = accounts.user_for_token(token).id
            else:
                user_id = add_user(app, f"{plan}{n}@chaos.example", plan, token)
            users.append(User(user_id, plan, token, limits, metered))
    return users


def run_clients(
    base_url: str, users: list[User], clients: int, seconds: float, *, outages: bool = False
) -> Tally:
    """``clients`` clients spread over ``users``, all calling for ``seconds``."""
    http = Http(base_url)
    deadline = time.monotonic() + seconds
    running = [
        SoakClient(http, users[n % len(users)], seed=n, deadline=deadline, outages=outages)
        for n in range(clients)
    ]
    threads = [threading.Thread(target=c.run, name=f"soak-client-{c.name}") for c in running]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally = Tally()
    for client in running:
        tally.merge(client.tally)
    return tally


def check_counters(url: str, users: list[User]) -> dict[str, int]:
    """The app's counters agree with its rows, and hold what the plans allow."""
    by_id = {u.id: u for u in users}
    with psycopg.connect(url, autocommit=True) as conn:
        threads = conn.execute(THREAD_COUNTS).fetchall()
        drifted = [row for row in threads if not row[1] == row[2] == row[3]]
        assert drifted == [], "message_count, thread_messages_count and COUNT(*) differ"

        itineraries = conn.execute(ITINERARY_COUNTS).fetchall()
        assert [row for row in itineraries if row[2] != row[3]] == []
        for _, owner, count, _ in itineraries:
            if owner in by_id:
                limit = by_id[owner].limits["itinerary_destinations"]
                assert limit is None or count <= limit, (owner, count, limit)

        for user_id, tokens, searches, fullest in conn.execute(HOLDINGS, (list(by_id),)):
            limits = by_id[user_id].limits
            for held, feature in ((tokens, "api_access_tokens"), (searches, "saved_searches")):
                assert limits[feature] is None or held <= limits[feature], (user_id, feature)
            assert fullest <= 500
    assert verify(url, SENTINEL_SETTINGS) == []
    messages = sum(row[3] for row in threads)
    return {"threads": len(threads), "messages": messages, "itineraries": len(itineraries)}


def check_usage(
    url: str, users: list[User], expected: Counter[tuple[int, str]], *, within_limits: bool = True
) -> None:
    """feature_usage holds exactly ``expected`` for ``users`` and, unless the gates
    failed open, no metered count above its limit."""
    by_id = {u.id: u for u in users}
    with psycopg.connect(url, autocommit=True) as conn:
        recorded = {(u, f): n for u, f, n in conn.execute(USAGE, (list(by_id),)).fetchall()}
        assert recorded == {key: n for key, n in expected.items() if n}
        if not within_limits:
            return
        for user_id, feature, peak in conn.execute(PEAK_USAGE, (list(by_id),)).fetchall():
            user = by_id[user_id]
            if feature in user.metered:
                limit = user.limits[feature]
                assert limit is None or peak <= limit, (user_id, feature, peak, limit)


def test_soak_loses_nothing_grants_nothing_extra_corrupts_nothing(
    feature_gates_database_url, make_sentinel, budget, quiet_server_log, report
):
    url = feature_gates_database_url
    app = make_sentinel(url, SENTINEL_DEMO_DATA=True)
    users = soak_users(app, budget.soak_users_per_plan)
    started = time.monotonic()
    with serve(app) as base_url:
        tally = run_clients(base_url, users, budget.soak_clients, budget.soak_seconds)
    elapsed = time.monotonic() - started
    with app.app_context():
        gates.flush(timeout=60)

    assert tally.wrong == []
    statuses = Counter()
    for (_, status), n in tally.answers.items():
        statuses[status] += n
    assert not [s for s in statuses if s >= 500]
    checked = check_counters(url, users)
    check_usage(url, users, tally.used)

    calls = Counter()
    for (call, _), n in tally.answers.items():
        calls[call] += n
    report(
        seconds=round(elapsed, 1),
        clients=budget.soak_clients,
        users=len(users),
        requests=tally.requests,
        requests_per_second=round(tally.requests / elapsed),
        statuses={str(s): n for s, n in sorted(statuses.items())},
        calls=dict(sorted(calls.items())),
        uses_counted=sum(tally.used.values()),
        **checked,
    )
