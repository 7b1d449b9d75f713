"""The one health of the database: an outage noticed once, probed, ended by any success.

While the database is away, metered checks do not wait for it on every request:
they apply their fail mode at once, and at most every second one attempt (a
request's, or the usage writer's) tries again on a connection of its own. The
first success of any connection of the package ends the outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from datetime import timezone

from .errors import describe

__all__ = ["Emit", "Health"]

logger = logging.getLogger("feature_gates")

#: Receives a signal's name and its data as keyword arguments.
Emit = Callable[..., None]


class Health:
    """Whether the database answers: an outage begins at its first failure and ends at
    the first success after it. Each is logged once and signalled once
    (``storage-unavailable``, ``storage-recovered``)."""

    #: Seconds until the first probe of an outage; it doubles up to ``max_backoff``.
    first_backoff = 0.25
    max_backoff = 1.0

    def __init__(self, emit: Emit, clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        self._recovery: list[Callable[[], None]] = []
        #: When the current outage began (the clock's time); None while up.
        self.down_since: float | None = None
        #: The same, as a date for the stats.
        self.unavailable_since: datetime | None = None
        #: The error that began the current outage, or its last probe's.
        self.cause: BaseException | None = None
        #: Outages since the start.
        self.outages = 0
        self._next_probe = 0.0
        self._backoff = self.first_backoff

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no argument) when an outage ends."""
        self._recovery.append(callback)

    def should_try(self) -> bool:
        """True while the database is up, and once per probe interval while it is away."""
        if self.down_since is None:
            return True
        with self._lock:
            now = self._clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self._backoff
            return True

    def _end(self) -> float | None:
        with self._lock:
            since, self.down_since = self.down_since, None
            self.unavailable_since = self.cause = None
        return since

    def failed(self, error: BaseException) -> None:
        """The database could not be reached (an :data:`~.errors.Outcome.OUTAGE`)."""
        with self._lock:
            now = self._clock()
            first = self.down_since is None
            if first:
                self.down_since = now
                self.unavailable_since = datetime.now(timezone.utc)
                self.outages += 1
                self._backoff = self.first_backoff
            else:
                self._backoff = min(self._backoff * 2, self.max_backoff)
            self.cause = error
            self._next_probe = now + self._backoff
        if first:
            logger.warning(
                "the database of FEATURE_GATES_DATABASE_URL is unreachable; metered "
                "limits apply their fail mode until it answers again: %s",
                describe(error),
            )
            self._emit("storage-unavailable", error=error)

    def succeeded(self) -> None:
        """A connection of the package worked: an outage, if any, is over."""
        if self.down_since is None:
            return
        since = self._end()
        if since is None:
            return  # another thread ended it
        outage = self._clock() - since
        logger.warning("the database answers again after %.1f s", outage)
        for callback in self._recovery:
            callback()
        self._emit("storage-recovered", outage_seconds=outage)
