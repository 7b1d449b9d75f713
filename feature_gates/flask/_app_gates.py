"""One application's feature-gates: what ``app.extensions["feature_gates"]`` holds.

An :class:`AppGates` is bound to its application, so its methods need no
application context: a plain pytest test given the app calls
``app.extensions["feature_gates"].flush()``. The :class:`FeatureGates`
extension's methods of the same names call these on ``current_app``.
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import date
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import overload

from flask import Flask
from flask import current_app
from flask.typing import ResponseReturnValue

from ..core import AlertStats
from ..core import Balance
from ..core import Catalogue
from ..core import ConfigError
from ..core import CreditGrant
from ..core import Decision
from ..core import Denial
from ..core import Engine
from ..core import Gate
from ..core import Grant
from ..core import Hold
from ..core import Override
from ..core import Settings
from ..core import StorageStats
from ..core import Subject
from ..core import SubjectLoader
from ..core import TrackingStats
from ..core import Usage
from ..core import UsageReport
from ..core import UsageTrend
from ..core import check_feature_name
from ..core import parse_setting
from ._denials import FeatureDenied
from ._denials import http_denial
from ._request import current_subject
from ._views import gates_of

__all__ = ["AppGates", "Callbacks", "DeniedHandler", "Override"]

_ENABLED = "FEATURE_GATES_ENABLED"

logger = logging.getLogger("feature_gates")

#: Returns a response for a denial (an HTML page, a redirect), or None for the
#: default problem+json answer.
DeniedHandler = Callable[[FeatureDenied], "ResponseReturnValue | None"]


class Callbacks(Protocol):
    """What an :class:`AppGates` reads from its extension: the registered callbacks."""

    subject_loader_callback: SubjectLoader | None
    denied_handler: DeniedHandler | None


class AppGates:
    """One application's feature-gates, bound to it: ``app.extensions["feature_gates"]``.

    It has the reading, tracking and testing methods of :class:`FeatureGates`
    (``check``, ``get_usage``, ``track``, ``flush``, ``override``, ``close``, ...),
    working on this application without an application context. :attr:`extension`
    is the :class:`FeatureGates` it was initialised by.
    """

    def __init__(
        self, extension: Callbacks, app: Flask, engine: Engine, *, warning: str | None = None
    ) -> None:
        self.extension = extension
        self.app = app
        self.engine = engine
        #: What a test's :meth:`override` pins now.
        self.pinned: Override | None = None
        self._views_checked = -1
        # FEATURE_GATES_ENABLED as parsed, and the configuration value it came from.
        self._enabled = engine.settings.enabled
        self._enabled_value = app.config.get(_ENABLED, True)
        #: Logged once, at the first request (an application without a database).
        self._warning = warning

    @property
    def catalogue(self) -> Catalogue:
        """The parsed plan catalogue."""
        return self.engine.catalogue

    @property
    def settings(self) -> Settings:
        """The parsed ``FEATURE_GATES_*`` settings."""
        return self.engine.settings

    # -- the request path -----------------------------------------------------------------

    def enabled(self) -> bool:
        """Whether the gates check and count now: FEATURE_GATES_ENABLED, parsed again
        when the application's configuration changes it, unless a test overrides it."""
        if self.pinned is not None and self.pinned.enabled is not None:
            return self.pinned.enabled
        value = self.app.config.get(_ENABLED, True)
        if value is not self._enabled_value:
            self._enabled = bool(parse_setting("enabled", value))
            self._enabled_value = value
        return self._enabled

    def load_subject(self) -> Subject | None:
        """Call the subject loader (and apply a test's override)."""
        loader = self.extension.subject_loader_callback
        if loader is None:
            raise RuntimeError(
                "no subject loader: register one with @gates.subject_loader, returning "
                "Subject(user_id=..., plan=...) or None for an anonymous caller"
            )
        subject = loader()
        if subject is not None and not isinstance(subject, Subject):
            raise TypeError(
                f"the subject loader must return a feature_gates.Subject or None, "
                f"got {type(subject).__name__}"
            )
        if subject is not None:
            self.engine.check_user_id(subject)
        return subject if self.pinned is None else self.pinned.apply(subject)

    def before_request(self) -> None:
        """``before_request``: say once what the setup lacks; check the views."""
        if self._warning is not None:
            logger.warning("%s", self._warning)
            self._warning = None
        self.check_views()

    def check_views(self) -> None:
        """Validate the gates of every view, once per set of views.

        Runs at ``init_app`` and before each request (a length comparison when no
        view was added), so a gate naming an unknown feature or tier fails the first
        request with a message naming its endpoint, whichever order the
        application registered its views and the extension in.
        """
        views = self.app.view_functions
        if len(views) == self._views_checked:
            return
        stock = set()
        for endpoint, view in views.items():
            for rule in gates_of(view):
                try:
                    self.engine.validate(rule)
                except ConfigError as exc:
                    raise ConfigError(f"endpoint {endpoint!r}: {exc}") from None
                if rule.kind == "stock":
                    stock.add(rule.feature)
        self.engine.stock_features = frozenset(stock)
        self._views_checked = len(views)

    def admit(self, rule: Gate, kwargs: dict[str, Any]) -> Grant:
        """Check ``rule`` for the current request; raise its HTTP denial, or return
        what the request owes when it ends."""
        started = time.perf_counter()
        subject = current_subject(self.load_subject)
        try:
            return self.engine.admit(rule, subject, kwargs)
        except Denial as denial:
            raise self._denied(denial, started) from None

    def _denied(self, denial: Denial, started: float) -> FeatureDenied:
        """Log and signal ``denial``, let ``on_denied`` answer it: its HTTP form."""
        error = http_denial(denial)
        self.engine.denied(denial, started, error)
        handler = self.extension.denied_handler
        if handler is not None:
            answer = handler(error)
            if answer is not None:
                error.response = current_app.make_response(answer)
        return error

    # -- reading entitlements ---------------------------------------------------------------

    def current_subject(self) -> Subject | None:
        """The current request's subject (None outside a request or when anonymous)."""
        return current_subject(self.load_subject)

    def check(
        self,
        feature: str,
        subject: Subject | None = None,
        *,
        cost: int = 1,
        used: int | None = None,
    ) -> Decision:
        """May ``subject`` (the current request's by default) use ``feature`` now?
        Consumes nothing.

        For a limit, the count is read from ``feature_usage`` (one query), unless
        ``used`` gives it (a stock limit's current count). Usage still pending in
        the tracker is not included.
        """
        self.check_views()
        if subject is None:
            subject = self.current_subject()
        return self.engine.check(feature, subject, cost=cost, used=used)

    def entitlements(self, subject: Subject | None = None) -> dict[str, Decision]:
        """Every feature of the catalogue with its :class:`Decision` for ``subject``
        (the current request's by default). Reads every count in one query."""
        self.check_views()
        if subject is None:
            subject = self.current_subject()
        return self.engine.entitlements(subject)

    def has_feature(self, feature: str) -> bool:
        """Whether the current subject's plan includes ``feature``. No database read.

        A template global: ``{% if has_feature("can_export_pdf") %}``.
        """
        subject = self.current_subject()
        if subject is None:
            return False
        return self.catalogue.entitlement(subject.plan, feature).granted

    def has_tier(self, min_tier: str) -> bool:
        """Whether the current subject's plan ranks at least ``min_tier``. No database read.

        A template global: ``{% if has_tier("pro") %}``.
        """
        required = self.catalogue.require_tier(min_tier)
        subject = self.current_subject()
        if subject is None:
            return False
        rank = self.catalogue.rank(subject.plan)
        return rank is not None and rank >= required

    def feature_remaining(self, feature: str) -> int | None:
        """Uses of ``feature`` left to the current subject this period: None when the
        plan sets no limit (unlimited), 0 when anonymous or not entitled.

        A template global: ``{{ feature_remaining("chat_messages_monthly") }} left``.
        For a metered feature only: a stock limit's count is the application's, so
        ``check(feature, used=count)`` answers for it.

        :raises StorageError: the count cannot be read (the database is away:
            :class:`~feature_gates.StorageUnavailable`), so that a count nobody
            knows never shows as unlimited. ``check()`` never raises: its decision
            has ``remaining`` None and ``limit`` set then.
        """
        self.check_views()
        if feature in self.engine.stock_features:
            raise ValueError(
                f"{feature!r} is gated as a stock limit: its count is the application's; "
                f"use gates.check({feature!r}, used=<count>).remaining"
            )
        return self.engine.remaining(feature, self.current_subject())

    def resolve_user_id(self, email: str) -> Any:
        """The user id of ``email`` (None when unknown), from FEATURE_GATES_USER_LOOKUP_SQL.

        Answers are cached for FEATURE_GATES_USER_CACHE_TTL seconds.
        """
        return self.engine.resolve_user_id(email)

    # -- testing ------------------------------------------------------------------------

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
        off, for a test.

        .. code-block:: python

            with feature_gates.override(plan="free", user_id=7, usage={"posts_monthly": 3}):
                assert client.post("/create", data={"title": "4th"}).status_code == 302

        :param plan: every subject the loader returns gets this plan.
        :param user_id: every subject gets this user id; with ``plan``, an anonymous
            caller becomes this subject too.
        :param usage: counts this period for ``user_id``, written to ``feature_usage``
            (replacing what is there) when the block starts.
        :param enabled: False turns every gate into a pass-through in the block
            (True, on), whatever FEATURE_GATES_ENABLED says.
        """
        pin = Override.begin(self.engine, plan, user_id, usage, enabled)
        previous, self.pinned = self.pinned, pin
        try:
            yield
        finally:
            self.pinned = previous

    # -- holds and credits ---------------------------------------------------------

    def reserve(
        self,
        feature: str,
        *,
        up_to: int,
        subject: Subject | None = None,
        ttl: float | None = None,
    ) -> Hold:
        """Hold ``up_to`` uses of ``feature`` for ``subject`` (the current request's by
        default) before work whose cost is known only when it ends; one round trip.

        Returns a :class:`~feature_gates.Hold` (its period fixed now) to
        ``.commit(actual)`` or ``.release()``, or use as a context manager (released
        on an exception, else committed whole unless settled). Unsettled after
        ``ttl`` seconds (FEATURE_GATES_HOLD_TTL by default), it expires and its
        capacity comes back. See docs/holds.md.

        :raises FeatureLimitExceeded: the denial a metered check of ``up_to`` raises
            (and the other denials of a metered gate: not entitled, unavailable).
        """
        check_feature_name(feature)
        self.check_views()
        subject = self._subject_of(subject, "reserve")
        started = time.perf_counter()
        try:
            return self.engine.reserve(Gate("metered", feature), subject, up_to, ttl)
        except Denial as denial:
            raise self._denied(denial, started) from None

    def grant(
        self,
        feature: str,
        amount: int,
        *,
        subject: Subject | None = None,
        expires_at: datetime | None = None,
        reason: str = "",
        idempotency_key: str | None = None,
    ) -> CreditGrant:
        """Add ``amount`` credits of ``feature`` to ``subject``'s balance (the current
        request's subject by default; the organisation's, for a feature counted per
        organisation) until ``expires_at`` (an aware datetime; None: never).

        A grant raises the level it is given to and never lifts a member's
        ``per_user`` cap. With ``idempotency_key`` it is added once for that level
        and key, also between concurrent callers (``.added`` is False for the
        others). One round trip; a ledger row. See docs/credits.md.
        """
        check_feature_name(feature)
        subject = self._subject_of(subject, "grant")
        return self.engine.grant(
            feature,
            subject,
            amount,
            expires_at=expires_at,
            reason=reason,
            idempotency_key=idempotency_key,
        )

    def balance(self, feature: str, *, subject: Subject | None = None) -> Balance:
        """``subject``'s balance of ``feature`` now (the current request's by default):
        a :class:`~feature_gates.Balance` with the period's allowance, what is used
        and held, each live grant with what it has left and its expiry, and what is
        available. Carries the last period's unused allowance over first, when the
        feature rolls over."""
        check_feature_name(feature)
        subject = self._subject_of(subject, "balance")
        return self.engine.balance(feature, subject)

    # -- usage tracking -----------------------------------------------------------

    def track(
        self,
        user_id: Any,
        feature: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
        period: date | None = None,
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``user_id`` now. No I/O: returns at once.

        The period is the current calendar month (UTC), fixed now, not when the
        background writer sends it; ``period`` (the first day of a month) records
        them in another month instead (an import of past usage). With
        ``idempotency_key``, the uses count once for that user, feature and key (a
        retried job), within the retention of ``prune_feature_usage_idempotency``.
        See docs/tracking.md.
        """
        self.engine.tracker.track(user_id, feature, amount, idempotency_key, period)

    def track_use(
        self,
        feature: str,
        amount: int = 1,
        *,
        subject: Subject | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``subject`` (the current request's by
        default) now, as the subject's plan counts the feature: its period or window,
        its organisation's pool and the member's share. No I/O: returns at once; no
        limit is checked (a metered gate does that). With ``idempotency_key``, the uses
        count once for that subject (the organisation, for a pool), feature and key.
        """
        subject = self._subject_of(subject, "track_use")
        self.engine.track_use(feature, subject, amount, idempotency_key)

    def flush(self, timeout: float | None = None) -> None:
        """Write all usage tracked so far; returns when it is in the database.

        :raises FlushTimeout: after ``timeout`` seconds, saying how much is still
            pending (it stays pending and is retried).
        """
        self.engine.tracker.flush(timeout)

    def tracking_stats(self) -> TrackingStats:
        """This process's tracker counters: tracked, written, pending, batches, retries,
        dropped, rejected, duplicates, last error, last flush time."""
        return self.engine.tracker.stats()

    def deliver_alerts(self) -> int:
        """Deliver the usage alerts due now, in this thread (the background sender
        does it every FEATURE_GATES_ALERTS_INTERVAL); return how many were settled.
        See docs/alerts.md."""
        return self.engine.alerts.deliver()

    def alert_stats(self) -> AlertStats:
        """This process's alert sender counters: sent, retried, dead, last error."""
        return self.engine.alerts.stats()

    def storage_stats(self) -> StorageStats:
        """What the database did to this process's statements: errors by SQLSTATE,
        retries, outages, the current outage's start, the last error."""
        return self.engine.storage.stats()

    def close(self, timeout: float | None = None) -> None:
        """Write pending usage, stop the writer and close the pool (teardown, tests).

        Waits at most ``timeout`` seconds (FEATURE_GATES_SHUTDOWN_FLUSH_TIMEOUT by
        default) for the database; raises :class:`~feature_gates.FlushTimeout` when
        usage is still pending then.
        """
        atexit.unregister(self.close_at_exit)
        self.engine.close(timeout)

    def close_at_exit(self) -> None:
        """:meth:`close` at interpreter exit: what cannot be written is logged, not raised."""
        atexit.unregister(self.close_at_exit)
        self.engine.close_at_exit()

    # -- reading usage ------------------------------------------------------------------

    @overload
    def get_usage(self, feature: str, *, subject: Subject | None = None) -> Usage: ...

    @overload
    def get_usage(self, user_id: Any, feature: str, period: date | None = None) -> int: ...

    def get_usage(self, *args: Any, **kwargs: Any) -> Usage | int:
        """What a subject has used of a feature, as its plan counts it.

        ``get_usage(feature, subject=None)`` (the current request's subject by
        default) returns a :class:`~feature_gates.Usage`: the user's own count, or
        an organisation pool's and the member's share, in the current period or
        window. The older form ``get_usage(user_id, feature, period=None)``
        returns a user's count of a calendar month in UTC (this month by default):
        the default kind.

        Reads the database: usage still pending in the tracker is not included.

        :raises StorageError: the database failed the read
            (:class:`~feature_gates.StorageUnavailable` when it cannot be reached).
        """
        if len(args) >= 2 or "user_id" in kwargs:
            return self._month_usage(*args, **kwargs)
        feature, subject = _feature_and_subject("get_usage", args, kwargs)
        self.check_views()
        return self.engine.usage(feature, self._subject_of(subject, "get_usage"))

    def _month_usage(self, user_id: Any, feature: str, period: date | None = None) -> int:
        return self.engine.count(user_id, feature, period)

    def reset_usage(self, *args: Any, **kwargs: Any) -> int:
        """Start a subject's count of a feature afresh: the current period's (or
        window's), as the subject's plan counts it; for an organisation pool, the
        pool's and every member's share. Returns the count there was.

        ``reset_usage(feature, subject=None)``, the current request's subject by
        default; ``reset_usage(subject, feature)`` is read the same way. For teams
        whose policy is to reset usage when a plan changes (docs/plans.md: changing
        plans mid-period).
        """
        feature, subject = _feature_and_subject("reset_usage", args, kwargs)
        self.check_views()
        return self.engine.reset(feature, self._subject_of(subject, "reset_usage"))

    def _subject_of(self, subject: Subject | None, call: str) -> Subject:
        """``subject``, else the current request's; an error saying what to pass when
        there is neither."""
        if subject is None:
            subject = self.current_subject()
        if subject is None:
            raise ValueError(
                f"gates.{call}() has no subject: pass subject=Subject(...), or call it in a "
                "request whose subject loader returns one"
            )
        return self.engine.check_user_id(subject)

    def get_user_usage(self, user_id: Any, period: date | None = None) -> dict[str, int]:
        """Every feature ``user_id`` used in ``period`` (this month by default), with its count."""
        return self.engine.counts(user_id, period)

    def usage_report(
        self, *, top: int = 10, near_limit: float | None = None, period: date | None = None
    ) -> UsageReport:
        """``period``'s (this month's) ``top`` most used features, as (feature, uses,
        users), and with ``near_limit`` (a percentage) the users at or above that share
        of their plan's limit, closest first; their plans come from
        FEATURE_GATES_USER_PLAN_SQL. Stock limits are left out of the latter."""
        self.check_views()
        return self.engine.usage_report(top=top, near_limit=near_limit, period=period)

    def usage_trend(self, months: int = 6) -> UsageTrend:
        """Uses (in all and per feature) and active users per month, for the last
        ``months`` months, oldest first. The current month is read from
        ``feature_usage`` itself, the months before from ``feature_usage_summary``
        (refreshed by ``feature-gates refresh``)."""
        return self.engine.usage_trend(months)


def _feature_and_subject(
    call: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, Subject | None]:
    """(feature, subject) of a call that takes the feature first and the subject as a
    keyword; the subject first and the feature second is read the same way."""
    if len(args) == 2 and isinstance(args[0], Subject) and "subject" not in kwargs:
        args, kwargs = args[1:], {**kwargs, "subject": args[0]}
    kwargs = dict(kwargs)
    values = list(args)
    feature = values.pop(0) if values else kwargs.pop("feature", None)
    subject = kwargs.pop("subject", None)
    if values or kwargs or not isinstance(feature, str):
        raise TypeError(
            f"gates.{call}(feature, *, subject=None): give the feature's name, and the "
            f"subject as a keyword; got {args!r} {kwargs!r}"
        )
    if subject is not None and not isinstance(subject, Subject):
        raise TypeError(
            f"gates.{call}(): subject must be a feature_gates.Subject, got {type(subject).__name__}"
        )
    return feature, subject
