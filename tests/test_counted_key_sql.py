"""The counted key's functions on a real PostgreSQL: every kind of count in its
own row, organisation pools with members' caps moved together, rolling windows
against a brute-force reference under a moving clock, refunds to where the use
was taken from, the background writer's batches, archive and pruning."""

from __future__ import annotations

import threading
import uuid
from datetime import date

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from psycopg import errors

EPOCH = date(1970, 1, 1)
MARCH = date(2026, 3, 1)
APRIL = date(2026, 4, 1)

CONSUME = """
SELECT refused, used, member_used, buckets, member_buckets, newest_bucket
FROM feature_usage_consume(%(subject)s, %(feature)s, %(scope)s, %(period)s, %(start)s,
                           %(offset)s, %(end)s, %(amount)s, %(limit)s, %(member)s,
                           %(member_limit)s, %(bucket)s)
"""


def consume(conn, feature, amount, limit, **key):
    """(refused, used, member_used) of one metered check; the key defaults to a
    user's month of March 2026."""
    params = {
        "subject": 1,
        "feature": feature,
        "scope": "user",
        "period": "month",
        "start": MARCH,
        "offset": 0,
        "end": None,
        "amount": amount,
        "limit": limit,
        "member": None,
        "member_limit": None,
        "bucket": None,
    }
    params.update(key)
    row = conn.execute(CONSUME, params).fetchone()
    return row[:3]


def pool(conn, member, amount, *, org=100, feature="reports", limit=10, per_user=4, **key):
    return consume(
        conn,
        feature,
        amount,
        limit,
        subject=org,
        scope="org",
        member=member,
        member_limit=per_user,
        **key,
    )


def rows(conn, query="SELECT user_id, feature, scope, period, period_start, usage_count "):
    return sorted(conn.execute(query + "FROM feature_usage").fetchall())


# -- one row per rule ----------------------------------------------------------------


def test_each_counting_rule_counts_in_a_row_of_its_own(db):
    assert consume(db, "api", 3, 10) == (None, 3, None)
    assert consume(db, "api", 2, 10, period="day") == (None, 2, None)
    assert consume(
        db, "api", 1, 10, period="month@Europe/Paris", start=date(2026, 2, 28), offset=82800
    ) == (None, 1, None)
    assert consume(db, "api", 4, 10, period="lifetime", start=EPOCH) == (None, 4, None)
    assert consume(db, "api", 5, 10, scope="org") == (None, 5, None)
    assert rows(db) == [
        (1, "api", "org", "month", MARCH, 5),
        (1, "api", "user", "day", MARCH, 2),
        (1, "api", "user", "lifetime", EPOCH, 4),
        (1, "api", "user", "month", MARCH, 3),
        (1, "api", "user", "month@Europe/Paris", date(2026, 2, 28), 1),
    ]
    # The seed's functions see the default kind only: a user's UTC month.
    assert db.execute("SELECT get_feature_usage(1, 'api', '2026-03-01')").fetchone() == (3,)
    assert db.execute(
        "SELECT feature, usage_count FROM get_user_feature_usage(1, '2026-03-01')"
    ).fetchall() == [("api", 3)]


def test_a_metered_check_records_the_limit_and_the_period_end_in_force(db):
    end = "2026-03-02T00:00:00+00:00"
    consume(db, "api", 1, 10, period="day", end=end)
    consume(db, "api", 1, 12, period="day", end=end)
    row = db.execute("SELECT usage_limit, period_end::text FROM feature_usage").fetchone()
    assert row == (12, "2026-03-02 00:00:00+00")
    db.execute("SELECT consume_feature_usage(1, 'api', 1, 7, '2026-03-01')")
    row = db.execute(
        "SELECT usage_limit, period_end::text FROM feature_usage WHERE period = 'month'"
    ).fetchone()
    assert row == (7, "2026-04-01 00:00:00+00")


