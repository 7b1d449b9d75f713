"""The usage tracker: counts on the request path, writes in the background.

``track()`` adds to the pending map keyed by (user_id, feature, period_start) and
returns: no I/O on the request path. A writer thread writes the map every flush
interval through the many-row ``write_feature_usage_batch``, at most
``flush_max_keys`` keys per statement; uses tracked while a pass is under way are
folded into its batches not sent yet, so a busy key is written once per pass.

The writer does not start early for a few thousand keys: each pass costs the
request threads some of the interpreter's time, and a key written now would be
written again at the next pass. It starts early only when half of
``max_pending_keys`` keys are pending, before the bound drops uses.

Nothing is lost or written twice when writes fail: what a failed pass took goes
back into the map and is retried with exponential backoff and jitter; the map is
bounded, and uses of new keys beyond the bound are counted as dropped and
reported, never silently lost. Batches whose reply was lost are settled with the
database before anything else (:mod:`.writer`).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from typing import Any

from .._config import TrackingMode
from .._counting import Key as CountedKey
from .._periods import Clock
from .._periods import MonthClock
from .._periods import utc_now
from .._plans import check_feature_name
from .._storage import Emit
from .._storage import Outcome
from .._storage import Storage
from .._storage import describe
from .._storage import hint
from .batches import Key
from .batches import dropped
from .batches import pending_key
from .pending import PendingMap
from .writer import Signals
from .writer import WriteFailed
from .writer import Writer

__all__ = ["FlushTimeout", "TrackingStats", "UsageTracker"]

logger = logging.getLogger("feature_gates.tracking")

#: Feature names already checked, kept so that track() checks a name once; capped
#: so that junk names cannot grow it.
_KNOWN_FEATURES_MAX = 10_000
_IDEMPOTENCY_KEY_MAX = 255


@dataclass(frozen=True)
class TrackingStats:
    """Counters of one process's tracker since it started, in uses (amounts).

    At any moment ``tracked == written + pending + dropped + rejected + duplicates``.
    """

    #: Uses passed to ``track()``.
    tracked: int
    #: Uses the database confirmed.
    written: int
    #: Uses waiting in memory (including a batch being written).
    pending: int
    #: Statements that wrote a batch.
    batches: int
    #: Failed write attempts (each one retried).
    retries: int
    #: Uses not kept: the pending map was full, or a fail-open use came with tracking off.
    dropped: int
    #: The last write error (its class, SQLSTATE and message), None once a write
    #: succeeds again.
    last_error: str | None
    #: When a batch last reached the database.
    last_flush_at: datetime | None
    #: Keys waiting in memory.
    pending_keys: int = 0
    #: Uses the database refused (a user id of the wrong type, for example).
    rejected: int = 0
    #: Uses not counted because their idempotency key was already recorded.
    duplicates: int = 0
    #: When the current run of failed writes began; None while writes succeed.
    unavailable_since: datetime | None = None


class FlushTimeout(TimeoutError):
    """``flush(timeout)`` ran out of time; ``pending`` uses are still in memory."""

    def __init__(self, message: str, pending: int, pending_keys: int) -> None:
        super().__init__(message)
        self.pending = pending
        self.pending_keys = pending_keys


# Trackers of this process, reset in a forked child (see UsageTracker._after_fork).
_trackers: weakref.WeakSet[UsageTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_trackers):
        tracker._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class UsageTracker:
    """Coalesces usage increments and writes them to PostgreSQL.

    :param storage: where the writes go; its health is the gates' too.
    :param mode: ``background`` (a writer thread), ``sync`` (each ``track`` writes
        before it returns) or ``off`` (nothing is recorded).
    :param flush_interval: seconds between background writes.
    :param flush_max_keys: keys per statement at most.
    :param max_pending_keys: keys kept at most; uses of new keys beyond are dropped
        and reported. A write starts early when half of them are pending.
    :param max_backoff: the longest wait, in seconds, between two attempts while
        writes fail.
    :param clock: returns the current time; the period of a use is fixed by it
        when ``track`` is called.
    :param emit: receives signal names and data (see :mod:`feature_gates.signals`).
    :param listening: says whether a signal has receivers; ``usage-recorded`` (one
        per key written) is only built when it does.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        mode: TrackingMode = "background",
        flush_interval: float = 1.0,
        flush_max_keys: int = 1000,
        max_pending_keys: int = 100_000,
        max_backoff: float = 30.0,
        clock: Clock = utc_now,
        emit: Emit | None = None,
        listening: Callable[[str], bool] | None = None,
    ) -> None:
        self.storage = storage
        self.mode = mode
        self.flush_interval = flush_interval
        self.flush_max_keys = flush_max_keys
        self.max_pending_keys = max_pending_keys
        self.max_backoff = max_backoff
        #: New keys pending that start a write before the interval.
        self.early_keys = max(max_pending_keys // 2, 1)
        self.clock = clock
        self._months = MonthClock(clock)
        self._emit = emit
        # Whether a signal has receivers: a batch of a thousand keys need not build
        # a thousand usage-recorded payloads for nobody.
        self._listening = listening or (lambda name: emit is not None)
        self._closed = False
        self._known_features: set[str] = set()
        self._reset()
        # After an outage the writer tries again at once, not at the end of its backoff.
        storage.health.on_recovery(self._wake.set)
        _trackers.add(self)

    def _reset(self) -> None:
        """Start with nothing pending, no counters and no writer (new or forked)."""
        self._pending = PendingMap(self.max_pending_keys)
        self._writer = Writer(
            self.storage,
            self._pending,
            batch_keys=self.flush_max_keys,
            listening=self._listening,
        )
        # One write pass at a time: the thread's, or a flush()'s.
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._warned_off = False
        self._retries = 0
        self._failures = 0
        self._retry_in = 0.0
        self._last_error: str | None = None
        self._failing_since: datetime | None = None
        self._failing_at = 0.0

    def _after_fork(self) -> None:
        # The child's copy of the map belongs to the parent, which writes it; the
        # locks may have been held by a thread that does not exist here. The child
        # starts its own writer (and pool) on its first track().
        self._reset()
        self.storage.health.on_recovery(self._wake.set)

    # -- the request path ---------------------------------------------------------

    def track(
        self,
        user_id: Any,
        feature: str,
        amount: int = 1,
        idempotency_key: str | None = None,
        period: date | None = None,
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``user_id`` in the current calendar
        month in UTC (or in ``period``, the first day of a month: an import of past
        usage): the default kind.

        No I/O in background mode. With ``idempotency_key``, the uses are counted
        once for that (user_id, feature, key), however often they are tracked, as
        long as the key is kept (see ``prune_feature_usage_idempotency``).

        :raises ValueError: on a negative amount, a feature name the database would
            refuse, a None user id, a bad idempotency key or period (programming
            errors). An amount of 0 records nothing.
        """
        if self.mode == "off":
            return
        if amount.__class__ is not int or amount < 1:
            amount = _checked_amount(amount)
            if amount == 0:
                return
        if feature not in self._known_features:
            self._check_feature(feature)
        if user_id is None:
            raise ValueError("user_id must not be None")
        period = self._months.period() if period is None else _checked_period(period)
        self._keep(
            (user_id, feature, period, "user", "month", 0, None, None), amount, idempotency_key
        )

    def record(self, key: CountedKey, amount: int, idempotency_key: str | None = None) -> None:
        """Record ``amount`` uses under ``key``, the counted key fixed when they
        happened (a gated request's, whatever its counting rule). No I/O in
        background mode; see :meth:`track`."""
        if self.mode == "off":
            return
        if amount.__class__ is not int or amount < 1:
            amount = _checked_amount(amount)
            if amount == 0:
                return
        if key.feature not in self._known_features:
            self._check_feature(key.feature)
        self._keep(pending_key(key), amount, idempotency_key)

    def _keep(self, key: Key, amount: int, idempotency_key: str | None) -> None:
        """Add ``amount`` uses of ``key`` to the map, and have the writer write them."""
        if idempotency_key is None:
            drop = self._pending.add(key, amount)
        else:
            _check_idempotency_key(idempotency_key)
            drop = self._pending.add_once((key[0], key[1], key[3], idempotency_key), key, amount)
        if drop is not None:
            self._report_drop(key, amount, drop.total, drop.first)
        elif self.mode == "sync" or self._closed:
            # Closed: no writer thread any more, and no exit flush to come.
            self._attempt(self.storage.pool.timeout)
        elif self._thread is None:
            self._start_writer()
        elif self._pending.new_keys >= self.early_keys and not self._failures:
            # During failures only the backoff decides: a full map must not make
            # every request retry.
            self._wake.set()

    def record_owed(self, key: CountedKey, amount: int) -> None:
        """Record uses a metered gate allowed while it could not count them (fail open).

        They are the limit's count, so unlike :meth:`record` they are not silently
        ignored with tracking off: they are counted as dropped, logged once and
        signalled (``reason="tracking-off"``).
        """
        if self.mode != "off":
            self.record(key, amount)
            return
        total = self._pending.add_dropped(amount)
        first, self._warned_off = not self._warned_off, True
        if first:
            logger.error(
                "uses allowed by a metered gate's fail open are not recorded, since "
                "FEATURE_GATES_TRACKING is 'off'; they are counted in tracking_stats().dropped"
            )
        self._send("usage-dropped", **dropped(pending_key(key), amount, total, "tracking-off"))

    def _check_feature(self, feature: str) -> None:
        check_feature_name(feature)
        if len(self._known_features) < _KNOWN_FEATURES_MAX:
            self._known_features.add(feature)

    def _report_drop(self, key: Key, amount: int, total: int, first: bool) -> None:
        if first:
            logger.error(
                "usage not kept: %d keys are pending or being written "
                "(FEATURE_GATES_MAX_PENDING_KEYS); uses of new keys are dropped and counted "
                "in tracking_stats().dropped until the writer makes room",
                self.max_pending_keys,
            )
        self._send("usage-dropped", **dropped(key, amount, total, "full"))

    # -- writing ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Write everything tracked so far; return when it is in the database.

        Retries with backoff while writes fail.

        :raises FlushTimeout: once ``timeout`` seconds have passed, saying how many
            uses are still pending (they stay pending and are retried).
        """
        if self.mode == "off":
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = self.storage.pool.timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            error = self._attempt(wait if remaining is None else max(min(remaining, wait), 0.0))
            if error is None:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                counts = self._pending.snapshot()
                raise FlushTimeout(
                    f"{counts.pending} uses of {counts.pending_keys} keys still pending after "
                    f"{timeout:.3g} s: {describe(error)}",
                    counts.pending,
                    counts.pending_keys,
                ) from error
            time.sleep(self._retry_in if remaining is None else min(self._retry_in, remaining))

    def _attempt(
        self, connect_timeout: float, *, lock_timeout: float | None = None
    ) -> BaseException | None:
        """One pass; the error of a failed pass (already logged and signalled), or None."""
        if lock_timeout is None:
            self._write_lock.acquire()
        elif not self._write_lock.acquire(timeout=max(lock_timeout, 0.0)):
            return TimeoutError(self._last_error or "another write of the pending usage is running")
        signals: Signals = []
        error: BaseException | None = None
        try:
            # Closing at interpreter exit: a pool would start threads, which Python
            # refuses then; one connection of its own does the last write.
            direct = self._closed and not self.storage.pool.opened
            if self._writer.write(connect_timeout, signals, direct=direct):
                self._succeeded()
        except WriteFailed as failed:
            error = failed.__cause__ or failed
            self._failed(error, failed.outcome, signals)
        finally:
            self._write_lock.release()
        # Receivers run outside the locks: one may call flush() itself.
        for name, data in signals:
            self._send(name, **data)
        return error

    def _failed(self, error: BaseException, outcome: Outcome, signals: Signals) -> None:
        if outcome is Outcome.OUTAGE:
            self.storage.health.failed(error)
        else:
            self.storage.count_error(error)
        self._retries += 1
        self._failures += 1
        self._last_error = describe(error)
        # Doubling from the flush interval (at most 1 s); jitter keeps many
        # processes from retrying in step against a database that comes back.
        first = min(self.flush_interval, 1.0)
        delay = min(self.max_backoff, first * 2 ** min(self._failures - 1, 30))
        self._retry_in = random.uniform(delay / 2, delay)
        counts = self._pending.snapshot()
        if self._failing_since is None:
            self._failing_since = utc_now()
            self._failing_at = time.monotonic()
            logger.warning(
                "usage writes failed, retrying in the background (%d uses of %d keys "
                "pending): %s%s",
                counts.pending,
                counts.pending_keys,
                self._last_error,
                hint(error),
            )
        else:
            logger.debug("usage writes still failing: %s", self._last_error)
        signals.append(
            (
                "tracking-failed",
                {
                    "error": error,
                    "pending": counts.pending,
                    "pending_keys": counts.pending_keys,
                    "retry_in": self._retry_in,
                },
            )
        )

    def _succeeded(self) -> None:
        self._failures = 0
        self._last_error = None
        if self._failing_since is not None:
            self._failing_since = None
            logger.warning(
                "usage writes succeed again after %.1f s; %s",
                time.monotonic() - self._failing_at,
                "nothing was lost"
                if self._pending.dropped_before_overflow is None
                else "uses of new keys were dropped meanwhile (see tracking_stats().dropped)",
            )
        dropped = self._pending.room_again()
        if dropped is not None:
            logger.error(
                "the pending usage map has room again; %d uses were dropped while it was full",
                dropped,
            )

    # -- the writer thread ----------------------------------------------------------

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._run, name="feature-gates-writer", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._retry_in if self._failures else self.flush_interval)
            self._wake.clear()
            if self._closed:
                return
            try:
                self._attempt(self.storage.pool.timeout)
            except Exception:  # a bug must not stop the writer for good
                logger.exception("the usage writer failed; it goes on")

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the writer thread and write what is pending.

        :raises FlushTimeout: when the database did not take the pending usage within
            ``timeout`` seconds; it is then lost when the process exits.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        self.flush(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        counts = self._pending.snapshot()
        logger.info(
            "the usage tracker stopped: %d uses tracked, %d written, %d dropped, %d rejected",
            counts.tracked,
            self._writer.written,
            counts.dropped,
            counts.rejected,
        )

    def close_at_exit(self, timeout: float) -> None:
        """:meth:`close` for an exit handler: what cannot be written is logged as lost."""
        try:
            self.close(timeout)
        except FlushTimeout as exc:
            logger.error("usage lost at exit: %s", exc)
        except Exception:  # an exit handler must not raise
            logger.exception("the last write of usage failed; what was pending is lost")

    def stats(self) -> TrackingStats:
        counts = self._pending.snapshot()
        return TrackingStats(
            tracked=counts.tracked,
            written=self._writer.written,
            pending=counts.pending,
            batches=self._writer.batches,
            retries=self._retries + self._writer.retries,
            dropped=counts.dropped,
            last_error=self._last_error,
            last_flush_at=self._writer.last_flush_at,
            pending_keys=counts.pending_keys,
            rejected=counts.rejected,
            duplicates=counts.duplicates,
            unavailable_since=self._failing_since,
        )

    def _send(self, name: str, **data: Any) -> None:
        if self._emit is not None:
            try:
                self._emit(name, **data)
            except Exception:
                logger.exception("a receiver of the %r signal failed", name)


def _checked_amount(amount: Any) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be an integer, got {amount!r}")
    if amount < 0:
        raise ValueError(
            f"amount must not be negative, got {amount}; give back consumed usage with a refund"
        )
    return int(amount)


def _checked_period(period: Any) -> date:
    if type(period) is not date or period.day != 1:
        raise ValueError(
            f"period must be the first day of a month (a datetime.date), got {period!r}"
        )
    return period


def _check_idempotency_key(key: Any) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= _IDEMPOTENCY_KEY_MAX:
        raise ValueError(
            f"idempotency_key must be a string of 1 to {_IDEMPOTENCY_KEY_MAX} characters, "
            f"got {key!r}"
        )
