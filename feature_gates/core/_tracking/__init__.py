"""The usage tracker, by job: the pending map, batches, the writer, the tracker."""

from __future__ import annotations

from .tracker import FlushTimeout as FlushTimeout
from .tracker import TrackingStats as TrackingStats
from .tracker import UsageTracker as UsageTracker