def test_a_refused_check_says_its_level_and_the_count_and_changes_nothing(db):
    assert consume(db, "api", 4, 5) == (None, 4, None)
    assert consume(db, "api", 2, 5) == ("user", 4, None)
    assert consume(db, "api", 6, 5) == ("user", 4, None)  # more than the whole limit
    assert consume(db, "new", 6, 5) == ("user", 0, None)  # and no row made for it
    assert rows(db, "SELECT feature, usage_count ") == [("api", 4)]


def test_a_downgrade_keeps_the_count_refuses_increases_and_allows_refunds(db):
    assert consume(db, "api", 8, 10) == (None, 8, None)
    assert consume(db, "api", 1, 5) == ("user", 8, None)
    assert db.execute(
        "SELECT feature_usage_refund(1, 'api', 'user', 'month', '2026-03-01', 0, 4)"
    ).fetchone() == (4,)
    assert consume(db, "api", 1, 5) == (None, 5, None)


# -- organisation pools --------------------------------------------------------------


def test_a_pool_and_a_members_share_move_together(db):
    assert pool(db, member=1, amount=3) == (None, 3, 3)
    assert pool(db, member=1, amount=2) == ("user", 3, 3)  # the member's cap of 4
    assert pool(db, member=2, amount=4) == (None, 7, 4)
    assert pool(db, member=3, amount=4) == ("org", 7, None)  # the pool of 10
    assert pool(db, member=3, amount=3) == (None, 10, 3)
    shares = db.execute(
        "SELECT user_id, usage_count FROM feature_usage_members ORDER BY user_id"
    ).fetchall()
    assert shares == [(1, 3), (2, 4), (3, 3)]
    assert rows(db, "SELECT user_id, scope, usage_count ") == [(100, "org", 10)]


def test_a_member_refused_by_a_cap_leaves_the_pool_as_it_was(db):
    pool(db, member=1, amount=4)
    assert pool(db, member=1, amount=1) == ("user", 4, 4)
    assert rows(db, "SELECT usage_count ") == [(4,)]


def test_an_unlimited_pool_still_caps_its_members(db):
    assert pool(db, member=1, amount=4, limit=None) == (None, 4, 4)
    assert pool(db, member=1, amount=1, limit=None) == ("user", 4, 4)
    assert pool(db, member=2, amount=4, limit=None) == (None, 8, 4)


def test_org_ids_and_user_ids_never_share_a_row(db):
    consume(db, "api", 2, 10, subject=7)
    pool(db, org=7, member=7, amount=3, feature="api")
    assert rows(db, "SELECT user_id, scope, usage_count ") == [(7, "org", 3), (7, "user", 2)]


