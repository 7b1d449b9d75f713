"""The ceiling of a single-row design: one organisation's pool under 16 threads.

Every metered check of an organisation pool locks the pool's row (then the
member's share) for its statement and its commit, so one busy organisation is
bounded by what one row takes. Measured against the same load spread over 16
users (16 rows), with durable commits, each thread on a connection of its own
calling ``feature_usage_consume`` as fast as it can for a fixed time.

``hot_org_uses_per_s``
    Granted uses per second, 16 threads on one pool (16 members, a per-user cap
    never reached).
``spread_users_uses_per_s``
    The same, 16 threads each on a user of its own.
``hot_org_vs_spread_users``
    The ratio of the two.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import psycopg

from . import harness

THREADS = 16
SECONDS = {"full": 10.0, "quick": 4.0, "smoke": 0.3}
LIMIT = 2**40

CONSUME = """
SELECT refused FROM feature_usage_consume(
    %s, 'reports', %s, 'month', %s, 0, NULL, 1, %s, %s, %s, NULL)
"""


def _uses_per_second(url: str, params: list[tuple[Any, ...]], seconds: float) -> float:
    """Granted uses per second, one thread per set of ``params``."""
    stop = threading.Event()
    granted = [0] * len(params)
    barrier = threading.Barrier(len(params) + 1)

    def work(index: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            while not stop.is_set():
                (refused,) = conn.execute(CONSUME, params[index], prepare=True).fetchone() or (
                    "none",
                )
                granted[index] += refused is None

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(params))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(granted) / (time.perf_counter() - started)


def measure(url: str, scale: harness.Scale) -> dict[str, Any]:
    period = date.today().replace(day=1)
    seconds = SECONDS[scale]
    hot = [(1, "org", period, LIMIT, member, LIMIT) for member in range(1, THREADS + 1)]
    spread = [(user, "user", period, LIMIT, None, None) for user in range(1, THREADS + 1)]
    hot_rate = _uses_per_second(url, hot, seconds)
    spread_rate = _uses_per_second(url, spread, seconds)
    return {
        "hot_org_uses_per_s": int(hot_rate),
        "spread_users_uses_per_s": int(spread_rate),
        "hot_org_vs_spread_users": harness.ratio(hot_rate, spread_rate),
    }
