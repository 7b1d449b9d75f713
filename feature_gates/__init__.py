"""Gate Flask endpoints by plan and meter each user's feature usage in PostgreSQL."""

from __future__ import annotations

from .config import ConfigError as ConfigError
from .extension import FeatureGates as FeatureGates
from .usage.tracker import TrackingStats as TrackingStats

__all__ = ["ConfigError", "FeatureGates", "TrackingStats"]
