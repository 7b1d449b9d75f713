"""Who is asking: the :class:`Subject`, the check of its user id, and email -> user id
resolution with a cache."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ._config import UserIdType
from ._counting import RuleError
from ._counting import zone_named

__all__ = ["Subject", "SubjectLoader", "UserIdCache", "user_id_check"]


@dataclass(frozen=True)
class Subject:
    """The caller of a gated endpoint.

    :param user_id: the key usage is counted under (``feature_usage.user_id``).
    :param plan: the name of the caller's plan in ``FEATURE_GATES_PLANS``.
    :param org_id: the organisation the caller belongs to: features with
        ``scope = "org"`` count in its pool. Of the type of user ids
        (``FEATURE_GATES_USER_ID_TYPE``).
    :param period_anchor: when the caller's subscription started (an aware
        datetime): features with ``anchor = "subscription"`` count their periods
        from it, in its time zone.
    :param timezone: the caller's IANA time zone (``"Europe/Paris"``): calendar
        periods of the mapping form end at its midnight; ``FEATURE_GATES_TIMEZONE``
        when None.
    """

    user_id: Any
    plan: str
    org_id: Any = None
    period_anchor: datetime | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        # Caught here, before the view runs: a None id could not be counted after it.
        if self.user_id is None:
            raise ValueError(
                "Subject.user_id must not be None; return None for an anonymous caller"
            )
        anchor = self.period_anchor
        if anchor is not None and (
            not isinstance(anchor, datetime) or anchor.tzinfo is None or anchor.utcoffset() is None
        ):
            raise ValueError(
                f"Subject.period_anchor must be an aware datetime (with its time zone, such "
                f"as datetime(2026, 1, 31, 9, tzinfo=ZoneInfo('Europe/Paris'))), got {anchor!r}"
            )
        if self.timezone is not None:
            try:
                zone_named(self.timezone)
            except RuleError as exc:
                raise ValueError(f"Subject.timezone: {exc}") from None

    @property
    def zone(self) -> ZoneInfo | None:
        """The subject's time zone, None when it has none."""
        return None if self.timezone is None else zone_named(self.timezone)


#: Returns the current request's :class:`Subject`, or None for an anonymous caller.
SubjectLoader = Callable[[], "Subject | None"]


def _is_bigint(value: Any) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def _is_uuid(value: Any) -> bool:
    if isinstance(value, uuid.UUID):
        return True
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def user_id_check(user_id_type: UserIdType) -> Callable[[Subject], Subject]:
    """A check that a subject's user id fits ``user_id_type``, the type of
    ``feature_usage.user_id``: caught before the view runs, with what to return."""
    fits = _is_bigint if user_id_type == "bigint" else _is_uuid
    wanted = "an int that fits a bigint" if user_id_type == "bigint" else "a uuid.UUID or its text"

    def check(subject: Subject) -> Subject:
        if not fits(subject.user_id):
            raise TypeError(
                f"the subject loader returned user_id {subject.user_id!r}; user ids are "
                f"{user_id_type} here (FEATURE_GATES_USER_ID_TYPE): return {wanted}"
            )
        # Organisations are counted under ids of the same type (one typed key).
        if subject.org_id is not None and not fits(subject.org_id):
            raise TypeError(
                f"the subject loader returned org_id {subject.org_id!r}; organisation ids "
                f"are of the type of user ids, {user_id_type} here "
                f"(FEATURE_GATES_USER_ID_TYPE): return {wanted}"
            )
        return subject

    return check


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
