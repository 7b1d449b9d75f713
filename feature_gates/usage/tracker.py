"""The usage tracker: counts on the request path, writes in the background.

``track()`` adds to an in-memory map keyed by (user_id, feature, period_start) and
returns: no I/O on the request path. A writer thread takes the map every flush
interval and sends it to PostgreSQL, at most ``flush_max_keys`` keys per statement,
through the many-row ``increment_feature_usage_safe``.

Nothing is lost or written twice through a database outage:

* A batch that failed is merged back into the map and retried with exponential
  backoff and jitter. The map is bounded; increments for new keys beyond the bound
  are counted as dropped and reported, never silently lost.
* Each batch carries an id that the database records in the batch's own
  transaction. When a connection dies before the reply arrives, the writer asks
  the database (``resolve_feature_usage_batch``) whether that id was written,
  which also makes sure it never will be later; only then are its increments
  sent again or forgotten.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Literal

import psycopg

from ..core import Clock
from ..core import check_feature_name
from ..core import month_start
from ..core import utc_clock
from ..core import utc_now
from ..errors import one_line
from ..pool import LazyPool
from ..watchdog import NoAnswer
from ..watchdog import limit_for
from ..watchdog import watchdog
from . import store

__all__ = ["FlushTimeout", "TrackingStats", "UsageTracker", "month_start", "utc_clock", "utc_now"]

logger = logging.getLogger("feature_gates.tracking")

UserId = Any
Key = tuple[UserId, str, date]
#: An idempotent use: (user_id, feature, idempotency_key).
OnceKey = tuple[UserId, str, str]
#: Called with a signal name (``"usage-recorded"``, ``"tracking-failed"``, ...) and
#: the signal's data as keyword arguments.
EventSink = Callable[..., None]

#: Feature names already checked against the rule the database enforces, kept so
#: that track() checks a name once; capped so that junk names cannot grow it.
_KNOWN_FEATURES_MAX = 10_000
_IDEMPOTENCY_KEY_MAX = 255
#: SQLSTATE classes of an error in the data itself: retrying the same batch fails
#: the same way, so the batch is split until the culprit is alone.
_BAD_DATA_CLASSES = ("22", "23")
#: SQLSTATE classes after which the connection cannot be trusted to have
#: reported the transaction's outcome.
_LOST_CONNECTION_CLASSES = ("08", "57", "XX")


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
    #: The last write error, None once a write succeeds again.
    last_error: str | None
    #: When a batch last reached the database.
    last_flush_at: datetime | None
    #: Keys waiting in memory.
    pending_keys: int = 0
    #: Uses the database refused (a user id of the wrong type, for example).
    rejected: int = 0
    #: Uses not counted because their idempotency key was already recorded.
    duplicates: int = 0
    #: When the current outage began; None while writes succeed.
    unavailable_since: datetime | None = None


class FlushTimeout(TimeoutError):
    """``flush(timeout)`` ran out of time; ``pending`` uses are still in memory."""

    def __init__(self, message: str, pending: int, pending_keys: int) -> None:
        super().__init__(message)
        self.pending = pending
        self.pending_keys = pending_keys


@dataclass
class _Batch:
    """Increments sent in one statement, under one id."""

    counts: dict[Key, int]
    once: dict[OnceKey, tuple[date, int]]
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def size(self) -> int:
        return len(self.counts) + len(self.once)

    @property
    def amount(self) -> int:
        return sum(self.counts.values()) + sum(amount for _, amount in self.once.values())

    def split(self) -> tuple[_Batch, _Batch]:
        items = _items(self.counts, self.once)
        half = len(items) // 2
        return _batch_of(items[:half]), _batch_of(items[half:])

    def parameters(self, forget: list[uuid.UUID]) -> tuple[Any, ...]:
        # User ids travel as text and are cast by the database to its own type
        # (bigint or uuid): one array type whatever Python type the caller used.
        user_ids = [str(k[0]) for k in self.counts] + [str(k[0]) for k in self.once]
        features = [k[1] for k in self.counts] + [k[1] for k in self.once]
        amounts = list(self.counts.values()) + [a for _, a in self.once.values()]
        periods = [k[2] for k in self.counts] + [p for p, _ in self.once.values()]
        keys: list[str | None] | None = None
        if self.once:
            keys = [None] * len(self.counts) + [k[2] for k in self.once]
        return (self.id, forget, user_ids, features, amounts, periods, keys)


#: (key, value, idempotent) of both maps, to cut them into batches.
_Item = tuple[Any, Any, bool]


def _items(counts: dict[Key, int], once: dict[OnceKey, tuple[date, int]]) -> list[_Item]:
    items: list[_Item] = [(k, v, False) for k, v in counts.items()]
    items += [(k, v, True) for k, v in once.items()]
    return items


def _batch_of(items: list[_Item]) -> _Batch:
    return _Batch(
        counts={k: v for k, v, once in items if not once},
        once={k: v for k, v, once in items if once},
    )


class _WriteFailed(Exception):
    """A write attempt failed; ``__cause__`` says why."""


# Trackers of this process, reset in a forked child (see UsageTracker._after_fork).
_trackers: weakref.WeakSet[UsageTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_trackers):
        tracker._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class UsageTracker:
    """Coalesces usage increments and writes them to PostgreSQL.

    :param pool: where the writes go.
    :param mode: ``background`` (a writer thread), ``sync`` (each ``track`` writes
        before it returns) or ``off`` (nothing is recorded).
    :param flush_interval: seconds between background writes.
    :param flush_max_keys: keys per statement at most; a write starts early when
        this many keys are pending.
    :param max_pending_keys: keys kept at most; increments for new keys beyond are
        dropped and reported.
    :param max_backoff: the longest wait, in seconds, between two attempts while
        the database is unreachable.
    :param clock: returns the current time; the period of an increment is fixed
        by it when ``track`` is called.
    :param emit: receives signal names and data (see :mod:`feature_gates.signals`).
    :param listening: says whether a signal has receivers; ``usage-recorded`` (one
        per key written) is only built when it does.
    """

    def __init__(
        self,
        pool: LazyPool,
        *,
        mode: Literal["background", "sync", "off"] = "background",
        flush_interval: float = 1.0,
        flush_max_keys: int = 1000,
        max_pending_keys: int = 100_000,
        max_backoff: float = 30.0,
        clock: Clock = utc_now,
        emit: EventSink | None = None,
        listening: Callable[[str], bool] | None = None,
    ) -> None:
        self.pool = pool
        self.mode = mode
        self.flush_interval = flush_interval
        self.flush_max_keys = flush_max_keys
        self.max_pending_keys = max_pending_keys
        self.max_backoff = max_backoff
        self.clock = clock
        self._emit = emit
        # Whether a signal has receivers: a batch of a thousand keys need not build
        # a thousand usage-recorded payloads for nobody.
        self._listening = listening or (lambda name: emit is not None)
        self._closed = False
        self._known_features: set[str] = set()
        #: The current month: (first second, first second of the next, its date).
        self._month: tuple[float, float, date] = (0.0, 0.0, date.min)
        self._reset()
        _trackers.add(self)

    def _reset(self) -> None:
        """Start with nothing pending, no counters and no writer (new or forked)."""
        # _lock guards the maps and the counters track() touches; it is held only
        # for dict updates. _write_lock makes one writer at a time (thread, flush).
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._pending: dict[Key, int] = {}
        self._once: dict[OnceKey, tuple[date, int]] = {}
        self._pending_amount = 0
        # Keys taken out of the maps by the writer and not yet written, rejected or
        # merged back: they count towards max_pending_keys, so the bound holds
        # while a batch is on its way (and after it fails and is merged back).
        self._in_flight = 0
        # The map the writer took last: a use of one of its keys is not a new key.
        self._flying: dict[Key, int] = {}
        # Batches whose connection died before their outcome was known; settled
        # first by the next attempt. Their increments are in _pending meanwhile.
        self._in_doubt: list[_Batch] = []
        # Ids of batches seen committed; their records are deleted by the next batch.
        self._forget: list[uuid.UUID] = []
        self._tracked = self._written = self._batches = self._retries = 0
        self._dropped = self._rejected = self._duplicates = 0
        self._dropped_before_overflow: int | None = None
        self._warned_off = False
        self._last_error: str | None = None
        self._last_flush_at: datetime | None = None
        self._failures = 0
        self._retry_in = 0.0
        self._unavailable_since: datetime | None = None
        self._unavailable_at = 0.0
        # storage-unavailable was sent: the database itself did not answer.
        self._storage_down = False

    def _after_fork(self) -> None:
        # The child's copy of the map belongs to the parent, which writes it; the
        # locks may have been held by a thread that does not exist here. The child
        # starts its own writer (and pool) on its first track().
        self._reset()

    # -- the request path ---------------------------------------------------------

    def track(
        self,
        user_id: UserId,
        feature: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``user_id`` in the current period.

        No I/O in background mode. With ``idempotency_key``, the uses are counted
        once for that (user_id, feature, key), however often they are tracked, as
        long as the key is kept (see ``prune_feature_usage_idempotency``).

        :raises ValueError: on a negative amount, a feature name the database would
            refuse, a None user id or a bad idempotency key (programming errors).
            An amount of 0 records nothing.
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
        period = self._period()
        if idempotency_key is not None:
            self._track_once(user_id, feature, amount, period, idempotency_key)
            return
        key = (user_id, feature, period)
        with self._lock:
            self._tracked += amount
            pending = self._pending
            count = pending.get(key)
            kept = count is not None or key in self._flying or self._keys() < self.max_pending_keys
            if kept:
                pending[key] = amount if count is None else count + amount
                self._pending_amount += amount
                size = len(pending)
            else:
                dropped, first = self._overflow(amount)
        if kept:
            self._tracked_one(size)
        else:
            self._report_drop(user_id, feature, amount, period, dropped, first)

    def track_owed(self, user_id: UserId, feature: str, amount: int) -> None:
        """Record uses a metered gate allowed while it could not count them (fail open).

        They are the limit's count, so unlike :meth:`track` they are not silently
        ignored with tracking off: they are counted as dropped, logged once and
        signalled (``reason="tracking-off"``).
        """
        if self.mode != "off":
            self.track(user_id, feature, amount)
            return
        with self._lock:
            self._tracked += amount
            self._dropped += amount
            total, first = self._dropped, not self._warned_off
            self._warned_off = True
        if first:
            logger.error(
                "uses allowed by a metered gate's fail open are not recorded, since "
                "FEATURE_GATES_TRACKING is 'off'; they are counted in tracking_stats().dropped"
            )
        self._send(
            "usage-dropped",
            user_id=user_id,
            feature=feature,
            amount=amount,
            period_start=self._period(),
            dropped=total,
            reason="tracking-off",
            error=None,
        )

    def _track_once(
        self, user_id: UserId, feature: str, amount: int, period: date, idempotency_key: str
    ) -> None:
        _check_idempotency_key(idempotency_key)
        once = (user_id, feature, idempotency_key)
        with self._lock:
            self._tracked += amount
            if once in self._once:
                self._duplicates += amount
                return
            kept = self._keys() < self.max_pending_keys
            if kept:
                self._once[once] = (period, amount)
                self._pending_amount += amount
                size = len(self._once)
            else:
                dropped, first = self._overflow(amount)
        if kept:
            self._tracked_one(size)
        else:
            self._report_drop(user_id, feature, amount, period, dropped, first)

    def _keys(self) -> int:
        """Keys held (under the lock): pending, and on their way to the database.
        What FEATURE_GATES_MAX_PENDING_KEYS bounds: a batch that fails is merged
        back, so keys in flight are counted, or each retry would let in a map more."""
        return len(self._pending) + len(self._once) + self._in_flight

    def _overflow(self, amount: int) -> tuple[int, bool]:
        """Count ``amount`` as dropped (under the lock): the running total, and
        whether this drop starts an overflow."""
        self._dropped += amount
        first = self._dropped_before_overflow is None
        if first:
            self._dropped_before_overflow = self._dropped - amount
        return self._dropped, first

    def _tracked_one(self, size: int) -> None:
        if self.mode == "sync" or self._closed:
            # Closed: no writer thread any more, and no exit flush to come.
            self._attempt(self.pool.timeout)
            return
        if self._writer is None:
            self._start_writer()
        if size >= self.flush_max_keys and not self._wake.is_set():
            self._wake.set()

    def _period(self) -> date:
        """The period of a use happening now (by :attr:`clock`)."""
        if self.clock is not utc_now:
            return month_start(self.clock())
        # The system clock: a float comparison instead of a datetime per call.
        now = time.time()
        begins, ends, period = self._month
        if begins <= now < ends:
            return period
        period = month_start(datetime.fromtimestamp(now, timezone.utc))
        following = date(period.year + period.month // 12, period.month % 12 + 1, 1)
        self._month = (_timestamp(period), _timestamp(following), period)
        return period

    def _check_feature(self, feature: str) -> None:
        check_feature_name(feature)
        if len(self._known_features) < _KNOWN_FEATURES_MAX:
            self._known_features.add(feature)

    def _report_drop(
        self, user_id: UserId, feature: str, amount: int, period: date, total: int, first: bool
    ) -> None:
        if first:
            logger.error(
                "usage not kept: %d keys are pending or being written "
                "(FEATURE_GATES_MAX_PENDING_KEYS); uses of new keys are dropped and counted "
                "in tracking_stats().dropped until the writer makes room",
                self.max_pending_keys,
            )
        self._send(
            "usage-dropped",
            user_id=user_id,
            feature=feature,
            amount=amount,
            period_start=period,
            dropped=total,
            reason="full",
            error=None,
        )

    # -- writing ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Write everything tracked so far; return when it is in the database.

        Retries with backoff while the database is unreachable.

        :raises FlushTimeout: once ``timeout`` seconds have passed, saying how many
            uses are still pending (they stay pending and are retried).
        """
        if self.mode == "off":
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            wait = self.pool.timeout if remaining is None else min(remaining, self.pool.timeout)
            error = self._attempt(max(wait, 0.0), lock_timeout=remaining)
            if error is None:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                stats = self.stats()
                raise FlushTimeout(
                    f"{stats.pending} uses of {stats.pending_keys} keys still pending after "
                    f"{timeout} s: {error}",
                    stats.pending,
                    stats.pending_keys,
                ) from error
            delay = self._retry_in if remaining is None else min(self._retry_in, remaining)
            time.sleep(delay)

    def _attempt(
        self, connect_timeout: float, lock_timeout: float | None = None
    ) -> BaseException | None:
        """One pass: settle batches in doubt, then write all that is pending.

        Returns the error of a failed pass (already logged and signalled), or None.
        """
        if lock_timeout is None:
            self._write_lock.acquire()
        elif not self._write_lock.acquire(timeout=max(lock_timeout, 0.0)):
            return TimeoutError(
                self._last_error or "another write of the pending usage is still running"
            )
        signals: list[tuple[str, dict[str, Any]]] = []
        error: BaseException | None = None
        try:
            if self._write_all(connect_timeout, signals):
                self._note_success(signals)
        except _WriteFailed as failed:
            error = failed.__cause__ or failed
            self._note_failure(error, signals)
        finally:
            self._write_lock.release()
        # Receivers run outside the locks: one may call flush() itself.
        for name, data in signals:
            self._send(name, **data)
        return error

    def _write_all(self, connect_timeout: float, signals: list[tuple[str, dict[str, Any]]]) -> bool:
        """Write what is pending; False when there was nothing to do."""
        with self._lock:
            if not (self._pending or self._once or self._in_doubt):
                return False
        for again in (False, True):
            todo: deque[_Batch] = deque()
            conn: psycopg.Connection[tuple[Any, ...]] | None = None
            try:
                with self._connection(connect_timeout, fresh=again) as conn:
                    # First: a batch in doubt may have to be taken out of the map.
                    self._settle_in_doubt(conn)
                    with self._lock:
                        counts, self._pending = self._pending, {}
                        once, self._once = self._once, {}
                        self._in_flight += len(counts) + len(once)
                        self._flying = counts
                    # Held whole until cut, so that a failure in between merges it back.
                    todo.append(_Batch(counts, once))
                    todo = deque(self._cut(counts, once))
                    while todo:
                        self._write_batch(conn, todo, signals)
                if again:
                    self._retries += 1
                return True
            except BaseException as exc:
                self._merge_back(todo)
                if not isinstance(exc, Exception):
                    raise
                # A restart of the database closes the pool's connections: the first
                # write after it meets a closed one although the database is back.
                # The pool drops the closed ones and the write goes once more on a
                # new connection (what the first try sent is in doubt: settled first).
                if (
                    again
                    or conn is None
                    or not conn.broken
                    or not self.pool.opened
                    or isinstance(exc, NoAnswer)  # checking the pool would wait too
                ):
                    raise _WriteFailed from exc
                self.pool.get().check()
        raise AssertionError("unreachable")

    def _cut(self, counts: dict[Key, int], once: dict[OnceKey, tuple[date, int]]) -> list[_Batch]:
        batches = []
        items = _items(counts, once)
        for start in range(0, len(items), self.flush_max_keys):
            batches.append(_batch_of(items[start : start + self.flush_max_keys]))
        return batches

    @contextmanager
    def _connection(
        self, timeout: float, *, fresh: bool = False
    ) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection; with ``fresh``, a new one outside the pool (it fails
        at once when the database is away, where the pool would wait ``timeout``)."""
        if fresh or (self._closed and not self.pool.opened):
            # Closing (interpreter exit): opening a pool would start threads, which
            # Python refuses at shutdown; one plain connection does the last write.
            with self.pool.connect(timeout) as conn:
                yield conn
        else:
            with self.pool.get().connection(timeout=timeout) as conn:
                yield conn

    def _settle_in_doubt(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        while self._in_doubt:
            batch = self._in_doubt[0]
            limit = limit_for(self.pool.statement_timeout)
            with watchdog.guard(conn, limit) as token:
                try:
                    row = conn.execute(store.RESOLVE_BATCH, (batch.id,)).fetchone()
                except psycopg.Error as exc:
                    watchdog.raise_if_severed(token, limit, exc)
                    raise
            applied = bool(row and row[0])
            if applied:
                # Its increments were merged back meanwhile: take them out again.
                self._unmerge(batch)
                self._forget.append(batch.id)
                self._batches += 1
                self._written += batch.amount
            self._in_doubt.pop(0)
            logger.info(
                "a batch whose reply was lost was %s (%d uses)",
                "written" if applied else "not written; its uses are sent again",
                batch.amount,
            )

    def _write_batch(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        todo: deque[_Batch],
        signals: list[tuple[str, dict[str, Any]]],
    ) -> None:
        batch = todo[0]
        forget = self._forget[:]
        try:
            # A database that answers nothing would hold this thread, and a flush()
            # or the exit flush waiting on it, for good: the watchdog ends the
            # connection, and the batch is in doubt like one whose reply was lost.
            limit = limit_for(self.pool.statement_timeout)
            with watchdog.guard(conn, limit) as token:
                try:
                    rows = conn.execute(store.WRITE_BATCH, batch.parameters(forget)).fetchall()
                except psycopg.Error as exc:
                    watchdog.raise_if_severed(token, limit, exc)
                    raise
        except psycopg.Error as exc:
            if not _outcome_known(conn, exc):
                # Written or not: the database knows. Settled by the next attempt.
                self._in_doubt.append(batch)
            elif exc.sqlstate is not None and exc.sqlstate[:2] in _BAD_DATA_CLASSES:
                todo.popleft()
                if batch.size > 1:
                    todo.extendleft(reversed(batch.split()))
                else:
                    signals.append(self._reject(batch, exc))
                return
            raise
        except BaseException:
            self._in_doubt.append(batch)
            raise
        todo.popleft()
        del self._forget[: len(forget)]
        self._forget.append(batch.id)
        written = sum(row[3] for row in rows)
        with self._lock:
            self._pending_amount -= batch.amount
            self._duplicates += batch.amount - written
            self._in_flight -= batch.size
        self._written += written
        self._batches += 1
        self._last_flush_at = utc_now()
        if not self._listening("usage-recorded"):
            return
        for user_id, feature, period_start, amount, count in rows:
            signals.append(
                (
                    "usage-recorded",
                    {
                        "user_id": user_id,
                        "feature": feature,
                        "amount": amount,
                        "period_start": period_start,
                        "count": count,
                    },
                )
            )

    def _reject(self, batch: _Batch, exc: psycopg.Error) -> tuple[str, dict[str, Any]]:
        """Count and log the one use of ``batch``, which the database refused."""
        if batch.counts:
            ((user_id, feature, period), amount) = next(iter(batch.counts.items()))
        else:
            ((user_id, feature, _), (period, amount)) = next(iter(batch.once.items()))
        with self._lock:
            self._pending_amount -= amount
            self._rejected += amount
            self._in_flight -= 1
        logger.error(
            "usage of %r by %r (%d) refused by the database and not recorded: %s",
            feature,
            user_id,
            amount,
            _describe(exc),
        )
        return (
            "usage-dropped",
            {
                "user_id": user_id,
                "feature": feature,
                "amount": amount,
                "period_start": period,
                "dropped": self._dropped,
                "reason": "rejected",
                "error": exc,
            },
        )

    def _merge_back(self, batches: deque[_Batch]) -> None:
        with self._lock:
            for batch in batches:
                self._in_flight -= batch.size
                for key, amount in batch.counts.items():
                    self._pending[key] = self._pending.get(key, 0) + amount
                for once, value in batch.once.items():
                    # The batch's use came first; one tracked since with the same
                    # key is the duplicate.
                    later = self._once.get(once)
                    self._once[once] = value
                    if later is not None:
                        self._pending_amount -= later[1]
                        self._duplicates += later[1]

    def _unmerge(self, batch: _Batch) -> None:
        with self._lock:
            for key, amount in batch.counts.items():
                left = self._pending[key] - amount
                if left:
                    self._pending[key] = left
                else:
                    del self._pending[key]
            for once in batch.once:
                del self._once[once]
            self._pending_amount -= batch.amount

    def _note_failure(
        self, error: BaseException, signals: list[tuple[str, dict[str, Any]]]
    ) -> None:
        self._retries += 1
        self._failures += 1
        self._last_error = _describe(error)
        # Doubling from the flush interval (at most 1 s); jitter keeps many
        # processes from retrying in step against a database that comes back.
        first = min(self.flush_interval, 1.0)
        delay = min(self.max_backoff, first * 2 ** min(self._failures - 1, 30))
        self._retry_in = random.uniform(delay / 2, delay)
        stats = self.stats()
        if self._unavailable_since is None:
            self._unavailable_since = utc_now()
            self._unavailable_at = time.monotonic()
            logger.warning(
                "usage writes failed, retrying in the background (%d uses of %d keys "
                "pending): %s%s",
                stats.pending,
                stats.pending_keys,
                self._last_error,
                _hint(error),
            )
        else:
            logger.debug("usage writes still failing: %s", self._last_error)
        if not self._storage_down and _unreachable(error):
            self._storage_down = True
            signals.append(("storage-unavailable", {"error": error}))
        signals.append(
            (
                "tracking-failed",
                {
                    "error": error,
                    "pending": stats.pending,
                    "pending_keys": stats.pending_keys,
                    "retry_in": self._retry_in,
                },
            )
        )

    def _note_success(self, signals: list[tuple[str, dict[str, Any]]]) -> None:
        self._failures = 0
        self._last_error = None
        if self._unavailable_since is not None:
            outage = time.monotonic() - self._unavailable_at
            self._unavailable_since = None
            logger.warning(
                "usage writes succeed again after %.1f s; %s",
                outage,
                "nothing was lost"
                if self._dropped_before_overflow is None
                else "uses of new keys were dropped meanwhile (see tracking_stats().dropped)",
            )
            if self._storage_down:
                self._storage_down = False
                signals.append(("storage-recovered", {"outage_seconds": outage}))
        with self._lock:
            dropped_before = self._dropped_before_overflow
            room = self._keys() < self.max_pending_keys
            if dropped_before is not None and room:
                self._dropped_before_overflow = None
        if dropped_before is not None and room:
            logger.error(
                "the pending usage map has room again; %d uses were dropped while it was full",
                self._dropped - dropped_before,
            )

    # -- the writer thread ----------------------------------------------------------

    def _start_writer(self) -> None:
        with self._lock:
            if self._writer is not None or self._closed:
                return
            self._writer = threading.Thread(
                target=self._run, name="feature-gates-writer", daemon=True
            )
        self._writer.start()

    def _run(self) -> None:
        while True:
            if self._failures:
                # During an outage only the backoff decides: a full map must not
                # make every request retry.
                self._stop.wait(self._retry_in)
            else:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            if self._closed:
                return
            try:
                self._attempt(self.pool.timeout)
            except Exception:  # a bug must not stop the writer for good
                logger.exception("the usage writer failed; it goes on")

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the writer thread and write what is pending.

        :raises FlushTimeout: when the database did not take the pending usage within
            ``timeout`` seconds; it is then lost when the process exits.
        """
        self._closed = True
        self._stop.set()
        self._wake.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)
        self.flush(timeout)

    def close_at_exit(self, timeout: float) -> None:
        """:meth:`close` for an exit handler: what cannot be written is logged as lost."""
        try:
            self.close(timeout)
        except FlushTimeout as exc:
            logger.error("usage lost at exit: %s", exc)
        except Exception:  # an exit handler must not raise
            logger.exception("the last write of usage failed; what was pending is lost")

    def stats(self) -> TrackingStats:
        with self._lock:
            pending = self._pending_amount
            pending_keys = self._keys()
            dropped = self._dropped
            tracked = self._tracked
            duplicates = self._duplicates
            rejected = self._rejected
        return TrackingStats(
            tracked=tracked,
            written=self._written,
            pending=pending,
            batches=self._batches,
            retries=self._retries,
            dropped=dropped,
            last_error=self._last_error,
            last_flush_at=self._last_flush_at,
            pending_keys=pending_keys,
            rejected=rejected,
            duplicates=duplicates,
            unavailable_since=self._unavailable_since,
        )

    def _send(self, name: str, **data: Any) -> None:
        if self._emit is not None:
            try:
                self._emit(name, **data)
            except Exception:
                logger.exception("a receiver of the %r signal failed", name)


