"""The usage tracker against a real PostgreSQL: sums, periods, modes, bounds, keys."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from datetime import date
from datetime import datetime
from datetime import timedelta
from datetime import timezone

import psycopg
import pytest
from tracking_support import tracker_for

from feature_gates.core import _periods as periods_module


class Recorder:
    """Collects what a tracker emits, as the extension's signals would carry it."""

    def __init__(self):
        self.events = []
        self._lock = threading.Lock()

    def __call__(self, name, **data):
        with self._lock:
            self.events.append((name, data))

    def named(self, name):
        return [data for event, data in self.events if event == name]


@pytest.fixture
def make_tracker(feature_gates_database_url):
    made = []

    def make(url=feature_gates_database_url, **options):
        tracker = tracker_for(url, **options)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=30)
        tracker.storage.close()


def counts(db, period=None):
    """Every (user_id, feature) -> usage_count in ``period`` (all periods when None)."""
    rows = db.execute(
        "SELECT user_id, feature, period_start, usage_count FROM feature_usage"
    ).fetchall()
    return {
        (user_id, feature): count
        for user_id, feature, start, count in rows
        if period is None or start == period
    }


def balanced(stats):
    return stats.tracked == (
        stats.written + stats.pending + stats.dropped + stats.rejected + stats.duplicates
    )


def test_many_threads_tracking_many_keys_sum_exactly(make_tracker, db):
    tracker = make_tracker(flush_interval=0.01, flush_max_keys=37)
    features = [f"feature_{n}" for n in range(8)]
    expected: Counter[tuple[int, str]] = Counter()
    lock = threading.Lock()

    def work(seed):
        rng = random.Random(seed)
        mine: Counter[tuple[int, str]] = Counter()
        for _ in range(4000):
            key = (rng.randrange(60), rng.choice(features))
            amount = rng.randint(1, 3)
            tracker.track(*key, amount)
            mine[key] += amount
        with lock:
            expected.update(mine)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tracker.flush(timeout=60)

    assert counts(db) == dict(expected)
    stats = tracker.stats()
    assert stats.written == stats.tracked == sum(expected.values())
    assert stats.pending == stats.pending_keys == 0
    # 480 keys at most 37 per statement: several batches, each one statement.
    assert stats.batches >= 480 // 37
    assert balanced(stats)


