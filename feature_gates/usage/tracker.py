"""The usage tracker: counts on the request path, writes in the background.

``track()`` adds to an in-memory map keyed by (user_id, feature, period_start) and
returns: no I/O on the request path. A writer thread coalesces the map and sends
it to PostgreSQL as ONE statement per batch through ``increment_feature_usage_safe``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Literal

from ..pool import LazyPool
from . import store

__all__ = ["TrackingStats", "UsageTracker", "month_start", "utc_now"]

logger = logging.getLogger("feature_gates.tracking")

UserId = Any
Key = tuple[UserId, str, date]
Clock = Callable[[], datetime]
#: Called with a signal name (``"usage-recorded"``, ``"tracking-failed"``, ...) and
#: the signal's data as keyword arguments.
EventSink = Callable[..., None]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def month_start(moment: datetime) -> date:
    """The first day of ``moment``'s calendar month in UTC (naive means UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return date(moment.year, moment.month, 1)


@dataclass(frozen=True)
class TrackingStats:
    """Counters since the tracker started, in increments (amounts), not calls."""

    tracked: int
    written: int
    pending: int
    batches: int
    retries: int
    dropped: int
    last_error: str | None
    last_flush_at: datetime | None


class UsageTracker:
    """Coalesces usage increments and writes them to PostgreSQL.

    :param pool: where the writes go.
    :param mode: ``background`` (a writer thread), ``sync`` (each ``track`` writes
        before it returns) or ``off`` (nothing is recorded).
    :param flush_interval: seconds between background writes.
    :param flush_max_keys: a write starts early when this many keys are pending.
    :param max_pending_keys: keys kept at most; increments for new keys beyond are
        dropped and reported.
    :param clock: returns the current time; the period of an increment is fixed
        by it when ``track`` is called.
    :param emit: receives signal names and data (see :mod:`feature_gates.signals`).
    """

    def __init__(
        self,
        pool: LazyPool,
        *,
        mode: Literal["background", "sync", "off"] = "background",
        flush_interval: float = 1.0,
        flush_max_keys: int = 1000,
        max_pending_keys: int = 100_000,
        clock: Clock = utc_now,
        emit: EventSink | None = None,
    ) -> None:
        self.pool = pool
        self.mode = mode
        self.flush_interval = flush_interval
        self.flush_max_keys = flush_max_keys
        self.max_pending_keys = max_pending_keys
        self.clock = clock
        self._emit = emit
        self._pending: dict[Key, int] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_pid = 0
        self._closed = False
        self._tracked = self._written = self._batches = self._retries = self._dropped = 0
        self._last_error: str | None = None
        self._last_flush_at: datetime | None = None

    # -- the request path ---------------------------------------------------------

    def track(self, user_id: UserId, feature: str, amount: int = 1) -> None:
        """Record ``amount`` uses of ``feature`` by ``user_id`` in the current period."""
        if self.mode == "off":
            return
        key = (user_id, feature, month_start(self.clock()))
        with self._lock:
            kept = key in self._pending or len(self._pending) < self.max_pending_keys
            if kept:
                self._pending[key] = self._pending.get(key, 0) + amount
            else:
                self._dropped += amount
            dropped = self._dropped
            self._tracked += amount
            size = len(self._pending)
        if not kept:
            logger.error(
                "usage of %r by %r not kept: %d keys are pending (FEATURE_GATES_MAX_PENDING_KEYS)",
                feature,
                user_id,
                self.max_pending_keys,
            )
            self._send(
                "usage-dropped", user_id=user_id, feature=feature, amount=amount, dropped=dropped
            )
            return
        if self.mode == "sync":
            self.flush()
        else:
            self._ensure_writer()
            if size >= self.flush_max_keys:
                self._wake.set()

    # -- writing ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Write everything pending; return when it is in the database.

        Retries while the database is unreachable. Raises :class:`TimeoutError`,
        saying how much is still pending, once ``timeout`` seconds have passed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                self._write_pending()
                return
            except Exception as exc:  # the database's failure must not escape as-is
                self._note_failure(exc)
                if deadline is not None and time.monotonic() + delay > deadline:
                    pending = self.stats().pending
                    raise TimeoutError(
                        f"{pending} usage keys still pending after {timeout} s: {exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            # Sorted: concurrent writers lock rows in the same order, so never deadlock.
            keys = sorted(batch, key=lambda k: (str(k[0]), k[1], k[2]))
            params = (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [batch[k] for k in keys],
                [k[2] for k in keys],
            )
            try:
                with self.pool.get().connection() as conn:
                    counts = [row[0] for row in conn.execute(store.INCREMENT_BATCH, params)]
            except BaseException:
                self._merge_back(batch)
                raise
            self._batches += 1
            self._written += sum(batch.values())
            self._last_flush_at = utc_now()
            self._last_error = None
            for key, count in zip(keys, counts, strict=True):
                self._send(
                    "usage-recorded",
                    user_id=key[0],
                    feature=key[1],
                    amount=batch[key],
                    period_start=key[2],
                    count=count,
                )

    def _merge_back(self, batch: dict[Key, int]) -> None:
        with self._lock:
            for key, amount in batch.items():
                self._pending[key] = self._pending.get(key, 0) + amount

    def _note_failure(self, exc: BaseException) -> None:
        self._retries += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        logger.warning("usage write failed, will retry: %s", self._last_error)
        self._send("tracking-failed", error=exc, pending=self.stats().pending, retry_in=None)

    # -- the writer thread ----------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is not None and self._writer_pid == os.getpid():
            return
        with self._lock:
            if self._writer is None or self._writer_pid != os.getpid():
                self._writer = threading.Thread(
                    target=self._run, name="feature-gates-writer", daemon=True
                )
                self._writer_pid = os.getpid()
                self._writer.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._write_pending()
            except Exception as exc:
                self._note_failure(exc)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is pending and stop the writer thread."""
        self._closed = True
        self._wake.set()
        writer = self._writer
        if writer is not None and self._writer_pid == os.getpid():
            writer.join(timeout)
        self.flush(timeout)

    def stats(self) -> TrackingStats:
        with self._lock:
            pending = sum(self._pending.values())
        return TrackingStats(
            tracked=self._tracked,
            written=self._written,
            pending=pending,
            batches=self._batches,
            retries=self._retries,
            dropped=self._dropped,
            last_error=self._last_error,
            last_flush_at=self._last_flush_at,
        )

    def _send(self, name: str, **data: Any) -> None:
        if self._emit is not None:
            try:
                self._emit(name, **data)
            except Exception:
                logger.exception("a receiver of the %r signal failed", name)
