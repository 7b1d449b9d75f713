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
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import date
from datetime import datetime
from datetime import time as dt_time
from datetime import timedelta
from datetime import timezone
from typing import Any
from typing import NoReturn
from typing import TypeVar
from uuid import UUID

from psycopg.rows import class_row
from psycopg.rows import scalar_row
from psycopg.rows import tuple_row

from . import _decision as decision
from ._alerts import AlertSender
from ._config import ConfigError
from ._config import Settings
from ._counting import Key
from ._counting import zone_named
from ._credits import Balance
from ._credits import CreditGrant
from ._credits import balance_of
from ._decision import Decision
from ._decision import Gate
from ._decision import Grant
from ._decision import Level
from ._denials import Denial
from ._denials import limit_detail
from ._denials import limit_headers
from ._holds import Hold
from ._holds import Settled
from ._messages import Messages
from ._metering import Usage
from ._metering import consume_params
from ._metering import counted_key
from ._metering import default_key
from ._metering import increment_params
from ._metering import key_params
from ._metering import levels_of
from ._metering import read_params
from ._metering import refund_params
from ._metering import reset_params
from ._metering import usage_of
from ._periods import Clock
from ._periods import Window
from ._periods import month_start
from ._periods import utc_now
from ._plans import Catalogue
from ._plans import Entitlement
from ._reports import UsageReport
from ._reports import UsageTrend
from ._reports import usage_report
from ._reports import usage_trend
from ._storage import Emit
from ._storage import Health
from ._storage import Storage
from ._storage import StorageError
from ._storage import StorageUnavailable
from ._storage.rows import BalanceRow
from ._storage.rows import Checked
from ._storage.rows import EndedPeriod
from ._storage.rows import FeatureCount
from ._storage.rows import Granted
from ._storage.rows import Reading
from ._storage.rows import Reserved
from ._subject import Subject
from ._subject import UserIdCache
from ._subject import user_id_check
from ._tracking import UsageTracker

__all__ = ["Engine"]

logger = logging.getLogger("feature_gates")
_Row = TypeVar("_Row")
#: A counting statement's answer when the count would pass the largest bigint.
_OVERFLOW: Any = object()
denial_logger = logging.getLogger("feature_gates.denials")


def _over_a_limit(entitlement: Entitlement, cost: int) -> bool:
    """Whether ``cost`` alone is more than a level's whole limit, whatever was used
    or granted: a member's cap or a rolling window's limit (grants lift neither; a
    period's allowance may be lifted by grants, which only the database knows)."""
    rule = entitlement.rule
    limits = (
        entitlement.limit if rule.window is not None else None,
        entitlement.per_user if rule.scope == "org" else None,
    )
    if any(limit is not None and cost > limit for limit in limits):
        return True
    # More than one call can take and more than the allowance: no grant makes it pass.
    limit = entitlement.limit
    return cost > decision.MAX_AMOUNT and limit is not None and cost > limit


def _levels_checked(
    entitlement: Entitlement, key: Key, cost: int, checked: Checked
) -> tuple[Level, ...]:
    """The levels of ``key`` as a metered check (or a reserve) answered."""
    return levels_of(
        entitlement,
        key,
        cost,
        used=checked.used,
        member_used=checked.member_used,
        buckets=checked.buckets,
        member_buckets=checked.member_buckets,
        newest=checked.newest_bucket,
    )


def _refused_level(levels: tuple[Level, ...], refused: str | None, cost: int) -> Level:
    """The level the database says refused: a member's cap (``"user"`` beside a
    pool) is the second; else the first level ``cost`` passes, else the first."""
    if refused == "user" and len(levels) == 2:
        return levels[1]
    return decision.refusing(levels, cost) or levels[0]


