"""Alert crossings on a real PostgreSQL: recorded in the transaction that moves
a count (the metered check, the writer's batches, a hand-called increment),
once per period and threshold however usage teeters, each threshold a batch
jumps over, exactly once under 32 racers, and a rolling window's re-arming."""

from __future__ import annotations

import threading
import uuid
from datetime import date
from decimal import Decimal

import psycopg
import pytest

MARCH = date(2026, 3, 1)
APRIL = date(2026, 4, 1)
EPOCH = date(1970, 1, 1)
ALERTS = ["0.8", "1.0"]

CONSUME = """
SELECT refused, used, member_used
FROM feature_usage_consume(%(subject)s, %(feature)s, %(scope)s, %(period)s, %(start)s,
                           %(offset)s, NULL, %(amount)s, %(limit)s, %(member)s,
                           %(member_limit)s, %(bucket)s, %(thresholds)s::numeric[], 'pro')
"""

REFUND = """
SELECT feature_usage_refund(%(subject)s, %(feature)s, %(scope)s, %(period)s, %(start)s,
                            %(offset)s, %(amount)s, %(member)s, %(bucket)s, %(bucket)s)
"""


def key(**changes):
    params = {
        "subject": 1,
        "feature": "reports",
        "scope": "user",
        "period": "month",
        "start": MARCH,
        "offset": 0,
        "member": None,
        "member_limit": None,
        "bucket": None,
        "thresholds": ALERTS,
    }
    params.update(changes)
    return params


def consume(conn, amount, limit=10, **changes):
    return conn.execute(CONSUME, {**key(**changes), "amount": amount, "limit": limit}).fetchone()


def refund(conn, amount, **changes):
    params = {**key(**changes), "amount": amount}
    return conn.execute(REFUND, params).fetchone()[0]


def alerts(conn):
    """(subject, scope, member, period_start, crossing, threshold, used, limit), oldest first."""
    return conn.execute(
        "SELECT user_id, scope, member, period_start, crossing, threshold, used, usage_limit "
        "FROM feature_usage_alerts ORDER BY id"
    ).fetchall()


def thresholds(rows):
    return [row[5] for row in rows]


def test_a_metered_check_records_each_threshold_it_reaches_with_usage_and_limit(db):
    assert consume(db, 7) == (None, 7, None)
    assert alerts(db) == []
    consume(db, 1)
    assert alerts(db) == [(1, "user", None, MARCH, 0, Decimal("0.8"), 8, 10)]
    consume(db, 2)
    assert thresholds(alerts(db)) == [Decimal("0.8"), Decimal("1.0")]
    (plan, state, event_id) = db.execute(
        "SELECT plan, state, event_id FROM feature_usage_alerts WHERE threshold = 1"
    ).fetchone()
    assert (plan, state, isinstance(event_id, uuid.UUID)) == ("pro", "pending", True)


def test_a_first_use_past_thresholds_records_them_all(db):
    consume(db, 9)
    assert thresholds(alerts(db)) == [Decimal("0.8")]
    consume(db, 10, feature="exports")
    assert thresholds(alerts(db)) == [Decimal("0.8"), Decimal("0.8"), Decimal("1.0")]


def test_teetering_around_a_threshold_a_thousand_times_records_it_once(db):
    consume(db, 7)
    for _ in range(1000):
        assert consume(db, 1)[1] == 8
        assert refund(db, 1) == 7
    assert thresholds(alerts(db)) == [Decimal("0.8")]


def test_a_new_period_starts_clean(db):
    consume(db, 8)
    consume(db, 8, start=APRIL)
    assert [(row[3], row[5]) for row in alerts(db)] == [
        (MARCH, Decimal("0.8")),
        (APRIL, Decimal("0.8")),
    ]


def test_a_refused_check_and_no_thresholds_record_nothing(db):
    consume(db, 7)
    assert consume(db, 4)[0] == "user"
    consume(db, 5, feature="exports", thresholds=None)
    consume(db, 5, feature="exports", thresholds=None)
    assert alerts(db) == []


def test_a_writer_batch_jumping_from_70_to_110_percent_records_both_thresholds(db):
    consume(db, 7)
    db.execute(
        "SELECT * FROM feature_usage_write_batch(%s, '{}', '{1}', '{reports}', '{user}', "
        "'{month}', %s, '{0}', NULL, NULL, NULL, '{4}')",
        (uuid.uuid4(), [MARCH]),
    )
    assert [(row[5], row[6]) for row in alerts(db)] == [
        (Decimal("0.8"), 11),
        (Decimal("1.0"), 11),
    ]


def test_a_hand_called_increment_crosses_on_a_checked_row_and_not_on_an_unchecked_one(db):
    db.execute("SELECT increment_feature_usage_safe(2, 'reports', 50, %s)", (MARCH,))
    assert alerts(db) == []
    consume(db, 7)
    db.execute("SELECT increment_feature_usage_safe(1, 'reports', 1, %s)", (MARCH,))
    assert thresholds(alerts(db)) == [Decimal("0.8")]


