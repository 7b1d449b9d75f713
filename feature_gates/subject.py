"""Who is asking: the :class:`Subject`, and email -> user id resolution with a cache."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Subject", "SubjectLoader", "UserIdCache"]


@dataclass(frozen=True)
class Subject:
    """The caller of a gated endpoint.

    :param user_id: the key usage is counted under (``feature_usage.user_id``).
    :param plan: the name of the caller's plan in ``FEATURE_GATES_PLANS``.
    """

    user_id: Any
    plan: str

    def __post_init__(self) -> None:
        # Caught here, before the view runs: a None id could not be counted after it.
        if self.user_id is None:
            raise ValueError(
                "Subject.user_id must not be None; return None for an anonymous caller"
            )


#: Returns the current request's :class:`Subject`, or None for an anonymous caller.
SubjectLoader = Callable[[], "Subject | None"]


class UserIdCache:
    """A small thread-safe cache of email -> user id answers that expire after ``ttl`` seconds.

    Unknown emails are cached too (as None), so a flood of requests for one
    unknown address costs one query per ``ttl``.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, email: str, lookup: Callable[[str], Any]) -> Any:
        """The user id of ``email``: from the cache, else from ``lookup(email)``."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(email)
            if entry is not None and entry[0] > now:
                return entry[1]
        user_id = lookup(email)
        if self.ttl > 0:
            with self._lock:
                self._entries[email] = (now + self.ttl, user_id)
                self._entries.move_to_end(email)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return user_id

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