def _levels_read(
    entitlement: Entitlement, key: Key, cost: int, reading: Reading | None
) -> tuple[Level, ...]:
    """The levels of ``key`` as ``reading`` counted them (None: nothing counted)."""
    if reading is None:
        return levels_of(entitlement, key, cost, used=None)
    return levels_of(
        entitlement,
        key,
        cost,
        used=reading.used,
        member_used=reading.member_used,
        buckets=reading.buckets,
        member_buckets=reading.member_buckets,
        newest=reading.newest_bucket,
    )


class Engine:
    """One application's runtime.

    :param settings: the parsed settings.
    :param catalogue: the compiled plans.
    :param clock: returns the current time (aware); fixes the period of each use.
    :param emit: sends a signal: ``emit(name, **data)``.
    :param listening: whether a signal has receivers.
    :param context: returns the context alerts are signalled in (the adapter's
        application context).
    """

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        *,
        clock: Clock = utc_now,
        emit: Emit,
        listening: Callable[[str], bool],
        context: Callable[[], AbstractContextManager[Any]] | None = None,
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
        #: The zone of calendar periods for a subject without one (FEATURE_GATES_TIMEZONE).
        self.zone = zone_named(settings.timezone)
        self.alerts = AlertSender(
            self.storage,
            settings,
            emit=emit,
            context=context,
            user_id=int if settings.user_id_type == "bigint" else str,
        )
        #: Whether some plan declares alert thresholds: only then does a sender run.
        self.alerting = settings.database_url is not None and any(
            entitlement.alerts
            for plan in catalogue.plans.values()
            for entitlement in plan.entitlements.values()
        )

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
        if gate.kind == "tier" and subject is not None:
            return self._admit_tier(gate, subject)
        entitlement = self._entitled(gate, subject, args)
        assert subject is not None
        if gate.kind == "feature":
            return Grant(gate, subject, track=int(gate.track_usage))
        if gate.reserve is not None:
            up_to = decision.amount(decision.resolve(gate.reserve, args), "reserve", gate)
            hold = self._reserve(gate, subject, entitlement, up_to, self.settings.hold_ttl)
            return Grant(gate, subject, key=hold.key, hold=hold)
        cost = decision.amount(decision.resolve(gate.cost, args), "cost", gate)
        if gate.kind == "stock":
            return self._admit_stock(gate, subject, entitlement.limit, cost, args)
        return self._admit_metered(gate, subject, entitlement, cost)

    def _entitled(self, gate: Gate, subject: Subject | None, args: dict[str, Any]) -> Entitlement:
        """What ``subject``'s plan allows of the gate's feature; the denial of an
        anonymous caller or a plan that does not include it raised."""
        if subject is None:
            raise Denial(
                "anonymous",
                status=401,
                feature=gate.feature,
                subject=None,
                detail=f"{gate.feature!r} needs a signed-in user: sign in and try again.",
            )
        if self.alerting:
            self.alerts.start()
        entitlement = decision.entitlement_of(gate, self.catalogue, subject.plan, args)
        if entitlement.limit == 0:
            raise Denial(
                "not-entitled",
                status=403,
                feature=gate.feature,
                subject=subject,
                detail=f"plan {subject.plan!r} does not include {gate.feature!r}; "
                "a plan that does is needed.",
            )
        return entitlement

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
            raise self._limit_denial(gate, subject, cost, limit=limit, used=used)
        return Grant(gate, subject, track=track, limit=limit, remaining=limit - used - cost)

    def _admit_metered(
        self, gate: Gate, subject: Subject, entitlement: Entitlement, cost: int
    ) -> Grant:
        now = self.clock()
        key = counted_key(entitlement, subject, now, self.zone)
        if not entitlement.metered or cost == 0:
            # Unlimited: nothing to check, so no round trip; the tracker records it.
            return Grant(gate, subject, track=cost if gate.track_usage else 0, key=key)
        if self.settings.database_url is None:
            # Started without a database (a factory under test): said when it matters.
            raise ConfigError(
                f"the metered limit on {gate.feature!r} needs FEATURE_GATES_DATABASE_URL: "
                "set it to the application's PostgreSQL URL"
            )
        if _over_a_limit(entitlement, cost):
            # More than a whole limit is refused whatever was used, as the database
            # would refuse it; and it may be more than the database takes in one call.
            raise self._whole_limit_denial(gate, subject, entitlement, key, cost)
        if cost > decision.MAX_AMOUNT:
            raise ValueError(
                f"cost of the gate on {gate.feature!r} is {cost}; one call consumes at most "
                f"{decision.MAX_AMOUNT} uses"
            )
        checked = self._consume(gate, subject, entitlement, key, cost)
        if (
            checked is not None
            and checked.refused is not None
            and self._roll_over(entitlement, subject, key)
        ):
            # The period's first need of more than its allowance: the last period's
            # unused allowance is carried into it now, once.
            checked = self._consume(gate, subject, entitlement, key, cost)
        if checked is None:
            # Fail open: allowed, and recorded through the tracker, which keeps the
            # uses until the database is back, so the count stays right.
            return Grant(gate, subject, track=cost, owed=True, key=key)
        levels = _levels_checked(entitlement, key, cost, checked)
        if checked.refused is not None:
            refused = _refused_level(levels, checked.refused, cost)
            raise self._limit_denial(gate, subject, cost, entitlement, refused)
        # The counts are after the use: what is left is what each level shows.
        tightest = decision.deciding(levels, 0) or levels[0]
        return Grant(
            gate,
            subject,
            consumed=cost,
            key=key,
            limit=tightest.limit,
            remaining=tightest.remaining,
            reset_at=tightest.reset_at,
        )

    def _whole_limit_denial(
        self, gate: Gate, subject: Subject, entitlement: Entitlement, key: Key, cost: int
    ) -> Denial:
        """The denial of a cost larger than a level's whole limit, with the counts
        when they can be read."""
        try:
            reading = self._readings([key]).get(gate.feature)
        except StorageError:
            reading = None
        levels = _levels_read(entitlement, key, cost, reading)
        refused = decision.refusing(levels, cost) or levels[0]
        if reading is None:
            refused = replace(refused, used=None, remaining=None)
        return self._limit_denial(gate, subject, cost, entitlement, refused)

    def _consume(
        self, gate: Gate, subject: Subject, entitlement: Entitlement, key: Key, cost: int
    ) -> Checked | None:
        """The metered check's answer; None when the database cannot be reached and the
        fail mode is open. Raises the denial of a closed fail mode, or of a failed check."""
        params = consume_params(key, cost, entitlement, subject.plan, self.clock())
        row = self._checked(gate, subject, self.storage.statements.consume, params, Checked)
        return Checked(key.scope, None, None, None, None, None) if row is _OVERFLOW else row

    def _checked(
        self,
        gate: Gate,
        subject: Subject,
        statement: str,
        params: dict[str, Any],
        row_type: type[_Row],
    ) -> _Row | None:
        """The answer of a statement that counts (a metered check, a reserve); None
        when the database cannot be reached and the fail mode is open, ``_OVERFLOW``
        when the count would pass the largest bigint. Raises the denial of a closed
        fail mode, or of a failed check."""
        try:
            (row,) = self.storage.run(
                statement,
                params,
                row=class_row(row_type),
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
                return _OVERFLOW  # type: ignore[no-any-return]
            self._unchecked(gate, subject, "error")
        return row

    # -- holds ---------------------------------------------------------------------------

    def reserve(self, gate: Gate, subject: Subject | None, up_to: int, ttl: float | None) -> Hold:
        """Hold ``up_to`` uses of the gate's feature for ``subject`` for ``ttl`` seconds
        (FEATURE_GATES_HOLD_TTL by default), or raise the denial a metered check of
        ``up_to`` would raise."""
        if isinstance(up_to, bool) or not isinstance(up_to, int) or up_to < 1:
            raise ValueError(
                f"up_to of a reserve of {gate.feature!r} must be 1 or more, got {up_to!r}"
            )
        if ttl is not None and (isinstance(ttl, bool) or not ttl > 0):
            raise ValueError(
                f"ttl of a reserve of {gate.feature!r} must be seconds above 0, got {ttl!r}"
            )
        try:
            entitlement = self._entitled(gate, subject, {})
            assert subject is not None
            return self._reserve(gate, subject, entitlement, up_to, ttl or self.settings.hold_ttl)
        except Denial as denial:
            denial.message = self.messages.of(denial)
            raise

    def _reserve(
        self, gate: Gate, subject: Subject, entitlement: Entitlement, up_to: int, ttl: float
    ) -> Hold:
        now = self.clock()
        key = counted_key(entitlement, subject, now, self.zone)
        expires = now + timedelta(seconds=ttl)

        def hold(hold_id: UUID | None, counted: Key | None) -> Hold:
            return Hold(gate.feature, subject, up_to, expires, counted, hold_id, self._settle_hold)

        if not entitlement.metered:
            # Unlimited: nothing held; what is committed is recorded through the tracker.
            return hold(None, key)
        if _over_a_limit(entitlement, up_to):
            raise self._whole_limit_denial(gate, subject, entitlement, key, up_to)
        if up_to > decision.MAX_AMOUNT:
            raise ValueError(
                f"up_to of a reserve of {gate.feature!r} is {up_to}; one call holds at most "
                f"{decision.MAX_AMOUNT} uses"
            )
        params = consume_params(key, up_to, entitlement, subject.plan, now)
        params["expires"] = expires.astimezone(timezone.utc)
        row = self._checked(gate, subject, self.storage.statements.reserve, params, Reserved)
        if (
            row is not None
            and row is not _OVERFLOW
            and row.refused is not None
            and self._roll_over(entitlement, subject, key)
        ):
            row = self._checked(gate, subject, self.storage.statements.reserve, params, Reserved)
        if row is None:
            # Fail open, as a metered check: what is committed is owed to the count.
            return hold(None, key)
        if row is _OVERFLOW or row.hold_id is None:
            checked = (
                Checked(key.scope, None, None, None, None, None)
                if row is _OVERFLOW
                else row.checked()
            )
            levels = _levels_checked(entitlement, key, up_to, checked)
            refused = _refused_level(levels, checked.refused, up_to)
            raise self._limit_denial(gate, subject, up_to, entitlement, refused)
        return hold(row.hold_id, key)

    def _settle_hold(self, hold: Hold, actual: int) -> Settled:
        """Settle ``hold`` in one statement: ``actual`` uses stay counted."""
        assert hold.key is not None
        if hold.hold_id is None:
            # Nothing was held (unlimited, or let through uncounted): record what was used.
            if actual:
                self.tracker.record_owed(hold.key, actual)
            return "settled"
        window = self.window_of(hold.key)
        now = self.clock().astimezone(timezone.utc)
        what = f"the settling of a hold of {hold.feature!r} by {hold.subject.user_id!r}"
        outcome = self.storage.run(
            self.storage.statements.settle_hold,
            {
                "subject": hold.key.subject,
                "hold": hold.hold_id,
                "actual": actual,
                "now": now,
                "now_bucket": None if window is None else window.bucket(now),
            },
            row=scalar_row,
            what=what,
            idempotent=False,
        )[0]
        return "expired" if outcome in ("expired", "unknown") else "settled"

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
        cost: int,
        entitlement: Entitlement | None = None,
        refused: Level | None = None,
        *,
        limit: int = 0,
        used: int | None = None,
    ) -> Denial:
        """The denial of a limit: a metered one's ``refused`` level (of the
        ``entitlement`` counted), or a stock one's ``limit`` and ``used``."""
        reset_at = None if refused is None else refused.reset_at
        if refused is not None:
            limit, used = refused.limit or 0, refused.used
        headers: dict[str, str] = {}
        if reset_at is not None:
            wait = reset_at - self.clock()
            headers["Retry-After"] = str(max(math.ceil(wait.total_seconds()), 1))
        if self.settings.headers_enabled:
            remaining = 0 if used is None else limit - used
            headers.update(limit_headers(limit, remaining, reset_at, self.clock()))
        counted = None if entitlement is None else entitlement.rule
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
            scope=None if refused is None else refused.scope,
            period=None if entitlement is None else entitlement.period,
            window=None if entitlement is None else entitlement.window,
            detail=limit_detail(subject, gate.feature, counted, refused, limit, used, cost),
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

    # -- credits -------------------------------------------------------------------------

    def _credited(self, feature: str, subject: Subject) -> tuple[Entitlement, Key]:
        """The entitlement and the current key of a feature grants can add to."""
        entitlement = self.catalogue.entitlement(subject.plan, feature)
        if entitlement.rule.window is not None:
            raise ConfigError(
                f"feature {feature!r} counts a rolling window on plan {subject.plan!r}: "
                "grants add to a period's allowance; count it by period to grant credits"
            )
        return entitlement, counted_key(entitlement, subject, self.clock(), self.zone)

    def grant(
        self,
        feature: str,
        subject: Subject,
        amount: int,
        *,
        expires_at: datetime | None = None,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> CreditGrant:
        """Add ``amount`` to the balance of the level ``subject`` counts ``feature``
        at (the organisation's, for a pool) until ``expires_at`` (None: never);
        once per ``idempotency_key``."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise ValueError(f"a grant of {feature!r} adds 1 or more, got {amount!r}")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError(
                f"expires_at of a grant of {feature!r} must be an aware datetime, "
                f"got {expires_at!r}"
            )
        _, key = self._credited(feature, subject)
        (row,) = self.storage.run(
            self.storage.statements.grant,
            {
                "subject": key.subject,
                "feature": feature,
                "scope": key.scope,
                "amount": amount,
                "expires": None if expires_at is None else expires_at.astimezone(timezone.utc),
                "reason": reason,
                "key": idempotency_key,
                "kind": "grant",
                "now": self.clock().astimezone(timezone.utc),
            },
            row=class_row(Granted),
            what=f"a grant of {amount} {feature!r} to {key.subject!r}",
            idempotent=idempotency_key is not None,
        )
        return CreditGrant(
            row.grant_id, feature, amount, amount, expires_at, reason, added=row.added
        )

    def balance(self, feature: str, subject: Subject) -> Balance:
        """What ``subject`` has of ``feature`` now: allowance, used, held, grants, available."""
        entitlement, key = self._credited(feature, subject)
        self._roll_over(entitlement, subject, key)
        (row,) = self.storage.run(
            self.storage.statements.balance,
            {
                **key_params(key),
                "member": key.member,
                "now": self.clock().astimezone(timezone.utc),
            },
            row=class_row(BalanceRow),
            what=f"the balance of {feature!r}",
            idempotent=True,
        )
        per_user = entitlement.per_user if key.member is not None else None
        return balance_of(feature, key.scope, entitlement.limit, per_user, row)

    def _roll_over(self, entitlement: Entitlement, subject: Subject, key: Key) -> int:
        """Carry the last period's unused allowance into ``key``'s period, once; what
        was carried by this call (0 without ``rollover``, or when done before)."""
        if not entitlement.rollover or key.period_end is None:
            return 0
        started = datetime.combine(key.period_start, dt_time(), timezone.utc) + timedelta(
            seconds=key.period_offset
        )
        last = counted_key(entitlement, subject, started - timedelta(microseconds=1), self.zone)
        return self._carry(entitlement, last, key.period_end)

    def close_periods(self) -> tuple[int, int]:
        """Carry over the unused allowance of every period that ended (within a year)
        and whose feature rolls over on the plan its row recorded, into a grant
        expiring with the next period, once: the job of ``feature-gates
        close-periods``. Returns (periods carried, credits carried)."""
        now = self.clock().astimezone(timezone.utc)
        ended = self.storage.run(
            self.storage.statements.ended_periods,
            {"now": now},
            row=class_row(EndedPeriod),
            what="the scan of ended periods",
            idempotent=True,
        )
        periods = credits = 0
        for row in ended:
            if row.plan not in self.catalogue.plans:
                continue
            entitlement = self.catalogue.entitlement(row.plan, row.feature)
            rule = entitlement.rule
            if not entitlement.rollover or rule.scope != row.scope:
                continue
            zone = zone_named(row.period.partition("@")[2]) if "@" in row.period else timezone.utc
            user_id, org_id = (row.subject, None) if row.scope == "user" else (None, row.subject)
            following, last = (
                rule.key(row.feature, at, user_id=user_id, org_id=org_id, zone=zone)
                for at in (row.period_end, row.period_end - timedelta(microseconds=1))
            )
            same = (following.rule, last.period_start, last.period_offset) == (
                row.period,
                row.period_start,
                row.period_offset,
            )
            if not same or following.period_end is None or following.period_end <= now:
                continue
            carried = self._carry(entitlement, last, following.period_end)
            periods += carried > 0
            credits += carried
        return periods, credits

    def _carry(self, entitlement: Entitlement, last: Key, expires: datetime) -> int:
        """The rollover of the period of ``last`` into a grant expiring at ``expires``."""
        cap = None if entitlement.rollover is True else int(entitlement.rollover)
        carried = self.storage.run(
            self.storage.statements.rollover,
            {
                "subject": last.subject,
                "feature": last.feature,
                "scope": last.scope,
                "rule": last.rule,
                "start": last.period_start,
                "offset": last.period_offset,
                "allowance": entitlement.limit,
                "cap": cap,
                "expires": expires.astimezone(timezone.utc),
                "now": self.clock().astimezone(timezone.utc),
            },
            row=scalar_row,
            what=f"the rollover of {entitlement.feature!r}",
            idempotent=True,
        )[0]
        return int(carried or 0)

    # -- the end of a request ------------------------------------------------------------

    def settle(self, grant: Grant, succeeded: bool) -> None:
        """Record a successful use through the tracker, or refund a failed one; a
        hold the view left unsettled commits all it holds, or is released."""
        if grant.hold is not None:
            if not grant.hold.settled:
                if succeeded:
                    grant.hold.commit(grant.hold.up_to)
                else:
                    grant.hold.release()
            return
        if succeeded:
            if grant.owed and grant.key is not None:
                self.tracker.record_owed(grant.key, grant.track)
            elif grant.track:
                self.tracker.record(self._tracked_key(grant), grant.track)
        elif grant.consumed:
            self._refund(grant)

    def track_use(
        self, feature: str, subject: Subject, amount: int, idempotency_key: str | None = None
    ) -> None:
        """Record uses of ``feature`` by ``subject`` now, as its plan counts them."""
        entitlement = self.catalogue.entitlement(subject.plan, feature)
        key = counted_key(entitlement, subject, self.clock(), self.zone)
        self.tracker.record(key, amount, idempotency_key)

    def _tracked_key(self, grant: Grant) -> Key:
        """What a tracked use counts against: the key fixed when the request began, else
        (a gate that counts nothing of its own) the feature's as the plan counts it,
        or a user's UTC month for a name the catalogue does not know."""
        if grant.key is not None:
            return grant.key
        feature, subject = grant.gate.feature, grant.subject
        if feature in self.catalogue:
            entitlement = self.catalogue.entitlement(subject.plan, feature)
            return counted_key(entitlement, subject, self.clock(), self.zone)
        return default_key(subject.user_id, feature, month_start(self.clock()))

    def _refund(self, grant: Grant) -> None:
        assert grant.key is not None
        uses = f"{grant.consumed} uses of {grant.gate.feature!r} by {grant.subject.user_id!r}"
        window = self.window_of(grant.key)
        now = self.clock()
        now_bucket = None if window is None else window.bucket(now)
        try:
            self.storage.run(
                self.storage.statements.refund,
                refund_params(grant.key, grant.consumed, now_bucket, now),
                row=tuple_row,
                what=f"the refund of {uses}",
                idempotent=False,
            )
        except StorageUnavailable as exc:
            # Kept: a use too many on the count, never a limit passed.
            logger.warning("%s not refunded: %s", uses, exc)
        except StorageError:
            pass  # the same, logged by the storage with its SQLSTATE

    @staticmethod
    def window_of(key: Key) -> Window | None:
        """The rolling window ``key`` counts in, None for a period."""
        if not key.rule.startswith("window:"):
            return None
        return Window(int(key.rule.partition(":")[2]))

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
        readings: Mapping[str, Reading] | StorageError | None = None,
    ) -> Decision:
        """Would ``subject`` be allowed ``cost`` uses of ``feature`` now? Consumes nothing.

        ``used`` is the current count of a stock limit; without it a metered limit's
        counts (every level's) are read from the database (or taken from
        ``readings``, read already for many features).

        :raises ConfigError: naming the feature, when how it counts needs what the
            subject lacks (an organisation, an anchor).
        """
        entitlement = None if subject is None else self.catalogue.entitlement(subject.plan, feature)
        early = decision.before_count(
            entitlement, feature, subject, stock=used is None and feature in self.stock_features
        )
        if early is not None:
            return early
        assert subject is not None and entitlement is not None
        key = counted_key(entitlement, subject, self.clock(), self.zone)
        if used is not None:
            stock = (decision.level(key.scope, entitlement.limit, used, None),)
            return decision.judge(entitlement, subject, stock, cost)
        if readings is None:
            try:
                readings = self._readings([key])
            except StorageError as exc:
                readings = exc
        if isinstance(readings, StorageError):
            return self._unread(readings, feature, subject, entitlement.limit)
        reading = readings.get(feature)
        levels = _levels_read(entitlement, key, cost, reading)
        return decision.judge(entitlement, subject, levels, cost)

    def _unread(
        self, error: StorageError, feature: str, subject: Subject, limit: int | None
    ) -> Decision:
        if not isinstance(error, StorageUnavailable):
            return Decision(False, "error", feature, subject.plan, limit)
        open_ = self.settings.fail_mode == "open"
        return Decision(open_, None if open_ else "unavailable", feature, subject.plan, limit)

    def entitlements(self, subject: Subject | None) -> dict[str, Decision]:
        """Every feature of the catalogue with its decision; the counts read in one
        statement per subject (the user's, and the organisation's for its pools)."""
        readings: dict[str, Reading] | StorageError = {}
        if subject is not None:
            keys = self._metered_keys(subject)
            if keys:
                try:
                    readings = self._readings(keys)
                except StorageError as exc:
                    readings = exc
        return {
            feature: self.check(feature, subject, readings=readings)
            for feature in self.catalogue.kinds
        }

    def remaining(self, feature: str, subject: Subject | None) -> int | None:
        """Uses of ``feature`` left to ``subject`` now, at its tightest level: None when
        its plan sets no limit, 0 when anonymous or not entitled. Reads the counts
        only for a limit.

        :raises StorageError: the counts cannot be read (so that "unknown" never looks
            like "unlimited").
        """
        readings: dict[str, Reading] = {}
        if subject is not None and feature not in self.stock_features:
            entitlement = self.catalogue.entitlement(subject.plan, feature)
            if entitlement.granted and entitlement.metered:
                readings = self._readings(
                    [counted_key(entitlement, subject, self.clock(), self.zone)]
                )
        return self.check(feature, subject, readings=readings).remaining

    def _metered_keys(self, subject: Subject) -> list[Key]:
        """The keys of the features ``subject``'s plan limits and the catalogue counts."""
        now = self.clock()
        keys = []
        for feature, kind in self.catalogue.kinds.items():
            entitlement = self.catalogue.entitlement(subject.plan, feature)
            if kind == "limit" and entitlement.granted and feature not in self.stock_features:
                keys.append(counted_key(entitlement, subject, now, self.zone))
        return keys

    def _readings(self, keys: list[Key]) -> dict[str, Reading]:
        """The counts of ``keys``, by feature: one read per subject they belong to."""
        groups: dict[tuple[Any, str, Any], list[Key]] = {}
        for key in keys:
            groups.setdefault((key.subject, key.scope, key.member), []).append(key)
        readings: dict[str, Reading] = {}
        for group in groups.values():
            rows = self.storage.run(
                self.storage.statements.read,
                read_params(group),
                row=class_row(Reading),
                what="a usage read",
                idempotent=True,
            )
            readings.update((row.feature, row) for row in rows)
        return readings

    def usage(self, feature: str, subject: Subject) -> Usage:
        """What ``subject`` has used of ``feature``, as the subject's plan counts it."""
        entitlement = self.catalogue.entitlement(subject.plan, feature)
        key = counted_key(entitlement, subject, self.clock(), self.zone)
        reading = self._readings([key]).get(feature)
        return usage_of(
            entitlement,
            key,
            used=None if reading is None else reading.used,
            member_used=None if reading is None else reading.member_used,
            buckets=None if reading is None else reading.buckets,
            newest=None if reading is None else reading.newest_bucket,
        )

    def reset(self, feature: str, subject: Subject) -> int:
        """Start ``subject``'s count of ``feature`` afresh (the current period's, as the
        plan counts it; an organisation pool's with every member's share); return the
        count there was. For a policy of resetting usage when a plan changes."""
        # What the tracker still holds would land on top of the count reset here.
        self.tracker.flush(10.0)
        entitlement = self.catalogue.entitlement(subject.plan, feature)
        key = counted_key(entitlement, subject, self.clock(), self.zone)
        (before,) = self.storage.run(
            self.storage.statements.reset,
            reset_params(key),
            row=scalar_row,
            what=f"the reset of {feature!r}",
            idempotent=True,
        )
        return int(before or 0)

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

    def set_counts(
        self, user_id: Any, usage: Mapping[str, int], subject: Subject | None = None
    ) -> None:
        """Set the current counts of ``user_id`` outright (tests): each feature's as
        ``subject``'s plan counts it (its period or window, its pool for an
        organisation), or this calendar month's in UTC without a subject."""
        # What the tracker still holds would land on top of the counts set here.
        self.tracker.flush(10.0)
        period = month_start(self.clock())
        for feature, count in usage.items():
            if subject is not None and feature in self.catalogue:
                entitlement = self.catalogue.entitlement(subject.plan, feature)
                key = counted_key(entitlement, subject, self.clock(), self.zone)
                self._set_count(key, count)
                continue
            self.storage.run(
                self.storage.statements.set_usage,
                (user_id, feature, period, count),
                row=tuple_row,
                what="setting a usage count",
                idempotent=True,
            )

    def _set_count(self, key: Key, count: int) -> None:
        """``key``'s count becomes ``count``: started afresh, then ``count`` added."""
        self.storage.run(
            self.storage.statements.reset,
            reset_params(key),
            row=tuple_row,
            what="setting a usage count",
            idempotent=True,
        )
        if count > 0:
            self.storage.run(
                self.storage.statements.increment,
                increment_params(key, count),
                row=tuple_row,
                what="setting a usage count",
                idempotent=False,
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
            self.alerts.close(timeout)
            self.storage.close()

    def close_at_exit(self) -> None:
        """:meth:`close` at interpreter exit: what cannot be written is logged, not raised."""
        self.tracker.close_at_exit(self.settings.shutdown_flush_timeout)
        self.alerts.close(self.settings.shutdown_flush_timeout)
        self.storage.close()