def at_once(count, work):
    """``work(i)`` for each i below ``count``, in threads released together; the
    results in order. A failure in any thread (a deadlock) is raised."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def test_an_org_pool_of_10_with_per_user_4_and_8_members_racing_grants_exactly_10(
    feature_gates_database_url,
):
    """50 trials, each on a pool of its own: 8 members ask 5 times each at once."""
    trials, members = 50, 8
    connections = [
        psycopg.connect(feature_gates_database_url, autocommit=True) for _ in range(members)
    ]
    try:
        for trial in range(1, trials + 1):

            def ask(member: int, org: int = trial) -> int:
                conn = connections[member]
                answers = [pool(conn, member=member + 1, amount=1, org=org) for _ in range(5)]
                return sum(refused is None for refused, _, _ in answers)

            granted = at_once(members, ask)
            assert sum(granted) == 10, (trial, granted)
            assert max(granted) <= 4
        pools = (
            connections[0]
            .execute("SELECT count(*), min(usage_count), max(usage_count) FROM feature_usage")
            .fetchone()
        )
        assert pools == (trials, 10, 10)
        shares = connections[0].execute("SELECT max(usage_count) FROM feature_usage_members")
        assert shares.fetchone()[0] <= 4
    finally:
        for conn in connections:
            conn.close()


@pytest.mark.parametrize(
    "key",
    [
        {"period": "day"},
        {"period": "month+anchor", "offset": 52200},
        {"period": "window:3600", "start": EPOCH, "bucket": 493_000},
        {"scope": "org", "member": 1, "member_limit": 10},
    ],
    ids=["day", "anchored", "window", "pool"],
)
def test_every_kind_is_exact_under_concurrency(feature_gates_database_url, key):
    def ask(_: int) -> int:
        with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
            return sum(consume(conn, "api", 1, 10, **key)[0] is None for _ in range(2))

    assert sum(at_once(16, ask)) == 10


# -- rolling windows -----------------------------------------------------------------

WINDOW_SECONDS = 300  # five minutes, in buckets of five seconds
BUCKET = WINDOW_SECONDS // 60


def window_consume(conn, subject, amount, limit, at):
    return conn.execute(
        CONSUME,
        {
            "subject": subject,
            "feature": "tokens",
            "scope": "user",
            "period": f"window:{WINDOW_SECONDS}",
            "start": EPOCH,
            "offset": 0,
            "end": None,
            "amount": amount,
            "limit": limit,
            "member": None,
            "member_limit": None,
            "bucket": at // BUCKET,
        },
    ).fetchone()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 120), st.integers(1, 4), st.booleans()), min_size=1, max_size=60
    ),
    start=st.integers(0, 10**9),
)
def test_a_window_grants_no_more_than_the_exact_window_and_at_most_a_bucket_later(db, steps, start):
    """Reference: the uses granted so far, by the second they happened. The
    database's count is never below the uses of the last window (so it grants
    no more than an exact window would), and never above those of the last
    window and one bucket (so it grants what an exact window would, at most one
    bucket later); a refund gives back to the bucket the use was taken from."""
    subject = uuid.uuid4().int % 2**62
    limit = 10
    granted: list[tuple[int, int]] = []
    now = start
    for advance, amount, refund_last in steps:
        now += advance
        if refund_last and granted:
            at, back = granted.pop()
            db.execute(
                "SELECT feature_usage_refund(%s, 'tokens', 'user', %s, %s, 0, %s, NULL, %s, %s)",
                (subject, f"window:{WINDOW_SECONDS}", EPOCH, back, at // BUCKET, now // BUCKET),
            )
            if now // BUCKET - at // BUCKET > 60:
                granted.append((at, back))  # its bucket had left: nothing to give back
        exact = sum(n for at, n in granted if at > now - WINDOW_SECONDS)
        one_bucket_more = sum(n for at, n in granted if at > now - WINDOW_SECONDS - BUCKET)
        in_buckets = sum(n for at, n in granted if at // BUCKET >= now // BUCKET - 60)
        refused, used, _, buckets, _, newest = window_consume(db, subject, amount, limit, now)
        assert newest == now // BUCKET
        if refused is None:
            assert exact + amount <= limit
            assert used == in_buckets + amount
            granted.append((now, amount))
        else:
            assert one_bucket_more + amount > limit
            assert used == in_buckets
        assert sum(buckets) == used
        assert exact <= in_buckets <= one_bucket_more


def test_a_window_refund_after_its_bucket_left_gives_nothing_back(db):
    assert window_consume(db, 1, 3, 10, at=1000)[:2] == (None, 3)
    later = 1000 + WINDOW_SECONDS + BUCKET
    refund = (
        "SELECT feature_usage_refund(1, 'tokens', 'user', 'window:300', '1970-01-01', 0, 3, "
        "NULL, %s, %s)"
    )
    assert db.execute(refund, (1000 // BUCKET, later // BUCKET)).fetchone() == (0,)
    assert window_consume(db, 1, 10, 10, at=later)[:2] == (None, 10)


def test_a_window_with_a_pool_and_a_member_keeps_both_rings(db):
    key = {"period": "window:300", "start": EPOCH, "bucket": 200}
    assert pool(db, member=1, amount=4, **key) == (None, 4, 4)
    assert pool(db, member=1, amount=1, **key) == ("user", 4, 4)
    assert pool(db, member=2, amount=4, **{**key, "bucket": 230}) == (None, 8, 4)
    # Member 1's uses leave with bucket 261: the pool and the member both free up.
    assert pool(db, member=1, amount=4, **{**key, "bucket": 261}) == (None, 8, 4)


# -- refunds -------------------------------------------------------------------------


def test_a_refund_after_the_period_ended_goes_to_the_period_it_was_taken_from(db):
    consume(db, "api", 3, 10)
    consume(db, "api", 2, 10, start=APRIL)
    db.execute("SELECT feature_usage_refund(1, 'api', 'user', 'month', '2026-03-01', 0, 2)")
    assert rows(db, "SELECT period_start, usage_count ") == [(MARCH, 1), (APRIL, 2)]


def test_a_pool_refund_gives_back_to_the_pool_and_the_member(db):
    pool(db, member=1, amount=3)
    db.execute("SELECT feature_usage_refund(100, 'reports', 'org', 'month', '2026-03-01', 0, 2, 1)")
    assert rows(db, "SELECT usage_count ") == [(1,)]
    assert db.execute("SELECT usage_count FROM feature_usage_members").fetchone() == (1,)


# -- reads -----------------------------------------------------------------------------

READ = """
SELECT feature, period, used, member_used, newest_bucket, usage_limit
FROM feature_usage_read(%s, %s, %s, %s, %s, %s::date[], %s::integer[], %s::bigint[])
"""


def test_a_read_returns_every_key_asked_for_in_order(db):
    consume(db, "api", 3, 10, period="day")
    window_consume(db, 1, 2, 10, at=1000)
    found = db.execute(
        READ,
        (
            1,
            "user",
            None,
            ["tokens", "api", "none"],
            ["window:300", "day", "month"],
            [EPOCH, MARCH, MARCH],
            [0, 0, 0],
            [1000 // BUCKET + 1, None, None],
        ),
    ).fetchall()
    assert found == [
        ("tokens", "window:300", 2, None, 201, 10),
        ("api", "day", 3, None, None, 10),
        ("none", "month", 0, None, None, None),
    ]
    pool(db, member=1, amount=3)
    found = db.execute(
        READ, (100, "org", 1, ["reports"], ["month"], [MARCH], [0], [None])
    ).fetchall()
    assert found == [("reports", "month", 3, 3, None, 10)]


# -- the background writer -------------------------------------------------------------

WRITE = """
SELECT subject, member, feature, scope, period, increment, usage_count
FROM feature_usage_write_batch(%s, '{}', %s::text[]::feature_usage_user_id[], %s::text[],
                               %s::text[], %s::text[], %s::date[], %s::integer[],
                               %s::timestamptz[], %s::text[]::feature_usage_user_id[],
                               %s::bigint[], %s::bigint[], %s::text[])
