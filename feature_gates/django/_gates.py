"""``feature_gates.django.gates``: the project's gates outside a decorator.

What the Flask extension's methods do, for a Django project: the current
subject, checks and entitlements, tracking, reads, overrides for tests, flushing
and closing. A method that needs the caller takes the ``request`` (or a
``subject=``), since Django has no request global.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import date
from datetime import datetime
from typing import Any

from ..core import Balance
from ..core import CreditGrant
from ..core import Decision
from ..core import Engine
from ..core import Gate
from ..core import Hold
from ..core import Override
from ..core import StorageStats
from ..core import Subject
from ..core import TrackingStats
from ..core import Usage
from ..core import UsageReport
from ..core import UsageTrend
from ..core import check_feature_name
from ._request import of_request
from ._runtime import runtime

__all__ = ["DjangoGates", "gates"]


class DjangoGates:
    """The project's feature-gates (one per process): ``from feature_gates.django import gates``."""

    @property
    def engine(self) -> Engine:
        """The process's engine, built on first use from ``settings.FEATURE_GATES``."""
        return runtime.engine

    def current_subject(self, request: Any) -> Subject | None:
        """``request``'s subject (None when anonymous): SUBJECT_LOADER's answer,
        loaded once per request."""
        return of_request(request).subject_of(runtime, request)

    def _subject(self, request: Any, subject: Subject | None, call: str) -> Subject:
        if subject is None and request is not None:
            subject = self.current_subject(request)
        if subject is None:
            raise ValueError(
                f"gates.{call}() has no subject: pass subject=Subject(...), or a request "
                "whose subject loader returns one"
            )
        return runtime.engine.check_user_id(subject)

    def check(
        self,
        feature: str,
        request: Any = None,
        *,
        subject: Subject | None = None,
        cost: int = 1,
        used: int | None = None,
    ) -> Decision:
        """May ``subject`` (``request``'s by default) use ``feature`` now? Consumes
        nothing; a limit's count is read (one query) unless ``used`` gives it."""
        if subject is None and request is not None:
            subject = self.current_subject(request)
        return runtime.engine.check(feature, subject, cost=cost, used=used)

    def entitlements(
        self, request: Any = None, *, subject: Subject | None = None
    ) -> dict[str, Decision]:
        """Every feature of the catalogue with its :class:`Decision` (one query)."""
        if subject is None and request is not None:
            subject = self.current_subject(request)
        return runtime.engine.entitlements(subject)

    def has_feature(self, request: Any, feature: str) -> bool:
        """Whether ``request``'s plan includes ``feature``. No database read."""
        subject = self.current_subject(request)
        if subject is None:
            return False
        return runtime.engine.catalogue.entitlement(subject.plan, feature).granted

    def has_tier(self, request: Any, min_tier: str) -> bool:
        """Whether ``request``'s plan ranks at least ``min_tier``. No database read."""
        catalogue = runtime.engine.catalogue
        required = catalogue.require_tier(min_tier)
        subject = self.current_subject(request)
        if subject is None:
            return False
        rank = catalogue.rank(subject.plan)
        return rank is not None and rank >= required

    def feature_remaining(self, request: Any, feature: str) -> int | None:
        """Uses of a metered ``feature`` left to ``request``'s subject; None if unlimited."""
        engine = runtime.engine
        if feature in engine.stock_features:
            raise ValueError(
                f"{feature!r} is gated as a stock limit: its count is the application's; "
                f"use gates.check({feature!r}, used=<count>).remaining"
            )
        return engine.remaining(feature, self.current_subject(request))

    # -- tracking ---------------------------------------------------------------------

    def track(
        self,
        user_id: Any,
        feature: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
        period: date | None = None,
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``user_id`` now (UTC month). No I/O."""
        runtime.engine.tracker.track(user_id, feature, amount, idempotency_key, period)

    def track_use(
        self,
        feature: str,
        amount: int = 1,
        *,
        request: Any = None,
        subject: Subject | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Record uses of ``feature`` as the subject's plan counts it. No I/O."""
        subject = self._subject(request, subject, "track_use")
        runtime.engine.track_use(feature, subject, amount, idempotency_key)

    def flush(self, timeout: float | None = None) -> None:
        """Write all usage tracked so far; returns when it is in the database."""
        engine = runtime.built()
        if engine is not None:
            engine.tracker.flush(timeout)

    def tracking_stats(self) -> TrackingStats:
        """This process's tracker counters."""
        return runtime.engine.tracker.stats()

    def storage_stats(self) -> StorageStats:
        """What the database did to this process's statements."""
        return runtime.engine.storage.stats()

    def close(self, timeout: float | None = None) -> None:
        """Write pending usage, stop the writer and close the pool (a worker's exit,
        tests); the next use builds them again."""
        runtime.reset(timeout)

    # -- holds and credits ------------------------------------------------------------

    def reserve(
        self,
        feature: str,
        *,
        up_to: int,
        request: Any = None,
        subject: Subject | None = None,
        ttl: float | None = None,
    ) -> Hold:
        """Hold ``up_to`` uses of ``feature`` before work whose cost is known only when
        it ends: a :class:`~feature_gates.Hold` to ``.commit(actual)`` or ``.release()``
        (or a context manager). See docs/holds.md.

        :raises Denial: what a metered check of ``up_to`` uses would be refused with.
        """
        check_feature_name(feature)
        subject = self._subject(request, subject, "reserve")
        return runtime.engine.reserve(Gate("metered", feature), subject, up_to, ttl)

    def grant(
        self,
        feature: str,
        amount: int,
        *,
        request: Any = None,
        subject: Subject | None = None,
        expires_at: datetime | None = None,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> CreditGrant:
        """Add ``amount`` credits of ``feature`` to the subject's balance (the
        organisation's, for a feature counted per organisation), once per
        ``idempotency_key``. See docs/credits.md."""
        check_feature_name(feature)
        subject = self._subject(request, subject, "grant")
        return runtime.engine.grant(
            feature,
            subject,
            amount,
            expires_at=expires_at,
            reason=reason,
            idempotency_key=idempotency_key,
        )

    def balance(
        self, feature: str, request: Any = None, *, subject: Subject | None = None
    ) -> Balance:
        """The subject's :class:`~feature_gates.Balance` of ``feature`` now."""
        check_feature_name(feature)
        return runtime.engine.balance(feature, self._subject(request, subject, "balance"))

    # -- reading usage ----------------------------------------------------------------

    def get_usage(
        self, feature: str, request: Any = None, *, subject: Subject | None = None
    ) -> Usage:
        """What the subject has used of ``feature`` in its current period or window."""
        return runtime.engine.usage(feature, self._subject(request, subject, "get_usage"))

    def reset_usage(
        self, feature: str, request: Any = None, *, subject: Subject | None = None
    ) -> int:
        """Start the subject's count of ``feature`` afresh; returns the count there was."""
        return runtime.engine.reset(feature, self._subject(request, subject, "reset_usage"))

    def usage_report(
        self, *, top: int = 10, near_limit: float | None = None, period: date | None = None
    ) -> UsageReport:
        """The period's most used features, and users near their limits."""
        return runtime.engine.usage_report(top=top, near_limit=near_limit, period=period)

    def usage_trend(self, months: int = 6) -> UsageTrend:
        """Uses and active users per month, oldest first."""
        return runtime.engine.usage_trend(months)

    # -- testing ----------------------------------------------------------------------

    @contextmanager
    def override(
        self,
        plan: str | None = None,
        *,
        user_id: Any = None,
        usage: Mapping[str, int] | None = None,
        enabled: bool | None = None,
    ) -> Iterator[None]:
        """Pin the subject's plan (and user id), set usage counts, or switch the gates
        off, for a test: the same arguments as the Flask extension's ``override``."""
        pin = Override.begin(
            runtime.engine, plan, user_id, usage, enabled, plans_key='FEATURE_GATES["PLANS"]'
        )
        previous, runtime.override = runtime.override, pin
        try:
            yield
        finally:
            runtime.override = previous


#: The project's gates.
gates = DjangoGates()
runtime.sender = gates
