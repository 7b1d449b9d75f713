"""What a gate decorator makes and leaves on its view, for every adapter.

The arguments of ``feature_required``, ``feature_tier`` and ``feature_limit`` are
checked and turned into a :class:`~._decision.Gate` here, once for every
framework; the gated view carries its gates under one attribute, which
``gates_of`` reads for checks and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from ._config import FailMode
from ._decision import Gate
from ._decision import GateKind
from ._decision import gated_methods
from ._decision import validate as validate_gate
from ._plans import check_feature_name

__all__ = [
    "GATES_ATTRIBUTE",
    "gates_of",
    "limit_gate",
    "required_gate",
    "tier_gate",
    "validate_gate",
]

#: The attribute a gated view carries: a tuple of its gates, outermost first.
GATES_ATTRIBUTE = "__feature_gates__"


def gates_of(view: Callable[..., Any] | None) -> tuple[Gate, ...]:
    """The gates on ``view`` (empty when it has none), outermost first."""
    return tuple(getattr(view, GATES_ATTRIBUTE, ()))


def required_gate(
    feature: str, *, track_usage: bool = True, methods: Iterable[str] | None = None
) -> Gate:
    """The gate of ``feature_required``."""
    check_feature_name(feature)
    return Gate("feature", feature, track_usage=track_usage, methods=gated_methods(methods))


def tier_gate(
    min_tier: str,
    feature: str | None,
    view: Callable[..., Any],
    *,
    track_usage: bool = True,
    methods: Iterable[str] | None = None,
) -> Gate:
    """The gate of ``feature_tier`` on ``view``: named ``feature``, else after the view."""
    name = feature if feature is not None else view.__name__
    check_feature_name(name, hint="pass feature= to name it")
    only = gated_methods(methods)
    return Gate("tier", name, min_tier=min_tier, track_usage=track_usage, methods=only)


def limit_gate(
    feature: str,
    *,
    usage_getter: Callable[..., int] | None = None,
    cost: int | Callable[..., int] | None = None,
    reserve: int | Callable[..., int] | None = None,
    limit: int | Callable[..., int | None] | None = None,
    track_usage: bool = True,
    fail_mode: FailMode | None = None,
    methods: Iterable[str] | None = None,
) -> Gate:
    """The gate of ``feature_limit``: metered without ``usage_getter``, stock with it;
    with ``reserve``, a metered gate that holds uses for its view to commit."""
    check_feature_name(feature)
    if fail_mode not in (None, "open", "closed"):
        raise ValueError(f"fail_mode must be 'open' or 'closed', got {fail_mode!r}")
    kind: GateKind = "metered" if usage_getter is None else "stock"
    if reserve is not None and (cost is not None or kind == "stock"):
        raise ValueError(
            f"@feature_limit({feature!r}) takes reserve= or cost= (and reserve= no "
            "usage_getter): a reserving gate's cost is what its view commits"
        )
    return Gate(
        kind,
        feature,
        cost=1 if cost is None else cost,
        reserve=reserve,
        limit=limit,
        usage_getter=usage_getter,
        track_usage=track_usage,
        fail_mode=fail_mode,
        methods=gated_methods(methods),
    )
