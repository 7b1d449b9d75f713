"""Deprecated: ``FlushTimeout`` and ``TrackingStats`` are ``feature_gates.FlushTimeout``
and ``feature_gates.TrackingStats``; this module goes in a later release."""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = ("FlushTimeout", "TrackingStats")


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"feature_gates.usage.tracker.{name} is deprecated: import {name} from feature_gates",
        DeprecationWarning,
        stacklevel=2,
    )
    from .. import core

    return getattr(core, name)
