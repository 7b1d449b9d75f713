"""The decision: entitled, tier, limit; the metered consume and its refund.

One request through a gated view::

    admit()   plan catalogue in memory; a metered limit consumes in ONE round trip
              -> raises a FeatureDenied, or returns a Grant
    view runs
    settle()  success (no exception, status < 400): usage goes to the tracker
              failure: a metered consumption is refunded

Per-request state lives on ``flask.g`` under a private name and is cleared when
the request ends (so an outer application context, as pytest-flask pushes,
does not carry one request's subject into the next).
"""

from __future__ import annotations

import logging
import math
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import MAXYEAR
from datetime import date
from datetime import datetime
from datetime import timezone
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import NoReturn
from typing import TypeVar

import psycopg
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import has_request_context
from flask.ctx import _AppCtxGlobals

from .core import ConfigError
from .core import FailMode
from .core import Subject
from .core import UnknownFeature
from .core import month_start
from .core import parse_setting
from .errors import FeatureCheckUnavailable
from .errors import FeatureDenied
from .errors import FeatureLimitExceeded
from .errors import FeatureNotEntitled
from .errors import NotAuthenticated
from .errors import TierTooLow
from .errors import iso_utc
from .errors import one_line
from .usage import store
from .watchdog import limit_for
from .watchdog import watchdog

if TYPE_CHECKING:
    from .extension import GatesState

__all__ = [
    "GATES_ATTRIBUTE",
    "Decision",
    "Gate",
    "Grant",
    "StorageHealth",
    "gates_of",
    "period_end",
]

logger = logging.getLogger("feature_gates")
denial_logger = logging.getLogger("feature_gates.denials")

T = TypeVar("T")
GateKind = Literal["feature", "tier", "metered", "stock"]
#: A value, or a callable taking the view's arguments and returning it.
Dynamic = Any

_REQUEST_KEY = "_feature_gates"

#: The most uses one consume takes (the SQL functions' amounts are integers).
MAX_AMOUNT = 2**31 - 1
#: The largest usage count (feature_usage.usage_count is a bigint).
MAX_COUNT = 2**63 - 1

#: Errors that mean "the database cannot be reached now" (PoolTimeout included),
#: as opposed to a bad argument, which is a bug and is raised.
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True)
class Gate:
    """The rule one decorator puts on a view. Listed by ``flask feature-gates routes``."""

    kind: GateKind
    feature: str
    min_tier: str | None = None
    cost: Dynamic = 1
    limit: Dynamic = None
    usage_getter: Callable[..., int] | None = None
    track_usage: bool = True
    fail_mode: FailMode | None = None


#: The attribute a gated view carries: a tuple of its gates, outermost first.
GATES_ATTRIBUTE = "__feature_gates__"


def gates_of(view: Callable[..., Any]) -> tuple[Gate, ...]:
    """The gates on ``view`` (empty when it has none), outermost first."""
    return tuple(getattr(view, GATES_ATTRIBUTE, ()))


@dataclass(frozen=True)
class Decision:
    """The answer to "may this subject use this feature now?", without consuming.

    ``reason`` is None when allowed, else ``anonymous``, ``not-entitled``, ``limit``
    or ``unavailable``. ``limit`` and ``remaining`` are None when unlimited;
    ``reset_at`` is when the period's count starts again (limits only).
    """

    allowed: bool
    reason: str | None
    feature: str
    plan: str | None
    limit: int | None = None
    used: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None


@dataclass
class Grant:
    """What an admitted request owes when it ends: a refund or a usage record."""

    state: GatesState
    gate: Gate
    subject: Subject
    track: int = 0
    #: ``track`` holds uses a metered gate let through uncounted (fail open).
    owed: bool = False
    consumed: int = 0
    period: date | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None


@dataclass
class _RequestGates:
    subject: Subject | None = None
    loaded: bool = False
    grants: list[Grant] = field(default_factory=list)


