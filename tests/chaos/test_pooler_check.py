"""How well the migration runner tells one session from a transaction pooler:
its check (feature_gates.migrate.lock.prove_one_session) run many times against
PgBouncer idle, busy, in session mode, and against PostgreSQL directly.

Idle poolers are refused every time, session-mode poolers and direct
connections pass every time; under load a pooler may pass a check by chance
(each of the runner's transactions then checks again), and how often is
reported under "chaos figures".
"""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest
from pooler import PgBouncer
from pooler import busy

from feature_gates.migrate.lock import NotOneSession
from feature_gates.migrate.lock import prove_one_session

pytestmark = pytest.mark.chaos


def checks(url: str, times: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for _ in range(times):
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            try:
                prove_one_session(conn, url)
                outcomes["passed"] += 1
            except NotOneSession as refused:
                outcomes["refused: " + refused.reason] += 1
    return outcomes


@pytest.mark.parametrize(
    ("kind", "pool_size", "settings", "clients"),
    [
        ("idle", 2, {}, 0),
        ("busy, 2 server connections", 2, {}, 8),
        ("busy, 20 server connections", 20, {}, 8),
        ("busy, 20 in turn", 20, {"server_round_robin": "1"}, 3),
        ("session mode", 4, {"pool_mode": "session"}, 2),
    ],
)
def test_the_one_session_check_against_pgbouncer(
    feature_gates_server_url, empty_url, budget, report, kind, pool_size, settings, clients
):
    with PgBouncer(feature_gates_server_url, pool_size=pool_size, settings=settings) as bouncer:
        url = bouncer.url(empty_url)
        with busy(url, clients):
            outcomes = checks(url, budget.session_checks)
    report(kind=kind, checks=budget.session_checks, **outcomes)
    if kind == "session mode":
        assert outcomes == Counter(passed=budget.session_checks)
    elif kind == "idle":
        assert outcomes == Counter(
            {
                "refused: a second connection to the same URL was handed this session's "
                "server connection": budget.session_checks
            }
        )
    else:
        assert sum(n for outcome, n in outcomes.items() if outcome != "passed") > 0


def test_the_one_session_check_passes_a_direct_connection(empty_url, budget, report):
    outcomes = checks(empty_url, budget.session_checks)
    report(kind="direct", checks=budget.session_checks, **outcomes)
    assert outcomes == Counter(passed=budget.session_checks)
