"""The Flask extension: settings, pool and tracker per application.

State lives in ``app.extensions["feature_gates"]``, never on the extension object,
so one :class:`FeatureGates` can serve several applications (factories, tests).
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any
from typing import TypeVar

from flask import Flask
from flask import current_app
from flask.typing import ResponseReturnValue

from . import gate
from .cli import cli
from .core import Catalogue
from .core import Clock
from .core import ConfigError
from .core import Settings
from .core import Subject
from .core import SubjectLoader
from .core import UserIdCache
from .core import month_start
from .core import utc_clock
from .core import utc_now
from .errors import FeatureDenied
from .migrate import MigrationSettings
from .pool import LazyPool
from .signals import _signals
from .usage import store
from .usage.tracker import TrackingStats
from .usage.tracker import UsageTracker

__all__ = ["EXTENSION_KEY", "FeatureGates", "GatesState", "Override"]

EXTENSION_KEY = "feature_gates"

#: Returns a response for a denial (an HTML page, a redirect), or None for the
#: default problem+json answer.
DeniedHandler = Callable[[FeatureDenied], "ResponseReturnValue | None"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Override:
    """A test's pin of the subject (see :meth:`FeatureGates.override`)."""

    plan: str | None = None
    user_id: Any = None

    def apply(self, subject: Subject | None) -> Subject | None:
        if subject is None:
            if self.user_id is None or self.plan is None:
                return None
            return Subject(self.user_id, self.plan)
        return Subject(
            subject.user_id if self.user_id is None else self.user_id,
            subject.plan if self.plan is None else self.plan,
        )


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


@dataclass
class GatesState:
    """What one application's feature-gates needs at run time."""

    extension: FeatureGates
    app: Flask
    settings: Settings
    pool: LazyPool
    tracker: UsageTracker
    catalogue: Catalogue = field(default_factory=lambda: Catalogue({}, {}))
    storage: gate.StorageHealth = field(init=False)
    user_ids: UserIdCache = field(init=False)
    override: Override | None = None
    #: Features some view gates as a stock limit: their count is the application's,
    #: not a monthly count in feature_usage.
    stock_features: frozenset[str] = frozenset()
    _views_checked: int = field(default=-1, init=False)

    def __post_init__(self) -> None:
        self.storage = gate.StorageHealth(self.emit)
        self._valid_user_id = _is_bigint if self.settings.user_id_type == "bigint" else _is_uuid
        self.user_ids = UserIdCache(self.settings.user_cache_ttl)

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
        if subject is not None and not self._valid_user_id(subject.user_id):
            kind = self.settings.user_id_type
            raise TypeError(
                f"the subject loader returned user_id {subject.user_id!r}; user ids are "
                f"{kind} here (FEATURE_GATES_USER_ID_TYPE): return "
                + ("an int that fits a bigint" if kind == "bigint" else "a uuid.UUID or its text")
            )
        return subject if self.override is None else self.override.apply(subject)

    @property
    def migration_settings(self) -> MigrationSettings:
        return MigrationSettings.from_settings(self.settings)

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
            for rule in gate.gates_of(view):
                try:
                    gate.validate(rule, self)
                except ConfigError as exc:
                    raise ConfigError(f"endpoint {endpoint!r}: {exc}") from None
                if rule.kind == "stock":
                    stock.add(rule.feature)
        self.stock_features = frozenset(stock)
        self._views_checked = len(views)

    def emit(self, name: str, **data: Any) -> None:
        """Send the signal ``name`` with this application as sender."""
        _signals.signal(name).send(self.app, **data)

    def close(self, timeout: float | None = None) -> None:
        """Write pending usage, stop the writer and close the pool (teardown, tests).

        Waits at most ``timeout`` seconds (FEATURE_GATES_SHUTDOWN_FLUSH_TIMEOUT by
        default) for the database; raises :class:`~feature_gates.usage.tracker.FlushTimeout`
        when usage is still pending then.
        """
        atexit.unregister(self.close_at_exit)
        if timeout is None:
            timeout = self.settings.shutdown_flush_timeout
        try:
            self.tracker.close(timeout)
        finally:
            self.pool.close()

    def close_at_exit(self) -> None:
        """:meth:`close` at interpreter exit: what cannot be written is logged, not raised."""
        atexit.unregister(self.close_at_exit)
        self.tracker.close_at_exit(self.settings.shutdown_flush_timeout)
        self.pool.close()


