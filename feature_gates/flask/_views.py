"""The mark a decorator leaves on a view: its gates, for ``check_views`` and ``routes``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import Gate

__all__ = ["GATES_ATTRIBUTE", "gates_of"]

#: The attribute a gated view carries: a tuple of its gates, outermost first.
GATES_ATTRIBUTE = "__feature_gates__"


def gates_of(view: Callable[..., Any]) -> tuple[Gate, ...]:
    """The gates on ``view`` (empty when it has none), outermost first."""
    return tuple(getattr(view, GATES_ATTRIBUTE, ()))
