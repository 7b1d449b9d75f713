"""The Flask extension: settings, pool and tracker per application.

State lives in ``app.extensions["feature_gates"]``, never on the extension object,
so one :class:`FeatureGates` can serve several applications (factories, tests).
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Flask
from flask import current_app

from .cli import cli
from .config import ConfigError
from .config import Settings
from .migrate import MigrationSettings
from .pool import LazyPool
from .signals import _signals
from .usage import store
from .usage.tracker import Clock
from .usage.tracker import TrackingStats
from .usage.tracker import UsageTracker
from .usage.tracker import month_start
from .usage.tracker import utc_now

__all__ = ["EXTENSION_KEY", "FeatureGates", "GatesState"]

EXTENSION_KEY = "feature_gates"


@dataclass
class GatesState:
    """What one application's feature-gates needs at run time."""

    extension: FeatureGates
    app: Flask
    settings: Settings
    pool: LazyPool
    tracker: UsageTracker

    @property
    def migration_settings(self) -> MigrationSettings:
        return self.settings.migration_settings()

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
    :param clock: returns the current time (UTC); fixes the period of each use.
        For tests; the default is the system clock.
    """

    def __init__(self, app: Flask | None = None, *, clock: Clock | None = None) -> None:
        self.clock = clock or utc_now
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the application's ``FEATURE_GATES_*`` settings and register the extension."""
        settings = Settings.from_config(app.config)
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
        )
        state = GatesState(self, app, settings, pool, tracker=None)  # type: ignore[arg-type]
        state.tracker = UsageTracker(
            pool,
            mode=settings.tracking,
            flush_interval=settings.flush_interval,
            flush_max_keys=settings.flush_max_keys,
            max_pending_keys=settings.max_pending_keys,
            max_backoff=settings.flush_max_backoff,
            clock=self.clock,
            emit=state.emit,
        )
        app.extensions[EXTENSION_KEY] = state
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