def test_32_racers_pushing_one_subject_over_both_thresholds_record_one_row_each(
    feature_gates_database_url,
):
    barrier = threading.Barrier(32)
    taken = []

    def racer():
        with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
            barrier.wait()
            for _ in range(4):
                taken.append(consume(conn, 1, limit=100)[0] is None)

    threads = [threading.Thread(target=racer) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with psycopg.connect(feature_gates_database_url) as conn:
        rows = alerts(conn)
    assert sum(taken) == 100
    assert [(row[5], row[6]) for row in rows] == [(Decimal("0.8"), 80), (Decimal("1.0"), 100)]


def test_a_pool_and_a_members_cap_cross_apart_and_a_refused_member_leaves_no_pool_alert(db):
    org = {"subject": 100, "scope": "org", "member_limit": 5}
    assert consume(db, 4, member=7, **org)[0] is None  # member 7: 4 of 5 (0.8)
    assert [(row[1], row[2], row[5]) for row in alerts(db)] == [("org", 7, Decimal("0.8"))]
    assert consume(db, 4, member=8, **org)[0] is None  # pool 8 of 10, member 8: 4 of 5
    assert sorted((row[2] or 0, row[5]) for row in alerts(db)) == [
        (0, Decimal("0.8")),
        (7, Decimal("0.8")),
        (8, Decimal("0.8")),
    ]
    db.execute("DELETE FROM feature_usage_alerts")
    # Member 7 asks 2: the pool would reach 10 of 10, the member's cap refuses.
    assert consume(db, 2, member=7, **org)[0] == "user"
    assert alerts(db) == []


def test_a_rolling_window_fires_once_per_crossing_and_rearms_after_a_whole_window_below(db):
    window = {"period": "window:3600", "start": EPOCH}  # 60 buckets of 60 s
    consume(db, 8, bucket=1000, **window)
    assert [(row[4], row[5]) for row in alerts(db)] == [(1000, Decimal("0.8"))]
    refund(db, 1, bucket=1000, **window)  # 7: below
    consume(db, 1, bucket=1010, **window)  # 8 again, 10 buckets later: nothing
    consume(db, 1, bucket=1050, **window)  # 9
    assert len(alerts(db)) == 1
    # Bucket 1000 leaves the window at 1061: usage 2, below from then on.
    consume(db, 6, bucket=1100, **window)  # 1 (of 1050) + 6 = 7
    consume(db, 1, bucket=1110, **window)  # 8: below for 49 buckets only, nothing
    assert len(alerts(db)) == 1
    # 1050's use leaves at 1111: below again from 1111; the window's 60 buckets
    # later, at 1171, a crossing fires again.
    consume(db, 8, bucket=1171, **window)
    assert [(row[4], row[5], row[6]) for row in alerts(db)] == [
        (1000, Decimal("0.8"), 8),
        (1171, Decimal("0.8"), 8),
    ]


def test_a_rolling_window_below_for_one_bucket_short_of_a_window_does_not_fire(db):
    window = {"period": "window:3600", "start": EPOCH}
    consume(db, 8, bucket=1000, **window)  # below again from 1061
    consume(db, 8, bucket=1120, **window)
    assert len(alerts(db)) == 1
    consume(db, 10, feature="exports", bucket=1000, **window)  # both thresholds
    consume(db, 10, feature="exports", bucket=1121, **window)  # below from 1061: both again
    assert [row[5] for row in alerts(db)][1:] == [Decimal("0.8"), Decimal("1.0")] * 2


def test_a_window_pool_use_refused_by_a_members_cap_leaves_the_pools_alert_armed(db):
    org = {"subject": 100, "scope": "org", "member_limit": 5}
    window = {"period": "window:3600", "start": EPOCH, **org}
    consume(db, 5, member=7, bucket=1000, **window)  # pool 5 of 10; member 7 at its cap
    consume(db, 2, member=8, bucket=1000, **window)  # pool 7
    db.execute("DELETE FROM feature_usage_alerts")
    assert consume(db, 1, member=7, bucket=1001, **window)[0] == "user"  # pool would be 8
    assert alerts(db) == []
    consume(db, 1, member=8, bucket=1002, **window)  # pool 8 of 10: it crosses now
    assert [(row[2], row[4], row[5]) for row in alerts(db)] == [(None, 1002, Decimal("0.8"))]


@pytest.mark.parametrize("bad", [["0"], ["1.5"]])
def test_an_alert_threshold_outside_0_to_1_is_refused_by_the_table(db, bad):
    consume(db, 9, thresholds=bad)
    # The row records them, but an out-of-range threshold cannot be an alert.
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO feature_usage_alerts (user_id, feature, scope, period, period_start, "
            "period_offset, threshold, used, usage_limit) "
            "VALUES (1, 'x', 'user', 'month', %s, 0, %s, 1, 1)",
            (MARCH, bad[0]),
        )
