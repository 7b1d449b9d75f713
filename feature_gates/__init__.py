"""Gate Flask endpoints by plan and meter each user's feature usage in PostgreSQL."""

from __future__ import annotations

from .core import Catalogue as Catalogue
from .core import ConfigError as ConfigError
from .core import Entitlement as Entitlement
from .core import Plan as Plan
from .core import Subject as Subject
from .core import UnknownFeature as UnknownFeature
from .decorators import feature_limit as feature_limit
from .decorators import feature_required as feature_required
from .decorators import feature_tier as feature_tier
from .errors import FeatureCheckUnavailable as FeatureCheckUnavailable
from .errors import FeatureDenied as FeatureDenied
from .errors import FeatureLimitExceeded as FeatureLimitExceeded
from .errors import FeatureNotEntitled as FeatureNotEntitled
from .errors import NotAuthenticated as NotAuthenticated
from .errors import TierTooLow as TierTooLow
from .extension import FeatureGates as FeatureGates
from .gate import Decision as Decision
from .gate import Gate as Gate
from .usage.tracker import FlushTimeout as FlushTimeout
from .usage.tracker import TrackingStats as TrackingStats

__all__ = [
    "Catalogue",
    "ConfigError",
    "Decision",
    "Entitlement",
    "FeatureCheckUnavailable",
    "FeatureDenied",
    "FeatureGates",
    "FeatureLimitExceeded",
    "FeatureNotEntitled",
    "FlushTimeout",
    "Gate",
    "NotAuthenticated",
    "Plan",
    "Subject",
    "TierTooLow",
    "TrackingStats",
    "UnknownFeature",
    "feature_limit",
    "feature_required",
    "feature_tier",
]