def test_the_period_is_fixed_when_tracking_not_when_writing(make_tracker, db):
    now = [datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)]
    tracker = make_tracker(clock=lambda: now[0], flush_interval=3600)
    tracker.track(1, "route_analysis")
    now[0] += timedelta(microseconds=1)
    tracker.track(1, "route_analysis", 2)
    # 00:30 in Paris on November 1st is still October 31st in UTC.
    now[0] = datetime(2026, 11, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    tracker.track(1, "route_analysis", 4)
    tracker.flush(timeout=30)

    assert counts(db, date(2026, 10, 1)) == {(1, "route_analysis"): 5}
    assert counts(db, date(2026, 11, 1)) == {(1, "route_analysis"): 2}


def test_the_system_clock_turns_the_month_at_midnight_utc(make_tracker, db, monkeypatch):
    tracker = make_tracker(flush_interval=3600)
    last_second = datetime(2026, 10, 31, 23, 59, 59, 999000, tzinfo=timezone.utc).timestamp()
    for moment in (last_second, last_second + 0.001, last_second):
        with monkeypatch.context() as patch:
            patch.setattr(periods_module.time, "time", lambda moment=moment: moment)
            tracker.track(1, "route_analysis")
    tracker.flush(timeout=30)
    assert counts(db, date(2026, 10, 1)) == {(1, "route_analysis"): 2}
    assert counts(db, date(2026, 11, 1)) == {(1, "route_analysis"): 1}


def test_sync_mode_writes_before_track_returns(make_tracker, db):
    tracker = make_tracker(mode="sync")
    tracker.track(3, "pdf_exports", 2)
    assert counts(db) == {(3, "pdf_exports"): 2}
    tracker.track(3, "pdf_exports")
    assert counts(db) == {(3, "pdf_exports"): 3}
    assert tracker.stats().batches == 2


def test_off_mode_records_nothing_and_needs_no_database():
    tracker = tracker_for(None, mode="off")
    tracker.track(3, "pdf_exports", 2)
    tracker.flush(timeout=1)
    tracker.close(timeout=1)
    assert tracker.stats().tracked == 0


def test_a_full_map_drops_new_keys_and_reports_them(make_tracker, db, caplog):
    recorder = Recorder()
    tracker = make_tracker(max_pending_keys=3, flush_interval=3600, emit=recorder)
    for user_id in (1, 2, 3):
        tracker.track(user_id, "exports")
    with caplog.at_level(logging.ERROR, logger="feature_gates.tracking"):
        tracker.track(4, "exports", 5)
        tracker.track(5, "exports", 2)
        tracker.track(1, "exports", 10)  # a key already kept still counts

    stats = tracker.stats()
    assert (stats.dropped, stats.pending, stats.pending_keys) == (7, 13, 3)
    assert balanced(stats)
    drops = recorder.named("usage-dropped")
    assert [(d["user_id"], d["amount"], d["dropped"], d["reason"]) for d in drops] == [
        (4, 5, 5, "full"),
        (5, 2, 7, "full"),
    ]
    # One log line for the whole overflow, not one per use.
    assert len([r for r in caplog.records if "not kept" in r.getMessage()]) == 1

    with caplog.at_level(logging.ERROR, logger="feature_gates.tracking"):
        tracker.flush(timeout=30)
    assert counts(db) == {(1, "exports"): 11, (2, "exports"): 1, (3, "exports"): 1}
    assert any("7 uses were dropped" in r.getMessage() for r in caplog.records)
    tracker.track(4, "exports")
    assert tracker.stats().dropped == 7


def test_the_bound_counts_keys_on_their_way_to_the_database(
    make_tracker, db, feature_gates_database_url
):
    # Writes wait behind a table lock until the statement timeout, then fail and are
    # merged back: keys in a batch on its way must count, or each retry lets in
    # another map's worth.
    tracker = make_tracker(
        storage={"statement_timeout": 0.3},
        max_pending_keys=100,
        flush_interval=0.05,
    )
    with psycopg.connect(feature_gates_database_url) as holder:
        holder.execute("LOCK TABLE feature_usage IN ACCESS EXCLUSIVE MODE")
        for wave in range(5):
            for n in range(100):
                tracker.track(wave * 100 + n + 1, "exports")
            time.sleep(0.4)
            assert tracker.stats().pending_keys <= 100
        holder.rollback()
    stats = tracker.stats()
    assert (stats.tracked, stats.dropped) == (500, 400)
    assert stats.retries > 0
    tracker.flush(timeout=30)
    assert sum(counts(db).values()) == 100 and len(counts(db)) == 100


def test_a_key_being_written_takes_more_uses_when_the_bound_is_full(
    make_tracker, db, feature_gates_database_url
):
    tracker = make_tracker(max_pending_keys=2, flush_interval=3600)
    tracker.track(1, "exports")
    tracker.track(2, "exports")
    with psycopg.connect(feature_gates_database_url) as holder:
        holder.execute("LOCK TABLE feature_usage IN ACCESS EXCLUSIVE MODE")
        writing = threading.Thread(target=tracker.flush, kwargs={"timeout": 30})
        writing.start()
        deadline = time.monotonic() + 10
        while tracker._pending.counts and time.monotonic() < deadline:
            time.sleep(0.01)
        # Both in flight.
        assert not tracker._pending.counts and tracker.stats().pending_keys == 2
        tracker.track(1, "exports", 5)  # in the batch being written: kept
        tracker.track(3, "exports")  # new, and the bound counts the batch: dropped
        holder.rollback()
    writing.join(30)
    assert tracker.stats().dropped == 1
    tracker.flush(timeout=30)
    assert counts(db) == {(1, "exports"): 6, (2, "exports"): 1}


def test_idempotency_keys_count_once_per_user_and_feature(make_tracker, db):
    tracker = make_tracker(flush_interval=3600)
    tracker.track(1, "emails_sent", 3, idempotency_key="job-17")
    tracker.track(1, "emails_sent", 3, idempotency_key="job-17")  # still in memory
    tracker.track(1, "emails_sent", 1)
    tracker.flush(timeout=30)
    tracker.track(1, "emails_sent", 3, idempotency_key="job-17")  # already recorded
    tracker.track(1, "texts_sent", 2, idempotency_key="job-17")  # another feature
    tracker.track(2, "emails_sent", 3, idempotency_key="job-17")  # another user
    tracker.flush(timeout=30)

    assert counts(db) == {(1, "emails_sent"): 4, (1, "texts_sent"): 2, (2, "emails_sent"): 3}
    stats = tracker.stats()
    assert (stats.written, stats.duplicates) == (9, 6)
    assert balanced(stats)


def test_a_use_the_database_refuses_is_rejected_alone(make_tracker, db, caplog):
    recorder = Recorder()
    tracker = make_tracker(flush_interval=3600, emit=recorder)
    for user_id in range(10):
        tracker.track(user_id, "exports")
    tracker.track("not-a-number", "exports", 4)
    with caplog.at_level(logging.ERROR, logger="feature_gates.tracking"):
        tracker.flush(timeout=30)

    assert counts(db) == {(user_id, "exports"): 1 for user_id in range(10)}
    stats = tracker.stats()
    assert (stats.written, stats.rejected, stats.pending) == (10, 4, 0)
    assert balanced(stats)
    (rejected,) = recorder.named("usage-dropped")
    assert (rejected["user_id"], rejected["reason"]) == ("not-a-number", "rejected")
    assert rejected["error"].sqlstate == "22P02"
    assert any("not-a-number" in r.getMessage() for r in caplog.records)


def test_usage_recorded_carries_the_new_totals(make_tracker):
    recorder = Recorder()
    tracker = make_tracker(flush_interval=3600, emit=recorder)
    tracker.track(1, "exports", 2)
    tracker.flush(timeout=30)
    tracker.track(1, "exports", 5)
    tracker.flush(timeout=30)
    recorded = recorder.named("usage-recorded")
    assert [(r["user_id"], r["amount"], r["count"]) for r in recorded] == [(1, 2, 2), (1, 5, 7)]


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((1, "exports", -1), {}, "must not be negative"),
        ((1, "exports", "3"), {}, "must be an integer"),
        ((1, "exports", True), {}, "must be an integer"),
        ((1, "Exports"), {}, "is not a valid feature name"),
        ((None, "exports"), {}, "user_id"),
        ((1, "exports"), {"idempotency_key": ""}, "idempotency_key"),
        ((1, "exports"), {"idempotency_key": "k" * 256}, "idempotency_key"),
    ],
)
def test_programming_errors_raise_at_once(make_tracker, args, options, message):
    tracker = make_tracker()
    with pytest.raises(ValueError, match=message):
        tracker.track(*args, **options)
    assert tracker.stats().tracked == 0


def test_an_amount_of_zero_records_nothing(make_tracker):
    tracker = make_tracker()
    tracker.track(1, "exports", 0)
    assert tracker.stats().tracked == 0
