"""The three decorators. Thin: the decision lives in the core's engine.

They are module-level and find the extension through ``current_app``, so a
blueprint imports them without the extension object (as ``flask_login.login_required``
does). Put them under the route decorator:

.. code-block:: python

    @app.post("/reports/pdf")
    @feature_required("can_export_pdf")
    def export_pdf(): ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import ParamSpec
from typing import Protocol
from typing import TypeVar
from typing import overload

from flask import Flask
from flask import current_app
from flask import request

from ..core import FailMode
from ..core import Gate
from ..core import gated_methods
from ..core import holding
from ..core import limit_gate
from ..core import required_gate
from ..core import tier_gate
from ._app_gates import AppGates
from ._extension import EXTENSION_KEY
from ._request import hold
from ._views import GATES_ATTRIBUTE
from ._views import gates_of

__all__ = ["GateDecorator", "feature_limit", "feature_required", "feature_tier"]

P = ParamSpec("P")
R = TypeVar("R")


class GateDecorator(Protocol):
    """What the decorators return. The gated view keeps its parameters; an async
    view's wrapper runs it through ``current_app.ensure_sync`` (as Flask would) and
    returns what it returned."""

    @overload
    def __call__(self, view: Callable[P, Awaitable[R]]) -> Callable[P, R]: ...
    @overload
    def __call__(self, view: Callable[P, R]) -> Callable[P, R]: ...


def feature_required(
    feature: str, *, track_usage: bool = True, methods: Iterable[str] | None = None
) -> GateDecorator:
    """The caller's plan must include ``feature`` (``True``, or a limit other than 0).

    :param feature: a feature of ``FEATURE_GATES_PLANS``.
    :param track_usage: record each successful call through the usage tracker.
    :param methods: the HTTP methods gated (any case; HEAD follows GET); requests of
        other methods pass through unchecked and uncounted. Every method by default.
    """
    return _gated(required_gate(feature, track_usage=track_usage, methods=methods))


def feature_tier(
    min_tier: str,
    *,
    feature: str | None = None,
    track_usage: bool = True,
    methods: Iterable[str] | None = None,
) -> GateDecorator:
    """The caller's plan must rank at least ``min_tier`` in the tier order.

    :param min_tier: a plan name; plans rank in ``FEATURE_GATES_TIERS`` order, else in
        the order of ``FEATURE_GATES_PLANS``.
    :param feature: the name denials report and usage is recorded under; the view
        function's name by default.
    :param track_usage: record each successful call through the usage tracker.
    :param methods: the HTTP methods gated (any case; HEAD follows GET); requests of
        other methods pass through unchecked and uncounted. Every method by default.
    """
    only = gated_methods(methods)

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        rule = tier_gate(min_tier, feature, view, track_usage=track_usage, methods=only)
        return _gated(rule)(view)

    return decorator  # type: ignore[return-value]


def feature_limit(
    feature: str,
    *,
    usage_getter: Callable[..., int] | None = None,
    cost: int | Callable[..., int] | None = None,
    limit: int | Callable[..., int | None] | None = None,
    track_usage: bool = True,
    fail_mode: FailMode | None = None,
    reserve: int | Callable[..., int] | None = None,
    methods: Iterable[str] | None = None,
) -> GateDecorator:
    """The caller's usage of ``feature`` plus ``cost`` must stay within the plan's limit.

    Without ``usage_getter`` the limit is **metered**: it counts uses per calendar
    month (UTC) in ``feature_usage`` and consumes ``cost`` atomically before the view
    runs (one round trip), so concurrent requests never pass the limit together. A
    failed call (an exception or a status of 400 or more) gives its uses back.

    With ``usage_getter`` it is a **stock** limit: ``usage_getter(**view_args)``
    returns how many the caller has now (destinations of an itinerary, say) and
    ``usage + cost <= limit`` must hold. A successful call records ``cost`` through
    the tracker.

    With ``reserve`` (metered only) the call's cost is known when it ends: the
    uses ``reserve`` gives (an int or a callable of the view's arguments) are held
    before the view runs, and the view settles with
    ``feature_gates.current_hold().commit(n)``. A view that fails (an exception or
    a status of 400 or more) releases the hold; one that succeeds without settling
    commits all of it. See docs/holds.md.

    :param cost: uses this call takes (1 by default): an int or a callable of the
        view's arguments. Not with ``reserve``.
    :param limit: replaces the plan's limit: an int or a callable of the view's
        arguments (returning None for no limit).
    :param track_usage: record successful calls through the tracker when nothing
        else records them (stock limits, unlimited plans). A metered consumption is
        always recorded: it is the limit's count.
    :param fail_mode: ``open`` or ``closed`` when the database cannot be reached;
        ``FEATURE_GATES_FAIL_MODE`` by default.
    :param methods: the HTTP methods gated and counted (any case; HEAD follows GET):
        ``methods=["POST"]`` on a form view that shows the form on GET. Requests of
        other methods pass through unchecked and uncounted. Every method by default.
    """
    return _gated(
        limit_gate(
            feature,
            usage_getter=usage_getter,
            cost=cost,
            reserve=reserve,
            limit=limit,
            track_usage=track_usage,
            fail_mode=fail_mode,
            methods=methods,
        )
    )


def _gated(rule: Gate) -> GateDecorator:
    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        # Flask's ensure_sync wraps a coroutine function and returns any other view
        # as it is: decided once here rather than inspected on every request.
        asynchronous = inspect.iscoroutinefunction(view)

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            # The real objects: every use of a proxy (current_app, request) costs a
            # lookup, a noticeable share of a gate's few microseconds.
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            method: str = request._get_current_object().method  # type: ignore[attr-defined]
            call = app.ensure_sync(view) if asynchronous else view
            # CORS preflights carry no credentials: never gated, never counted; nor
            # a method the gate leaves alone (the GET that shows a form).
            if method == "OPTIONS" or not rule.gates(method):
                return call(*args, **kwargs)
            state = _state(app)
            if not state.enabled():
                return call(*args, **kwargs)
            grant = state.admit(rule, kwargs)
            try:
                with holding(grant.hold):
                    result = call(*args, **kwargs)
            except BaseException:
                state.engine.settle(grant, succeeded=False)
                raise
            # Settled by the response's status, in after_request.
            hold(state.engine, grant)
            return result

        setattr(wrapper, GATES_ATTRIBUTE, (rule, *gates_of(view)))
        return wrapper

    return decorator  # type: ignore[return-value]


def _state(app: Flask) -> AppGates:
    state: AppGates | None = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            "a feature gate ran on an application without FeatureGates: "
            "call FeatureGates(app) or gates.init_app(app)"
        )
    return state