def period_end(moment: datetime) -> datetime:
    """The start of the next calendar month (UTC) after ``moment``: when counts reset."""
    start = month_start(moment)
    if (start.year, start.month) == (MAXYEAR, 12):
        return datetime.max.replace(tzinfo=timezone.utc)  # no month after it to reset in
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return datetime(year, month, 1, tzinfo=timezone.utc)


class StorageHealth:
    """Remembers a database outage: reported once, probed with a growing backoff.

    While the database is away, metered gates do not wait ``FEATURE_GATES_DB_TIMEOUT``
    on every request: they apply their fail mode at once, and one request now and
    then probes the database again.
    """

    first_backoff = 0.5
    max_backoff = 5.0

    def __init__(
        self, emit: Callable[..., None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._next_probe = 0.0
        self._backoff = self.first_backoff

    def should_try(self) -> bool:
        """True when the database is up, or when it is time for one probe."""
        if self.down_since is None:
            return True
        with self._lock:
            now = self._clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self._backoff
            return True

    def failed(self, error: BaseException) -> None:
        with self._lock:
            now = self._clock()
            first = self.down_since is None
            if first:
                self.down_since = now
                self._backoff = self.first_backoff
            else:
                self._backoff = min(self._backoff * 2, self.max_backoff)
            self._next_probe = now + self._backoff
        if first:
            logger.warning(
                "the database of FEATURE_GATES_DATABASE_URL is unreachable; metered "
                "limits apply their fail mode until it answers again: %s",
                one_line(error),
            )
            self._emit("storage-unavailable", error=error)

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            outage = self._clock() - since
            logger.warning("the database answers again after %.1f s", outage)
            self._emit("storage-recovered", outage_seconds=outage)


def validate(gate: Gate, state: GatesState) -> None:
    """Raise :class:`~feature_gates.config.ConfigError` if ``gate`` cannot work on this app."""
    if gate.kind == "tier":
        assert gate.min_tier is not None
        state.catalogue.require_tier(gate.min_tier)
        return
    if gate.limit is None and gate.feature not in state.catalogue:
        raise UnknownFeature(
            f"feature {gate.feature!r} is not defined in any plan; define it under "
            "FEATURE_GATES_PLANS"
        )
    if gate.kind == "metered" and not state.settings.database_url:
        raise ConfigError(
            f"the metered limit on {gate.feature!r} needs FEATURE_GATES_DATABASE_URL: "
            "set it to the application's PostgreSQL URL"
        )


# -- the request ---------------------------------------------------------------------


def gates_enabled(app: Flask | None = None) -> bool:
    """``FEATURE_GATES_ENABLED`` of ``app`` (the current one by default), read on
    every request."""
    value = (app or current_app).config.get("FEATURE_GATES_ENABLED", True)
    return value is True or bool(parse_setting("enabled", value))


def _namespace() -> _AppCtxGlobals:
    """The real ``flask.g`` of the current context: each use of the ``g`` proxy costs a
    lookup, and a request through a gate uses it several times."""
    return g._get_current_object()  # type: ignore[no-any-return]


def _request_gates() -> _RequestGates:
    namespace = _namespace()
    current: _RequestGates | None = namespace.get(_REQUEST_KEY)
    if current is None:
        current = _RequestGates()
        setattr(namespace, _REQUEST_KEY, current)
    return current


def current_subject(state: GatesState) -> Subject | None:
    """The subject of the current request: loaded once per request, then reused."""
    if not has_request_context():
        return None
    current = _request_gates()
    if not current.loaded:
        current.subject = state.load_subject()
        current.loaded = True
    return current.subject


def _resolve(value: Dynamic, kwargs: dict[str, Any]) -> Any:
    return value(**kwargs) if callable(value) else value


def _amount(value: Any, name: str, gate: Gate) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(
            f"{name} of the gate on {gate.feature!r} must be an integer of 0 or more, got {value!r}"
        )
    return value


def admit(state: GatesState, gate: Gate, kwargs: dict[str, Any]) -> Grant:
    """Check ``gate`` for the current request's subject; raise a denial or return a Grant."""
    started = time.perf_counter()
    subject = current_subject(state)
    if subject is None:
        _deny(
            state,
            NotAuthenticated(
                feature=gate.feature,
                subject=None,
                detail=f"{gate.feature!r} needs a signed-in user: sign in and try again.",
            ),
            started,
        )
    catalogue = state.catalogue
    if gate.kind == "tier":
        assert gate.min_tier is not None
        required = catalogue.require_tier(gate.min_tier)
        rank = catalogue.rank(subject.plan)
        if rank is None or rank < required:
            _deny(
                state,
                TierTooLow(
                    feature=gate.feature,
                    subject=subject,
                    required_tier=gate.min_tier,
                    detail=f"{gate.feature!r} needs plan {gate.min_tier!r} or higher; "
                    f"the current plan is {subject.plan!r}.",
                ),
                started,
            )
        return Grant(state, gate, subject, track=int(gate.track_usage))

    if gate.limit is not None:
        limit = _resolve(gate.limit, kwargs)
        if limit is not None:
            limit = _amount(limit, "limit", gate)
            if limit >= MAX_COUNT:
                # A count is a bigint: it can never reach this limit.
                limit = None
    else:
        limit = catalogue.entitlement(subject.plan, gate.feature).limit
    if limit == 0:
        _deny(
            state,
            FeatureNotEntitled(
                feature=gate.feature,
                subject=subject,
                detail=f"plan {subject.plan!r} does not include {gate.feature!r}; "
                "a plan that does is needed.",
            ),
            started,
        )
    if gate.kind == "feature":
        return Grant(state, gate, subject, track=int(gate.track_usage))

    cost = _amount(_resolve(gate.cost, kwargs), "cost", gate)
    if gate.kind == "stock":
        track = cost if gate.track_usage else 0
        if limit is None:
            # Unlimited: the application's count is not even read.
            return Grant(state, gate, subject, track=track)
        assert gate.usage_getter is not None
        used = _amount(gate.usage_getter(**kwargs), "usage_getter's result", gate)
        # A request that adds nothing (cost 0) passes even above the limit: a user
        # whose plan shrank can still edit or remove what they hold.
        if cost and used + cost > limit:
            _deny(state, _limit_denial(state, gate, subject, limit, used, cost, None), started)
        return Grant(state, gate, subject, track=track, limit=limit, remaining=limit - used - cost)

    now = state.extension.clock()
    period = month_start(now)
    reset_at = period_end(now)
    if limit is None or cost == 0:
        # Unlimited: nothing to check, so no round trip; the tracker records it.
        return Grant(state, gate, subject, track=cost if gate.track_usage else 0)
    if cost > limit:
        # More than the whole limit is refused whatever was used, as the database
        # would refuse it; and it may be more than the database takes in one call.
        current = read_usage(state, subject, gate.feature)
        _deny(state, _limit_denial(state, gate, subject, limit, current, cost, reset_at), started)
    if cost > MAX_AMOUNT:
        raise ValueError(
            f"cost of the gate on {gate.feature!r} is {cost}; one call consumes at most "
            f"{MAX_AMOUNT} uses"
        )
    outcome = _consume(state, subject, gate.feature, cost, limit, period)
    if outcome is None:
        if (gate.fail_mode or state.settings.fail_mode) == "closed":
            _deny(
                state,
                FeatureCheckUnavailable(
                    feature=gate.feature,
                    subject=subject,
                    detail=f"the usage of {gate.feature!r} cannot be checked right now; "
                    "try again in a moment.",
                    headers={"Retry-After": str(math.ceil(StorageHealth.max_backoff))},
                ),
                started,
            )
        # Fail open: allowed, and recorded through the tracker, which keeps the
        # increment until the database is back, so the count stays right.
        return Grant(state, gate, subject, track=cost, owed=True)
    count, current = outcome
    if count is None:
        _deny(state, _limit_denial(state, gate, subject, limit, current, cost, reset_at), started)
    return Grant(
        state,
        gate,
        subject,
        consumed=cost,
        period=period,
        limit=limit,
        remaining=limit - count,
        reset_at=reset_at,
    )


def _consume(
    state: GatesState, subject: Subject, feature: str, cost: int, limit: int, period: date
) -> tuple[int | None, int | None] | None:
    """(new count or None when refused, current count when refused); None when unreachable."""
    if not state.storage.should_try():
        return None
    params = {
        "user_id": subject.user_id,
        "feature": feature,
        "amount": cost,
        "limit": limit,
        "period": period,
    }
    try:
        (row,) = _execute(state, store.CONSUME_OR_USAGE, params, idempotent=False)
    except psycopg.errors.QueryCanceled as exc:
        _timed_out(state, f"the metered check of {feature!r}", exc)
        return None
    except UNREACHABLE as exc:
        state.storage.failed(exc)
        return None
    except psycopg.errors.NumericValueOutOfRange:
        # The count plus the cost passes the largest bigint: over any limit.
        state.storage.succeeded()
        return None, None
    except (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable) as exc:
        raise RuntimeError(
            f"the database cannot run the metered check ({one_line(exc)}): if the "
            "feature-gates functions are missing, run 'flask feature-gates migrate'"
        ) from exc
    state.storage.succeeded()
    return row[0], row[1]


class _ClosedByServer(Exception):
    """A pooled connection the server closed while it sat idle (a restart)."""


def _closed_by_server(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    """Whether the server has written to an idle connection: it only does so to end
    it (a restart's "terminating connection", or the socket's end). A poll of the
    socket, no round trip."""
    fd = conn.fileno()
    if _POLL:
        # poll, not select: select() refuses descriptors of 1024 and above, which
        # a busy server reaches.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll, no such limit
    return bool(readable)


_POLL = hasattr(select, "poll")


def _execute(
    state: GatesState, query: Any, params: Any, *, idempotent: bool
) -> list[tuple[Any, ...]]:
    """The rows of ``query`` on a pooled connection.

    A restart of the database closes every connection the pool keeps. A connection
    the server closed while idle is noticed before the statement is sent (see
    :func:`_closed_by_server`): the pool's connections are checked and another is
    taken, so a database that is back is not taken for one that is away. A
    connection that breaks under the statement is retried only for a read
    (``idempotent``): a consume or a refund may have committed before its reply
    was lost, and sending it again would count it twice.

    A database that stops answering altogether (a frozen host, a partition) cannot
    cancel the statement itself: the :mod:`~feature_gates.watchdog` ends the
    connection a second after FEATURE_GATES_STATEMENT_TIMEOUT, and the call fails
    as unreachable.
    """
    pool = state.pool.get()
    settings = state.settings
    limit = limit_for(settings.statement_timeout)
    for last in (False, True):
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        token = -1
        try:
            with pool.connection(timeout=settings.db_timeout) as conn:
                if not last and _closed_by_server(conn):
                    conn.close()  # the pool drops a closed connection
                    raise _ClosedByServer
                with watchdog.guard(conn, limit) as token:
                    return conn.execute(query, params).fetchall()
        except _ClosedByServer:
            pool.check()
        except UNREACHABLE as exc:
            watchdog.raise_if_severed(token, limit, exc)
            if conn is None or not conn.broken:
                raise
            pool.check()
            if last or not idempotent:
                raise
    raise AssertionError("unreachable")


def _timed_out(state: GatesState, what: str, exc: BaseException) -> None:
    """A statement ran past FEATURE_GATES_STATEMENT_TIMEOUT: this request follows the
    fail mode; the database answers, so it is not an outage."""
    logger.warning(
        "%s took longer than FEATURE_GATES_STATEMENT_TIMEOUT (%g s) and was cancelled: %s",
        what,
        state.settings.statement_timeout,
        one_line(exc),
    )


def _limit_denial(
    state: GatesState,
    gate: Gate,
    subject: Subject,
    limit: int,
    used: int | None,
    cost: int,
    reset_at: datetime | None,
) -> FeatureLimitExceeded:
    headers: dict[str, str] = {}
    if reset_at is not None:
        wait = reset_at - state.extension.clock()
        headers["Retry-After"] = str(max(math.ceil(wait.total_seconds()), 1))
        resets = f"; it resets at {iso_utc(reset_at)}"
        per, uses = " per month", "uses of "
    else:
        resets = per = uses = ""
    if state.settings.headers_enabled:
        remaining = 0 if used is None else limit - used
        headers.update(_limit_headers(limit, remaining, reset_at, state))
    asked = "" if cost == 1 else f", and this request needs {cost}"
    return FeatureLimitExceeded.for_status(
        state.settings.limit_status,
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


def _deny(state: GatesState, denial: FeatureDenied, started: float) -> NoReturn:
    """Log, signal, let ``on_denied`` answer, and raise ``denial``."""
    subject = denial.subject
    user_id = None if subject is None else subject.user_id
    check_ms = (time.perf_counter() - started) * 1000
    denial_logger.log(
        state.settings.denial_log_level,
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
    state.emit(
        "access-denied",
        feature=denial.feature,
        subject=subject,
        reason=denial.reason,
        denial=denial,
    )
    if isinstance(denial, FeatureLimitExceeded):
        state.emit(
            "limit-exceeded",
            feature=denial.feature,
            subject=subject,
            limit=denial.limit,
            used=denial.used,
            denial=denial,
        )
    handler = state.extension.denied_handler
    if handler is not None:
        answer = handler(denial)
        if answer is not None:
            denial.response = current_app.make_response(answer)
    raise denial


# -- the end of the request ------------------------------------------------------------


def hold(grant: Grant) -> None:
    """Keep ``grant`` until the response's status is known (:func:`finish_response`)."""
    if grant.track or grant.consumed or grant.remaining is not None:
        _request_gates().grants.append(grant)


def settle(grant: Grant, succeeded: bool) -> None:
    """Record a successful use through the tracker, or refund a failed one."""
    state = grant.state
    if succeeded:
        if grant.owed:
            state.tracker.track_owed(grant.subject.user_id, grant.gate.feature, grant.track)
        elif grant.track:
            state.tracker.track(grant.subject.user_id, grant.gate.feature, grant.track)
    elif grant.consumed:
        _refund(grant)


def _refund(grant: Grant) -> None:
    state = grant.state
    if not state.storage.should_try():
        logger.warning(
            "%d uses of %r by %r not refunded: the database is unreachable",
            grant.consumed,
            grant.gate.feature,
            grant.subject.user_id,
        )
        return
    try:
        _execute(
            state,
            store.REFUND,
            (grant.subject.user_id, grant.gate.feature, grant.consumed, grant.period),
            idempotent=False,
        )
    except UNREACHABLE as exc:
        if not isinstance(exc, psycopg.errors.QueryCanceled):
            state.storage.failed(exc)
        logger.warning(
            "%d uses of %r by %r not refunded: %s",
            grant.consumed,
            grant.gate.feature,
            grant.subject.user_id,
            one_line(exc),
        )
        return
    state.storage.succeeded()


def finish_response(response: Response) -> Response:
    """``after_request``: settle the request's grants by status; add the limit headers."""
    current: _RequestGates | None = _namespace().get(_REQUEST_KEY)
    if current is None or not current.grants:
        return response
    grants, current.grants = current.grants, []
    succeeded = response.status_code < 400
    for grant in grants:
        settle(grant, succeeded)
    if succeeded and grants[0].state.settings.headers_enabled:
        limited = [grant for grant in grants if grant.remaining is not None]
        if limited:
            tightest = min(limited, key=lambda grant: grant.remaining or 0)
            assert tightest.limit is not None and tightest.remaining is not None
            response.headers.update(
                _limit_headers(
                    tightest.limit, tightest.remaining, tightest.reset_at, tightest.state
                )
            )
    return response


def end_request(error: BaseException | None = None) -> None:
    """``teardown_request``: a grant still held means the response never got out: refund."""
    current: _RequestGates | None = _namespace().pop(_REQUEST_KEY, None)
    if current is not None:
        for grant in current.grants:
            settle(grant, succeeded=False)


def _limit_headers(
    limit: int, remaining: int, reset_at: datetime | None, state: GatesState
) -> dict[str, str]:
    headers = {"X-Feature-Limit": str(limit), "X-Feature-Remaining": str(max(remaining, 0))}
    if reset_at is not None:
        seconds = (reset_at - state.extension.clock()).total_seconds()
        headers["X-Feature-Reset"] = str(max(math.ceil(seconds), 0))
    return headers


# -- reading without consuming -----------------------------------------------------------


def decide(
    state: GatesState,
    feature: str,
    subject: Subject | None,
    *,
    used: int | None = None,
    cost: int = 1,
    usage: dict[str, int] | None = None,
) -> Decision:
    """Would ``subject`` be allowed ``cost`` uses of ``feature`` now? Consumes nothing.

    ``used`` is the current count of a stock limit; without it a metered limit's
    count is read from ``feature_usage`` (or from ``usage``, already read for many
    features). A stock limit's count belongs to the application: without ``used``,
    the decision says whether the plan grants the feature, with ``used`` and
    ``remaining`` None.
    """
    if subject is None:
        return Decision(False, "anonymous", feature, None, remaining=0)
    entitlement = state.catalogue.entitlement(subject.plan, feature)
    limit = entitlement.limit
    if limit == 0:
        return Decision(False, "not-entitled", feature, subject.plan, limit=0, remaining=0)
    if entitlement.kind == "boolean":
        return Decision(True, None, feature, subject.plan)
    reset_at = None
    if used is None and feature in state.stock_features:
        return Decision(True, None, feature, subject.plan, limit)
    if used is None:
        now = state.extension.clock()
        reset_at = period_end(now)
        used = usage.get(feature, 0) if usage is not None else read_usage(state, subject, feature)
    if used is None:
        open_ = state.settings.fail_mode == "open"
        return Decision(open_, None if open_ else "unavailable", feature, subject.plan, limit)
    if limit is None:
        return Decision(True, None, feature, subject.plan, None, used, None, reset_at)
    allowed = used + cost <= limit
    return Decision(
        allowed,
        None if allowed else "limit",
        feature,
        subject.plan,
        limit,
        used,
        max(limit - used, 0),
        reset_at,
    )


def read_usage(state: GatesState, subject: Subject, feature: str) -> int | None:
    """``subject``'s count of ``feature`` this period; None when the database is away."""
    period = month_start(state.extension.clock())
    return _read(state, store.GET_USAGE, (subject.user_id, feature, period), _first_int)


def read_all_usage(state: GatesState, subject: Subject) -> dict[str, int] | None:
    """Every count of ``subject`` this period; None when the database is away."""
    period = month_start(state.extension.clock())
    return _read(state, store.GET_USER_USAGE, (subject.user_id, period), _by_feature)


def _first_int(rows: list[tuple[Any, ...]]) -> int:
    return int(rows[0][0]) if rows else 0


def _by_feature(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    return {str(row[0]): int(row[1]) for row in rows}


def _read(
    state: GatesState,
    query: Any,
    params: tuple[Any, ...],
    shape: Callable[[list[tuple[Any, ...]]], T],
) -> T | None:
    if not state.storage.should_try():
        return None
    try:
        rows = _execute(state, query, params, idempotent=True)
    except psycopg.errors.QueryCanceled as exc:
        _timed_out(state, "a usage read", exc)
        return None
    except UNREACHABLE as exc:
        state.storage.failed(exc)
        return None
    state.storage.succeeded()
    return shape(rows)