"""


def write(conn, items, batch=None):
    """items: (subject, feature, scope, period, start, member, bucket, amount, key)."""
    columns = list(zip(*items, strict=True))
    return sorted(
        conn.execute(
            WRITE,
            (
                batch or uuid.uuid4(),
                [str(s) for s in columns[0]],
                list(columns[1]),
                list(columns[2]),
                list(columns[3]),
                list(columns[4]),
                [0] * len(items),
                [None] * len(items),
                [None if m is None else str(m) for m in columns[5]],
                list(columns[6]),
                list(columns[7]),
                list(columns[8]),
            ),
        ).fetchall(),
        key=str,
    )


def test_a_batch_writes_every_kind_and_each_pools_member_shares(db):
    written = write(
        db,
        [
            (1, "api", "user", "day", MARCH, None, None, 2, None),
            (100, "reports", "org", "month", MARCH, 1, None, 3, None),
            (100, "reports", "org", "month", MARCH, 2, None, 1, None),
            (100, "reports", "org", "month", MARCH, 1, None, 1, None),
            (1, "tokens", "user", "window:300", EPOCH, None, 200, 4, None),
            (1, "tokens", "user", "window:300", EPOCH, None, 201, 1, None),
            (100, "tokens", "org", "window:300", EPOCH, 2, 201, 5, None),
        ],
    )
    assert written == sorted(
        [
            (1, None, "api", "user", "day", 2, 2),
            (100, None, "reports", "org", "month", 5, 5),
            (100, 1, "reports", "org", "month", 4, 4),
            (100, 2, "reports", "org", "month", 1, 1),
            (1, None, "tokens", "user", "window:300", 5, 5),
            (100, None, "tokens", "org", "window:300", 5, 5),
            (100, 2, "tokens", "org", "window:300", 5, 5),
        ],
        key=str,
    )
    # A use recorded after its bucket left the window counts nothing now.
    late = write(db, [(1, "tokens", "user", "window:300", EPOCH, None, 300, 1, None)])
    assert late == [(1, None, "tokens", "user", "window:300", 1, 1)]
    late = write(db, [(1, "tokens", "user", "window:300", EPOCH, None, 100, 7, None)])
    assert late == [(1, None, "tokens", "user", "window:300", 7, 1)]


def test_an_idempotency_key_counts_once_per_subject_scope_and_feature(db):
    items = [
        (5, "exports", "user", "month", MARCH, None, None, 1, "job-1"),
        (5, "exports", "org", "month", MARCH, 9, None, 1, "job-1"),
    ]
    assert len(write(db, items)) == 3  # the user's row, the pool's and its member's
    assert write(db, items) == []
    assert rows(db, "SELECT user_id, scope, usage_count ") == [(5, "org", 1), (5, "user", 1)]


def test_a_batch_is_written_once_under_its_id(db):
    batch = uuid.uuid4()
    items = [(1, "api", "user", "month", MARCH, None, None, 1, None)]
    assert len(write(db, items, batch)) == 1
    assert write(db, items, batch) == []


def test_batches_and_checks_on_the_same_pools_never_deadlock(feature_gates_database_url):
    """The writer locks every period row, then their member shares, then each
    window's rows pool first; a metered check locks a pool, then its member."""
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer(seed: int) -> None:
        with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
            for i in range(40):
                members = [(seed + i + k) % 5 + 1 for k in range(4)]
                try:
                    write(
                        conn,
                        [(100, "reports", "org", "month", MARCH, m, None, 1, None) for m in members]
                        + [
                            (100, "tokens", "org", "window:300", EPOCH, m, 900, 1, None)
                            for m in members
                        ],
                    )
                except BaseException as exc:
                    failures.append(exc)

    def checker(member: int) -> None:
        with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    pool(conn, member=member, amount=1, limit=None, per_user=None)
                    pool(
                        conn,
                        member=member,
                        amount=1,
                        limit=None,
                        per_user=None,
                        feature="tokens",
                        period="window:300",
                        start=EPOCH,
                        bucket=900,
                    )
                except BaseException as exc:
                    failures.append(exc)
                    return

    writers = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    checkers = [threading.Thread(target=checker, args=(m,)) for m in range(1, 6)]
    for thread in writers + checkers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in checkers:
        thread.join()
    assert failures == []
    with psycopg.connect(feature_gates_database_url, autocommit=True) as conn:
        pools = conn.execute(
            "SELECT feature, usage_count FROM feature_usage ORDER BY feature"
        ).fetchall()
        shares = conn.execute(
            "SELECT feature, sum(usage_count) FROM feature_usage_members GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert pools == shares  # every use counted in the pool and in one member's share


# -- archive and pruning ---------------------------------------------------------------


def test_the_archive_moves_each_kind_once_its_period_ended_and_never_a_lifetime(db):
    old, recent = date(2000, 1, 1), date(2099, 1, 1)
    consume(db, "api", 1, 9, start=old)
    consume(db, "api", 1, 9, start=old, period="day", end="2000-01-02T00:00:00+00")
    consume(db, "api", 1, 9, start=old, period="week")  # no end recorded: estimated
    consume(db, "api", 1, 9, start=recent, period="day", end="2099-01-02T00:00:00+00")
    consume(db, "api", 1, 9, start=EPOCH, period="lifetime")
    window_consume(db, 1, 1, 9, at=0)
    pool(db, member=1, amount=1, start=old)
    assert db.execute("SELECT archive_old_feature_usage(6)").fetchone() == (4,)
    assert rows(db, "SELECT period, period_start ") == [
        ("day", recent),
        ("lifetime", EPOCH),
        ("window:300", EPOCH),
    ]
    archived = db.execute(
        "SELECT scope, period FROM feature_usage_archive ORDER BY 1, 2"
    ).fetchall()
    assert archived == [("org", "month"), ("user", "day"), ("user", "month"), ("user", "week")]
    assert db.execute("SELECT user_id FROM feature_usage_members_archive").fetchall() == [(1,)]


def test_pruning_drops_windows_that_have_left_entirely(db):
    window_consume(db, 1, 1, 9, at=0)  # 1970: long gone
    db.execute(
        "SELECT feature_usage_consume(2, 'tokens', 'user', 'window:300', '1970-01-01', 0, NULL, "
        "1, 9, NULL, NULL, floor(extract(epoch FROM now()) / 5)::bigint)"
    )
    assert db.execute("SELECT prune_feature_usage_windows()").fetchone() == (1,)
    assert rows(db, "SELECT user_id ") == [(2,)]


# -- input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"scope": "team"}, "scope must be 'user' or 'org'"),
        ({"period": "fortnight"}, "invalid counting rule 'fortnight'"),
        ({"period": "window:90"}, "invalid counting rule 'window:90'"),
        ({"period": "day@"}, "invalid counting rule"),
        ({"offset": 86400}, "period_offset must be 0 to 86399"),
        ({"member": 3}, "a member share belongs to an organisation pool"),
        ({"period": "window:300", "start": EPOCH}, "needs the bucket of now"),
        ({"subject": None}, "user_id must not be NULL"),
        ({"feature": "Bad"}, "invalid feature name"),
    ],
)
def test_a_metered_check_refuses_a_bad_key_with_22023(db, key, message):
    feature = key.pop("feature", "api")
    with pytest.raises(errors.InvalidParameterValue, match=message):
        consume(db, feature, 1, 5, **key)


