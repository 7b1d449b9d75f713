"""Gate Flask endpoints by plan and meter each user's feature usage in PostgreSQL.

The public names are resolved on first use (PEP 562): ``import feature_gates``
loads nothing else, ``from feature_gates import FeatureGates`` loads the Flask
adapter and the core, and ``import feature_gates.core`` loads no Flask at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from .core import Balance as Balance
    from .core import Catalogue as Catalogue
    from .core import ConfigError as ConfigError
    from .core import CreditGrant as CreditGrant
    from .core import Decision as Decision
    from .core import Entitlement as Entitlement
    from .core import FlushTimeout as FlushTimeout
    from .core import Gate as Gate
    from .core import Hold as Hold
    from .core import HoldExpired as HoldExpired
    from .core import Level as Level
    from .core import MonthUsage as MonthUsage
    from .core import NearLimit as NearLimit
    from .core import Plan as Plan
    from .core import StorageError as StorageError
    from .core import StorageStats as StorageStats
    from .core import StorageUnavailable as StorageUnavailable
    from .core import Subject as Subject
    from .core import TrackingStats as TrackingStats
    from .core import UnknownFeature as UnknownFeature
    from .core import Usage as Usage
    from .core import UsageReport as UsageReport
    from .core import UsageTrend as UsageTrend
    from .flask import FeatureCheckFailed as FeatureCheckFailed
    from .flask import FeatureCheckUnavailable as FeatureCheckUnavailable
    from .flask import FeatureDenied as FeatureDenied
    from .flask import FeatureGates as FeatureGates
    from .flask import FeatureLimitExceeded as FeatureLimitExceeded
    from .flask import FeatureNotEntitled as FeatureNotEntitled
    from .flask import NotAuthenticated as NotAuthenticated
    from .flask import TierTooLow as TierTooLow
    from .flask import current_hold as current_hold
    from .flask import feature_limit as feature_limit
    from .flask import feature_required as feature_required
    from .flask import feature_tier as feature_tier
    from .flask import prefers_html as prefers_html

#: Each public name, and the module that defines it.
_PUBLIC = {
    "Balance": "core",
    "Catalogue": "core",
    "CreditGrant": "core",
    "ConfigError": "core",
    "Decision": "core",
    "Entitlement": "core",
    "FeatureCheckFailed": "flask",
    "FeatureCheckUnavailable": "flask",
    "FeatureDenied": "flask",
    "FeatureGates": "flask",
    "FeatureLimitExceeded": "flask",
    "FeatureNotEntitled": "flask",
    "FlushTimeout": "core",
    "Gate": "core",
    "Hold": "core",
    "HoldExpired": "core",
    "Level": "core",
    "MonthUsage": "core",
    "NearLimit": "core",
    "NotAuthenticated": "flask",
    "Plan": "core",
    "StorageError": "core",
    "StorageStats": "core",
    "StorageUnavailable": "core",
    "Subject": "core",
    "TierTooLow": "flask",
    "TrackingStats": "core",
    "UnknownFeature": "core",
    "Usage": "core",
    "UsageReport": "core",
    "UsageTrend": "core",
    "current_hold": "flask",
    "feature_limit": "flask",
    "feature_required": "flask",
    "feature_tier": "flask",
    "prefers_html": "flask",
}

__all__ = sorted(_PUBLIC, key=lambda name: (name[0].islower(), name))


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'feature_gates' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found once; later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
