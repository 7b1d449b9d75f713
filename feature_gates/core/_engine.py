"""The engine: one application's feature-gates at run time, in no framework.

It holds the settings, the catalogue, the storage (with its health) and the
tracker, and answers what an adapter asks: admit a request through a gate (or
raise a :class:`~._denials.Denial`), settle it when the response is known, check
an entitlement without consuming, read and set counts, report usage, close.
Signals leave through ``emit(name, **data)``; the adapter sends them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from collections.abc import Mapping
from datetime import date
from datetime import datetime
from typing import Any
from typing import NoReturn

from psycopg.rows import class_row
from psycopg.rows import scalar_row
from psycopg.rows import tuple_row

from . import _decision as decision
from ._config import ConfigError
from ._config import Settings
from ._decision import Decision
from ._decision import Gate
from ._decision import Grant
from ._denials import Denial
from ._denials import iso_utc
from ._denials import limit_headers
from ._messages import Messages
from ._periods import Clock
from ._periods import month_start
from ._periods import period_end
from ._periods import utc_now
from ._plans import Catalogue
from ._reports import UsageReport
from ._reports import UsageTrend
from ._reports import usage_report
from ._reports import usage_trend
from ._storage import Emit
from ._storage import Health
from ._storage import Storage
from ._storage import StorageError
from ._storage import StorageUnavailable
from ._storage.rows import Consumed
from ._storage.rows import FeatureCount
from ._subject import Subject
from ._subject import UserIdCache
from ._subject import user_id_check
from ._tracking import UsageTracker

__all__ = ["Engine"]

logger = logging.getLogger("feature_gates")
denial_logger = logging.getLogger("feature_gates.denials")

#: A count read, or why it could not be: the database is away, or failed.
Read = int | StorageError


class Engine:
    """One application's runtime.

    :param settings: the parsed settings.
    :param catalogue: the compiled plans.
    :param clock: returns the current time (aware); fixes the period of each use.
    :param emit: sends a signal: ``emit(name, **data)``.
    :param listening: whether a signal has receivers.
    """

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        *,
        clock: Clock = utc_now,
        emit: Emit,
        listening: Callable[[str], bool],
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.clock = clock
        self.emit = emit
        self.storage = Storage(settings, emit=emit)
        self.tracker = UsageTracker(
            self.storage,
            mode=settings.tracking,
            flush_interval=settings.flush_interval,
            flush_max_keys=settings.flush_max_keys,
            max_pending_keys=settings.max_pending_keys,
            max_backoff=settings.flush_max_backoff,
            clock=clock,
            emit=emit,
            listening=listening,
        )
        #: Features some view gates as a stock limit: their count is the
        #: application's, not a monthly count in feature_usage.
        self.stock_features: frozenset[str] = frozenset()
        self.messages = Messages(
            settings.denial_messages, settings.display_names, settings.translate
        )
        self.user_ids = UserIdCache(settings.user_cache_ttl)
        self.check_user_id = user_id_check(settings.user_id_type)

    @property
    def health(self) -> Health:
        return self.storage.health

    def validate(self, gate: Gate) -> None:
        """Raise :class:`~feature_gates.ConfigError` if ``gate`` cannot work here."""
        decision.validate(gate, self.catalogue)

    # -- admitting a request -------------------------------------------------------------

    def admit(self, gate: Gate, subject: Subject | None, args: dict[str, Any]) -> Grant:
        """Check ``gate`` for ``subject`` with the view's arguments ``args``: a Grant, or
        a :class:`~._denials.Denial` raised, with its end-user message. A metered limit
        consumes here."""
        try:
            return self._admit(gate, subject, args)
        except Denial as denial:
            denial.message = self.messages.of(denial)
            raise

    def _admit(self, gate: Gate, subject: Subject | None, args: dict[str, Any]) -> Grant:
        if subject is None:
            raise Denial(
                "anonymous",
                status=401,
                feature=gate.feature,
                subject=None,
                detail=f"{gate.feature!r} needs a signed-in user: sign in and try again.",
            )
        if gate.kind == "tier":
            return self._admit_tier(gate, subject)
        limit = decision.limit_of(gate, self.catalogue, subject.plan, args)
        if limit == 0:
            raise Denial(
                "not-entitled",
                status=403,
                feature=gate.feature,
                subject=subject,
                detail=f"plan {subject.plan!r} does not include {gate.feature!r}; "
                "a plan that does is needed.",
            )
        if gate.kind == "feature":
            return Grant(gate, subject, track=int(gate.track_usage))
        cost = decision.amount(decision.resolve(gate.cost, args), "cost", gate)
        if gate.kind == "stock":
            return self._admit_stock(gate, subject, limit, cost, args)
        return self._admit_metered(gate, subject, limit, cost)

    def _admit_tier(self, gate: Gate, subject: Subject) -> Grant:
        assert gate.min_tier is not None
        if not decision.tier_allows(self.catalogue, gate.min_tier, subject.plan):
            raise Denial(
                "tier",
                status=403,
                feature=gate.feature,
                subject=subject,
                required_tier=gate.min_tier,
                detail=f"{gate.feature!r} needs plan {gate.min_tier!r} or higher; "
                f"the current plan is {subject.plan!r}.",
            )
        return Grant(gate, subject, track=int(gate.track_usage))

    def _admit_stock(
        self, gate: Gate, subject: Subject, limit: int | None, cost: int, args: dict[str, Any]
    ) -> Grant:
        track = cost if gate.track_usage else 0
        if limit is None:
            # Unlimited: the application's count is not even read.
            return Grant(gate, subject, track=track)
        assert gate.usage_getter is not None
        used = decision.amount(gate.usage_getter(**args), "usage_getter's result", gate)
        # A request that adds nothing (cost 0) passes even above the limit: a user
        # whose plan shrank can still edit or remove what they hold.
        if cost and used + cost > limit:
            raise self._limit_denial(gate, subject, limit, used, cost, None)
        return Grant(gate, subject, track=track, limit=limit, remaining=limit - used - cost)

    def _admit_metered(self, gate: Gate, subject: Subject, limit: int | None, cost: int) -> Grant:
        if limit is None or cost == 0:
            # Unlimited: nothing to check, so no round trip; the tracker records it.
            return Grant(gate, subject, track=cost if gate.track_usage else 0)
        if self.settings.database_url is None:
            # Started without a database (a factory under test): said when it matters.
            raise ConfigError(
                f"the metered limit on {gate.feature!r} needs FEATURE_GATES_DATABASE_URL: "
                "set it to the application's PostgreSQL URL"
            )
        now = self.clock()
        reset_at = period_end(now)
        if cost > limit:
            # More than the whole limit is refused whatever was used, as the database
            # would refuse it; and it may be more than the database takes in one call.
            used = self._read_count(subject, gate.feature)
            known = used if isinstance(used, int) else None
            raise self._limit_denial(gate, subject, limit, known, cost, reset_at)
        if cost > decision.MAX_AMOUNT:
            raise ValueError(
                f"cost of the gate on {gate.feature!r} is {cost}; one call consumes at most "
                f"{decision.MAX_AMOUNT} uses"
            )
        period = month_start(now)
        consumed = self._consume(gate, subject, cost, limit, period)
        if consumed is None:
            # Fail open: allowed, and recorded through the tracker, which keeps the
            # uses until the database is back, so the count stays right.
            return Grant(gate, subject, track=cost, owed=True)
        if consumed.count is None:
            raise self._limit_denial(gate, subject, limit, consumed.current, cost, reset_at)
        return Grant(
            gate,
            subject,
            consumed=cost,
            period=period,
            limit=limit,
            remaining=limit - consumed.count,
            reset_at=reset_at,
        )

    def _consume(
        self, gate: Gate, subject: Subject, cost: int, limit: int, period: date
    ) -> Consumed | None:
        """The consume's answer; None when the database cannot be reached and the fail
        mode is open. Raises the denial of a closed fail mode, or of a failed check."""
        params = {
            "user_id": subject.user_id,
            "feature": gate.feature,
            "amount": cost,
            "limit": limit,
            "period": period,
        }
        try:
            (row,) = self.storage.run(
                self.storage.statements.consume,
                params,
                row=class_row(Consumed),
                what=f"the metered check of {gate.feature!r}",
                idempotent=False,
                timeout=self.settings.db_timeout,
                expected=("22003",),
            )
        except StorageUnavailable:
            if (gate.fail_mode or self.settings.fail_mode) == "open":
                return None
            self._unchecked(gate, subject, "unavailable")
        except StorageError as exc:
            if exc.sqlstate == "22003":
                # The count plus the cost passes the largest bigint: over any limit.
                return Consumed(None, None)
            self._unchecked(gate, subject, "error")
        return row

    def _unchecked(self, gate: Gate, subject: Subject, reason: str) -> NoReturn:
        """Refuse a metered call the database could not check: it cannot be reached
        (``unavailable``, the fail mode closed) or it failed (``error``)."""
        why = (
            "cannot be checked right now"
            if reason == "unavailable"
            else ("could not be checked: the database failed")
        )
        raise Denial(
            reason,
            status=503,
            feature=gate.feature,
            subject=subject,
            detail=f"the usage of {gate.feature!r} {why}; try again in a moment.",
            headers={"Retry-After": str(math.ceil(Health.max_backoff))},
        )

    def _limit_denial(
        self,
        gate: Gate,
        subject: Subject,
        limit: int,
        used: int | None,
        cost: int,
        reset_at: datetime | None,
    ) -> Denial:
        headers: dict[str, str] = {}
        resets = per = uses = ""
        if reset_at is not None:
            wait = reset_at - self.clock()
            headers["Retry-After"] = str(max(math.ceil(wait.total_seconds()), 1))
            resets = f"; it resets at {iso_utc(reset_at)}"
            per, uses = " per month", "uses of "
        if self.settings.headers_enabled:
            remaining = 0 if used is None else limit - used
            headers.update(limit_headers(limit, remaining, reset_at, self.clock()))
        asked = "" if cost == 1 else f", and this request needs {cost}"
        return Denial(
            "limit",
            status=self.settings.limit_status,
            feature=gate.feature,
            subject=subject,
            limit=limit,
            used=used,
            cost=cost,
            reset_at=reset_at,
            headers=headers,
            detail=f"plan {subject.plan!r} allows {limit} {uses}{gate.feature!r}{per} and "
            f"{'all' if used is None else used} are used{asked}{resets}.",
        )

    def denied(self, denial: Denial, started: float, raised: object) -> None:
        """Log ``denial`` and send its signals, ``raised`` being the adapter's form of
        it (what the signals carry); ``started`` is when the check began
        (``time.perf_counter()``)."""
        subject = denial.subject
        user_id = None if subject is None else subject.user_id
        check_ms = (time.perf_counter() - started) * 1000
        denial_logger.log(
            self.settings.denial_log_level,
            "feature_denied feature=%s user=%s plan=%s reason=%s check_ms=%.3f",
            denial.feature,
            user_id,
            denial.plan,
            denial.reason,
            check_ms,
            extra={
                "feature_gates": {
                    "event": "feature_denied",
                    "feature": denial.feature,
                    "user_id": user_id,
                    "plan": denial.plan,
                    "reason": denial.reason,
                    "check_ms": check_ms,
                }
            },
        )
        self.emit(
            "access-denied",
            feature=denial.feature,
            subject=subject,
            reason=denial.reason,
            denial=raised,
        )
        if denial.reason == "limit":
            self.emit(
                "limit-exceeded",
                feature=denial.feature,
                subject=subject,
                limit=denial.limit,
                used=denial.used,
                denial=raised,
            )

    # -- the end of a request ------------------------------------------------------------

    def settle(self, grant: Grant, succeeded: bool) -> None:
        """Record a successful use through the tracker, or refund a failed one."""
        if succeeded:
            if grant.owed:
                self.tracker.track_owed(grant.subject.user_id, grant.gate.feature, grant.track)
            elif grant.track:
                self.tracker.track(grant.subject.user_id, grant.gate.feature, grant.track)
        elif grant.consumed:
            self._refund(grant)

    def _refund(self, grant: Grant) -> None:
        uses = f"{grant.consumed} uses of {grant.gate.feature!r} by {grant.subject.user_id!r}"
        try:
            self.storage.run(
                self.storage.statements.refund,
                (grant.subject.user_id, grant.gate.feature, grant.consumed, grant.period),
                row=tuple_row,
                what=f"the refund of {uses}",
                idempotent=False,
            )
        except StorageUnavailable as exc:
            # Kept: a use too many on the count, never a limit passed.
            logger.warning("%s not refunded: %s", uses, exc)
        except StorageError:
            pass  # the same, logged by the storage with its SQLSTATE

    def response_headers(self, grants: list[Grant]) -> dict[str, str]:
        """The limit headers of a successful response: those of its tightest limit."""
        limited = [grant for grant in grants if grant.remaining is not None]
        if not limited or not self.settings.headers_enabled:
            return {}
        tightest = min(limited, key=lambda grant: grant.remaining or 0)
        assert tightest.limit is not None and tightest.remaining is not None
        return limit_headers(tightest.limit, tightest.remaining, tightest.reset_at, self.clock())

    # -- reading without consuming ---------------------------------------------------------

    def check(
        self,
        feature: str,
        subject: Subject | None,
        *,
        cost: int = 1,
        used: int | None = None,
        counts: Mapping[str, int] | StorageError | None = None,
    ) -> Decision:
        """Would ``subject`` be allowed ``cost`` uses of ``feature`` now? Consumes nothing.

        ``used`` is the current count of a stock limit; without it a metered limit's
        count is read from ``feature_usage`` (or taken from ``counts``, read already
        for many features).
        """
        entitlement = None if subject is None else self.catalogue.entitlement(subject.plan, feature)
        early = decision.before_count(
            entitlement, feature, subject, stock=used is None and feature in self.stock_features
        )
        if early is not None:
            return early
        assert subject is not None and entitlement is not None
        reset_at = None
        if used is None:
            reset_at = period_end(self.clock())
            read: Read
            if counts is None:
                read = self._read_count(subject, feature)
            else:
                read = counts if isinstance(counts, StorageError) else counts.get(feature, 0)
            if isinstance(read, StorageError):
                return self._unread(read, feature, subject, entitlement.limit)
            used = read
        return decision.judge(entitlement, subject, used, cost, reset_at)

    def _unread(
        self, error: StorageError, feature: str, subject: Subject, limit: int | None
    ) -> Decision:
        if not isinstance(error, StorageUnavailable):
            return Decision(False, "error", feature, subject.plan, limit)
        open_ = self.settings.fail_mode == "open"
        return Decision(open_, None if open_ else "unavailable", feature, subject.plan, limit)

    def entitlements(self, subject: Subject | None) -> dict[str, Decision]:
        """Every feature of the catalogue with its decision; every count in one read."""
        counts: dict[str, int] | StorageError = {}
        if subject is not None and "limit" in self.catalogue.kinds.values():
            try:
                counts = self.counts(subject.user_id)
            except StorageError as exc:
                counts = exc
        return {
            feature: self.check(feature, subject, counts=counts) for feature in self.catalogue.kinds
        }

    def remaining(self, feature: str, subject: Subject | None) -> int | None:
        """Uses of ``feature`` left to ``subject`` this period: None when its plan sets
        no limit, 0 when anonymous or not entitled. Reads the count only for a limit.

        :raises StorageError: the count cannot be read (so that "unknown" never looks
            like "unlimited").
        """
        counts: dict[str, int] = {}
        if subject is not None and self.catalogue.entitlement(subject.plan, feature).limit:
            counts[feature] = self.count(subject.user_id, feature)
        return self.check(feature, subject, counts=counts).remaining

    def _read_count(self, subject: Subject, feature: str) -> Read:
        try:
            return self.count(subject.user_id, feature)
        except StorageError as exc:
            return exc

    def count(self, user_id: Any, feature: str, period: date | None = None) -> int:
        """``user_id``'s recorded count of ``feature`` in ``period`` (this month)."""
        (count,) = self.storage.run(
            self.storage.statements.usage,
            (user_id, feature, period or month_start(self.clock())),
            row=scalar_row,
            what="a usage read",
            idempotent=True,
        )
        return int(count or 0)

    def counts(self, user_id: Any, period: date | None = None) -> dict[str, int]:
        """Every feature ``user_id`` used in ``period`` (this month), with its count."""
        rows = self.storage.run(
            self.storage.statements.user_usage,
            (user_id, period or month_start(self.clock())),
            row=class_row(FeatureCount),
            what="a usage read",
            idempotent=True,
        )
        return {row.feature: row.usage_count for row in rows}

    def set_counts(self, user_id: Any, usage: Mapping[str, int]) -> None:
        """Set this month's counts of ``user_id`` outright (tests)."""
        # What the tracker still holds would land on top of the counts set here.
        self.tracker.flush(10.0)
        period = month_start(self.clock())
        for feature, count in usage.items():
            self.storage.run(
                self.storage.statements.set_usage,
                (user_id, feature, period, count),
                row=tuple_row,
                what="setting a usage count",
                idempotent=True,
            )

    def resolve_user_id(self, email: str) -> Any:
        """The user id of ``email`` (None when unknown), cached."""

        def lookup(value: str) -> Any:
            rows = self.storage.run(
                self.settings.user_lookup_sql,
                (value,),
                row=tuple_row,
                what="the user lookup (FEATURE_GATES_USER_LOOKUP_SQL)",
                idempotent=True,
                configured=True,
            )
            return rows[0][0] if rows else None

        return self.user_ids.get(email, lookup)

    # -- reports -------------------------------------------------------------------------

    def usage_report(
        self, *, top: int = 10, near_limit: float | None = None, period: date | None = None
    ) -> UsageReport:
        """The most used features of ``period`` (this month) and, with ``near_limit`` (a
        percentage), the users at or above that share of their plan's limit."""
        return usage_report(
            self.storage,
            self.catalogue,
            self.stock_features,
            self.settings.user_plan_sql,
            top=top,
            near_limit=near_limit,
            period=period or month_start(self.clock()),
        )

    def usage_trend(self, months: int = 6) -> UsageTrend:
        """Uses and active users per month, the last ``months`` months."""
        return usage_trend(self.storage, months=months, current=month_start(self.clock()))

    # -- the end ---------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Write pending usage, stop the writer and close the pool.

        Waits at most ``timeout`` seconds (FEATURE_GATES_SHUTDOWN_FLUSH_TIMEOUT by
        default) for the database; raises :class:`~feature_gates.FlushTimeout` when
        usage is still pending then.
        """
        if timeout is None:
            timeout = self.settings.shutdown_flush_timeout
        try:
            self.tracker.close(timeout)
        finally:
            self.storage.close()

    def close_at_exit(self) -> None:
        """:meth:`close` at interpreter exit: what cannot be written is logged, not raised."""
        self.tracker.close_at_exit(self.settings.shutdown_flush_timeout)
        self.storage.close()