def test_the_summary_keeps_each_kind_apart_and_leaves_windows_out(db):
    consume(db, "api", 3, 10)
    consume(db, "api", 2, 10, period="day")
    pool(db, member=1, amount=1, feature="api")
    window_consume(db, 1, 1, 9, at=0)
    db.execute("SELECT refresh_feature_usage_summary()")
    found = db.execute(
        "SELECT feature, scope, period, period_start, total_usage, unique_users "
        "FROM feature_usage_summary ORDER BY 2, 3"
    ).fetchall()
    assert found == [
        ("api", "org", "month", MARCH, 1, 1),
        ("api", "user", "day", MARCH, 2, 1),
        ("api", "user", "month", MARCH, 3, 1),
    ]


def test_a_clock_behind_the_window_counts_in_its_own_bucket_or_the_newest(db):
    at = 1000 * BUCKET
    assert window_consume(db, 1, 2, 20, at=at)[:2] == (None, 2)
    refused, used, _, buckets, _, newest = window_consume(db, 1, 3, 20, at=at - 10 * BUCKET)
    assert (refused, used, newest) == (None, 5, 1000)
    assert (buckets[50], buckets[60]) == (3, 2)  # buckets 990 and 1000
    # More than a window behind: counted in the newest bucket.
    refused, used, _, buckets, _, _ = window_consume(db, 1, 4, 20, at=at - 100 * BUCKET)
    assert (refused, used, buckets[60]) == (None, 9, 6)
    # Bucket 990 leaves first, at bucket 1051.
    assert window_consume(db, 1, 1, 20, at=1051 * BUCKET)[:2] == (None, 7)


def test_a_reset_starts_a_count_afresh_and_a_pools_member_shares_with_it(db):
    pool(db, member=1, amount=3)
    pool(db, member=2, amount=2)
    reset = "SELECT feature_usage_reset(100, 'reports', 'org', 'month', '2026-03-01', 0)"
    assert db.execute(reset).fetchone() == (5,)
    assert rows(db, "SELECT usage_count ") == [(0,)]
    shares = db.execute("SELECT user_id, usage_count FROM feature_usage_members ORDER BY 1")
    assert shares.fetchall() == [(1, 0), (2, 0)]
    window_consume(db, 1, 4, 9, at=1000)
    db.execute("SELECT feature_usage_reset(1, 'tokens', 'user', 'window:300', '1970-01-01', 0)")
    assert window_consume(db, 1, 9, 9, at=1000)[:2] == (None, 9)