def _timestamp(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


def _checked_amount(amount: Any) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be an integer, got {amount!r}")
    if amount < 0:
        raise ValueError(
            f"amount must not be negative, got {amount}; give back consumed usage with a refund"
        )
    return int(amount)


def _check_idempotency_key(key: Any) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= _IDEMPOTENCY_KEY_MAX:
        raise ValueError(
            f"idempotency_key must be a string of 1 to {_IDEMPOTENCY_KEY_MAX} characters, "
            f"got {key!r}"
        )


def _outcome_known(conn: psycopg.Connection[tuple[Any, ...]], exc: psycopg.Error) -> bool:
    """Whether a failed statement surely did not commit.

    True when the server answered with an error and the connection still works:
    the statement's transaction was rolled back. A lost connection may have lost
    the reply of a commit.
    """
    state = exc.sqlstate
    return state is not None and state[:2] not in _LOST_CONNECTION_CLASSES and not conn.broken


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {one_line(error)}"


def _hint(error: BaseException) -> str:
    if isinstance(error, psycopg.Error) and error.sqlstate in ("42883", "42P01"):
        return " (run 'flask feature-gates migrate' to install the feature-gates functions)"
    return ""


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached (an outage for the gates
    too), rather than a statement it cancelled: a write stuck behind a row lock
    past the statement timeout is retried, but it is not everyone's outage."""
    if isinstance(error, psycopg.errors.QueryCanceled):
        return False
    return isinstance(error, (psycopg.OperationalError, OSError))
