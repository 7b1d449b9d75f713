"""The database, as the runtime uses it: every statement, the pool, the watchdog,
the one classifier of errors and the one health."""

from __future__ import annotations

from .errors import Outcome as Outcome
from .errors import StorageError as StorageError
from .errors import StorageUnavailable as StorageUnavailable
from .errors import classify as classify
from .errors import describe as describe
from .errors import hint as hint
from .errors import one_line as one_line
from .health import Emit as Emit
from .health import Health as Health
from .pool import Connection as Connection
from .pool import LazyPool as LazyPool
from .storage import Storage as Storage
from .storage import StorageStats as StorageStats
from .watchdog import NoAnswer as NoAnswer
from .watchdog import watchdog as watchdog
