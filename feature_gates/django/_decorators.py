"""The three decorators for Django views. Thin: the decision lives in the core's engine.

On a function view, on a class-based view's handler through ``method_decorator``
(or directly), on a DRF handler or ``@api_view`` function (under ``@api_view``),
sync or async:

.. code-block:: python

    @require_POST
    @feature_limit("exports_monthly")
    def export(request): ...

A denial is answered with the core's problem+json document (or ``ON_DENIED``'s
response); a metered use is given back when the view raises or answers with a
status of 400 or more.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from collections.abc import Iterable
from typing import Any
from typing import ParamSpec
from typing import Protocol
from typing import TypeVar
from typing import overload

from django.core.exceptions import ImproperlyConfigured

from ..core import GATES_ATTRIBUTE
from ..core import ConfigError
from ..core import Denial
from ..core import FailMode
from ..core import Gate
from ..core import Grant
from ..core import gated_methods
from ..core import gates_of
from ..core import holding
from ..core import limit_gate
from ..core import required_gate
from ..core import tier_gate
from ._denials import denied_response
from ._request import RequestGates
from ._request import of_request
from ._request import request_in
from ._request import settle
from ._runtime import runtime
from ._settings import in_django_words

__all__ = ["GateDecorator", "feature_limit", "feature_required", "feature_tier"]

P = ParamSpec("P")
R = TypeVar("R")


class GateDecorator(Protocol):
    """What the decorators return: the gated view keeps its parameters, and an async
    view stays a coroutine function."""

    @overload
    def __call__(
        self, view: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, view: Callable[P, R]) -> Callable[P, R]: ...


def feature_required(
    feature: str, *, track_usage: bool = True, methods: Iterable[str] | None = None
) -> GateDecorator:
    """The caller's plan must include ``feature`` (``True``, or a limit other than 0).

    :param feature: a feature of ``FEATURE_GATES["PLANS"]``.
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

    :param feature: the name denials report and usage is recorded under; the view's
        name by default.
    :param methods: as for :func:`feature_required`.
    """
    only = gated_methods(methods)

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        rule = tier_gate(min_tier, feature, view, track_usage=track_usage, methods=only)
        return _gated(rule)(view)

    return decorator


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

    Metered without ``usage_getter`` (one atomic consume before the view runs, given
    back when the view fails); a stock limit with it (``usage_getter(**url_kwargs)``
    returns the count the application holds). ``cost`` and ``limit`` may be callables
    of the URL's keyword arguments. ``methods=["POST"]`` gates and counts only those
    methods (a form view's GET passes). With ``reserve`` (metered only, not with
    ``cost``) the uses it gives are held before the view runs and the view settles
    with ``feature_gates.current_hold().commit(n)``; a failing view releases them
    (docs/holds.md). The same arguments as the Flask decorator.
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


def _passes(rule: Gate, request: Any) -> bool:
    """Whether ``request`` goes through unchecked and uncounted: a CORS preflight (no
    credentials), a method the gate leaves alone (the GET that shows a form), or the
    gates switched off."""
    method = request.method
    return method == "OPTIONS" or not rule.gates(method) or not runtime.enabled()


def _admit(rule: Gate, request: Any, gates: RequestGates, kwargs: dict[str, Any]) -> Grant | Any:
    """A grant, or the response of the denial (logged and signalled)."""
    runtime.validate(rule)
    started = time.perf_counter()
    subject = gates.subject_of(runtime, request)
    engine = runtime.engine
    try:
        return engine.admit(rule, subject, kwargs)
    except Denial as denial:
        engine.denied(denial, started, denial)
        return denied_response(runtime, request, denial)
    except ConfigError as exc:  # a metered limit without DATABASE_URL
        raise ImproperlyConfigured(str(in_django_words(exc))) from None


def _leave(gates: RequestGates, grant: Grant, response: Any) -> None:
    """The view answered ``response``: the outermost gate settles every grant."""
    gates.depth -= 1
    gates.grants.append(grant)
    if gates.depth == 0:
        grants, gates.grants = gates.grants, []
        settle(runtime.engine, grants, response)


def _fail(gates: RequestGates, grant: Grant) -> None:
    """The view raised: give back this gate's use (and those of gates inside it)."""
    gates.depth -= 1
    grants, gates.grants = [*gates.grants, grant], []
    for held in grants:
        runtime.engine.settle(held, succeeded=False)


def _gated(rule: Gate) -> GateDecorator:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(view):
            wrapper = _async_wrapper(rule, view)
        else:
            wrapper = _sync_wrapper(rule, view)
        setattr(wrapper, GATES_ATTRIBUTE, (rule, *gates_of(view)))
        return wrapper

    return decorator


def _sync_wrapper(rule: Gate, view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = request_in(args)
        if _passes(rule, request):
            return view(*args, **kwargs)
        gates = of_request(request)
        admitted = _admit(rule, request, gates, kwargs)
        if not isinstance(admitted, Grant):
            return admitted
        gates.depth += 1
        try:
            with holding(admitted.hold):
                response = view(*args, **kwargs)
        except BaseException:
            _fail(gates, admitted)
            raise
        _leave(gates, admitted, response)
        return response

    return wrapper


def _async_wrapper(rule: Gate, view: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    from asgiref.sync import sync_to_async

    # The loader may read the ORM and a metered check waits on the database: both
    # run in a thread, as Django runs a sync view under ASGI.
    admit = sync_to_async(_admit)
    leave = sync_to_async(_leave)
    fail = sync_to_async(_fail)

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = request_in(args)
        if _passes(rule, request):
            return await view(*args, **kwargs)
        gates = of_request(request)
        admitted = await admit(rule, request, gates, kwargs)
        if not isinstance(admitted, Grant):
            return admitted
        gates.depth += 1
        try:
            with holding(admitted.hold):
                response = await view(*args, **kwargs)
        except BaseException:
            await fail(gates, admitted)
            raise
        await leave(gates, admitted, response)
        return response

    return wrapper