class FeatureGates:
    """Gates endpoints by plan and meters usage in the application's PostgreSQL.

    .. code-block:: python

        gates = FeatureGates(app)      # or FeatureGates() then gates.init_app(app)

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
        """Read the application's ``FEATURE_GATES_*`` settings and register the extension."""
        settings = Settings.from_mapping(app.config)
        if settings.database_url is None and settings.tracking != "off":
            raise ConfigError(
                "FEATURE_GATES_DATABASE_URL is not set: set it to the application's "
                "PostgreSQL URL (or set FEATURE_GATES_TRACKING = 'off' for gates "
                "without metering)"
            )
        pool = LazyPool(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            schema=settings.schema,
            statement_timeout=settings.statement_timeout,
        )
        plans = settings.plans
        if isinstance(plans, Path) and not plans.is_absolute():
            # Like Flask's own files (config.from_file, templates): next to the app.
            plans = Path(app.root_path) / plans
        catalogue = Catalogue.parse(plans, settings.tiers)
        state = GatesState(self, app, settings, pool, tracker=None, catalogue=catalogue)  # type: ignore[arg-type]
        state.tracker = UsageTracker(
            pool,
            mode=settings.tracking,
            flush_interval=settings.flush_interval,
            flush_max_keys=settings.flush_max_keys,
            max_pending_keys=settings.max_pending_keys,
            max_backoff=settings.flush_max_backoff,
            clock=self.clock,
            emit=partial(_tracker_event, state),
            listening=lambda name: bool(_signals.signal(name).receivers),
        )
        state.check_views()
        app.extensions[EXTENSION_KEY] = state
        app.before_request(state.check_views)
        app.after_request(gate.finish_response)
        app.teardown_request(gate.end_request)
        app.add_template_global(self.has_feature, "has_feature")
        app.add_template_global(self.feature_remaining, "feature_remaining")
        app.add_template_global(self.has_tier, "has_tier")
        if settings.command_name:
            app.cli.add_command(cli, settings.command_name)
        atexit.register(state.close_at_exit)

    def _state(self, app: Flask | None = None) -> GatesState:
        if app is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        state: GatesState | None = app.extensions.get(EXTENSION_KEY)
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

    # -- reading entitlements -----------------------------------------------------------

    def current_subject(self) -> Subject | None:
        """The current request's subject (None outside a request or when anonymous)."""
        return gate.current_subject(self._state())

    def check(
        self,
        feature: str,
        subject: Subject | None = None,
        *,
        cost: int = 1,
        used: int | None = None,
    ) -> gate.Decision:
        """May ``subject`` (the current one by default) use ``feature`` now? Consumes nothing.

        For a limit, the count is read from ``feature_usage`` (one query), unless
        ``used`` gives it (a stock limit's current count). Usage still pending in
        the tracker is not included.
        """
        state = self._state()
        state.check_views()
        if subject is None:
            subject = gate.current_subject(state)
        return gate.decide(state, feature, subject, cost=cost, used=used)

    def entitlements(self, subject: Subject | None = None) -> dict[str, gate.Decision]:
        """Every feature of the catalogue with its :class:`Decision` for ``subject``.

        Reads every count of the subject in one query.
        """
        state = self._state()
        state.check_views()
        if subject is None:
            subject = gate.current_subject(state)
        usage: dict[str, int] | None = {}
        if subject is not None and "limit" in state.catalogue.kinds.values():
            usage = gate.read_all_usage(state, subject)
        return {
            feature: gate.decide(state, feature, subject, usage=usage)
            for feature in state.catalogue.kinds
        }

    def has_feature(self, feature: str) -> bool:
        """Whether the current subject's plan includes ``feature``. No database read.

        A template global: ``{% if has_feature("can_export_pdf") %}``.
        """
        state = self._state()
        subject = gate.current_subject(state)
        if subject is None:
            return False
        return state.catalogue.entitlement(subject.plan, feature).granted

    def has_tier(self, min_tier: str) -> bool:
        """Whether the current subject's plan ranks at least ``min_tier``. No database read.

        A template global: ``{% if has_tier("pro") %}``.
        """
        state = self._state()
        required = state.catalogue.require_tier(min_tier)
        subject = gate.current_subject(state)
        if subject is None:
            return False
        rank = state.catalogue.rank(subject.plan)
        return rank is not None and rank >= required

    def feature_remaining(self, feature: str) -> int | None:
        """Uses of ``feature`` left to the current subject this period; None if unlimited.

        A template global: ``{{ feature_remaining("chat_messages_monthly") }} left``.
        For a metered feature only: a stock limit's count is the application's, so
        ``check(feature, used=count)`` answers for it.
        """
        state = self._state()
        state.check_views()
        if feature in state.stock_features:
            raise ValueError(
                f"{feature!r} is gated as a stock limit: its count is the application's; "
                f"use gates.check({feature!r}, used=<count>).remaining"
            )
        return self.check(feature).remaining

    def resolve_user_id(self, email: str) -> Any:
        """The user id of ``email`` (None when unknown), from FEATURE_GATES_USER_LOOKUP_SQL.

        Answers are cached for FEATURE_GATES_USER_CACHE_TTL seconds.
        """
        state = self._state()

        def lookup(value: str) -> Any:
            query: Any = state.settings.user_lookup_sql
            with state.pool.get().connection() as conn:
                row = conn.execute(query, (value,)).fetchone()
            return None if row is None else row[0]

        return state.user_ids.get(email, lookup)

    # -- testing ------------------------------------------------------------------------

    @contextmanager
    def override(
        self,
        plan: str | None = None,
        *,
        user_id: Any = None,
        usage: Mapping[str, int] | None = None,
        app: Flask | None = None,
    ) -> Iterator[None]:
        """Pin the subject's plan (and user id) and set usage counts, for a test.

        .. code-block:: python

            with gates.override(plan="free", user_id=7, usage={"chat_messages_monthly": 50}):
                assert client.post("/threads/1/messages").status_code == 429

        :param plan: every subject the loader returns gets this plan.
        :param user_id: every subject gets this user id; with ``plan``, an anonymous
            caller becomes this subject too.
        :param usage: counts this period for ``user_id``, written to ``feature_usage``
            (replacing what is there) when the block starts.
        :param app: the application; the current one by default.
        """
        state = self._state(app)
        if plan is not None and plan not in state.catalogue.plans:
            raise ValueError(
                f"plan {plan!r} is not in FEATURE_GATES_PLANS; the plans are "
                f"{', '.join(state.catalogue.tiers) or 'none'}"
            )
        if usage:
            if user_id is None:
                raise ValueError("override(usage=...) needs user_id= to know whose usage to set")
            self._set_usage(state, user_id, usage)
        previous, state.override = state.override, Override(plan, user_id)
        try:
            yield
        finally:
            state.override = previous

    def _set_usage(self, state: GatesState, user_id: Any, usage: Mapping[str, int]) -> None:
        # What the tracker still holds would land on top of the counts set here.
        state.tracker.flush(10.0)
        period = month_start(self.clock())
        with state.pool.get().connection() as conn:
            for feature, count in usage.items():
                conn.execute(store.SET_USAGE, (user_id, feature, period, count))

    # -- usage tracking -----------------------------------------------------------

    def track(
        self, user_id: Any, feature: str, amount: int = 1, *, idempotency_key: str | None = None
    ) -> None:
        """Record ``amount`` uses of ``feature`` by ``user_id`` now. No I/O: returns at once.

        The period is the current calendar month (UTC), fixed now, not when the
        background writer sends it. With ``idempotency_key``, the uses count once
        for that user, feature and key (a retried job), within the retention of
        ``prune_feature_usage_idempotency``. See docs/tracking.md.
        """
        self._state().tracker.track(user_id, feature, amount, idempotency_key=idempotency_key)

    def flush(self, timeout: float | None = None) -> None:
        """Write all usage tracked so far; returns when it is in the database.

        :raises FlushTimeout: after ``timeout`` seconds, saying how much is still
            pending (it stays pending and is retried).
        """
        self._state().tracker.flush(timeout)

    def tracking_stats(self) -> TrackingStats:
        """This process's tracker counters: tracked, written, pending, batches, retries,
        dropped, rejected, duplicates, last error, last flush time."""
        return self._state().tracker.stats()

    def close(self, app: Flask | None = None, timeout: float | None = None) -> None:
        """Write pending usage, stop the writer thread and close the pool of ``app``.

        For the teardown of an application (tests, factories); interpreter exit
        does the same by itself. ``timeout`` defaults to
        FEATURE_GATES_SHUTDOWN_FLUSH_TIMEOUT.
        """
        self._state(app).close(timeout)

    def get_usage(self, user_id: Any, feature: str, period: date | None = None) -> int:
        """``user_id``'s recorded usage of ``feature`` in ``period`` (this month by default).

        Reads the database: usage still pending in the tracker is not included.
        """
        state = self._state()
        period = period or month_start(self.clock())
        with state.pool.get().connection() as conn:
            row = conn.execute(store.GET_USAGE, (user_id, feature, period)).fetchone()
        return int(row[0]) if row else 0

    def get_user_usage(self, user_id: Any, period: date | None = None) -> dict[str, int]:
        """Every feature ``user_id`` used in ``period`` (this month by default), with its count."""
        state = self._state()
        period = period or month_start(self.clock())
        with state.pool.get().connection() as conn:
            rows = conn.execute(store.GET_USER_USAGE, (user_id, period)).fetchall()
        return {str(feature): int(count) for feature, count, _ in rows}


def _tracker_event(state: GatesState, name: str, **data: Any) -> None:
    """Send a signal of the tracker. Its outage reports go through the gates' storage
    health, so that an outage noticed by both is signalled once."""
    if name == "storage-unavailable":
        state.storage.failed(data["error"])
    elif name == "storage-recovered":
        state.storage.succeeded()
    else:
        state.emit(name, **data)
