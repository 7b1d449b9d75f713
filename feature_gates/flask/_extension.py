"""The Flask extension: one engine per application, in ``app.extensions``.

State lives in ``app.extensions["feature_gates"]`` (an :class:`AppGates`, bound to
its application), never on the extension object, so one :class:`FeatureGates` can
serve several applications (factories, tests). The extension's methods work on
``current_app``; the same methods of the :class:`AppGates` need no context.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import TypeVar
from typing import overload

from flask import Flask
from flask import current_app
from flask import has_app_context

from ..core import AlertStats
from ..core import Balance
from ..core import Catalogue
from ..core import Clock
from ..core import CreditGrant
from ..core import Decision
from ..core import Engine
from ..core import Hold
from ..core import Settings
from ..core import StorageStats
from ..core import Subject
from ..core import SubjectLoader
from ..core import TrackingStats
from ..core import Usage
from ..core import UsageReport
from ..core import UsageTrend
from ..core import utc_clock
from ..core import utc_now
from ..signals import _signals
from ._app_gates import AppGates
from ._app_gates import DeniedHandler
from ._commands import DeferredGroup
from ._request import end_request
from ._request import finish_response

__all__ = ["EXTENSION_KEY", "FeatureGates"]

#: The key of an application's feature-gates in ``app.extensions``.
EXTENSION_KEY = "feature_gates"

F = TypeVar("F", bound=Callable[..., Any])


def _listening(name: str) -> bool:
    return bool(_signals.signal(name).receivers)


#: Logged at the first request of an application started without a database.
_NO_DATABASE = (
    "FEATURE_GATES_DATABASE_URL is not set: feature and tier gates decide from the "
    "plans, usage is not recorded, and a metered limit or a usage read raises "
    "ConfigError until it is set"
)


class FeatureGates:
    """Gates endpoints by plan and meters usage in the application's PostgreSQL.

    .. code-block:: python

        gates = FeatureGates(app)      # or FeatureGates() then gates.init_app(app)

    Its reading, tracking and testing methods work on the current application
    (``current_app``); ``app.extensions["feature_gates"]`` (an :class:`AppGates`)
    has the same methods bound to one application, for code that has the app but
    no application context (a test).

    :param app: the application, or None to call :meth:`init_app` later.
    :param clock: returns the current time (UTC; a naive time is taken as UTC);
        fixes the period of each use. For tests; the default is the system clock.
    """

    def __init__(self, app: Flask | None = None, *, clock: Clock | None = None) -> None:
        self.clock = utc_clock(clock) if clock is not None else utc_now
        self.subject_loader_callback: SubjectLoader | None = None
        self.denied_handler: DeniedHandler | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the application's ``FEATURE_GATES_*`` settings and register the extension.

        Without FEATURE_GATES_DATABASE_URL it still starts (a factory called without
        a database): feature and tier gates work, nothing is recorded, and a metered
        limit or a usage read raises :class:`~feature_gates.ConfigError` naming the key.
        """
        settings = Settings.from_mapping(app.config)
        # Said at the first request, not here: the application's commands (flask
        # feature-gates migrate with DATABASE_URL, flask init-db) need no warning.
        warning = None
        if settings.database_url is None:
            if settings.tracking != "off":
                warning = _NO_DATABASE
            settings = replace(settings, tracking="off")
        plans = settings.plans
        if isinstance(plans, Path) and not plans.is_absolute():
            # Like Flask's own files (config.from_file, templates): next to the app.
            plans = Path(app.root_path) / plans
        catalogue = Catalogue.parse(plans, settings.tiers, settings.alert_thresholds)

        def emit(name: str, **data: Any) -> None:
            _signals.signal(name).send(app, **data)

        engine = Engine(
            settings,
            catalogue,
            clock=self.clock,
            emit=emit,
            listening=_listening,
            context=app.app_context,
        )
        state = AppGates(self, app, engine, warning=warning)
        state.check_views()
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.before_request)
        app.after_request(finish_response)
        app.teardown_request(end_request)
        app.add_template_global(state.has_feature, "has_feature")
        app.add_template_global(state.feature_remaining, "feature_remaining")
        app.add_template_global(state.has_tier, "has_tier")
        if settings.command_name:
            app.cli.add_command(DeferredGroup(settings.command_name), settings.command_name)
        atexit.register(state.close_at_exit)

    def _state(self, app: Flask | None = None) -> AppGates:
        """The :class:`AppGates` of ``app`` (the current application by default)."""
        if app is None:
            if not has_app_context():
                raise RuntimeError(
                    "this FeatureGates method works on the current application, and no "
                    "application context is active: call the same method on "
                    "app.extensions['feature_gates'], which is bound to its app (in "
                    "tests, the feature_gates fixture), or push app.app_context()"
                )
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        state: AppGates | None = app.extensions.get(EXTENSION_KEY)
        if state is None or state.extension is not self:
            raise RuntimeError(
                "this FeatureGates is not initialised on the current application: "
                "call gates.init_app(app) first"
            )
        return state

    # -- callbacks ------------------------------------------------------------------

    def subject_loader(self, loader: SubjectLoader) -> SubjectLoader:
        """Register the function that says who is asking (a decorator).

        It returns a :class:`~feature_gates.Subject`, or None for an anonymous caller,
        and is called at most once per request, only when a gate needs it.
        """
        self.subject_loader_callback = loader
        return loader

    def on_denied(self, handler: F) -> F:
        """Register a function that answers denials (a decorator).

        It receives the :class:`~feature_gates.FeatureDenied` and returns a response
        (any view return value: an HTML page, a redirect) or None to send the default
        problem+json document.
        """
        self.denied_handler = handler
        return handler

    # -- the current application's AppGates: see there for each method ----------------

    def current_subject(self) -> Subject | None:
        """The current request's subject (None outside a request or when anonymous)."""
        return self._state().current_subject()

    def check(
        self,
        feature: str,
        subject: Subject | None = None,
        *,
        cost: int = 1,
        used: int | None = None,
    ) -> Decision:
        """May ``subject`` (the current one by default) use ``feature`` now? Consumes
        nothing. See :meth:`AppGates.check`."""
        return self._state().check(feature, subject, cost=cost, used=used)

    def entitlements(self, subject: Subject | None = None) -> dict[str, Decision]:
        """Every feature with its :class:`Decision`. See :meth:`AppGates.entitlements`."""
        return self._state().entitlements(subject)

    def has_feature(self, feature: str) -> bool:
        """Whether the current subject's plan includes ``feature``. No database read."""
        return self._state().has_feature(feature)

    def has_tier(self, min_tier: str) -> bool:
        """Whether the current subject's plan ranks at least ``min_tier``. No database read."""
        return self._state().has_tier(min_tier)

    def feature_remaining(self, feature: str) -> int | None:
        """Uses of ``feature`` left to the current subject; None when unlimited.
        See :meth:`AppGates.feature_remaining`."""
        return self._state().feature_remaining(feature)

    def resolve_user_id(self, email: str) -> Any:
        """The user id of ``email`` (None when unknown), cached. See
        :meth:`AppGates.resolve_user_id`."""
        return self._state().resolve_user_id(email)

    @contextmanager
    def override(
        self,
        plan: str | None = None,
        *,
        user_id: Any = None,
        usage: Mapping[str, int] | None = None,
        enabled: bool | None = None,
        app: Flask | None = None,
    ) -> Iterator[None]:
        """Pin the plan (and user id), set usage counts, or switch the gates off, for a
        test, on ``app`` (the current application by default). See
        :meth:`AppGates.override`."""
        with self._state(app).override(plan, user_id=user_id, usage=usage, enabled=enabled):
            yield

    # -- holds and credits ---------------------------------------------------------

    def reserve(
        self,
        feature: str,
        *,
        up_to: int,
        subject: Subject | None = None,
        ttl: float | None = None,
    ) -> Hold:
        """Hold ``up_to`` uses of ``feature`` before work whose cost is known only when
        it ends. See :meth:`AppGates.reserve` and docs/holds.md."""
        return self._state().reserve(feature, up_to=up_to, subject=subject, ttl=ttl)

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
        """Add ``amount`` credits of ``feature`` to a subject's balance. See
        :meth:`AppGates.grant` and docs/credits.md."""
        return self._state().grant(
            feature,
            amount,
            subject=subject,
            expires_at=expires_at,
            reason=reason,
            idempotency_key=idempotency_key,
        )

    def balance(self, feature: str, *, subject: Subject | None = None) -> Balance:
        """A subject's balance of ``feature`` now. See :meth:`AppGates.balance`."""
        return self._state().balance(feature, subject=subject)

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
        """Record ``amount`` uses of ``feature`` by ``user_id`` now. No I/O. See
        :meth:`AppGates.track`."""
        self._state().track(
            user_id, feature, amount, idempotency_key=idempotency_key, period=period
        )

    def track_use(
        self,
        feature: str,
        amount: int = 1,
        *,
        subject: Subject | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``subject`` as its plan counts them.
        No I/O. See :meth:`AppGates.track_use`."""
        self._state().track_use(feature, amount, subject=subject, idempotency_key=idempotency_key)

    def flush(self, timeout: float | None = None) -> None:
        """Write all usage tracked so far. See :meth:`AppGates.flush`."""
        self._state().flush(timeout)

    def tracking_stats(self) -> TrackingStats:
        """This process's tracker counters. See :meth:`AppGates.tracking_stats`."""
        return self._state().tracking_stats()

    def deliver_alerts(self) -> int:
        """Deliver the usage alerts due now, in this thread. See
        :meth:`AppGates.deliver_alerts`."""
        return self._state().deliver_alerts()

    def alert_stats(self) -> AlertStats:
        """This process's alert sender counters. See :meth:`AppGates.alert_stats`."""
        return self._state().alert_stats()

    def storage_stats(self) -> StorageStats:
        """What the database did to this process's statements. See
        :meth:`AppGates.storage_stats`."""
        return self._state().storage_stats()

    def close(self, app: Flask | None = None, timeout: float | None = None) -> None:
        """Write pending usage, stop the writer thread and close the pool of ``app``
        (the current application by default). See :meth:`AppGates.close`."""
        self._state(app).close(timeout)

    @overload
    def get_usage(self, feature: str, *, subject: Subject | None = None) -> Usage: ...

    @overload
    def get_usage(self, user_id: Any, feature: str, period: date | None = None) -> int: ...

    def get_usage(self, *args: Any, **kwargs: Any) -> Usage | int:
        """What a subject has used of a feature. See :meth:`AppGates.get_usage`."""
        usage: Usage | int = self._state().get_usage(*args, **kwargs)
        return usage

    def reset_usage(self, *args: Any, **kwargs: Any) -> int:
        """Start a subject's count of a feature afresh. See :meth:`AppGates.reset_usage`."""
        return self._state().reset_usage(*args, **kwargs)

    def get_user_usage(self, user_id: Any, period: date | None = None) -> dict[str, int]:
        """Every feature ``user_id`` used, with its count. See
        :meth:`AppGates.get_user_usage`."""
        return self._state().get_user_usage(user_id, period)

    def usage_report(
        self, *, top: int = 10, near_limit: float | None = None, period: date | None = None
    ) -> UsageReport:
        """The most used features and the users near their limits. See
        :meth:`AppGates.usage_report`."""
        return self._state().usage_report(top=top, near_limit=near_limit, period=period)

    def usage_trend(self, months: int = 6) -> UsageTrend:
        """Uses and active users per month. See :meth:`AppGates.usage_trend`."""
        return self._state().usage_trend(months)
